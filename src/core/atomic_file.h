#pragma once
// Crash-safe file writes: the target path always holds either its old content or the complete new
// content, never a prefix. The data goes to a temporary file in the same directory (so the final
// rename stays on one file system), is fsync'ed, renamed over the target, and the directory is
// fsync'ed so the rename itself survives a power loss.
#include <cstddef>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace pricer {

// Streams content into a temporary file; commit() publishes it under the target name. If the
// object is destroyed before commit() (an exception while producing the content), the temporary
// file is removed and the target is left untouched.
class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(std::string_view data);
  // Overwrites bytes already written, from `offset` (a header whose counts are known at the end).
  void write_at(std::size_t offset, std::string_view data);
  void commit();

  const std::filesystem::path& target() const { return target_; }

 private:
  void flush_buffer();
  void discard() noexcept;

  std::filesystem::path target_;
  std::filesystem::path temp_;
  int fd_ = -1;
  bool committed_ = false;
  std::string buffer_;  // batches small writes into fewer syscalls
};

// Replaces `path` with `data` atomically.
void write_file_atomic(const std::filesystem::path& path, std::string_view data);

// Replaces `path` with whatever `fill` writes; if `fill` throws, `path` keeps its old content.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(AtomicFile&)>& fill);

// Replaces the directory `dir` with what `fill` writes into an empty staging directory beside it
// (synced, then swapped in with one rename), so `dir` always holds one complete version: an
// adapter's PEFT and GGUF files from the same step. If `fill` throws, `dir` is untouched.
void replace_directory_atomic(const std::filesystem::path& dir,
                              const std::function<void(const std::filesystem::path& staging)>& fill);

// Removes the temporary files and staging directories that killed writers left in `dir` (names
// ".<target>.tmp.<pid>.<n>"). Call it only while no other process writes there.
void remove_stale_temporaries(const std::filesystem::path& dir);

// Test seam for fault injection: called before every fsync and rename these functions make, with
// the event ("fsync", "rename") and the path. A hook may end the process there, as a crash would.
void set_durability_hook(std::function<void(std::string_view event, const std::filesystem::path&)> hook);

// Makes sure `dir` can take output before any work is done: creates it when missing and proves it
// writable with a probe file; Error naming the path and the option (`what`, e.g. "--out")
// when it is a file, or cannot be created or written.
void ensure_output_dir(const std::filesystem::path& dir, const std::string& what);

// Reads a whole file, refusing files larger than max_bytes (checked before allocating, and again
// while reading for files whose size is not known up front, such as pipes).
std::string read_file(const std::filesystem::path& path, std::size_t max_bytes);

}  // namespace pricer
