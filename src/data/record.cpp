#include "data/record.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "data/text.h"
#include "tokenizer/tokenizer.h"

namespace pricer::data {

namespace od = simdjson::ondemand;

const char* reject_name(Reject r) {
  switch (r) {
    case Reject::None: return "none";
    case Reject::MalformedJson: return "malformed_json";
    case Reject::WrongType: return "wrong_type";
    case Reject::InvalidUtf8: return "invalid_utf8";
    case Reject::LineTooLong: return "line_too_long";
    case Reject::NoTitle: return "no_title";
    case Reject::NoPrice: return "no_price";
    case Reject::BadPrice: return "bad_price";
    case Reject::PriceOutOfRange: return "price_out_of_range";
    case Reject::TooShort: return "too_short";
    case Reject::DuplicateTitle: return "duplicate_title";
    case Reject::DuplicateText: return "duplicate_text";
  }
  return "unknown";
}

SpecPlacement parse_spec_placement(const std::string& s) {
  if (s == "first") return SpecPlacement::First;
  if (s == "last") return SpecPlacement::Last;
  if (s == "none") return SpecPlacement::None;
  throw Error("--specs: '" + s + "' is not one of first, last, none");
}

const char* spec_placement_name(SpecPlacement p) {
  switch (p) {
    case SpecPlacement::First: return "first";
    case SpecPlacement::Last: return "last";
    case SpecPlacement::None: return "none";
  }
  return "unknown";
}

namespace {
// A spec value longer than this is a list of parts or a paragraph, not a fact; the whole table
// is capped too, so that with the specs first the description still gets part of the budget.
constexpr size_t kMaxSpecValueChars = 60;
constexpr size_t kMaxSpecChars = 300;
}  // namespace

std::string category_from_filename(std::string_view path) {
  auto slash = path.find_last_of('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (!name.starts_with("meta_")) return "";
  name.remove_prefix(5);
  name = name.substr(0, name.find('.'));
  std::string cat(name);
  std::replace(cat.begin(), cat.end(), '_', ' ');
  return cat;
}

bool parse_price_string(std::string_view s, double& price) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  if (!s.empty() && s.front() == '$') s.remove_prefix(1);
  if (s.empty() || s.size() > 32) return false;
  char buf[33];
  size_t n = 0;
  for (char c : s) {
    if (c == ',') continue;  // thousands separator
    if (!((c >= '0' && c <= '9') || c == '.')) return false;
    buf[n++] = c;
  }
  if (n == 0) return false;
  double v = 0;
  auto [end, ec] = std::from_chars(buf, buf + n, v);
  if (ec != std::errc() || end != buf + n || !std::isfinite(v)) return false;
  price = v;
  return true;
}

struct RecordCleaner::Impl {
  CleanOptions opt;
  const Tokenizer* tok;
  od::parser parser;
  od::parser details_parser;  // details given as a JSON string need a second document
  std::vector<char> buf, details_buf;

  // Views into the parser's string buffer; valid until the next line.
  std::string_view title, text_field, main_category, category_field;
  std::vector<std::string_view> description, features;
  std::string details;  // rendered "Key: value; ..." text
  bool has_title = false, has_text = false, has_price = false, has_desc = false;
  bool price_string_bad = false;
  double price = 0;
  std::string work;
  // The category line build_text added (characters, and the byte where it ends): the minimum
  // length rule counts the product's own text, not this label.
  size_t category_chars = 0, category_end = 0;

  Impl(const CleanOptions& o, const Tokenizer* t) : opt(o), tok(t) {}

  bool dropped_key(std::string_view key) const {
    for (auto& k : opt.drop_details)
      if (key == k) return true;
    return false;
  }

  static void pad_copy(std::vector<char>& dst, std::string_view src) {
    dst.resize(src.size() + simdjson::SIMDJSON_PADDING);
    std::memcpy(dst.data(), src.data(), src.size());
    std::memset(dst.data() + src.size(), 0, simdjson::SIMDJSON_PADDING);
  }

  // Renders a spec-table value as words: nested objects as "k v, k v", arrays joined by ", ".
  simdjson::error_code render_value(od::value v, std::string& out, int depth) {
    od::json_type t;
    if (auto e = v.type().get(t)) return e;
    switch (t) {
      case od::json_type::string: {
        std::string_view s;
        if (auto e = v.get_string().get(s)) return e;
        out.append(s);
        return simdjson::SUCCESS;
      }
      case od::json_type::number:
      case od::json_type::boolean: {
        std::string_view raw = v.raw_json_token();
        while (!raw.empty() && (raw.back() == ' ' || raw.back() == '\n' || raw.back() == '\t' || raw.back() == '\r'))
          raw.remove_suffix(1);
        out.append(raw);
        return simdjson::SUCCESS;
      }
      case od::json_type::null: return simdjson::SUCCESS;
      case od::json_type::array: {
        od::array arr;
        if (auto e = v.get_array().get(arr)) return e;
        bool first = true;
        for (auto el : arr) {
          od::value ev;
          if (auto e = el.get(ev)) return e;
          if (depth >= 3) continue;  // deeper structure carries no useful text
          if (!first) out += ", ";
          first = false;
          if (auto e = render_value(ev, out, depth + 1)) return e;
        }
        return simdjson::SUCCESS;
      }
      case od::json_type::object: {
        od::object obj;
        if (auto e = v.get_object().get(obj)) return e;
        bool first = true;
        for (auto f : obj) {
          od::field fld;
          if (auto e = std::move(f).get(fld)) return e;
          std::string_view key;
          if (auto e = fld.unescaped_key().get(key)) return e;
          if (depth >= 3) continue;
          if (!first) out += ", ";
          first = false;
          out.append(key);
          out += ' ';
          if (auto e = render_value(fld.value(), out, depth + 1)) return e;
        }
        return simdjson::SUCCESS;
      }
    }
    return simdjson::SUCCESS;
  }

  simdjson::error_code render_details(od::object obj) {
    for (auto f : obj) {
      od::field fld;
      if (auto e = std::move(f).get(fld)) return e;
      std::string_view key;
      if (auto e = fld.unescaped_key().get(key)) return e;
      if (dropped_key(key)) continue;  // value skipped by the iterator
      const size_t mark = details.size();
      if (!details.empty()) details += "; ";
      details.append(key);
      details += ": ";
      const size_t value_at = details.size();
      if (auto e = render_value(fld.value(), details, 1)) return e;
      if (details.size() == value_at) {
        details.resize(mark);  // null / empty value
      } else if (details.size() - value_at > kMaxSpecValueChars) {
        const std::string_view value = std::string_view(details).substr(value_at);
        details.resize(value_at + utf8_prefix_words(value, kMaxSpecValueChars));
      }
    }
    return simdjson::SUCCESS;
  }

  // Details as a JSON string (the curated format, some raw dumps): rendered when it is a JSON
  // object, otherwise kept as plain text so nothing readable is lost.
  void details_from_string(std::string_view s) {
    pad_copy(details_buf, s);
    od::document d;
    od::object obj;
    const size_t mark = details.size();
    if (!details_parser.iterate(details_buf.data(), s.size(), details_buf.size()).get(d) && !d.get_object().get(obj) &&
        !render_details(obj)) {
      return;
    }
    details.resize(mark);
    details.append(s);
  }

  simdjson::error_code string_list(od::value v, std::vector<std::string_view>& out, std::string_view name,
                                   std::string& why, bool& wrong) {
    od::json_type t;
    if (auto e = v.type().get(t)) return e;
    if (t == od::json_type::null) return simdjson::SUCCESS;
    if (t == od::json_type::string) {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return e;
      out.push_back(s);
      return simdjson::SUCCESS;
    }
    if (t != od::json_type::array) {
      why = std::string("field '") + std::string(name) + "' is not a list of strings";
      wrong = true;
      return simdjson::SUCCESS;
    }
    od::array arr;
    if (auto e = v.get_array().get(arr)) return e;
    size_t i = 0;
    for (auto el : arr) {
      od::value ev;
      if (auto e = el.get(ev)) return e;
      od::json_type et;
      if (auto e = ev.type().get(et)) return e;
      if (et == od::json_type::string) {
        std::string_view s;
        if (auto e = ev.get_string().get(s)) return e;
        out.push_back(s);
      } else if (et != od::json_type::null && !wrong) {
        why = std::string("field '") + std::string(name) + "[" + std::to_string(i) + "]' is not a string";
        wrong = true;
      }
      ++i;
    }
    return simdjson::SUCCESS;
  }

  // Only the first wrong field is described; any later one just keeps the line rejected.
  static void wrong_field(std::string& why, bool& wrong, std::string_view key, const char* expected) {
    if (!wrong) why = "field '" + std::string(key) + "' is not " + expected;
    wrong = true;
  }

  // The fields the text, price and category are made of; images, videos, ratings... are
  // skipped unparsed by the iterator.
  static bool used_field(std::string_view key) {
    return key == "title" || key == "text" || key == "main_category" || key == "category" || key == "price" ||
           key == "description" || key == "features" || key == "details";
  }

  simdjson::error_code parse_details(od::value v, od::json_type t, std::string& why, bool& wrong) {
    if (t == od::json_type::object) {
      od::object d;
      if (auto e = v.get_object().get(d)) return e;
      return render_details(d);
    }
    if (t == od::json_type::string) {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return e;
      details_from_string(s);
    } else if (t != od::json_type::null) {
      wrong_field(why, wrong, "details", "an object or a string");
    }
    return simdjson::SUCCESS;
  }

  // A price as a number, a string ("$1,299.99"; "None" and "" mean no price) or null.
  simdjson::error_code parse_price(od::value v, od::json_type t, std::string& why, bool& wrong) {
    if (t == od::json_type::number) {
      if (auto e = v.get_double().get(price)) return e;
      has_price = true;
    } else if (t == od::json_type::string) {
      std::string_view s;
      if (auto e = v.get_string().get(s)) return e;
      has_price = parse_price_string(s, price);
      price_string_bad = !has_price && s != "None" && !s.empty();
    } else if (t == od::json_type::null) {
      has_price = false;
    } else {
      wrong_field(why, wrong, "price", "a number or a string");
    }
    return simdjson::SUCCESS;
  }

  // title, text, main_category or category: a string, or null for none.
  simdjson::error_code parse_string_field(std::string_view key, od::value v, od::json_type t, std::string& why,
                                          bool& wrong) {
    std::string_view s;
    if (t == od::json_type::string) {
      if (auto e = v.get_string().get(s)) return e;
    } else if (t != od::json_type::null) {
      wrong_field(why, wrong, key, "a string");
      return simdjson::SUCCESS;
    }
    if (key == "title") title = s, has_title = t == od::json_type::string;
    else if (key == "text") text_field = s, has_text = t == od::json_type::string;
    else if (key == "main_category") main_category = s;
    else category_field = s;
    return simdjson::SUCCESS;
  }

  // One of the used fields; a wrong type sets `wrong` (and `why` for the first) and goes on, so
  // that the rest of the line is still checked for malformed JSON.
  simdjson::error_code parse_field(std::string_view key, od::value v, std::string& why, bool& wrong) {
    od::json_type t;
    if (auto e = v.type().get(t)) return e;
    if (key == "description" || key == "features") {
      has_desc = true;
      return string_list(v, key == "description" ? description : features, key, why, wrong);
    }
    if (key == "details") return parse_details(v, t, why, wrong);
    if (key == "price") return parse_price(v, t, why, wrong);
    return parse_string_field(key, v, t, why, wrong);
  }

  // Fields the line lacks must not keep the previous line's values.
  void reset_fields() {
    title = text_field = main_category = category_field = {};
    description.clear();
    features.clear();
    details.clear();
    has_title = has_text = has_price = has_desc = price_string_bad = false;
  }

  Reject parse(std::string_view line, std::string& why) {
    reset_fields();
    pad_copy(buf, line);
    od::document doc;
    auto fail = [&](simdjson::error_code e) {
      why = simdjson::error_message(e);
      return Reject::MalformedJson;
    };
    if (auto e = parser.iterate(buf.data(), line.size(), buf.size()).get(doc)) return fail(e);
    od::json_type top;
    if (auto e = doc.type().get(top)) return fail(e);
    if (top != od::json_type::object) {
      why = "line is not a JSON object";
      return Reject::WrongType;
    }
    od::object obj;
    if (auto e = doc.get_object().get(obj)) return fail(e);
    bool wrong = false;
    for (auto f : obj) {
      od::field fld;
      if (auto e = std::move(f).get(fld)) return fail(e);
      std::string_view key;
      if (auto e = fld.unescaped_key().get(key)) return fail(e);
      if (!used_field(key)) continue;
      if (auto e = parse_field(key, fld.value(), why, wrong)) return fail(e);
    }
    // The object is complete; anything after it on the line is not JSON lines.
    const char* rest = nullptr;
    if (!doc.current_location().get(rest)) {
      why = "trailing content after the JSON object";
      return Reject::MalformedJson;
    }
    return wrong ? Reject::WrongType : Reject::None;
  }

  // Builds the cleaned text within max_chars; sections separated by newlines: the title, the
  // category and spec table when they go first, the description, then the specs when last.
  void build_text(bool curated, std::string_view category) {
    work.clear();
    const bool scrub = opt.scrub_part_numbers;
    auto section = [&](std::string_view s) {
      if (work.size() > opt.max_chars * 4) return;  // already far past the cut
      if (!work.empty() && work.back() != '\n') work += '\n';
      append_words(work, s, scrub);
    };
    category_chars = category_end = 0;
    auto specs = [&] {
      if (category != "Unknown") {
        section("Category: " + std::string(category));
        category_end = work.size();
        category_chars = utf8_length("\nCategory: ") + utf8_length(category);
      }
      if (!details.empty()) section(std::string_view(details).substr(0, utf8_prefix_words(details, kMaxSpecChars)));
    };
    // The curated text already starts with the (scrubbed) title; its lines stay lines.
    std::string_view rest = text_field;
    auto next_line = [&] {
      const size_t nl = rest.find('\n');
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
      return line;
    };
    section(curated ? next_line() : title);
    if (opt.specs == SpecPlacement::First) specs();
    if (curated) {
      while (!rest.empty()) section(next_line());
    } else {
      for (auto d : description) section(d);
      for (auto& feat : features) section(feat);
    }
    if (opt.specs == SpecPlacement::Last) specs();
    rtrim(work);
    work.resize(utf8_prefix_words(work, opt.max_chars));
  }

  Reject clean(std::string_view file_category, CleanItem& out, std::string& why) {
    if (!has_title) {
      why = "no title";
      return Reject::NoTitle;
    }
    out.title.clear();
    append_words(out.title, title, false);
    if (out.title.empty()) {
      why = "empty title";
      return Reject::NoTitle;
    }
    if (!has_price) {
      why = price_string_bad ? "unreadable price string" : "no price";
      return price_string_bad ? Reject::BadPrice : Reject::NoPrice;
    }
    if (!(price >= opt.min_price && price <= opt.max_price)) {
      why = "price " + std::to_string(price) + " outside the allowed range";
      return Reject::PriceOutOfRange;
    }
    if (!file_category.empty()) out.category = file_category;
    else if (!main_category.empty()) out.category = main_category;
    else if (!category_field.empty()) out.category = category_field;
    else out.category = "Unknown";
    // One spelling per category: "Cell_Phones_and_Accessories" (curated data) is the same
    // category as meta_Cell_Phones_and_Accessories.jsonl ("Cell Phones and Accessories").
    std::replace(out.category.begin(), out.category.end(), '_', ' ');
    const bool curated = has_text && !has_desc;
    build_text(curated, out.category);
    size_t chars = utf8_length(work);
    if (category_end > 0 && work.size() >= category_end) chars -= std::min(chars, category_chars);
    if (chars < opt.min_chars) {
      why = std::to_string(chars) + " characters of text";
      return Reject::TooShort;
    }
    out.price = price;
    if (tok) {
      out.text = cut_to_tokens(work, *tok, opt.token_budget, &out.length);
    } else {
      out.text = work;
      out.length = static_cast<uint32_t>(truncate_words(out.text, opt.word_budget()));
    }
    return Reject::None;
  }
};

RecordCleaner::RecordCleaner(const CleanOptions& opt, const Tokenizer* tok) : impl_(std::make_unique<Impl>(opt, tok)) {}
RecordCleaner::~RecordCleaner() = default;

Reject RecordCleaner::process(std::string_view line, std::string_view file_category, CleanItem& out, std::string& why) {
  why.clear();
  if (line.size() > impl_->opt.max_line_bytes) {
    why = "line of " + std::to_string(line.size()) + " bytes";
    return Reject::LineTooLong;
  }
  if (!simdjson::validate_utf8(line.data(), line.size())) {
    why = "invalid UTF-8";
    return Reject::InvalidUtf8;
  }
  Reject r = impl_->parse(line, why);
  if (r != Reject::None) return r;
  return impl_->clean(file_category, out, why);
}

}  // namespace pricer::data
