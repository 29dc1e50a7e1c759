#include "data/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/random.h"
#include "data/text.h"

namespace pricer::data {

namespace {

struct Level {
  const char* text;  // how the level reads in the product text
  double factor;
};

struct Category {
  const char* name;
  double base;
  std::vector<Level> types;  // product type and its factor
  const char* size_name;  // the category's size/capacity spec
  std::vector<Level> sizes;
  std::vector<Level> materials;
  std::vector<const char*> uses;  // what it is for, for description sentences
};

// The catalogue's categories with their price rule's factors (a table, not code).
const std::vector<Category> kCategories = {
    {"Electronics",
     70,
     {{"Wireless Headphones", 1.0},
      {"Bluetooth Speaker", 0.8},
      {"Portable Monitor", 2.6},
      {"Mechanical Keyboard", 0.9},
      {"HD Webcam", 0.6},
      {"Smartwatch", 1.9},
      {"Power Bank", 0.45}},
     "battery life",
     {{"8 hours", 0.75}, {"20 hours", 1.0}, {"40 hours", 1.3}, {"72 hours", 1.7}},
     {{"ABS plastic", 0.85}, {"matte polycarbonate", 1.0}, {"aluminum alloy", 1.25}, {"titanium", 1.7}},
     {"working from home", "gaming sessions", "travel", "the office", "streaming and video calls"}},
    {"Home & Kitchen",
     40,
     {{"Air Fryer", 1.6},
      {"Chef Knife", 0.7},
      {"Cookware Set", 2.2},
      {"Coffee Grinder", 0.9},
      {"Food Storage Containers", 0.45},
      {"Electric Kettle", 0.8}},
     "capacity",
     {{"1 quart", 0.7}, {"2.5 quarts", 1.0}, {"5 quarts", 1.35}, {"8 quarts", 1.75}},
     {{"BPA-free plastic", 0.8}, {"tempered glass", 1.0}, {"stainless steel", 1.2}, {"enameled cast iron", 1.6}},
     {"everyday cooking", "meal prep", "busy mornings", "family dinners", "small apartments"}},
    {"Tools & Home Improvement",
     55,
     {{"Cordless Drill", 1.4},
      {"Socket Wrench Set", 0.9},
      {"Laser Level", 1.1},
      {"Orbital Sander", 1.0},
      {"Stud Finder", 0.45},
      {"Workbench Vise", 0.8}},
     "power rating",
     {{"12V", 0.7}, {"18V", 1.0}, {"20V MAX", 1.25}, {"40V", 1.8}},
     {{"reinforced nylon", 0.85}, {"forged steel", 1.0}, {"chrome vanadium steel", 1.2}, {"die-cast magnesium", 1.5}},
     {"weekend projects", "professional job sites", "home repairs", "woodworking", "automotive work"}},
    {"Toys & Games",
     25,
     {{"Building Blocks Set", 1.2},
      {"Board Game", 0.9},
      {"Remote Control Car", 1.6},
      {"Plush Toy", 0.5},
      {"Puzzle", 0.6},
      {"Science Kit", 1.1}},
     "piece count",
     {{"40 pieces", 0.7}, {"150 pieces", 1.0}, {"500 pieces", 1.4}, {"1200 pieces", 2.0}},
     {{"recycled cardboard", 0.8},
      {"non-toxic plastic", 1.0},
      {"sustainable wood", 1.25},
      {"premium die-cast metal", 1.5}},
     {"family game night", "kids ages 6 and up", "birthday gifts", "classrooms", "rainy afternoons"}},
    {"Books",
     14,
     {{"Cookbook", 1.2},
      {"Mystery Novel", 0.8},
      {"Programming Guide", 2.0},
      {"Children's Picture Book", 0.7},
      {"History Encyclopedia", 2.4},
      {"Travel Guide", 1.0}},
     "length",
     {{"96 pages", 0.7}, {"240 pages", 1.0}, {"480 pages", 1.3}, {"960 pages", 1.8}},
     {{"mass-market paperback", 0.7},
      {"trade paperback", 1.0},
      {"hardcover", 1.5},
      {"leather-bound collector's edition", 2.5}},
     {"curious readers", "students", "book clubs", "gift giving", "long flights"}},
    {"Automotive",
     45,
     {{"Car Phone Mount", 0.4},
      {"Dash Camera", 1.6},
      {"Floor Mats", 1.0},
      {"Tire Inflator", 1.1},
      {"Jump Starter", 1.8},
      {"Seat Covers", 1.2}},
     "fit",
     {{"compact cars", 0.85}, {"sedans", 1.0}, {"SUVs and trucks", 1.25}, {"commercial vans", 1.5}},
     {{"rubber", 0.85}, {"ABS plastic", 0.9}, {"heavy-duty TPE", 1.15}, {"aircraft-grade aluminum", 1.45}},
     {"daily commuting", "road trips", "winter driving", "ride-share drivers", "off-road adventures"}},
    {"Beauty & Personal Care",
     18,
     {{"Face Serum", 1.3},
      {"Hair Dryer", 2.4},
      {"Shampoo", 0.6},
      {"Electric Toothbrush", 2.0},
      {"Lip Balm Set", 0.4},
      {"Moisturizing Cream", 1.0}},
     "size",
     {{"1 fl oz", 0.7}, {"3.4 fl oz", 1.0}, {"8 fl oz", 1.3}, {"16.9 fl oz", 1.7}},
     {{"recyclable plastic bottle", 0.85},
      {"glass bottle", 1.05},
      {"airless pump", 1.2},
      {"refillable ceramic case", 1.5}},
     {"sensitive skin", "daily routines", "travel bags", "salon-quality results at home", "dry climates"}},
    {"Sports & Outdoors",
     35,
     {{"Yoga Mat", 0.6},
      {"Camping Tent", 2.4},
      {"Adjustable Dumbbells", 2.0},
      {"Hiking Backpack", 1.4},
      {"Water Bottle", 0.4},
      {"Trekking Poles", 0.9}},
     "size",
     {{"compact", 0.75}, {"standard", 1.0}, {"large", 1.3}, {"expedition", 1.8}},
     {{"polyester", 0.8}, {"ripstop nylon", 1.0}, {"carbon fiber", 1.4}, {"titanium", 1.8}},
     {"weekend hikes", "home workouts", "camping trips", "the gym", "trail running"}},
};

struct Brand {
  const char* name;
  const char* tier;
  double factor;
};

const std::vector<Brand>& brands() {
  static const std::vector<Brand> b = {{"Basix", "budget", 0.55},      {"Valuo", "budget", 0.55},
                                       {"Homely", "value", 0.8},       {"Trekka", "value", 0.8},
                                       {"Norvant", "mid-range", 1.0},  {"Kestrel", "mid-range", 1.0},
                                       {"Aurelian", "premium", 1.6},   {"Veltra", "premium", 1.6},
                                       {"Maison Orla", "luxury", 2.6}, {"Stratos Pro", "luxury", 2.6}};
  return b;
}

const std::vector<Level> kWarranty = {{"1-year", 1.0}, {"2-year", 1.08}, {"3-year", 1.18}, {"5-year", 1.3}};
const std::vector<int> kPacks = {1, 1, 1, 2, 3, 4};
const std::vector<const char*> kColors = {"Black",        "White",   "Slate Gray", "Navy Blue",
                                          "Forest Green", "Crimson", "Sand",       "Silver"};

// Fills {placeholders} of a sentence template.
std::string fill(std::string_view t, const std::vector<std::pair<std::string_view, std::string>>& kv) {
  std::string out;
  for (size_t i = 0; i < t.size();) {
    bool done = false;
    if (t[i] == '{') {
      for (auto& [k, v] : kv) {
        if (t.substr(i + 1, k.size()) == k && i + 1 + k.size() < t.size() && t[i + 1 + k.size()] == '}') {
          out += v;
          i += k.size() + 2;
          done = true;
          break;
        }
      }
    }
    if (!done) out += t[i++];
  }
  return out;
}

using Fields = std::vector<std::pair<std::string_view, std::string>>;

// The product page's wording: templates over the item's fields.
const std::vector<const char*> kTitles = {"{brand} {type} with {size} {size_name}, {material}, {color} ({pack})",
                                          "{brand} {type} - {material}, {size}, {warranty} Warranty, {color}, {pack}",
                                          "{type} by {brand}: {size} {size_name}, {material} Build, {pack}",
                                          "{brand} {color} {type}, {size}, {material} - Ideal for {use}"};
const std::vector<const char*> kOpeners = {
    "The {brand} {type} is built for {use} and made to last.",
    "Meet the {type} from {brand}, a {tier} brand known for careful engineering.",
    "Designed for {use}, this {type} combines a {size} {size_name} with a {material} body.",
    "Whether you are into {use} or {use2}, the {brand} {type} keeps up.",
    "{brand} designed this {type} after listening to people who rely on their gear for {use}."};
const std::vector<const char*> kMiddles = {
    "Its {material} construction feels solid in the hand and resists everyday wear.",
    "With a {size} {size_name}, it handles more than most products in its class.",
    "The {color} finish looks at home anywhere, from the kitchen counter to the garage shelf.",
    "Every unit is tested before it leaves the factory and is covered by a {warranty} warranty.",
    "Setup takes minutes, and the included guide walks you through every step clearly.",
    "Thoughtful details such as rounded edges and a balanced weight make it comfortable to use.",
    "It ships as a {pack} in recyclable packaging with everything you need to get started.",
    "Owners praise how quietly and reliably it works, day after day, even under heavy use.",
    "Compared with earlier models, this version is lighter, sturdier and easier to clean."};
const std::vector<const char*> kClosers = {"A dependable choice for {use2} from a {tier} brand you can trust.",
                                           "Order yours today and see why {brand} customers keep coming back.",
                                           "If you want a {type} that simply works, this is an easy recommendation.",
                                           "Great as a gift for anyone who loves {use2}."};
const std::vector<const char*> kFeatures = {
    "{size_name}: {size} - sized right for {use}",
    "Material: {material} for durability and a premium feel",
    "Warranty: {warranty} manufacturer warranty with responsive customer support",
    "What you get: {pack}, user manual and quick start card",
    "Color: {color}, a finish that resists fingerprints and scratches",
    "Versatile: works just as well for {use2} as for {use}",
    "Easy care: wipe clean with a damp cloth; no special tools needed",
    "Brand promise: {brand} quality control on every unit"};

// 4-7 of the feature bullets, in a seeded order.
std::vector<std::string> features_of(Rng& rng, const Fields& kv) {
  std::vector<std::string> feats;
  std::vector<size_t> order(kFeatures.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
  const size_t n_feat = 4 + rng.below(4);
  for (size_t i = 0; i < n_feat; ++i) feats.push_back(fill(kFeatures[order[i]], kv));
  return feats;
}

// An opening paragraph of 3-6 middle sentences, then a closing line.
std::vector<std::string> description_of(Rng& rng, const Fields& kv) {
  std::vector<std::string> desc;
  std::string para = fill(rng.pick(kOpeners), kv);
  std::vector<size_t> mid(kMiddles.size());
  for (size_t i = 0; i < mid.size(); ++i) mid[i] = i;
  for (size_t i = mid.size(); i > 1; --i) std::swap(mid[i - 1], mid[rng.below(i)]);
  const size_t n_mid = 3 + rng.below(4);
  for (size_t i = 0; i < n_mid; ++i)
    para.append(" ").append(fill(kMiddles[mid[i]], kv));  // not " " + ...: GCC 12 warns falsely (-Wrestrict)
  desc.push_back(para);
  desc.push_back(fill(rng.pick(kClosers), kv));
  return desc;
}

// Image records as the real metadata has them (the inflated catalogue's bulk).
nlohmann::ordered_json images_of(Rng& rng) {
  nlohmann::ordered_json images = nlohmann::ordered_json::array();
  const size_t n_img = 2 + rng.below(5);
  for (size_t i = 0; i < n_img; ++i) {
    const std::string id = std::to_string(rng.next() % 100000000000ull);
    images.push_back({{"thumb", "https://m.media-amazon.com/images/I/" + id + "._SS40_.jpg"},
                      {"large", "https://m.media-amazon.com/images/I/" + id + ".jpg"},
                      {"variant", i == 0 ? "MAIN" : "PT0" + std::to_string(i)},
                      {"hi_res", "https://m.media-amazon.com/images/I/" + id + "._SL1500_.jpg"}});
  }
  return images;
}

}  // namespace

SyntheticItem synthetic_item(uint64_t seed, uint64_t index, bool inflate) {
  Rng rng(mix64(seed * kGoldenGamma + index) + kGoldenGamma);
  const Category& cat = rng.pick(kCategories);
  const Level& type = rng.pick(cat.types);
  const Brand& brand = rng.pick(brands());
  const Level& size = rng.pick(cat.sizes);
  const Level& material = rng.pick(cat.materials);
  const Level& warranty = rng.pick(kWarranty);
  const int pack = rng.pick(kPacks);
  const std::string color = rng.pick(kColors);
  const std::string use1 = rng.pick(cat.uses), use2 = rng.pick(cat.uses);

  const double rule =
      cat.base * type.factor * brand.factor * size.factor * material.factor * warranty.factor * std::pow(pack, 0.8);
  double price = rule * std::exp(0.25 * rng.normal());
  price = std::clamp(std::round(price * 100) / 100, 0.99, 990.0);

  // Model numbers look like part numbers on purpose: curation must scrub them.
  char model[16];
  std::snprintf(model, sizeof model, "%c%c%05u%c", 'A' + static_cast<char>(rng.below(26)),
                'A' + static_cast<char>(rng.below(26)), static_cast<unsigned>(rng.below(100000)),
                'A' + static_cast<char>(rng.below(26)));
  const std::string pack_text = pack > 1 ? "Pack of " + std::to_string(pack) : "Single Unit";
  const Fields kv = {{"brand", brand.name},
                     {"type", type.text},
                     {"size", size.text},
                     {"size_name", cat.size_name},
                     {"material", material.text},
                     {"warranty", warranty.text},
                     {"color", color},
                     {"use", use1},
                     {"use2", use2},
                     {"pack", pack_text},
                     {"tier", brand.tier},
                     {"category", cat.name},
                     {"model", model}};

  nlohmann::ordered_json j;
  j["main_category"] = cat.name;
  j["title"] = fill(rng.pick(kTitles), kv);
  if (inflate) {
    j["average_rating"] = std::round((3.0 + 2.0 * rng.uniform()) * 10) / 10;
    j["rating_number"] = rng.below(5000);
  }
  j["features"] = features_of(rng, kv);
  j["description"] = description_of(rng, kv);
  j["price"] = price;
  if (inflate) {
    j["images"] = images_of(rng);
    j["videos"] = nlohmann::ordered_json::array();
  }
  j["store"] = brand.name;
  j["categories"] = {cat.name, type.text};
  char weight[32], dims[64];
  std::snprintf(weight, sizeof weight, "%.1f pounds", 0.2 + 12.0 * rng.uniform() * size.factor);
  std::snprintf(dims, sizeof dims, "%.1f x %.1f x %.1f inches", 2 + 20 * rng.uniform(), 2 + 14 * rng.uniform(),
                1 + 8 * rng.uniform());
  j["details"] = {{"Brand", brand.name},
                  {"Material", material.text},
                  {"Color", color},
                  {"Item Weight", weight},
                  {"Product Dimensions", dims},
                  {"Item model number", model},
                  {"Warranty", std::string(warranty.text) + " limited warranty"},
                  {"Best Sellers Rank", {{cat.name, 1 + rng.below(200000)}}},
                  {"Date First Available",
                   "March " + std::to_string(1 + rng.below(28)) + ", " + std::to_string(2015 + rng.below(9))}};
  if (inflate) j["parent_asin"] = "B0" + std::to_string(10000000 + rng.below(89999999));

  SyntheticItem item;
  item.line = j.dump();
  item.category = cat.name;
  item.brand = brand.name;
  item.price = price;
  item.rule_price = rule;
  return item;
}

uint64_t write_synthetic_catalog(const std::string& path, uint64_t n, uint64_t seed, bool inflate) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  require(f != nullptr, path + ": cannot create");
  uint64_t bytes = 0;
  bool ok = true;
  for (uint64_t i = 0; i < n && ok; ++i) {
    SyntheticItem it = synthetic_item(seed, i, inflate);
    it.line += '\n';
    ok = std::fwrite(it.line.data(), 1, it.line.size(), f) == it.line.size();
    bytes += it.line.size();
  }
  ok = std::fclose(f) == 0 && ok;
  require(ok, path + ": write failed");
  return bytes;
}

}  // namespace pricer::data
