#include "kernels/checks.h"

#include <string>

#include "core/error.h"

namespace pricer::kernels {

namespace {
void check_heads(int heads, int kv_heads, int hd) {
  require(heads > 0 && kv_heads > 0 && heads % kv_heads == 0, "attention: heads (" + std::to_string(heads) +
                                                                  ") must be a positive multiple of kv_heads (" +
                                                                  std::to_string(kv_heads) + ")");
  require(hd > 0, "attention: head_dim must be positive, got " + std::to_string(hd));
}
}  // namespace

void check_attention_decode(int64_t n, int64_t stride, int heads, int kv_heads, int hd) {
  check_heads(heads, kv_heads, hd);
  require(n >= 1 && stride >= n * hd, "attention: " + std::to_string(n) + " cached keys of " + std::to_string(hd) +
                                          " values do not fit rows " + std::to_string(stride) + " floats apart");
}

void check_linears(std::span<const Weight* const> Ws, size_t outputs) {
  require(Ws.size() == outputs,
          "linears: " + std::to_string(Ws.size()) + " weights for " + std::to_string(outputs) + " outputs");
  for (const Weight* W : Ws)
    require(W->cols() == Ws[0]->cols(), "linears: weights of " + std::to_string(W->cols()) + " and " +
                                            std::to_string(Ws[0]->cols()) + " columns cannot share an input");
}

int64_t check_attention(std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd) {
  check_heads(heads, kv_heads, hd);
  require(!cu_seqlens.empty(), "attention: cu_seqlens is empty (expected at least {0})");
  require(cu_seqlens[0] == 0, "attention: cu_seqlens[0] must be 0, got " + std::to_string(cu_seqlens[0]));
  for (size_t i = 1; i < cu_seqlens.size(); ++i) {
    require(cu_seqlens[i] >= cu_seqlens[i - 1], [&] {
      return "attention: cu_seqlens[" + std::to_string(i) + "] = " + std::to_string(cu_seqlens[i]) +
             " is less than cu_seqlens[" + std::to_string(i - 1) + "] = " + std::to_string(cu_seqlens[i - 1]);
    });
  }
  return cu_seqlens.back();
}

void check_ids(const char* op, const int32_t* ids, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    require(ids[i] >= 0 && ids[i] < vocab, [&] {
      return std::string(op) + ": id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
             " is outside the table [0, " + std::to_string(vocab) + ")";
    });
  }
}

void check_targets(const int32_t* targets, int64_t n, int64_t vocab) {
  for (int64_t i = 0; i < n; ++i) {
    require(targets[i] < vocab, [&] {
      return "cross_entropy: target " + std::to_string(targets[i]) + " at row " + std::to_string(i) +
             " is outside the vocabulary [0, " + std::to_string(vocab) + ")";
    });
  }
}

void check_rope(int heads, int head_dim) {
  require(heads > 0, "rope: heads must be positive, got " + std::to_string(heads));
  require(head_dim > 0 && head_dim % 2 == 0,
          "rope: head_dim must be positive and even, got " + std::to_string(head_dim));
}

void check_adamw_step(int64_t step) {
  require(step >= 1, "adamw_step: step must count from 1, got " + std::to_string(step));
}

void check_compute(DType compute) {
  require(compute == DType::F32 || compute == DType::BF16 || compute == DType::Q8_0,
          "compute dtype must be f32, bf16 or q8_0, not " + std::string(dtype_name(compute)));
}

}  // namespace pricer::kernels
