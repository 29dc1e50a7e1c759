#pragma once
// TensorBoard event files, written and read without TensorFlow.
//
// A file is a sequence of TFRecords:  uint64 length | uint32 masked_crc32c(length) | data |
// uint32 masked_crc32c(data), little-endian. Each record's data is a serialized tensorflow.Event
// protobuf, encoded here by hand: wall_time (double, field 1), step (int64, field 2),
// file_version (string, field 3, "brain.Event:2" in the first record) and summary (field 5), whose
// repeated Value (field 1) carries tag (field 1) and simple_value (float, field 2).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace pricer::monitor {

struct ScalarValue {
  std::string tag;
  float value = 0;
};

struct Event {
  double wall_time = 0;
  std::int64_t step = 0;
  std::string file_version;  // set only in the file's first record
  std::vector<ScalarValue> scalars;
};

inline constexpr std::string_view kEventFileVersion = "brain.Event:2";

std::string encode_event(const Event& event);
// Wraps one serialized message in TFRecord framing.
std::string frame_record(std::string_view data);

// Parses a whole event file held in memory. Any framing, checksum or protobuf problem throws
// pricer::Error naming `name` and the byte offset. Summary values that are not simple scalars
// (images, histograms, tensors) are skipped; unknown fields too, as protobuf requires.
std::vector<Event> parse_events(std::string_view data, const std::string& name);
std::vector<Event> read_events(const std::filesystem::path& path, std::size_t max_bytes = std::size_t{1} << 30);

// Appends events to a new file events.out.tfevents.<unix time>.<host> in `dir` (created if
// missing). Every call writes its record with one write(2), so a crash never leaves more than the
// last record incomplete and a reader sees each step as soon as it is logged.
class EventWriter {
 public:
  explicit EventWriter(const std::filesystem::path& dir);
  EventWriter(const std::filesystem::path& dir, double wall_time);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  const std::filesystem::path& path() const { return path_; }
  void add_scalars(std::int64_t step, const std::map<std::string, double>& values, double wall_time);

 private:
  void append(const Event& event);

  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace pricer::monitor
