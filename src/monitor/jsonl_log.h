#pragma once
// Append-only metrics log, one JSON object per line:
//   {"step": 120, "time": 1767000000.25, "metrics": {"train/loss": 1.93, "train/lr": 0.0002}}
// Each line goes out with a single write(2) on an O_APPEND descriptor, so it reaches the OS as
// soon as it is logged, a crash leaves at most the last line incomplete, and two processes
// appending to one file never interleave within a line. Non-finite values (a diverged loss) are
// written as null, since JSON has no NaN or infinity.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

namespace pricer::monitor {

class JsonlLog {
 public:
  explicit JsonlLog(std::filesystem::path path);  // creates the file (and directories) if missing
  ~JsonlLog();
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;

  const std::filesystem::path& path() const { return path_; }
  void log(std::int64_t step, double wall_time, const std::map<std::string, double>& metrics);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace pricer::monitor
