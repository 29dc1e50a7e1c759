// Crash-safe writes: the target holds the old or the new content, never a mix, and every failure
// names the path.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

#include "core/atomic_file.h"
#include "core/error.h"

namespace fs = std::filesystem;
using pricer::AtomicFile;
using pricer::Error;

namespace {

class AtomicFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("pricer_atomic_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  // Leftover temporary files would mean a failed write leaks junk into the directory.
  size_t entries() const { return static_cast<size_t>(std::distance(fs::directory_iterator(dir_), {})); }
  fs::path dir_;
};

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_F(AtomicFileTest, WritesNewFileAndOverwrites) {
  auto path = dir_ / "out.bin";
  auto first = random_bytes(1000, 1);
  pricer::write_file_atomic(path, first);
  EXPECT_EQ(slurp(path), first);
  // Larger than the internal buffer, so the streaming path is exercised too.
  auto second = random_bytes(300000, 2);
  pricer::write_file_atomic(path, second);
  EXPECT_EQ(slurp(path), second);
  pricer::write_file_atomic(path, "");
  EXPECT_EQ(slurp(path), "");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, StreamedChunksArriveInOrder) {
  auto path = dir_ / "chunks.txt";
  std::string expected;
  pricer::write_file_atomic(path, [&](AtomicFile& f) {
    for (int i = 0; i < 20000; ++i) {
      std::string line = "line " + std::to_string(i) + "\n";
      expected += line;
      f.write(line);
    }
  });
  EXPECT_EQ(slurp(path), expected);
}

TEST_F(AtomicFileTest, WriterThrowingMidwayKeepsOldContent) {
  auto path = dir_ / "model.json";
  pricer::write_file_atomic(path, "old content");
  EXPECT_THROW(pricer::write_file_atomic(path,
                                         [&](AtomicFile& f) {
                                           f.write(random_bytes(200000, 3));
                                           // The new bytes are on disk in the temp file by now,
                                           // yet the target must still be the old one.
                                           EXPECT_EQ(slurp(path), "old content");
                                           throw std::runtime_error("producer failed");
                                         }),
               std::runtime_error);
  EXPECT_EQ(slurp(path), "old content");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, UncommittedFileNeverAppears) {
  auto path = dir_ / "never.txt";
  {
    AtomicFile f(path);
    f.write("partial");
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_EQ(entries(), 0u);
}

TEST_F(AtomicFileTest, KeepsPermissionsOfReplacedFile) {
  auto path = dir_ / "perm.txt";
  pricer::write_file_atomic(path, "a");
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  pricer::write_file_atomic(path, "b");
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
}

TEST_F(AtomicFileTest, ErrorsNameThePath) {
  auto missing = dir_ / "no_such_dir" / "x.txt";
  auto msg = error_of([&] { pricer::write_file_atomic(missing, "x"); });
  EXPECT_NE(msg.find(missing.string()), std::string::npos) << msg;

  // A regular file where a directory is expected: fails even for root.
  pricer::write_file_atomic(dir_ / "file", "x");
  auto under_file = dir_ / "file" / "x.txt";
  msg = error_of([&] { pricer::write_file_atomic(under_file, "x"); });
  EXPECT_NE(msg.find(under_file.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("Not a directory"), std::string::npos) << msg;
}

// A full disk cannot be arranged in a test, but a file size limit makes write() fail the same way
// (EFBIG instead of ENOSPC) part way through the data.
TEST_F(AtomicFileTest, WriteFailureMidwayKeepsOldContentAndNamesPath) {
  auto path = dir_ / "big.bin";
  pricer::write_file_atomic(path, "previous");
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  auto msg = error_of([&] { pricer::write_file_atomic(path, random_bytes(1 << 20, 4)); });
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("too large"), std::string::npos) << msg;
  EXPECT_EQ(slurp(path), "previous");
  EXPECT_EQ(entries(), 1u);
}

TEST_F(AtomicFileTest, ReadFileHonoursLimit) {
  auto path = dir_ / "data.bin";
  auto data = random_bytes(5000, 5);
  pricer::write_file_atomic(path, data);
  EXPECT_EQ(pricer::read_file(path, 5000), data);
  auto msg = error_of([&] { pricer::read_file(path, 4999); });
  EXPECT_NE(msg.find(path.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;

  auto missing = dir_ / "missing.bin";
  msg = error_of([&] { pricer::read_file(missing, 10); });
  EXPECT_NE(msg.find(missing.string()), std::string::npos) << msg;
  msg = error_of([&] { pricer::read_file(dir_, 10); });
  EXPECT_NE(msg.find("directory"), std::string::npos) << msg;
}

// Pipes have no size up front; the limit must still stop the read instead of growing forever.
TEST_F(AtomicFileTest, ReadFileLimitAppliesToStreams) {
  auto fifo = dir_ / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::ofstream out(fifo, std::ios::binary);
    std::string block(1 << 16, 'x');
    for (int i = 0; i < 8 && out; ++i) out.write(block.data(), static_cast<std::streamsize>(block.size()));
    ::_exit(0);
  }
  auto msg = error_of([&] { pricer::read_file(fifo, 100000); });
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

// A directory is replaced as one unit: after the swap it holds only the new files; a writer that
// throws leaves the old version whole; no staging directory stays behind either way.
TEST_F(AtomicFileTest, DirectoryIsReplacedAsOneUnit) {
  const fs::path out = dir_ / "last";
  pricer::replace_directory_atomic(out, [](const fs::path& staging) {
    pricer::write_file_atomic(staging / "a.bin", "old a");
    pricer::write_file_atomic(staging / "b.bin", "old b");
  });
  EXPECT_EQ(slurp(out / "a.bin"), "old a");
  pricer::replace_directory_atomic(
      out, [](const fs::path& staging) { pricer::write_file_atomic(staging / "a.bin", "new a"); });
  EXPECT_EQ(slurp(out / "a.bin"), "new a");
  EXPECT_FALSE(fs::exists(out / "b.bin")) << "nothing of the old version survives";
  EXPECT_THROW(pricer::replace_directory_atomic(out,
                                                [](const fs::path& staging) {
                                                  pricer::write_file_atomic(staging / "a.bin", "half");
                                                  throw std::runtime_error("writer died");
                                                }),
               std::runtime_error);
  EXPECT_EQ(slurp(out / "a.bin"), "new a");
  EXPECT_EQ(entries(), 1u) << "no staging directory left";

  // What killed writers leave (".<name>.tmp.<pid>.<n>") is removed; everything else stays.
  fs::create_directories(dir_ / ".best.tmp.99.0");
  std::ofstream(dir_ / ".x.json.tmp.99.3") << "partial";
  std::ofstream(dir_ / "keep.tmp") << "mine";
  std::ofstream(dir_ / ".notes.tmp.txt") << "mine too";  // a dot file that merely looks alike
  pricer::remove_stale_temporaries(dir_);
  EXPECT_EQ(entries(), 3u);
  EXPECT_TRUE(fs::exists(dir_ / "keep.tmp"));
  EXPECT_TRUE(fs::exists(dir_ / ".notes.tmp.txt"));
}
