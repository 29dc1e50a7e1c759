#include "predict/model_pricer.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "io/model_file.h"
#include "train/adapter_io.h"

namespace pricer {

PriceMode price_mode_from_name(const std::string& name) {
  if (name == "expected") return PriceMode::Expected;
  if (name == "top3") return PriceMode::Top3;
  if (name == "greedy") return PriceMode::Greedy;
  throw Error("unknown price mode '" + name + "' (expected, top3 or greedy)");
}

double parse_price(const std::string& text) {
  std::string digits;
  bool seen_digit = false, seen_dot = false;
  for (char c : text) {
    if (c >= '0' && c <= '9') {
      digits += c;
      seen_digit = true;
    } else if (c == ',' && seen_digit) {
      continue;
    } else if (c == '.' && seen_digit && !seen_dot) {
      digits += c;
      seen_dot = true;
    } else if (seen_digit) {
      break;
    }
  }
  if (!seen_digit) return std::numeric_limits<double>::quiet_NaN();
  return std::stod(digits);
}

ModelPricer::ModelPricer(const ModelPricerOptions& opt) : opt_(opt) {
  require(!opt.model.empty(), "model pricer: no model given");
  ModelFile mf = load_model_file(opt.model, dtype_from_name(opt.base_dtype));
  model_ = std::make_unique<LlamaModel>(LlamaModel::from_weights(mf.config, std::move(mf.tensors), mf.source));
  if (!opt.adapter.empty()) load_adapter(*model_, opt.adapter);
  tok_ = load_tokenizer(opt.tokenizer.empty() ? opt.model : opt.tokenizer);
  pd_ = std::make_unique<PriceDistribution>(*tok_);
  be_ = make_cpu_backend();
}

std::string ModelPricer::prompt_for(const std::string& text) const {
  std::string p = opt_.prompt_template;
  const auto at = p.find("{text}");
  if (at != std::string::npos) p.replace(at, 6, text);
  return p;
}

std::vector<int32_t> ModelPricer::encode_prompt(const std::string& prompt) const {
  std::vector<int32_t> ids;
  if (tok_->bos_id() >= 0) ids.push_back(tok_->bos_id());
  for (int32_t id : tok_->encode(prompt)) ids.push_back(id);
  // Long prompts lose their middle, keeping the head and the closing "Price is $".
  const int64_t max = std::max<int64_t>(opt_.max_prompt_tokens, 24);
  if (static_cast<int64_t>(ids.size()) > max) {
    const int64_t tail = 16;
    std::vector<int32_t> cut(ids.begin(), ids.begin() + (max - tail));
    cut.insert(cut.end(), ids.end() - tail, ids.end());
    ids = std::move(cut);
  }
  return ids;
}

std::vector<PricePrediction> ModelPricer::predict(const std::vector<std::string>& prompts, PriceMode mode) {
  std::vector<PricePrediction> out(prompts.size());
  const int64_t vocab = model_->config().vocab_size;
  for (size_t i0 = 0; i0 < prompts.size(); i0 += static_cast<size_t>(opt_.batch)) {
    const size_t i1 = std::min(prompts.size(), i0 + static_cast<size_t>(opt_.batch));
    Batch b;
    std::vector<int64_t> rows;
    std::vector<std::vector<int32_t>> ids(i1 - i0);
    b.cu_seqlens.push_back(0);
    for (size_t i = i0; i < i1; ++i) {
      ids[i - i0] = encode_prompt(prompts[i]);
      for (size_t t = 0; t < ids[i - i0].size(); ++t) {
        b.tokens.push_back(ids[i - i0][t]);
        b.positions.push_back(static_cast<int32_t>(t));
      }
      b.cu_seqlens.push_back(static_cast<int32_t>(b.tokens.size()));
      rows.push_back(static_cast<int64_t>(b.tokens.size()) - 1);
    }
    b.targets.assign(b.tokens.size(), 0);
    b.loss_mask.assign(b.tokens.size(), 0);
    const std::vector<float> logits = model_->logits(b, rows, *be_);
    for (size_t k = 0; k < rows.size(); ++k) {
      PricePrediction& p = out[i0 + k];
      p.dist = pd_->estimate(logits.data() + k * vocab, vocab, opt_.coverage, mode == PriceMode::Top3 ? 3 : 5);
      if (mode == PriceMode::Expected) {
        p.price = p.dist.expected;
      } else if (mode == PriceMode::Top3) {
        double num = 0, den = 0;
        for (const auto& t : p.dist.top) {
          num += t.prob * t.value;
          den += t.prob;
        }
        p.price = den > 0 ? num / den : p.dist.expected;
      } else {
        // Greedy decoding of a few tokens from a KV cache, then the text parsed as a price.
        KvCache cache = model_->make_cache(static_cast<int64_t>(ids[k].size()) + 8);
        std::vector<float> lg = model_->prefill(cache, ids[k], *be_);
        for (int step = 0; step < 6; ++step) {
          int32_t best = 0;
          for (int64_t v = 1; v < vocab; ++v)
            if (lg[v] > lg[best]) best = static_cast<int32_t>(v);
          if (best == tok_->eos_id()) break;
          p.text += tok_->token_bytes(best);
          if (step + 1 < 6) lg = model_->decode(cache, best, *be_);
        }
        p.price = parse_price(p.text);
        if (std::isnan(p.price)) p.price = p.dist.expected;  // unparseable text: fall back, counted by callers
      }
    }
  }
  return out;
}

}  // namespace pricer
