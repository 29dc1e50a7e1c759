#include "eval/human.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/atomic_file.h"
#include "core/error.h"
#include "data/record.h"

namespace pricer::eval {

std::string csv_field(std::string_view s) {
  const bool quote =
      s.find_first_of(",\"\r\n") != std::string_view::npos || (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::vector<CsvRecord> parse_csv(std::string_view text, const std::string& name) {
  std::vector<CsvRecord> records;
  std::size_t line = 1, i = 0;
  const std::size_t n = text.size();
  while (i < n) {
    CsvRecord rec;
    rec.line = line;
    std::string field;
    bool end_of_record = false;
    while (!end_of_record) {
      field.clear();
      if (i < n && text[i] == '"') {
        const std::size_t opened = line;
        ++i;
        while (true) {
          require(i < n, name + ":" + std::to_string(opened) + ": unterminated quoted field");
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        require(i >= n || text[i] == ',' || text[i] == '\n' || text[i] == '\r',
                name + ":" + std::to_string(line) + ": text after a closing quote");
      } else {
        while (i < n && text[i] != ',' && text[i] != '\n' && text[i] != '\r') {
          require(text[i] != '"', name + ":" + std::to_string(line) + ": quote inside an unquoted field");
          field += text[i++];
        }
      }
      rec.fields.push_back(field);
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < n && text[i] == '\r') ++i;
      require(i >= n || text[i] == '\n', name + ":" + std::to_string(line) + ": stray carriage return");
      if (i < n) ++i;
      ++line;
      end_of_record = true;
    }
    // A blank line is one empty field; it carries nothing.
    if (!(rec.fields.size() == 1 && rec.fields[0].empty())) records.push_back(std::move(rec));
  }
  return records;
}

void write_human_csv(const std::filesystem::path& file, const std::vector<Item>& items) {
  std::string out = "id,text\n";
  for (std::size_t i = 0; i < items.size(); ++i) out += std::to_string(i) + "," + csv_field(items[i].text) + "\n";
  write_file_atomic(file, out);
}

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

double parse_price_field(const std::string& raw, const std::string& where) {
  double v = 0.0;
  require(data::parse_price_string(raw, v),
          where + ": price \"" + raw + "\" is not a price (write it as 12.50, $12.50 or \"$1,250\")");
  require(v <= data::kMaxPlausiblePrice, where + ": price \"" + raw + "\" is beyond any product's");
  return v;
}

// The price cell of a row. "2,$1,250" written without quotes splits into three fields; when the
// price is the last column the extra fields are its thousands, so they are joined back.
std::string price_cell(const CsvRecord& rec, std::size_t header_size, std::size_t price_col, const std::string& where) {
  if (rec.fields.size() <= header_size) return rec.fields[price_col];
  require(price_col + 1 == header_size, where + ": " + std::to_string(rec.fields.size()) + " fields for a " +
                                            std::to_string(header_size) +
                                            "-column header (quote prices with commas: \"$1,250\")");
  std::string joined = rec.fields[price_col];
  for (std::size_t c = price_col + 1; c < rec.fields.size(); ++c) joined += "," + rec.fields[c];
  return joined;
}

}  // namespace

std::vector<double> read_human_csv(const std::filesystem::path& file, std::size_t count) {
  return parse_human_csv(read_file(file, kMaxCsvBytes), file.string(), count);
}

std::vector<double> parse_human_csv(std::string text, const std::string& name, std::size_t count) {
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);  // the UTF-8 BOM spreadsheets write
  const auto records = parse_csv(text, name);
  require(!records.empty(), name + ": empty file (expected a header \"id,price\")");
  long id_col = -1, price_col = -1;
  const auto& header = records[0].fields;
  for (std::size_t c = 0; c < header.size(); ++c) {
    const auto h = lower(trim(header[c]));
    if (h == "id") id_col = static_cast<long>(c);
    if (h == "price") price_col = static_cast<long>(c);
  }
  require(id_col >= 0 && price_col >= 0,
          name + ":" + std::to_string(records[0].line) + ": header needs \"id\" and \"price\" columns");
  std::vector<double> prices(count, 0.0);
  std::vector<bool> seen(count, false);
  for (std::size_t r = 1; r < records.size(); ++r) {
    const auto& rec = records[r];
    const std::string where = name + ":" + std::to_string(rec.line);
    require(rec.fields.size() > static_cast<std::size_t>(std::max(id_col, price_col)),
            where + ": expected at least " + std::to_string(std::max(id_col, price_col) + 1) + " fields, got " +
                std::to_string(rec.fields.size()));
    const std::string price_text = price_cell(rec, header.size(), static_cast<std::size_t>(price_col), where);
    const std::string id_text = trim(rec.fields[static_cast<std::size_t>(id_col)]);
    std::size_t id = 0;
    const auto [end, ec] = std::from_chars(id_text.data(), id_text.data() + id_text.size(), id);
    require(!id_text.empty() && ec == std::errc() && end == id_text.data() + id_text.size(),
            where + ": id \"" + id_text + "\" is not a non-negative integer");
    require(id < count,
            where + ": id " + id_text + " out of range: the evaluation has " + std::to_string(count) + " items");
    require(!seen[id], where + ": id " + id_text + " appears twice");
    seen[id] = true;
    prices[id] = parse_price_field(price_text, where);
  }
  const auto missing = std::find(seen.begin(), seen.end(), false);
  require(missing == seen.end(), name + ": no guess for id " + std::to_string(missing - seen.begin()) + " (" +
                                     std::to_string(std::count(seen.begin(), seen.end(), false)) + " ids missing)");
  return prices;
}

}  // namespace pricer::eval
