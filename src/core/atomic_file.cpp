#include "core/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace pricer {
namespace {

std::string errno_text(int err) { return std::strerror(err); }

std::function<void(std::string_view, const std::filesystem::path&)>& durability_hook() {
  static std::function<void(std::string_view, const std::filesystem::path&)> hook;
  return hook;
}

void before(std::string_view event, const std::filesystem::path& path) {
  if (durability_hook()) durability_hook()(event, path);
}

[[noreturn]] void fail(const std::filesystem::path& path, const char* what, int err) {
  throw Error("cannot " + std::string(what) + " " + path.string() + ": " + errno_text(err));
}

std::filesystem::path directory_of(const std::filesystem::path& path) {
  auto dir = path.parent_path();
  return dir.empty() ? std::filesystem::path(".") : dir;
}

// Unique per process and per call, so concurrent writers (threads or processes) never share a
// temporary file.
std::filesystem::path temp_name(const std::filesystem::path& target) {
  static std::atomic<unsigned long> counter{0};
  std::string name = ".";
  name += target.filename().string();
  name += ".tmp.";
  name += std::to_string(::getpid());
  name += '.';
  name += std::to_string(counter.fetch_add(1));
  return directory_of(target) / name;
}

void write_all(int fd, const char* data, std::size_t size, const std::filesystem::path& target) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(target, "write", errno);
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

// fsync of a file or directory by path.
void sync_path(const std::filesystem::path& path) {
  before("fsync", path);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "open to sync", errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some file systems cannot sync directories (EINVAL); the rename is then as durable as it gets.
  if (rc != 0 && err != EINVAL) fail(path, "sync", err);
}

// Exactly temp_name()'s pattern ".<target>.tmp.<pid>.<n>": a user's ".notes.tmp.txt" is not one.
bool is_temporary_name(const std::string& name) {
  const auto at = name.rfind(".tmp.");
  if (name.size() < 2 || name[0] != '.' || at == std::string::npos || at == 0) return false;
  const std::string tail = name.substr(at + 5);
  const auto dot = tail.find('.');
  auto digits = [](std::string_view d) {
    return !d.empty() && std::all_of(d.begin(), d.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  return dot != std::string::npos && digits(std::string_view(tail).substr(0, dot)) &&
         digits(std::string_view(tail).substr(dot + 1));
}

}  // namespace

void set_durability_hook(std::function<void(std::string_view, const std::filesystem::path&)> hook) {
  durability_hook() = std::move(hook);
}

void replace_directory_atomic(const std::filesystem::path& dir,
                              const std::function<void(const std::filesystem::path&)>& fill) {
  namespace fs = std::filesystem;
  require(!dir.filename().empty(), "cannot write '" + dir.string() + "': not a directory name");
  fs::path staging;
  for (int attempt = 0;; ++attempt) {
    staging = temp_name(dir);
    if (::mkdir(staging.c_str(), 0777) == 0) break;
    if (errno != EEXIST || attempt == 100) fail(dir, "create a staging directory for", errno);
  }
  try {
    fill(staging);
    for (const auto& e : fs::recursive_directory_iterator(staging))
      if (e.is_regular_file()) sync_path(e.path());
    sync_path(staging);
    before("rename", dir);
    if (fs::exists(dir)) {
      // One rename swaps the two names: no moment without a complete `dir`.
      if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, dir.c_str(), RENAME_EXCHANGE) != 0) {
        if (errno != EINVAL && errno != ENOSYS) fail(dir, "replace", errno);
        // A file system without the exchange: the old version steps aside first; a crash between
        // the two renames leaves it under the staging name, complete, where the next start cleans.
        const fs::path old = temp_name(dir);
        if (::rename(dir.c_str(), old.c_str()) != 0) fail(dir, "move aside", errno);
        if (::rename(staging.c_str(), dir.c_str()) != 0) fail(dir, "replace", errno);
        staging = old;
      }
    } else if (::rename(staging.c_str(), dir.c_str()) != 0) {
      fail(dir, "create", errno);
    }
  } catch (...) {
    std::error_code ec;
    fs::remove_all(staging, ec);
    throw;
  }
  sync_path(directory_of(dir));
  std::error_code ec;
  fs::remove_all(staging, ec);  // after an exchange: the previous version
}

void ensure_output_dir(const std::filesystem::path& dir, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  require(!fs::exists(dir, ec) || fs::is_directory(dir, ec),
          dir.string() + " (" + what + "): exists and is not a directory");
  fs::create_directories(dir, ec);
  require(!ec, dir.string() + " (" + what + "): cannot create the directory: " + ec.message());
  const fs::path probe = temp_name(dir / "write-probe");
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) throw Error(dir.string() + " (" + what + "): cannot write there: " + errno_text(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

void remove_stale_temporaries(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (is_temporary_name(it->path().filename().string())) fs::remove_all(it->path(), ec);
}

AtomicFile::AtomicFile(std::filesystem::path target) : target_(std::move(target)) {
  require(!target_.empty() && !target_.filename().empty(), "cannot write '" + target_.string() + "': not a file name");
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = temp_name(target_);
    // Mode 0666 lets the umask decide, as for any newly created file.
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) break;
    if (errno != EEXIST) fail(target_, "create a temporary file to write", errno);
  }
  if (fd_ < 0) fail(target_, "create a temporary file to write", EEXIST);
  // Replacing a file keeps its permissions (a read-only-for-others config stays so).
  struct stat st {};
  if (::stat(target_.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    if (::fchmod(fd_, st.st_mode & 07777) != 0) {
      int err = errno;
      discard();
      fail(target_, "set permissions while writing", err);
    }
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) discard();
}

void AtomicFile::discard() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  if (!temp_.empty()) ::unlink(temp_.c_str());
  temp_.clear();
}

void AtomicFile::flush_buffer() {
  write_all(fd_, buffer_.data(), buffer_.size(), target_);
  buffer_.clear();
}

void AtomicFile::write(std::string_view data) {
  require(fd_ >= 0, "cannot write " + target_.string() + ": file already committed");
  constexpr std::size_t kBufferLimit = 1 << 16;
  if (buffer_.size() + data.size() > kBufferLimit) {
    flush_buffer();
    if (data.size() > kBufferLimit) {
      write_all(fd_, data.data(), data.size(), target_);
      return;
    }
  }
  buffer_.append(data);
}

void AtomicFile::write_at(std::size_t offset, std::string_view data) {
  require(fd_ >= 0, "cannot write " + target_.string() + ": file already committed");
  flush_buffer();
  const struct stat st = [&] {
    struct stat s {};
    if (::fstat(fd_, &s) != 0) fail(target_, "write", errno);
    return s;
  }();
  require(offset + data.size() <= static_cast<std::size_t>(st.st_size),
          "cannot write " + target_.string() + ": write_at past the bytes written");
  for (std::size_t done = 0; done < data.size();) {
    const ssize_t n = ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail(target_, "write", errno);
    done += static_cast<std::size_t>(n);
  }
}

void AtomicFile::commit() {
  require(fd_ >= 0, "cannot write " + target_.string() + ": file already committed");
  flush_buffer();
  before("fsync", temp_);
  if (::fsync(fd_) != 0) fail(target_, "flush", errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail(target_, "close", errno);
  before("rename", target_);
  if (::rename(temp_.c_str(), target_.c_str()) != 0) fail(target_, "replace", errno);
  committed_ = true;
  temp_.clear();
  // Without this the rename may be lost on power failure even though the data was synced.
  sync_path(directory_of(target_));
}

void write_file_atomic(const std::filesystem::path& path, std::string_view data) {
  AtomicFile file(path);
  file.write(data);
  file.commit();
}

void write_file_atomic(const std::filesystem::path& path, const std::function<void(AtomicFile&)>& fill) {
  AtomicFile file(path);
  fill(file);
  file.commit();
}

std::string read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "open", errno);
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) fail(path, "stat", errno);
  require(!S_ISDIR(st.st_mode), "cannot read " + path.string() + ": is a directory");
  std::string out;
  if (S_ISREG(st.st_mode)) {
    auto size = static_cast<std::size_t>(st.st_size);
    require(size <= max_bytes, "cannot read " + path.string() + ": file is " + std::to_string(size) +
                                   " bytes, limit is " + std::to_string(max_bytes));
    out.reserve(size);
  }
  char chunk[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, "read", errno);
    }
    if (n == 0) break;
    require(out.size() + static_cast<std::size_t>(n) <= max_bytes,
            "cannot read " + path.string() + ": larger than the limit of " + std::to_string(max_bytes) + " bytes");
    out.append(chunk, static_cast<std::size_t>(n));
  }
  return out;
}

}  // namespace pricer
