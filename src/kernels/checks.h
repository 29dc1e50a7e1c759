#pragma once
// Input checks shared by every backend: indices and sequence boundaries come from data files and
// user requests, so a bad one must become a pricer::Error, never an out-of-bounds access.
#include <cstdint>
#include <span>

#include "quant/dtype.h"
#include "quant/weight.h"

namespace pricer::kernels {

// cu_seqlens: at least one entry, starts at 0, never decreases; heads a positive multiple of
// kv_heads; hd > 0. Returns the total token count cu_seqlens.back().
int64_t check_attention(std::span<const int32_t> cu_seqlens, int heads, int kv_heads, int hd);
// As check_attention, for one token per head against n >= 1 cached keys per kv head, each kv
// head's rows `stride` floats apart (at least n * hd).
void check_attention_decode(int64_t n, int64_t stride, int heads, int kv_heads, int hd);
// One output per weight, and every weight as wide as the first (they take the same input).
void check_linears(std::span<const Weight* const> Ws, size_t outputs);
// Every ids[i] in [0, vocab).
void check_ids(const char* op, const int32_t* ids, int64_t n, int64_t vocab);
// Every targets[i] in [0, vocab) or negative (ignored row).
void check_targets(const int32_t* targets, int64_t n, int64_t vocab);
// head_dim even and positive, heads positive.
void check_rope(int heads, int head_dim);
// Adam's bias correction divides by 1 - beta^step: steps count from 1.
void check_adamw_step(int64_t step);
// A backend's compute precision: f32, bf16 or q8_0 (Backend::compute).
void check_compute(DType compute);

}  // namespace pricer::kernels
