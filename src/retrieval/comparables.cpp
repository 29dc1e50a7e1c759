#include "retrieval/comparables.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace pricer::retrieval {

namespace {

// Every term shared by two documents counts: a brand or model word seen in a few items is the
// best evidence of a comparable there is.
TfidfOptions index_options() { return TfidfOptions{1u << 22, 2, true}; }

constexpr const char* kKind = "pricer-comparables";

template <typename T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  if (!b.empty()) std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// A tensor's contents as `n` values of T, checked for its type and shape.
template <typename T>
std::vector<T> read_tensor(const GgufFile& f, const std::string& name, GgmlType type, std::vector<int64_t> ne) {
  const GgufTensorInfo* t = f.find_tensor(name);
  require(t != nullptr, f.source() + ": no tensor '" + name + "' (not a comparables index?)");
  require(t->type == type && t->ne == ne,
          f.source() + ": tensor '" + name + "' has the wrong type or shape for this index");
  const auto data = f.tensor_data(*t);
  std::vector<T> out(data.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), data.data(), out.size() * sizeof(T));
  return out;
}

}  // namespace

ComparablesIndex::ComparablesIndex(const std::vector<std::string>& docs, const std::vector<double>& prices, int k)
    : vec_(index_options()), prices_(prices), k_(k) {
  require(k >= 1 && k <= kMaxComparables,
          "comparables: k must be in [1, " + std::to_string(kMaxComparables) + "], not " + std::to_string(k));
  require(!docs.empty() && docs.size() == prices.size(), "comparables: need one price per indexed text");
  require(docs.size() < (1ull << 31), "comparables: too many items to index");
  for (std::size_t i = 0; i < prices.size(); ++i)
    require(std::isfinite(prices[i]) && prices[i] > 0,
            "comparables: indexed item " + std::to_string(i) + " has no positive price");
  vec_.fit(docs);
  require(vec_.vocabulary_size() > 0, "comparables: the indexed texts share no words");
  build_postings(vec_.transform(docs));
}

void ComparablesIndex::build_postings(const SparseMatrix& docs) {
  postings_ = SparseMatrix{};
  postings_.rows = docs.cols;
  postings_.cols = docs.rows;
  std::vector<std::size_t> count(docs.cols + 1, 0);
  for (uint32_t c : docs.indices) ++count[c + 1];
  for (std::size_t c = 0; c < docs.cols; ++c) count[c + 1] += count[c];
  postings_.indptr = count;
  postings_.indices.resize(docs.indices.size());
  postings_.values.resize(docs.values.size());
  for (std::size_t r = 0; r < docs.rows; ++r)
    for (std::size_t p = docs.indptr[r]; p < docs.indptr[r + 1]; ++p) {
      const std::size_t at = count[docs.indices[p]]++;
      postings_.indices[at] = static_cast<uint32_t>(r);
      postings_.values[at] = docs.values[p];
    }
}

std::vector<Comparable> ComparablesIndex::nearest(std::string_view doc, int64_t exclude) const {
  const SparseMatrix q = vec_.transform({std::string(doc)});
  std::vector<float> score(prices_.size(), 0.0f);
  for (std::size_t p = 0; p < q.indices.size(); ++p) {
    const uint32_t term = q.indices[p];
    const float w = q.values[p];
    for (std::size_t at = postings_.indptr[term]; at < postings_.indptr[term + 1]; ++at)
      score[postings_.indices[at]] += w * postings_.values[at];
  }
  if (exclude >= 0 && static_cast<std::size_t>(exclude) < score.size()) score[exclude] = 0.0f;
  std::vector<Comparable> out;
  for (std::size_t i = 0; i < score.size(); ++i)
    if (score[i] > 0.0f) out.push_back({static_cast<uint32_t>(i), score[i], prices_[i]});
  const auto better = [](const Comparable& a, const Comparable& b) {
    return a.similarity != b.similarity ? a.similarity > b.similarity : a.item < b.item;
  };
  const std::size_t keep = std::min<std::size_t>(out.size(), static_cast<std::size_t>(k_));
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(keep), out.end(), better);
  out.resize(keep);
  return out;
}

void ComparablesIndex::save(const std::string& path) const {
  GgufWriter w;
  w.add("general.type", GgufValue::string(kKind));
  w.add("pricer.comparables.k", GgufValue::u32(static_cast<uint32_t>(k_)));
  const auto vocab = vec_.vocabulary();
  std::vector<int64_t> hashes;
  std::vector<double> idf;
  for (const auto& [h, v] : vocab) hashes.push_back(static_cast<int64_t>(h)), idf.push_back(v);
  std::vector<int64_t> offsets(postings_.indptr.begin(), postings_.indptr.end());
  std::vector<int32_t> items(postings_.indices.begin(), postings_.indices.end());
  const auto n_terms = static_cast<int64_t>(vocab.size());
  w.add_tensor("terms.hash", {n_terms}, GgmlType::I64, bytes_of(hashes));
  w.add_tensor("terms.idf", {n_terms}, GgmlType::F64, bytes_of(idf));
  w.add_tensor("postings.offset", {n_terms + 1}, GgmlType::I64, bytes_of(offsets));
  w.add_tensor("postings.item", {static_cast<int64_t>(items.size())}, GgmlType::I32, bytes_of(items));
  w.add_tensor("postings.weight", {static_cast<int64_t>(items.size())}, GgmlType::F32, bytes_of(postings_.values));
  w.add_tensor("items.price", {static_cast<int64_t>(prices_.size())}, GgmlType::F64, bytes_of(prices_));
  w.write(path);
}

ComparablesIndex ComparablesIndex::load(const std::string& path) { return from_gguf(GgufFile::open(path)); }

ComparablesIndex ComparablesIndex::from_gguf(const GgufFile& f) {
  const std::string& path = f.source();
  require(f.get_string_opt("general.type") == std::string(kKind), path + ": not a comparables index");
  ComparablesIndex x;
  const int64_t k = f.get_int("pricer.comparables.k");
  require(k >= 1 && k <= kMaxComparables, path + ": pricer.comparables.k = " + std::to_string(k) + " is out of range");
  x.k_ = static_cast<int>(k);
  const GgufTensorInfo* th = f.find_tensor("terms.hash");
  const GgufTensorInfo* ti = f.find_tensor("postings.item");
  const GgufTensorInfo* tp = f.find_tensor("items.price");
  require(th && ti && tp && th->ne.size() == 1 && ti->ne.size() == 1 && tp->ne.size() == 1,
          path + ": missing or misshapen tensors (not a comparables index?)");
  const int64_t n_terms = th->ne[0], nnz = ti->ne[0], n_items = tp->ne[0];
  const auto hashes = read_tensor<int64_t>(f, "terms.hash", GgmlType::I64, {n_terms});
  const auto idf = read_tensor<double>(f, "terms.idf", GgmlType::F64, {n_terms});
  const auto offsets = read_tensor<int64_t>(f, "postings.offset", GgmlType::I64, {n_terms + 1});
  const auto items = read_tensor<int32_t>(f, "postings.item", GgmlType::I32, {nnz});
  x.postings_.values = read_tensor<float>(f, "postings.weight", GgmlType::F32, {nnz});
  x.prices_ = read_tensor<double>(f, "items.price", GgmlType::F64, {n_items});
  std::vector<std::pair<uint64_t, double>> vocab(static_cast<std::size_t>(n_terms));
  for (std::size_t t = 0; t < vocab.size(); ++t) vocab[t] = {static_cast<uint64_t>(hashes[t]), idf[t]};
  try {
    x.vec_ = TfidfVectorizer::from_vocabulary(index_options(), vocab);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
  require(offsets.front() == 0 && offsets.back() == nnz, path + ": postings offsets do not span the postings");
  for (std::size_t t = 0; t + 1 < offsets.size(); ++t)
    require(offsets[t] <= offsets[t + 1], path + ": postings offsets decrease at term " + std::to_string(t));
  for (std::size_t p = 0; p < items.size(); ++p) {
    require(items[p] >= 0 && items[p] < n_items, path + ": posting " + std::to_string(p) + " names item " +
                                                     std::to_string(items[p]) + " of " + std::to_string(n_items));
    require(std::isfinite(x.postings_.values[p]) && x.postings_.values[p] >= 0,
            path + ": posting " + std::to_string(p) + " has a bad weight");
  }
  for (std::size_t i = 0; i < x.prices_.size(); ++i)
    require(std::isfinite(x.prices_[i]) && x.prices_[i] > 0, path + ": item " + std::to_string(i) + " has a bad price");
  x.postings_.rows = static_cast<std::size_t>(n_terms);
  x.postings_.cols = static_cast<std::size_t>(n_items);
  x.postings_.indptr.assign(offsets.begin(), offsets.end());
  x.postings_.indices.assign(items.begin(), items.end());
  return x;
}

std::string comparables_beside(const std::string& model_or_adapter) {
  namespace fs = std::filesystem;
  const fs::path p(model_or_adapter);
  return ((fs::is_directory(p) ? p : p.parent_path()) / kComparablesFile).string();
}

std::string comparables_line(const std::vector<Comparable>& comparables) {
  if (comparables.empty()) return {};
  std::string line = "Similar items sold for:";
  for (std::size_t i = 0; i < comparables.size(); ++i) {
    line += i == 0 ? " $" : ", $";
    line += std::to_string(static_cast<long long>(std::llround(comparables[i].price)));
  }
  return line;
}

std::string insert_comparables(const std::string& prompt, const std::string& line) {
  if (line.empty()) return prompt;
  if (const auto at = prompt.rfind("\n\n"); at != std::string::npos)
    return prompt.substr(0, at) + "\n\n" + line + prompt.substr(at);
  if (const auto at = prompt.rfind('\n'); at != std::string::npos)
    return prompt.substr(0, at) + "\n" + line + prompt.substr(at);
  return line + "\n" + prompt;
}

std::string prompt_with_comparables(const ComparablesIndex& index, const std::string& prompt, int64_t self) {
  return insert_comparables(prompt, comparables_line(index.nearest(prompt, self)));
}

}  // namespace pricer::retrieval
