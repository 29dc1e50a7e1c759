#!/usr/bin/env python3
"""Writes the small model files the io tests and fuzzers start from, with an implementation of
each format independent of pricer's own writers:

  tests/data/io/llamacpp_style.gguf  GGUF v3 as llama.cpp's convert script lays out a Llama:
                                     q/k rows permuted with its `permute`, ne innermost-first,
                                     a tiny SPM-style vocabulary.
  tests/data/io/meta_style.bin       llama2.c legacy checkpoint, q/k rows in Meta's interleaved
                                     order (llama2.c export.py's `permute_reverse` of HF rows).
  tests/data/io/hf_qwen2/            Hugging Face directory: config.json + model.safetensors of
                                     a tied Qwen2 with q/k/v biases, F32/F16/BF16 tensors.

Every value in Hugging Face layout is value(i, row, col) = (row * cols + col + 1) * (-1)^i *
2^-(i mod 8), i the tensor's index in hf_tensors() (at most 7 significant bits: exact in f16,
bf16 and f32), so a test can check a loaded model element by element. Copies go to fuzz/corpus/{gguf,llama2c,safetensors}/ as seeds.

Usage: python3 tools/golden/make_io_fixtures.py   (from the repository root; numpy only)
"""
import json
import os
import struct

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "io")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

VOCAB, DIM, LAYERS, HEADS, KV_HEADS, FFN, CTX = 8, 8, 1, 2, 1, 12, 32
HEAD_DIM = DIM // HEADS

# Hugging Face tensor names in a fixed order; the order gives tensor_index in value().
def hf_tensors(qkv_bias=False, tied=False):
    names = [("model.embed_tokens.weight", (VOCAB, DIM))]
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        names += [
            (p + "input_layernorm.weight", (DIM,)),
            (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, DIM)),
            (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, DIM)),
            (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, DIM)),
            (p + "self_attn.o_proj.weight", (DIM, HEADS * HEAD_DIM)),
            (p + "post_attention_layernorm.weight", (DIM,)),
            (p + "mlp.gate_proj.weight", (FFN, DIM)),
            (p + "mlp.up_proj.weight", (FFN, DIM)),
            (p + "mlp.down_proj.weight", (DIM, FFN)),
        ]
        if qkv_bias:
            names += [
                (p + "self_attn.q_proj.bias", (HEADS * HEAD_DIM,)),
                (p + "self_attn.k_proj.bias", (KV_HEADS * HEAD_DIM,)),
                (p + "self_attn.v_proj.bias", (KV_HEADS * HEAD_DIM,)),
            ]
    names.append(("model.norm.weight", (DIM,)))
    if not tied:
        names.append(("lm_head.weight", (VOCAB, DIM)))
    out = []
    for i, (name, shape) in enumerate(names):
        rows, cols = (1, shape[0]) if len(shape) == 1 else shape
        v = (np.arange(rows * cols, dtype=np.float64) + 1) * (-1) ** i * 2.0 ** -(i % 8)
        w = v.reshape(shape).astype(np.float32)
        assert ((w.view(np.uint32) & 0xFFFF) == 0).all() and (w.astype(np.float16) == w).all()
        out.append((name, w))
    return out


# ---------------------------------------------------------------- GGUF

def llamacpp_permute(w, n_head, n_head_kv):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_string(key) + struct.pack("<I", vtype)
    if vtype == 4:
        out += struct.pack("<I", value)
    elif vtype == 6:
        out += struct.pack("<f", value)
    elif vtype == 8:
        out += gguf_string(value)
    elif vtype == 9:
        elem, items = value
        out += struct.pack("<IQ", elem, len(items))
        for x in items:
            out += gguf_string(x) if elem == 8 else struct.pack({5: "<i", 6: "<f"}[elem], x)
    return out


def write_gguf(path):
    gguf_names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
        "input_layernorm.weight": "attn_norm.weight",
        "post_attention_layernorm.weight": "ffn_norm.weight",
        "self_attn.q_proj.weight": "attn_q.weight",
        "self_attn.k_proj.weight": "attn_k.weight",
        "self_attn.v_proj.weight": "attn_v.weight",
        "self_attn.o_proj.weight": "attn_output.weight",
        "mlp.gate_proj.weight": "ffn_gate.weight",
        "mlp.up_proj.weight": "ffn_up.weight",
        "mlp.down_proj.weight": "ffn_down.weight",
    }
    tensors = []
    for name, w in hf_tensors():
        if name.startswith("model.layers."):
            _, _, l, rest = name.split(".", 3)
            gname = f"blk.{l}.{gguf_names[rest]}"
        else:
            gname = gguf_names[name]
        if name.endswith("q_proj.weight"):
            w = llamacpp_permute(w, HEADS, HEADS)
        elif name.endswith("k_proj.weight"):
            w = llamacpp_permute(w, HEADS, KV_HEADS)
        # Matrices as f16 like a typical llama.cpp f16 conversion; norms stay f32.
        if w.ndim == 2 and not name.endswith("down_proj.weight"):
            tensors.append((gname, w.astype(np.float16), 1))
        else:
            tensors.append((gname, w.astype(np.float32), 0))

    tokens = ["<unk>", "<s>", "</s>", "\u2581a", "\u2581b", "c", "<0x0A>", "\u2581price"]
    kvs = [
        gguf_kv("general.architecture", 8, "llama"),
        gguf_kv("general.name", 8, "io-fixture"),
        gguf_kv("llama.context_length", 4, CTX),
        gguf_kv("llama.embedding_length", 4, DIM),
        gguf_kv("llama.block_count", 4, LAYERS),
        gguf_kv("llama.feed_forward_length", 4, FFN),
        gguf_kv("llama.rope.dimension_count", 4, HEAD_DIM),
        gguf_kv("llama.attention.head_count", 4, HEADS),
        gguf_kv("llama.attention.head_count_kv", 4, KV_HEADS),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
        gguf_kv("tokenizer.ggml.model", 8, "llama"),
        gguf_kv("tokenizer.ggml.tokens", 9, (8, tokens)),
        gguf_kv("tokenizer.ggml.scores", 9, (6, [0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0])),
        gguf_kv("tokenizer.ggml.token_type", 9, (5, [2, 3, 3, 1, 1, 1, 6, 1])),
        gguf_kv("tokenizer.ggml.bos_token_id", 4, 1),
        gguf_kv("tokenizer.ggml.eos_token_id", 4, 2),
    ]
    infos, blobs, offset = b"", b"", 0
    for gname, w, ggml_type in tensors:
        ne = list(reversed(w.shape))
        infos += gguf_string(gname) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", ggml_type, offset)
        data = w.tobytes()
        pad = (-len(data)) % 32
        blobs += data + b"\0" * pad
        offset += len(data) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % 32)
    with open(path, "wb") as f:
        f.write(head + blobs)


# ---------------------------------------------------------------- llama2.c

def permute_reverse(w, n_heads, dim1, dim2):
    # llama2.c export.py: HF rotate-half rows back to Meta's interleaved rows
    return w.reshape(n_heads, 2, dim1 // n_heads // 2, dim2).swapaxes(1, 2).reshape(dim1, dim2)


def write_llama2c(path):
    t = dict(hf_tensors())
    L = range(LAYERS)
    lp = lambda l, s: t[f"model.layers.{l}.{s}"]
    kv_dim = KV_HEADS * HEAD_DIM
    parts = [t["model.embed_tokens.weight"]]
    parts += [lp(l, "input_layernorm.weight") for l in L]
    parts += [permute_reverse(lp(l, "self_attn.q_proj.weight"), HEADS, DIM, DIM) for l in L]
    parts += [permute_reverse(lp(l, "self_attn.k_proj.weight"), KV_HEADS, kv_dim, DIM) for l in L]
    parts += [lp(l, "self_attn.v_proj.weight") for l in L]
    parts += [lp(l, "self_attn.o_proj.weight") for l in L]
    parts += [lp(l, "post_attention_layernorm.weight") for l in L]
    parts += [lp(l, "mlp.gate_proj.weight") for l in L]
    parts += [lp(l, "mlp.down_proj.weight") for l in L]
    parts += [lp(l, "mlp.up_proj.weight") for l in L]
    parts.append(t["model.norm.weight"])
    freqs = np.zeros((CTX, HEAD_DIM // 2), dtype=np.float32)
    parts += [freqs, freqs]
    parts.append(t["lm_head.weight"])
    header = struct.pack("<7i", DIM, FFN, LAYERS, HEADS, KV_HEADS, -VOCAB, CTX)  # unshared classifier
    with open(path, "wb") as f:
        f.write(header + b"".join(np.ascontiguousarray(p, dtype=np.float32).tobytes() for p in parts))


# ---------------------------------------------------------------- Hugging Face / safetensors

def write_hf_qwen2(directory):
    os.makedirs(directory, exist_ok=True)
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
        "vocab_size": VOCAB, "hidden_size": DIM, "intermediate_size": FFN,
        "num_hidden_layers": LAYERS, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "max_position_embeddings": CTX, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": [2, 3],
        "torch_dtype": "bfloat16", "sliding_window": None,
    }
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, b"", 0
    for i, (name, w) in enumerate(hf_tensors(qkv_bias=True, tied=True)):
        if name.endswith("_proj.weight") and i % 2 == 0:
            dtype, data = "BF16", (w.view(np.uint32) >> 16).astype(np.uint16).tobytes()  # low bits are 0
        elif name.endswith("_proj.weight"):
            dtype, data = "F16", w.astype(np.float16).tobytes()
        else:
            dtype, data = "F32", w.tobytes()
        header[name] = {"dtype": dtype, "shape": list(w.shape), "data_offsets": [offset, offset + len(data)]}
        blobs += data
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((-(8 + len(h))) % 8)
    with open(os.path.join(directory, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blobs)


def copy(src, dst_dir, name):
    os.makedirs(dst_dir, exist_ok=True)
    with open(src, "rb") as f, open(os.path.join(dst_dir, name), "wb") as g:
        g.write(f.read())


def main():
    os.makedirs(DATA, exist_ok=True)
    write_gguf(os.path.join(DATA, "llamacpp_style.gguf"))
    write_llama2c(os.path.join(DATA, "meta_style.bin"))
    write_hf_qwen2(os.path.join(DATA, "hf_qwen2"))
    copy(os.path.join(DATA, "llamacpp_style.gguf"), os.path.join(CORPUS, "gguf"), "llamacpp_style.gguf")
    copy(os.path.join(DATA, "meta_style.bin"), os.path.join(CORPUS, "llama2c"), "meta_style.bin")
    copy(os.path.join(DATA, "hf_qwen2", "model.safetensors"), os.path.join(CORPUS, "safetensors"), "qwen2.safetensors")


if __name__ == "__main__":
    main()
