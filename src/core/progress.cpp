#include "core/progress.h"

#include <unistd.h>

#include <chrono>
#include <cmath>

#include "core/clock.h"
#include "core/format.h"

namespace pricer {

namespace {

// 1234567 -> "1.23M": compact enough that the line fits an 80-column terminal.
std::string compact_count(double v) {
  if (v >= 1e9) return fmt("%.2fG", v / 1e9);
  if (v >= 1e6) return fmt("%.2fM", v / 1e6);
  if (v >= 1e4) return fmt("%.1fk", v / 1e3);
  return fmt("%.0f", v);
}

}  // namespace

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "--:--";
  const long long t = std::llround(s);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", t / 3600, (t / 60) % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%lld:%02lld", t / 60, t % 60);
  return buf;
}

std::string format_progress(std::string_view label, uint64_t done, uint64_t total, double elapsed_s, bool bytes,
                            int bar_width) {
  // Built with append() only: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
  std::string line(label);
  const double d = static_cast<double>(done), t = static_cast<double>(total);
  if (total > 0) {
    const double frac = std::min(1.0, d / t);
    const int filled = static_cast<int>(frac * bar_width);
    line.append(" [");
    line.append(static_cast<size_t>(filled), '#');
    line.append(static_cast<size_t>(bar_width - filled), '.');
    line.append("] ").append(fmt("%3.0f%%", frac * 100.0));
  }
  if (bytes) {
    line.append(" ").append(fmt("%.1f", d / 1e6));
    if (total > 0) line.append("/").append(fmt("%.1f", t / 1e6));
    line.append(" MB");
  } else {
    line.append(" ").append(compact_count(d));
    if (total > 0) line.append("/").append(compact_count(t));
  }
  const double rate = elapsed_s > 0 ? d / elapsed_s : 0.0;
  if (bytes) line.append(" ").append(fmt("%.1f", rate / 1e6)).append(" MB/s");
  else line.append(" ").append(compact_count(rate)).append(" items/s");
  if (total > 0) {
    const double eta = rate > 0 && done <= total ? (t - d) / rate : -1.0;
    line.append(" ETA ").append(format_duration(eta));
  }
  line.append(" ").append(format_duration(elapsed_s));
  return line;
}

Progress::Progress(std::string label, uint64_t total, ProgressOptions opt)
    : label_(std::move(label)), opt_(std::move(opt)) {
  total_ = total;
  tty_ = opt_.tty < 0 ? (opt_.out && isatty(fileno(opt_.out))) : opt_.tty == 1;
  start_ = now();
}

Progress::~Progress() { finish(); }

double Progress::now() const {
  if (opt_.clock) return opt_.clock();
  return monotonic_seconds();
}

void Progress::add(uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  maybe_draw(false);
}

void Progress::set(uint64_t done) {
  done_.store(done, std::memory_order_relaxed);
  maybe_draw(false);
}

void Progress::set_total(uint64_t total) { total_ = total; }

void Progress::finish() { maybe_draw(true); }

void Progress::maybe_draw(bool force) {
  if (!opt_.enabled || !opt_.out) return;
  const double t = now();
  const double interval = tty_ ? opt_.min_interval_s : opt_.plain_interval_s;
  // Cheap check first so hot loops calling add() rarely touch the mutex.
  if (!force && t - last_draw_.load(std::memory_order_relaxed) < interval) return;
  std::unique_lock lock(draw_mu_, std::defer_lock);
  if (force) {
    lock.lock();
  } else if (!lock.try_lock()) {
    return;  // another thread is drawing right now
  }
  if (finished_) return;
  if (!force && t - last_draw_.load(std::memory_order_relaxed) < interval) return;
  last_draw_.store(t, std::memory_order_relaxed);
  std::string line = format_progress(label_, done_.load(), total_.load(), t - start_, opt_.bytes, opt_.bar_width);
  if (tty_) {
    // Pad over the previous, possibly longer line instead of relying on terminal escapes.
    const size_t len = line.size();
    if (len < last_len_) line.append(last_len_ - len, ' ');
    last_len_ = len;
    std::fprintf(opt_.out, "\r%s%s", line.c_str(), force ? "\n" : "");
  } else {
    std::fprintf(opt_.out, "%s\n", line.c_str());
  }
  std::fflush(opt_.out);
  ++draws_;
  if (force) finished_ = true;
}

}  // namespace pricer
