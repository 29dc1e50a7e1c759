#pragma once
// A terminal progress bar for long stages (curation, training, evaluation): bar, count, rate
// (items/s or MB/s) and ETA. On a terminal it redraws one line in place at most ~10 times a
// second; when the stream is not a terminal (logs, CI) it prints a plain line every few seconds,
// so logs stay readable. add() may be called from any thread.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>

namespace pricer {

struct ProgressOptions {
  bool bytes = false;  // counts are bytes: shown as MB with MB/s
  std::FILE* out = stderr;
  int tty = -1;  // -1: detect with isatty(); 0 plain lines; 1 in-place redraw
  bool enabled = true;  // false: draw nothing (quiet mode)
  double min_interval_s = 0.1;  // terminal redraw limit
  double plain_interval_s = 5.0;  // interval between plain lines
  int bar_width = 28;
  std::function<double()> clock;  // seconds since an arbitrary origin; default steady clock
};

class Progress {
 public:
  Progress(std::string label, uint64_t total, ProgressOptions opt = {});
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void add(uint64_t n);
  void set(uint64_t done);
  void set_total(uint64_t total);
  // Draws the final state once (with a newline); later calls do nothing.
  void finish();

  uint64_t done() const { return done_.load(std::memory_order_relaxed); }
  int draws() const { return draws_; }

 private:
  void maybe_draw(bool force);
  double now() const;

  std::string label_;
  ProgressOptions opt_;
  bool tty_ = false;
  std::atomic<uint64_t> done_{0};
  std::atomic<uint64_t> total_{0};
  std::atomic<double> last_draw_{-1e30};
  double start_ = 0;
  std::mutex draw_mu_;
  int draws_ = 0;
  size_t last_len_ = 0;
  bool finished_ = false;
};

// One status line, without any carriage return or newline. total == 0 means unknown (no bar,
// no ETA). Exposed for tests and for callers that print their own status.
std::string format_progress(std::string_view label, uint64_t done, uint64_t total, double elapsed_s, bool bytes,
                            int bar_width);
// "0:07", "12:34", "1:02:03"; "--:--" for negative or non-finite values.
std::string format_duration(double seconds);

}  // namespace pricer
