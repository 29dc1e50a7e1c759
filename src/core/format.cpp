#include "core/format.h"

#include <cstdio>

namespace pricer {

std::string fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

std::string human_bytes(uint64_t n) {
  const auto d = static_cast<double>(n);
  if (n < (uint64_t(1) << 20)) return fmt("%.0f KiB", d / 0x1p10);
  if (n < (uint64_t(1) << 30)) return fmt("%.0f MiB", d / 0x1p20);
  return fmt("%.1f GiB", d / 0x1p30);
}

}  // namespace pricer
