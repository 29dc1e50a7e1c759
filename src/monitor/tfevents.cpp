#include "monitor/tfevents.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/atomic_file.h"
#include "core/clock.h"
#include "core/error.h"
#include "monitor/crc32c.h"

namespace pricer::monitor {
namespace {

// Protobuf wire types.
constexpr unsigned kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5;

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_tag(std::string& out, unsigned field, unsigned wire) { put_varint(out, field << 3 | wire); }

template <class T>
void put_le(std::string& out, T v) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &v, sizeof(T));  // x86 and every platform we build for are little-endian
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, unsigned field, std::string_view s) {
  put_tag(out, field, kLengthDelimited);
  put_varint(out, s.size());
  out.append(s);
}

template <class T>
T get_le(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

// Reads protobuf fields from a slice of the file; `base` is the slice's offset in the file, so
// errors report absolute byte offsets.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, std::uint64_t base, const std::string& name)
      : data_(data), base_(base), name_(name) {}

  bool done() const { return pos_ >= data_.size(); }
  std::uint64_t offset() const { return base_ + pos_; }

  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(name_ + ": corrupt event at byte offset " + std::to_string(offset()) + ": " + problem);
  }

  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint");
      auto byte = static_cast<unsigned char>(data_[pos_++]);
      if (shift == 63 && byte > 1) fail("varint overflows 64 bits");
      v |= static_cast<std::uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }

  void tag(unsigned& field, unsigned& wire) {
    std::uint64_t t = varint();
    field = static_cast<unsigned>(t >> 3);
    wire = static_cast<unsigned>(t & 7);
    if (field == 0 || (t >> 3) > 0x1FFFFFFF) fail("invalid field number");
  }

  template <class T>
  T fixed() {
    if (data_.size() - pos_ < sizeof(T)) fail("truncated fixed-width field");
    T v = get_le<T>(data_.data() + pos_);
    pos_ += sizeof(T);
    return v;
  }

  // Returns the sub-slice and its absolute offset.
  std::string_view bytes(std::uint64_t& at) {
    std::uint64_t len = varint();
    if (len > data_.size() - pos_) fail("length " + std::to_string(len) + " runs past the end");
    at = offset();
    auto s = data_.substr(pos_, len);
    pos_ += len;
    return s;
  }

  void skip(unsigned wire) {
    std::uint64_t at;
    switch (wire) {
      case kVarint: varint(); break;
      case kFixed64: fixed<std::uint64_t>(); break;
      case kLengthDelimited: bytes(at); break;
      case kFixed32: fixed<std::uint32_t>(); break;
      default: fail("unsupported wire type " + std::to_string(wire));
    }
  }

  void expect(unsigned wire, unsigned want, const char* field) {
    if (wire != want) fail(std::string("field ") + field + " has wire type " + std::to_string(wire));
  }

 private:
  std::string_view data_;
  std::size_t pos_ = 0;
  std::uint64_t base_;
  const std::string& name_;
};

// Summary.Value; returns false for values that are not simple scalars.
bool decode_value(ProtoReader r, ScalarValue& out) {
  bool has_simple = false;
  while (!r.done()) {
    unsigned field, wire;
    r.tag(field, wire);
    std::uint64_t at;
    if (field == 1) {
      r.expect(wire, kLengthDelimited, "Value.tag");
      out.tag = std::string(r.bytes(at));
    } else if (field == 2) {
      r.expect(wire, kFixed32, "Value.simple_value");
      out.value = r.fixed<float>();
      has_simple = true;
    } else {
      r.skip(wire);
    }
  }
  return has_simple;
}

void decode_summary(ProtoReader r, Event& event, const std::string& name) {
  while (!r.done()) {
    unsigned field, wire;
    r.tag(field, wire);
    if (field == 1) {
      r.expect(wire, kLengthDelimited, "Summary.value");
      std::uint64_t at;
      auto bytes = r.bytes(at);
      ScalarValue v;
      if (decode_value(ProtoReader(bytes, at, name), v)) event.scalars.push_back(std::move(v));
    } else {
      r.skip(wire);
    }
  }
}

Event decode_event(std::string_view data, std::uint64_t base, const std::string& name) {
  ProtoReader r(data, base, name);
  Event event;
  while (!r.done()) {
    unsigned field, wire;
    r.tag(field, wire);
    std::uint64_t at;
    switch (field) {
      case 1:
        r.expect(wire, kFixed64, "Event.wall_time");
        event.wall_time = r.fixed<double>();
        break;
      case 2:
        r.expect(wire, kVarint, "Event.step");
        event.step = static_cast<std::int64_t>(r.varint());
        break;
      case 3:
        r.expect(wire, kLengthDelimited, "Event.file_version");
        event.file_version = std::string(r.bytes(at));
        break;
      case 5: {
        r.expect(wire, kLengthDelimited, "Event.summary");
        auto bytes = r.bytes(at);
        decode_summary(ProtoReader(bytes, at, name), event, name);
        break;
      }
      default: r.skip(wire);
    }
  }
  return event;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  std::string host = buf;
  for (auto& c : host)
    if (c == '/') c = '_';  // the host name becomes part of a file name
  return host;
}

}  // namespace

std::string encode_event(const Event& event) {
  std::string out;
  put_tag(out, 1, kFixed64);
  put_le<double>(out, event.wall_time);
  put_tag(out, 2, kVarint);
  put_varint(out, static_cast<std::uint64_t>(event.step));
  if (!event.file_version.empty()) put_bytes(out, 3, event.file_version);
  if (!event.scalars.empty()) {
    std::string summary;
    for (const auto& s : event.scalars) {
      std::string value;
      put_bytes(value, 1, s.tag);
      put_tag(value, 2, kFixed32);
      put_le<float>(value, s.value);
      put_bytes(summary, 1, value);
    }
    put_bytes(out, 5, summary);
  }
  return out;
}

std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + 16);
  std::string len;
  put_le<std::uint64_t>(len, data.size());
  out += len;
  put_le<std::uint32_t>(out, mask_crc(crc32c(len)));
  out.append(data);
  put_le<std::uint32_t>(out, mask_crc(crc32c(data)));
  return out;
}

std::vector<Event> parse_events(std::string_view data, const std::string& name) {
  std::vector<Event> events;
  std::size_t pos = 0;
  auto fail = [&](std::size_t at, const std::string& problem) -> void {
    throw Error(name + ": corrupt record at byte offset " + std::to_string(at) + ": " + problem);
  };
  while (pos < data.size()) {
    std::size_t left = data.size() - pos;
    if (left < 12) fail(pos, "truncated record header (" + std::to_string(left) + " bytes left)");
    auto len = get_le<std::uint64_t>(data.data() + pos);
    auto len_crc = get_le<std::uint32_t>(data.data() + pos + 8);
    if (mask_crc(crc32c(data.data() + pos, 8)) != len_crc) fail(pos, "length checksum mismatch");
    // Compared against what is left, so a hostile length can never drive an allocation.
    if (len > left - 12 || left - 12 - len < 4)
      fail(pos, "record length " + std::to_string(len) + " runs past the end of the file");
    std::string_view body = data.substr(pos + 12, len);
    auto data_crc = get_le<std::uint32_t>(data.data() + pos + 12 + len);
    if (mask_crc(crc32c(body)) != data_crc) fail(pos + 12, "data checksum mismatch");
    events.push_back(decode_event(body, pos + 12, name));
    pos += 12 + len + 4;
  }
  return events;
}

std::vector<Event> read_events(const std::filesystem::path& path, std::size_t max_bytes) {
  return parse_events(read_file(path, max_bytes), path.string());
}

EventWriter::EventWriter(const std::filesystem::path& dir) : EventWriter(dir, unix_seconds()) {}

EventWriter::EventWriter(const std::filesystem::path& dir, double wall_time) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw Error("cannot create event directory " + dir.string() + ": " + ec.message());
  std::string base =
      "events.out.tfevents." + std::to_string(static_cast<long long>(std::floor(wall_time))) + "." + host_name();
  // Two writers started in the same second in one directory get distinct files.
  for (int n = 0; fd_ < 0; ++n) {
    path_ = dir / (n == 0 ? base : base + "." + std::to_string(n));
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0666);
    if (fd_ < 0 && (errno != EEXIST || n >= 1000))
      throw Error("cannot create event file " + path_.string() + ": " + std::strerror(errno));
  }
  Event first;
  first.wall_time = wall_time;
  first.file_version = std::string(kEventFileVersion);
  append(first);
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::add_scalars(std::int64_t step, const std::map<std::string, double>& values, double wall_time) {
  Event event;
  event.wall_time = wall_time;
  event.step = step;
  for (const auto& [tag, value] : values) event.scalars.push_back({tag, static_cast<float>(value)});
  append(event);
}

void EventWriter::append(const Event& event) {
  std::string record = frame_record(encode_event(event));
  std::string_view rest = record;
  while (!rest.empty()) {
    ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write event file " + path_.string() + ": " + std::strerror(errno));
    }
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

}  // namespace pricer::monitor
