// The two file sinks of a run: CRC32C (hardware against table reference), TensorBoard event
// files (encoding checked byte by byte, round trip, corruption reported with its offset) and the
// JSONL metrics log.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"
#include "monitor/crc32c.h"
#include "monitor/jsonl_log.h"
#include "monitor/tfevents.h"

namespace fs = std::filesystem;
using namespace pricer::monitor;

namespace {

fs::path fresh_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("pricer_events_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::string error_of(const std::string& data) {
  try {
    parse_events(data, "run.tfevents");
  } catch (const pricer::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c_scalar("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c(std::string_view("123456789")), 0xE3069283u);
  EXPECT_EQ(crc32c_scalar("", 0), 0u);
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros.
  char zeros[32] = {};
  EXPECT_EQ(crc32c_scalar(zeros, 32), 0x8A9136AAu);
}

TEST(Crc32c, HardwareMatchesReferenceOnAllLengthsAndAlignments) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "CPU has no SSE4.2 CRC32 instruction";
  std::mt19937 rng(7);
  std::vector<unsigned char> buf(4096 + 16);
  for (auto& b : buf) b = static_cast<unsigned char>(rng());
  for (std::size_t offset = 0; offset < 8; ++offset)
    for (std::size_t len = 0; len < 300; ++len)
      ASSERT_EQ(crc32c_hardware(buf.data() + offset, len), crc32c_scalar(buf.data() + offset, len))
          << "offset " << offset << " len " << len;
  EXPECT_EQ(crc32c_hardware(buf.data(), 4096), crc32c_scalar(buf.data(), 4096));
}

TEST(Crc32c, IncrementalEqualsOneShot) {
  std::string s = "The quick brown fox jumps over the lazy dog, twice over.";
  for (std::size_t split = 0; split <= s.size(); ++split) {
    auto first = crc32c(s.data(), split);
    EXPECT_EQ(crc32c(s.data() + split, s.size() - split, first), crc32c(s));
    EXPECT_EQ(crc32c_scalar(s.data() + split, s.size() - split, crc32c_scalar(s.data(), split)), crc32c(s));
  }
}

TEST(Crc32c, MaskIsRotateAndOffset) {
  EXPECT_EQ(mask_crc(0), 0xa282ead8u);
  EXPECT_EQ(mask_crc(0x00008000u), 1u + 0xa282ead8u);  // bit 15 rotates to bit 0
  EXPECT_EQ(mask_crc(1), (1u << 17) + 0xa282ead8u);
}

// The protobuf bytes written out by hand from the Event definition, so the encoder is checked
// against the wire format rather than against our own decoder.
TEST(TfEvents, EncodingMatchesWireFormat) {
  Event first;
  first.wall_time = 1.5;
  first.file_version = "brain.Event:2";
  std::string expected = std::string("\x09\x00\x00\x00\x00\x00\x00\xf8\x3f", 9) + std::string("\x10\x00", 2) +
                         "\x1a\x0d"
                         "brain.Event:2";
  EXPECT_EQ(encode_event(first), expected);

  Event scalar;
  scalar.wall_time = 2.0;
  scalar.step = 300;  // varint 0xAC 0x02
  scalar.scalars = {{"loss", 0.5f}};
  std::string value =
      std::string("\x0a\x04", 2) + "loss" + std::string("\x15\x00\x00\x00\x3f", 5);  // 0.5f = 0x3F000000
  std::string summary = "\x0a" + std::string(1, static_cast<char>(value.size())) + value;
  expected = std::string("\x09\x00\x00\x00\x00\x00\x00\x00\x40", 9) + "\x10\xac\x02" + "\x2a" +
             std::string(1, static_cast<char>(summary.size())) + summary;
  EXPECT_EQ(encode_event(scalar), expected);
}

TEST(TfEvents, FramingLayout) {
  std::string data = "abc";
  auto rec = frame_record(data);
  ASSERT_EQ(rec.size(), 8u + 4 + 3 + 4);
  std::uint64_t len;
  std::memcpy(&len, rec.data(), 8);
  EXPECT_EQ(len, 3u);
  std::uint32_t len_crc, data_crc;
  std::memcpy(&len_crc, rec.data() + 8, 4);
  std::memcpy(&data_crc, rec.data() + 15, 4);
  EXPECT_EQ(len_crc, mask_crc(crc32c_scalar(rec.data(), 8)));
  EXPECT_EQ(rec.substr(12, 3), "abc");
  EXPECT_EQ(data_crc, mask_crc(crc32c_scalar("abc", 3)));
}

TEST(TfEvents, WriterRoundTripsEveryValue) {
  auto dir = fresh_dir("roundtrip");
  std::vector<std::map<std::string, double>> steps;
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-10, 10);
  for (int i = 0; i < 50; ++i)
    steps.push_back({{"train/loss", u(rng)}, {"train/lr", 1e-4 * i}, {"eval/mae", u(rng) * 100}});
  steps[7]["train/loss"] = std::numeric_limits<double>::quiet_NaN();
  steps[8]["train/loss"] = std::numeric_limits<double>::infinity();
  fs::path file;
  {
    EventWriter w(dir, 1767000000.75);
    file = w.path();
    for (int i = 0; i < 50; ++i) w.add_scalars(i * 10 - 5, steps[i], 1767000001.0 + i);
  }
  EXPECT_EQ(file.parent_path(), dir);
  EXPECT_EQ(file.filename().string().rfind("events.out.tfevents.1767000000.", 0), 0u) << file;

  auto events = read_events(file);
  ASSERT_EQ(events.size(), 51u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_DOUBLE_EQ(events[0].wall_time, 1767000000.75);
  EXPECT_TRUE(events[0].scalars.empty());
  for (int i = 0; i < 50; ++i) {
    const auto& e = events[i + 1];
    EXPECT_EQ(e.step, i * 10 - 5);  // includes a negative step (10-byte varint)
    EXPECT_DOUBLE_EQ(e.wall_time, 1767000001.0 + i);
    EXPECT_TRUE(e.file_version.empty());
    ASSERT_EQ(e.scalars.size(), 3u);
    for (const auto& s : e.scalars) {
      float want = static_cast<float>(steps[i].at(s.tag));
      if (std::isnan(want)) EXPECT_TRUE(std::isnan(s.value));
      else EXPECT_EQ(s.value, want) << s.tag << " step " << i;
    }
  }
  // A second writer in the same directory and second gets its own file.
  EventWriter again(dir, 1767000000.75);
  EXPECT_NE(again.path(), file);
  fs::remove_all(dir);
}

TEST(TfEvents, EveryFlippedByteIsReportedWithItsRecordOffset) {
  std::string file;
  std::vector<std::size_t> starts;
  for (int i = 0; i < 3; ++i) {
    Event e;
    e.wall_time = 100 + i;
    e.step = i;
    e.scalars = {{"loss", 1.0f / (i + 1)}};
    starts.push_back(file.size());
    file += frame_record(encode_event(e));
  }
  ASSERT_EQ(parse_events(file, "x").size(), 3u);
  for (std::size_t pos = 0; pos < file.size(); ++pos) {
    std::string bad = file;
    bad[pos] ^= 0x20;
    auto msg = error_of(bad);
    ASSERT_FALSE(msg.empty()) << "flip at " << pos << " went unnoticed";
    EXPECT_NE(msg.find("run.tfevents"), std::string::npos) << msg;
    std::size_t rec = 0;
    while (rec + 1 < starts.size() && starts[rec + 1] <= pos) ++rec;
    // Header damage is reported at the record start, data damage at the data start.
    std::size_t want = pos < starts[rec] + 12 ? starts[rec] : starts[rec] + 12;
    if (pos >= starts[rec] + 8 && pos < starts[rec] + 12) want = starts[rec];
    EXPECT_NE(msg.find("byte offset " + std::to_string(want) + ":"), std::string::npos)
        << "flip at " << pos << ": " << msg;
  }
}

TEST(TfEvents, TruncationAndHostileLengthsAreErrors) {
  Event e;
  e.step = 3;
  e.scalars = {{"a", 1}};
  std::string rec = frame_record(encode_event(e));
  std::string two = rec + rec;
  for (std::size_t cut = rec.size() + 1; cut < two.size(); ++cut) {
    auto msg = error_of(two.substr(0, cut));
    EXPECT_NE(msg.find("byte offset " + std::to_string(rec.size())), std::string::npos) << "cut " << cut << ": " << msg;
  }
  // A length near 2^64 with a valid length checksum must not allocate or wrap around.
  std::string huge(8, '\xff');
  std::uint32_t crc = mask_crc(crc32c(huge));
  huge.append(reinterpret_cast<const char*>(&crc), 4);
  huge += "payload";
  auto msg = error_of(huge);
  EXPECT_NE(msg.find("runs past the end"), std::string::npos) << msg;
}

TEST(TfEvents, MalformedProtobufInsideValidFramingIsReported) {
  auto check = [](const std::string& body, const std::string& problem) {
    auto msg = error_of(frame_record(body));
    EXPECT_NE(msg.find(problem), std::string::npos) << msg;
    EXPECT_NE(msg.find("run.tfevents"), std::string::npos) << msg;
  };
  check(std::string("\x10\x80\x80", 3), "truncated varint");
  check(std::string("\x10") + std::string(10, '\xff') + "\x01", "varint");
  check(std::string("\x09\x00\x00", 3), "truncated fixed-width");
  check(std::string("\x1a\x7f"
                    "abc",
                    5),
        "runs past the end");
  check(std::string("\x0b", 1), "wire type 3");  // groups are not supported
  check(std::string("\x10\x00\x2a\x02\x0a\x05", 6), "runs past the end");  // nested length
  check(std::string("\x08\x01", 2), "Event.wall_time");  // wall_time with varint wire type
  check(std::string("\x00", 1), "invalid field number");
}

TEST(TfEvents, UnknownFieldsAndNonScalarValuesAreSkipped) {
  // Event with an unknown varint field 9, a graph_def (field 4) and a summary holding an image
  // value (field 4 of Value) next to a simple value.
  std::string image_value = std::string("\x0a\x03", 2) + "img" + std::string("\x22\x02", 2) + "zz";
  std::string scalar_value = std::string("\x0a\x01", 2) + "s" + std::string("\x15\x00\x00\x80\x3f", 5);
  std::string summary = "\x0a" + std::string(1, static_cast<char>(image_value.size())) + image_value + "\x0a" +
                        std::string(1, static_cast<char>(scalar_value.size())) + scalar_value;
  std::string body = std::string("\x48\x05\x22\x01g\x10\x04", 7) + "\x2a" +
                     std::string(1, static_cast<char>(summary.size())) + summary;
  auto events = parse_events(frame_record(body), "x");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].step, 4);
  ASSERT_EQ(events[0].scalars.size(), 1u);
  EXPECT_EQ(events[0].scalars[0].tag, "s");
  EXPECT_EQ(events[0].scalars[0].value, 1.0f);
}

TEST(TfEvents, UnwritableDirectoryNamesThePath) {
  auto dir = fresh_dir("unwritable");
  std::ofstream(dir / "file") << "x";
  try {
    EventWriter w(dir / "file" / "sub");
    FAIL() << "expected an error";
  } catch (const pricer::Error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "file").string()), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(JsonlLog, OneObjectPerStepAppended) {
  auto dir = fresh_dir("jsonl");
  auto path = dir / "sub" / "metrics.jsonl";
  {
    JsonlLog log(path);
    log.log(1, 1000.5, {{"train/loss", 2.5}, {"train/lr", 1e-4}});
    // Visible before the log is closed: each step is written out immediately.
    auto text = slurp(path);
    EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
    log.log(2, 1001.5, {{"train/loss", std::numeric_limits<double>::quiet_NaN()}});
  }
  {
    JsonlLog log(path);  // reopening appends, never truncates
    log.log(3, 1002.5, {});
  }
  std::ifstream in(path);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], 1);
  EXPECT_DOUBLE_EQ(lines[0]["time"].get<double>(), 1000.5);
  EXPECT_DOUBLE_EQ(lines[0]["metrics"]["train/loss"].get<double>(), 2.5);
  EXPECT_DOUBLE_EQ(lines[0]["metrics"]["train/lr"].get<double>(), 1e-4);
  EXPECT_TRUE(lines[1]["metrics"]["train/loss"].is_null());
  EXPECT_EQ(lines[2]["step"], 3);
  EXPECT_TRUE(lines[2]["metrics"].is_object() && lines[2]["metrics"].empty());
  fs::remove_all(dir);
}
