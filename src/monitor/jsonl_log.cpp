#include "monitor/jsonl_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace pricer::monitor {

JsonlLog::JsonlLog(std::filesystem::path path) : path_(std::move(path)) {
  if (path_.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path_.parent_path(), ec);
    if (ec) throw Error("cannot create directory for " + path_.string() + ": " + ec.message());
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd_ < 0) throw Error("cannot open metrics log " + path_.string() + ": " + std::strerror(errno));
}

JsonlLog::~JsonlLog() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonlLog::log(std::int64_t step, double wall_time, const std::map<std::string, double>& metrics) {
  nlohmann::json line = {{"step", step}, {"time", wall_time}, {"metrics", nlohmann::json::object()}};
  for (const auto& [name, value] : metrics) line["metrics"][name] = value;  // NaN/inf dump as null
  // Metric names come from code, but a stray invalid byte must not abort the training run.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::string_view rest = text;
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write metrics log " + path_.string() + ": " + std::strerror(errno));
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace pricer::monitor
