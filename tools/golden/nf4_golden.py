#!/usr/bin/env python3
"""Golden data for the NF4 quantizer (tests/test_nf4.cpp).

An independent Python implementation of bitsandbytes' NF4 quantization with double quantization
(quantize_4bit(quant_type="nf4", blocksize=64, compress_statistics=True)), following bitsandbytes'
reference kernels step by step:
  * blocks of 64, absmax per block, scaled = x * (1 / absmax) in float32;
  * the NF4 index is the number of bitsandbytes' midpoint thresholds the scaled value exceeds
    (strict >, the dQuantizeNF4 decision tree); a partial last block is padded with zeros; two
    indices per byte, the first element in the high nibble;
  * offset = mean of the block absmax values (computed in float64, rounded to float32; torch's
    float32 mean can differ in the last bit, depending on its reduction order);
  * absmax - offset quantized blockwise (256) to 8 bits with create_dynamic_map(signed=True)
    (evaluated with torch, as bitsandbytes does), the code chosen by the binary search of
    dQuantize (non-stochastic).
  * dequantization: absmax = map[code] * scale + offset, value = nf4[index] * absmax, each
    operation rounded to float32.

Run by hand from the repository root (needs python3 with torch and numpy):
    python3 tools/golden/nf4_golden.py [out_dir]        # default tests/data/nf4
It writes little-endian raw files: input.f32, packed.u8, absmax_codes.u8, absmax_scales.f32,
dequantized.f32, dynamic_map.f32, and meta.json (element count and offset).
"""
import json
import os
import sys

import numpy as np
import torch

F = np.float32

# bitsandbytes' NF4 table.
NF4 = np.array([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0], dtype=F)

# The thresholds of bitsandbytes' dQuantizeNF4 tree, as it lists them (float literals).
NF4_THRESHOLDS = np.array([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=F)

BLOCK = 64
ABSMAX_BLOCK = 256


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    """bitsandbytes.functional.create_dynamic_map, evaluated with torch as bitsandbytes does."""
    data = []
    non_sign_bits = total_bits - 1
    additional_items = 2 ** (non_sign_bits - max_exponent_bits) - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items, dtype=torch.float32)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    assert additional_items == 0
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32).numpy()


def nf4_index(v):
    """Count of thresholds exceeded; NaN exceeds none (bitsandbytes' tree returns 0)."""
    with np.errstate(invalid="ignore"):
        return (v[:, None] > NF4_THRESHOLDS[None, :]).sum(axis=1).astype(np.uint8)


def dquantize(code, x):
    """bitsandbytes' dQuantize<0>: binary search, then the closer bracketing value."""
    x = F(x)
    pivot, upper_pivot, lower_pivot = 127, 255, 0
    lower, upper = F(-1.0), F(1.0)
    val = code[pivot]
    i = 64
    while i > 0:
        if x > val:
            lower_pivot, lower = pivot, val
            pivot += i
        else:
            upper_pivot, upper = pivot, val
            pivot -= i
        val = code[pivot]
        i >>= 1
    if upper_pivot == 255:
        upper = code[upper_pivot]
    if lower_pivot == 0:
        lower = code[lower_pivot]
    if x > val:
        midpoint = F((upper + val) * F(0.5))
        return upper_pivot if x > midpoint else pivot
    midpoint = F((lower + val) * F(0.5))
    return lower_pivot if x < midpoint else pivot


def quantize(x, dmap):
    n = x.size
    blocks = (n + BLOCK - 1) // BLOCK
    padded = np.zeros(blocks * BLOCK, dtype=F)
    padded[:n] = x
    absmax = np.zeros(blocks, dtype=F)
    idx = np.zeros(blocks * BLOCK, dtype=np.uint8)
    for b in range(blocks):
        lo, hi = b * BLOCK, min(n, (b + 1) * BLOCK)
        absmax[b] = np.abs(x[lo:hi]).max()
        with np.errstate(divide="ignore", invalid="ignore"):
            rcp = F(1.0) / absmax[b]
            scaled = (padded[b * BLOCK:(b + 1) * BLOCK] * rcp).astype(F)
        idx[b * BLOCK:(b + 1) * BLOCK] = nf4_index(scaled)
    idx = idx[: n + (n % 2)]
    packed = ((idx[0::2] << 4) | idx[1::2]).astype(np.uint8)

    offset = F(absmax.astype(np.float64).mean())
    centered = (absmax - offset).astype(F)
    groups = (blocks + ABSMAX_BLOCK - 1) // ABSMAX_BLOCK
    scales = np.zeros(groups, dtype=F)
    codes = np.zeros(blocks, dtype=np.uint8)
    for g in range(groups):
        seg = centered[g * ABSMAX_BLOCK:(g + 1) * ABSMAX_BLOCK]
        scales[g] = np.abs(seg).max()
        with np.errstate(divide="ignore", invalid="ignore"):
            rcp = F(1.0) / scales[g]
            for j, v in enumerate(seg):
                codes[g * ABSMAX_BLOCK + j] = dquantize(dmap, F(v * rcp))
    return packed, codes, scales, offset, absmax


def dequantize(n, packed, codes, scales, offset, dmap):
    blocks = codes.size
    amax = np.array([F(F(dmap[codes[b]] * scales[b // ABSMAX_BLOCK]) + offset) for b in range(blocks)], dtype=F)
    idx = np.empty(packed.size * 2, dtype=np.uint8)
    idx[0::2] = packed >> 4
    idx[1::2] = packed & 0x0F
    idx = idx[:n]
    return (NF4[idx] * np.repeat(amax, BLOCK)[:n]).astype(F), amax


def make_input():
    n = BLOCK * ABSMAX_BLOCK * 2 + 37
    rs = np.random.RandomState(20240601)
    x = (rs.standard_normal(n) * 0.02).astype(F)
    # Block scales spanning two decades, so the double quantization has real work to do.
    blocks = (n + BLOCK - 1) // BLOCK
    x *= np.repeat(np.exp(rs.uniform(-2.3, 2.3, blocks)).astype(F), BLOCK)[:n]
    # Outliers, as real weights have.
    for i in range(0, n, 1009):
        x[i] = F((1 if (i // 1009) % 2 else -1) * (0.5 + 0.1 * (i % 7)))
    # An all-zero block (bitsandbytes scales it by 1/0: every index becomes 0).
    x[100 * BLOCK:101 * BLOCK] = 0
    # A block with absmax exactly 1 holding the thresholds themselves, their float neighbours and
    # the code values: exercises the strict-greater tie rule.
    b = 7 * BLOCK
    x[b:b + BLOCK] = 0
    x[b] = 1.0
    x[b + 1:b + 16] = NF4_THRESHOLDS
    x[b + 16:b + 31] = np.nextafter(NF4_THRESHOLDS, F(2))
    x[b + 31:b + 46] = np.nextafter(NF4_THRESHOLDS, F(-2))
    x[b + 46:b + 62] = NF4
    x[b + 62] = -1.0
    # The last (partial) block ends on an odd count, so the padding nibble is present.
    assert n % 2 == 1
    return x


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("tests", "data", "nf4")
    os.makedirs(out, exist_ok=True)
    # The thresholds bitsandbytes lists are the midpoints of adjacent codes.
    mids = ((NF4[:-1].astype(np.float64) + NF4[1:].astype(np.float64)) * 0.5).astype(F)
    assert np.array_equal(mids, NF4_THRESHOLDS)

    dmap = create_dynamic_map()
    x = make_input()
    packed, codes, scales, offset, absmax = quantize(x, dmap)
    deq, amax_dq = dequantize(x.size, packed, codes, scales, offset, dmap)
    # The double quantization can reconstruct a tiny absmax as negative (here: the zero block).
    print("blocks with reconstructed absmax <= 0:", np.where(amax_dq <= 0)[0].tolist())
    torch_mean = torch.tensor(absmax).mean().item()
    print(f"n={x.size} blocks={codes.size} offset={float(offset)!r} (torch.mean float32: {torch_mean!r})")
    print(f"max abs error {np.abs(deq - x).max():.3g}")

    x.astype("<f4").tofile(os.path.join(out, "input.f32"))
    packed.tofile(os.path.join(out, "packed.u8"))
    codes.tofile(os.path.join(out, "absmax_codes.u8"))
    scales.astype("<f4").tofile(os.path.join(out, "absmax_scales.f32"))
    deq.astype("<f4").tofile(os.path.join(out, "dequantized.f32"))
    dmap.astype("<f4").tofile(os.path.join(out, "dynamic_map.f32"))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"numel": int(x.size), "blocksize": BLOCK, "absmax_blocksize": ABSMAX_BLOCK,
                   "absmax_offset": float(offset), "absmax_offset_hex": float(offset).hex()}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
