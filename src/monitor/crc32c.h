#pragma once
// CRC32C (Castagnoli polynomial, reflected 0x82F63B78), as used by TFRecord framing.
// crc32c() picks the SSE4.2 instruction when the CPU has it; the table-driven version is the
// reference it is tested against.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pricer::monitor {

// `crc` is a previous result, so a buffer can be checksummed in pieces.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0);
std::uint32_t crc32c_scalar(const void* data, std::size_t size, std::uint32_t crc = 0);
// Only valid when crc32c_hardware_available().
std::uint32_t crc32c_hardware(const void* data, std::size_t size, std::uint32_t crc = 0);
bool crc32c_hardware_available();

inline std::uint32_t crc32c(std::string_view s) { return crc32c(s.data(), s.size()); }

// TFRecord stores a rotated, offset CRC so that a CRC of data that itself contains CRCs stays
// well distributed.
inline std::uint32_t mask_crc(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }

}  // namespace pricer::monitor
