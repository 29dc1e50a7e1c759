#pragma once
// Numbers as people read them in messages, tables and reports.
#include <cstdint>
#include <string>

namespace pricer {

// One number through a printf format: fmt("%.2f", 3.14159) == "3.14".
std::string fmt(const char* format, double v);

// A size in binary units: "300 KiB", "12 MiB", "3.6 GiB".
std::string human_bytes(uint64_t bytes);

}  // namespace pricer
