#pragma once
// One writer per output directory: two trainings into the same --out would interleave their
// checkpoints and adapters, the second silently winning. An advisory lock (flock) on
// <dir>/.pricer.lock, released when the holder exits however it ends.
#include <filesystem>
#include <string>

namespace pricer {

class DirectoryLock {
 public:
  // Creates `dir` if needed and locks it; Error naming the holder's pid when another process
  // holds it. `what` names the option for the message ("--out"). A lock file of another name
  // guards one file of the directory (`subject`, named in the message) rather than all of it.
  DirectoryLock(const std::filesystem::path& dir, const std::string& what,
                const std::string& lock_name = ".pricer.lock", const std::string& subject = "");
  ~DirectoryLock();
  DirectoryLock(DirectoryLock&& other) noexcept;
  DirectoryLock& operator=(DirectoryLock&&) = delete;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace pricer
