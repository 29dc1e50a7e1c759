// The progress bar: line contents (bar, count, rate, ETA), redraw throttling on a terminal,
// plain lines otherwise, thread-safe counting.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/progress.h"

using pricer::format_duration;
using pricer::format_progress;
using pricer::Progress;
using pricer::ProgressOptions;

namespace {

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

size_t count(const std::string& s, char c) {
  size_t n = 0;
  for (char x : s) n += x == c;
  return n;
}

}  // namespace

TEST(Progress, DurationFormat) {
  EXPECT_EQ(format_duration(7), "0:07");
  EXPECT_EQ(format_duration(754), "12:34");
  EXPECT_EQ(format_duration(3723), "1:02:03");
  EXPECT_EQ(format_duration(-1), "--:--");
}

TEST(Progress, LineShowsBarRateAndEta) {
  // 50 of 200 MB in 10 s: 5 MB/s, 150 MB left -> 30 s.
  std::string line = format_progress("curate", 50'000'000, 200'000'000, 10.0, true, 20);
  EXPECT_NE(line.find("[#####...............]"), std::string::npos) << line;
  EXPECT_NE(line.find(" 25%"), std::string::npos) << line;
  EXPECT_NE(line.find("50.0/200.0 MB"), std::string::npos) << line;
  EXPECT_NE(line.find("5.0 MB/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 0:30"), std::string::npos) << line;

  std::string items = format_progress("eval", 30, 120, 3.0, false, 10);
  EXPECT_NE(items.find("30/120"), std::string::npos) << items;
  EXPECT_NE(items.find("10 items/s"), std::string::npos) << items;
  EXPECT_NE(items.find("ETA 0:09"), std::string::npos) << items;
}

TEST(Progress, UnknownTotalHasNoBarNorEta) {
  std::string line = format_progress("read", 12345, 0, 2.0, false, 10);
  EXPECT_EQ(line.find('['), std::string::npos) << line;
  EXPECT_EQ(line.find("ETA"), std::string::npos) << line;
  EXPECT_NE(line.find("12.3k"), std::string::npos) << line;
}

TEST(Progress, TerminalRedrawsAtMostTenTimesASecond) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double clock = 0;
  {
    ProgressOptions opt;
    opt.out = f;
    opt.tty = 1;
    opt.clock = [&] { return clock; };
    Progress p("work", 1000, opt);
    // 1000 updates spread over one simulated second.
    for (int i = 0; i < 1000; ++i) {
      clock += 0.001;
      p.add(1);
    }
    EXPECT_GE(p.draws(), 5);
    EXPECT_LE(p.draws(), 11);
    p.finish();
  }
  std::string out = read_all(f);
  std::fclose(f);
  EXPECT_EQ(count(out, '\n'), 1u) << "in-place redraws end with exactly one newline";
  EXPECT_GE(count(out, '\r'), 5u);
  EXPECT_NE(out.find("1000/1000"), std::string::npos);
}

TEST(Progress, PlainLinesWhenNotATerminal) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  double clock = 0;
  {
    ProgressOptions opt;
    opt.out = f;
    opt.tty = 0;
    opt.plain_interval_s = 5.0;
    opt.clock = [&] { return clock; };
    Progress p("work", 100, opt);
    for (int i = 0; i < 100; ++i) {
      clock += 0.2;  // 20 s in all: a line at most every 5 s
      p.add(1);
    }
  }  // the destructor prints the final line
  std::string out = read_all(f);
  std::fclose(f);
  EXPECT_EQ(count(out, '\r'), 0u);
  EXPECT_GE(count(out, '\n'), 4u);
  EXPECT_LE(count(out, '\n'), 6u);
  EXPECT_NE(out.find("100/100"), std::string::npos);
}

TEST(Progress, DisabledPrintsNothing) {
  std::FILE* f = std::tmpfile();
  ASSERT_NE(f, nullptr);
  {
    ProgressOptions opt;
    opt.out = f;
    opt.enabled = false;
    Progress p("quiet", 10, opt);
    p.add(10);
  }
  EXPECT_TRUE(read_all(f).empty());
  std::fclose(f);
}

TEST(Progress, CountsFromManyThreads) {
  ProgressOptions opt;
  opt.enabled = false;
  Progress p("mt", 0, opt);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) p.add(1);
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(p.done(), 40000u);
}
