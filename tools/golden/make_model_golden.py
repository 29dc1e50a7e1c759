#!/usr/bin/python3
"""Writes the model goldens in tests/data/golden/ from an independent PyTorch (float32)
implementation of Hugging Face's LlamaForCausalLM with PEFT LoRA adapters.

Needs only torch (Debian python3-torch); run from anywhere:
    /usr/bin/python3 tools/golden/make_model_golden.py

Each golden is <name>.json (config, LoRA settings, loss, tensor table) plus <name>.bin holding the
tensors back to back as little-endian f32 / i32. Tensor names: Hugging Face names for the base
weights; "lora.<module>.lora_A.weight" / "lora_B" for adapters; "grad.<module>.lora_A.weight" for
their gradients; "batch.*" for the packed batch; "logits" at the loss-masked rows.
"""
import json
import math
import os
import struct

import torch

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "golden")
PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def module(layer, proj):
    kind = "self_attn" if proj in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
    return f"model.layers.{layer}.{kind}.{proj}"


def inv_freq(cfg):
    """transformers' default rotary frequencies, then _compute_llama3_parameters."""
    hd = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = cfg["rope_scaling"]
    if rs is None:
        return inv
    factor, low, high, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wavelen = old / low
    high_wavelen = old / high
    wavelen = 2 * math.pi / inv
    inv_l = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_l / factor + smooth * inv_l
    medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(medium, smoothed, inv_l)


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Lora:
    def __init__(self, A, B, scale):
        self.A, self.B, self.scale = A, B, scale


def linear(x, w, b, lora):
    y = x @ w.t()
    if b is not None:
        y = y + b
    if lora is not None:  # dropout 0: PEFT's lora_B(lora_A(x)) * scaling
        y = y + (x @ lora.A.t()) @ lora.B.t() * lora.scale
    return y


def forward_sequence(cfg, W, loras, tokens):
    """Logits [L, vocab] of one sequence, positions 0..L-1."""
    L = tokens.shape[0]
    H, KV, hd = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    eps = cfg["rms_eps"]
    x = W["model.embed_tokens.weight"][tokens]
    pos = torch.arange(L, dtype=torch.float32)
    freqs = pos[:, None] * inv_freq(cfg)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((L, L), float("-inf")).triu(1)
    for l in range(cfg["n_layers"]):
        def proj(name, inp):
            m = module(l, name)
            return linear(inp, W[m + ".weight"], W.get(m + ".bias"), loras.get(m))

        xn = rms_norm(x, W[f"model.layers.{l}.input_layernorm.weight"], eps)
        q = proj("q_proj", xn).view(L, H, hd).transpose(0, 1)
        k = proj("k_proj", xn).view(L, KV, hd).transpose(0, 1)
        v = proj("v_proj", xn).view(L, KV, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = H // KV
        k = k.repeat_interleave(rep, dim=0)
        v = v.repeat_interleave(rep, dim=0)
        scores = q @ k.transpose(1, 2) / math.sqrt(hd) + causal
        att = torch.softmax(scores, dim=-1) @ v
        att = att.transpose(0, 1).reshape(L, H * hd)
        h = x + proj("o_proj", att)
        hn = rms_norm(h, W[f"model.layers.{l}.post_attention_layernorm.weight"], eps)
        x = h + proj("down_proj", torch.nn.functional.silu(proj("gate_proj", hn)) * proj("up_proj", hn))
    x = rms_norm(x, W["model.norm.weight"], eps)
    head = W["model.embed_tokens.weight"] if cfg["tied_embeddings"] else W["lm_head.weight"]
    return x @ head.t()


def make_golden(name, cfg, lora_cfg, examples, seed):
    g = torch.Generator().manual_seed(seed)
    D, V, F = cfg["dim"], cfg["vocab_size"], cfg["ffn_dim"]
    qo, kvo = cfg["n_heads"] * cfg["head_dim"], cfg["n_kv_heads"] * cfg["head_dim"]
    shapes = {"q_proj": (qo, D), "k_proj": (kvo, D), "v_proj": (kvo, D), "o_proj": (D, qo),
              "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}

    def randn(*shape, std):
        return torch.randn(*shape, generator=g) * std

    W = {"model.embed_tokens.weight": randn(V, D, std=0.5)}
    for l in range(cfg["n_layers"]):
        W[f"model.layers.{l}.input_layernorm.weight"] = 1.0 + randn(D, std=0.2)
        W[f"model.layers.{l}.post_attention_layernorm.weight"] = 1.0 + randn(D, std=0.2)
        for p in PROJ:
            W[module(l, p) + ".weight"] = randn(*shapes[p], std=1.0 / math.sqrt(shapes[p][1]))
        if cfg["qkv_bias"]:
            for p in ("q_proj", "k_proj", "v_proj"):
                W[module(l, p) + ".bias"] = randn(shapes[p][0], std=0.2)
    W["model.norm.weight"] = 1.0 + randn(D, std=0.2)
    if not cfg["tied_embeddings"]:
        W["lm_head.weight"] = randn(V, D, std=0.5)

    r, alpha = lora_cfg["rank"], lora_cfg["alpha"]
    scale = alpha / math.sqrt(r) if lora_cfg["rslora"] else alpha / r
    loras = {}
    for l in range(cfg["n_layers"]):
        for p in lora_cfg["targets"]:
            out_f, in_f = shapes[p]
            bound = 1.0 / math.sqrt(in_f)  # PEFT's kaiming_uniform_(a=sqrt(5))
            A = ((torch.rand(r, in_f, generator=g) * 2 - 1) * bound).requires_grad_(True)
            B = randn(out_f, r, std=0.2).requires_grad_(True)  # non-zero so dA is informative
            loras[module(l, p)] = Lora(A, B, scale)

    # Packed batch: sequences back to back; position t predicts token t+1, loss on completions.
    tokens, positions, cu, targets, mask = [], [], [0], [], []
    for seq, prompt_len in examples:
        n = len(seq)
        for t in range(n):
            tokens.append(seq[t])
            positions.append(t)
            counted = t + 1 < n and t + 1 >= prompt_len
            targets.append(seq[t + 1] if counted else 0)
            mask.append(1 if counted else 0)
        cu.append(len(tokens))

    logits = torch.cat([forward_sequence(cfg, W, loras, torch.tensor(seq)) for seq, _ in examples])
    rows = torch.tensor([i for i, m in enumerate(mask) if m])
    sel = logits[rows]
    loss = torch.nn.functional.cross_entropy(sel, torch.tensor(targets)[rows])  # mean over masked
    loss.backward()

    tensors = []
    for k, v in W.items():
        tensors.append((k, v))
    for m, lo in loras.items():
        tensors += [(f"lora.{m}.lora_A.weight", lo.A.detach()), (f"lora.{m}.lora_B.weight", lo.B.detach()),
                    (f"grad.{m}.lora_A.weight", lo.A.grad), (f"grad.{m}.lora_B.weight", lo.B.grad)]
    tensors.append(("logits", sel.detach()))
    ints = [("batch.tokens", tokens), ("batch.positions", positions), ("batch.cu_seqlens", cu),
            ("batch.targets", targets), ("batch.loss_mask", mask)]

    table, blob = {}, bytearray()
    for k, t in tensors:
        t = t.detach().contiguous().float()
        table[k] = {"dtype": "f32", "shape": list(t.shape), "offset": len(blob)}
        blob += struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    for k, vals in ints:
        table[k] = {"dtype": "i32", "shape": [len(vals)], "offset": len(blob)}
        blob += struct.pack("<%di" % len(vals), *vals)

    manifest = {
        "config": cfg,
        "lora": dict(lora_cfg, scale=scale),
        "examples": [{"tokens": s, "prompt_len": p} for s, p in examples],
        "loss": loss.item(),
        "tensors": table,
    }
    os.makedirs(OUT_DIR, exist_ok=True)
    with open(os.path.join(OUT_DIR, name + ".json"), "w") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(OUT_DIR, name + ".bin"), "wb") as f:
        f.write(blob)
    print(f"{name}: loss {loss.item():.6f}, {len(blob)} bytes")


def main():
    torch.manual_seed(0)
    llama3 = {
        "vocab_size": 320, "dim": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16,
        "ffn_dim": 160, "rms_eps": 1e-5, "rope_theta": 500000.0, "tied_embeddings": True, "qkv_bias": False,
        # A short original context puts the 8 frequencies of head_dim 16 in all three bands.
        "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64},
    }
    gen = torch.Generator().manual_seed(1)

    def seq(n, vocab):
        return torch.randint(0, vocab, (n,), generator=gen).tolist()

    make_golden("llama3_lora", llama3, {"rank": 4, "alpha": 8.0, "rslora": False, "targets": PROJ},
                [(seq(9, 320), 4), (seq(14, 320), 9), (seq(6, 320), 2)], seed=42)

    qwen = {
        "vocab_size": 96, "dim": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16,
        "ffn_dim": 48, "rms_eps": 1e-6, "rope_theta": 10000.0, "tied_embeddings": False, "qkv_bias": True,
        "rope_scaling": None,
    }
    make_golden("qwen_bias_untied", qwen,
                {"rank": 2, "alpha": 4.0, "rslora": True, "targets": ["q_proj", "v_proj", "down_proj"]},
                [(seq(11, 96), 5), (seq(7, 96), 3)], seed=7)


if __name__ == "__main__":
    main()
