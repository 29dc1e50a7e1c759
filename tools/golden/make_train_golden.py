#!/usr/bin/python3
"""Writes the training-step golden in tests/data/golden/ from an independent PyTorch (float32)
implementation: the model is make_model_golden.py's LlamaForCausalLM + PEFT LoRA forward, the
optimisation is torch's own (clip_grad_norm_, torch.optim.SGD / AdamW, a LambdaLR schedule as
transformers' get_{constant,linear}_schedule_with_warmup).

Needs only torch (Debian python3-torch); run from anywhere:
    /usr/bin/python3 tools/golden/make_train_golden.py

Outputs:
  train_step.json / train_step.bin: config, examples, base weights (Hugging Face names), and for
      each run ("sgd": one step; "adamw": two steps on a linear schedule) its settings, the loss
      and gradient norm of each step and the adapter after the run ("<run>.<module>.lora_A.weight").
  train_step_adapter/: the initial adapter as PEFT saves it (adapter_model.safetensors written
      here by hand from the safetensors spec, adapter_config.json), with non-zero lora_B so every
      gradient is informative.
"""
import json
import math
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_model_golden as mg  # noqa: E402  (the shared forward pass)

OUT_DIR = mg.OUT_DIR
NAME = "train_step"

CFG = {
    "vocab_size": 48, "dim": 16, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "head_dim": 8,
    "ffn_dim": 32, "rms_eps": 1e-5, "rope_theta": 10000.0, "tied_embeddings": True, "qkv_bias": False,
    "rope_scaling": None,
}
LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.0, "rslora": False, "targets": mg.PROJ}
RUNS = {
    # max_grad_norm below the initial gradient norm, so clipping is part of every step.
    "sgd": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.01, "max_grad_norm": 0.5,
            "schedule": "constant", "steps": 1},
    "adamw": {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.01, "max_grad_norm": 0.3,
              "schedule": "linear", "steps": 2},
}


def shapes(cfg):
    D, F = cfg["dim"], cfg["ffn_dim"]
    qo, kvo = cfg["n_heads"] * cfg["head_dim"], cfg["n_kv_heads"] * cfg["head_dim"]
    return {"q_proj": (qo, D), "k_proj": (kvo, D), "v_proj": (kvo, D), "o_proj": (D, qo),
            "gate_proj": (F, D), "up_proj": (F, D), "down_proj": (D, F)}


def batch_loss(W, loras, examples):
    """Mean cross-entropy over every completion position of the whole batch."""
    logits, targets = [], []
    for seq, prompt_len in examples:
        out = mg.forward_sequence(CFG, W, loras, torch.tensor(seq))
        rows = [t for t in range(len(seq) - 1) if t + 1 >= prompt_len]
        logits.append(out[rows])
        targets += [seq[t + 1] for t in rows]
    return torch.nn.functional.cross_entropy(torch.cat(logits), torch.tensor(targets))


def schedule(kind, total):
    # transformers' schedules with zero warmup steps.
    if kind == "constant":
        return lambda step: 1.0
    return lambda step: max(0.0, float(total - step) / float(max(1, total)))


def run(name, spec, W, init, scale, examples):
    loras = {m: mg.Lora(A.clone().requires_grad_(True), B.clone().requires_grad_(True), scale)
             for m, (A, B) in init.items()}
    params = [t for lo in loras.values() for t in (lo.A, lo.B)]
    if spec["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=spec["lr"], weight_decay=spec["weight_decay"])
    else:
        opt = torch.optim.AdamW(params, lr=spec["lr"], betas=(0.9, 0.999), eps=1e-8,
                                weight_decay=spec["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule(spec["schedule"], spec["steps"]))
    losses, norms = [], []
    for _ in range(spec["steps"]):
        opt.zero_grad()
        loss = batch_loss(W, loras, examples)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, spec["max_grad_norm"]).item()
        assert norm > spec["max_grad_norm"], f"{name}: gradient norm {norm} does not exercise clipping"
        opt.step()
        sched.step()
        losses.append(loss.item())
        norms.append(norm)
    tensors = []
    for m, lo in loras.items():
        tensors += [(f"{name}.{m}.lora_A.weight", lo.A.detach()), (f"{name}.{m}.lora_B.weight", lo.B.detach())]
    return dict(spec, losses=losses, grad_norms=norms), tensors


def write_safetensors(path, tensors):
    """The safetensors layout: u64 header size, JSON header, then the raw little-endian data."""
    header, blob = {}, bytearray()
    for k, t in tensors:
        t = t.detach().contiguous().float()
        header[k] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [len(blob), len(blob) + 4 * t.numel()]}
        blob += struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + blob)


def main():
    g = torch.Generator().manual_seed(2024)
    sh = shapes(CFG)

    def randn(*shape, std):
        return torch.randn(*shape, generator=g) * std

    W = {"model.embed_tokens.weight": randn(CFG["vocab_size"], CFG["dim"], std=0.5)}
    for l in range(CFG["n_layers"]):
        W[f"model.layers.{l}.input_layernorm.weight"] = 1.0 + randn(CFG["dim"], std=0.2)
        W[f"model.layers.{l}.post_attention_layernorm.weight"] = 1.0 + randn(CFG["dim"], std=0.2)
        for p in mg.PROJ:
            W[mg.module(l, p) + ".weight"] = randn(*sh[p], std=1.0 / math.sqrt(sh[p][1]))
    W["model.norm.weight"] = 1.0 + randn(CFG["dim"], std=0.2)

    r, alpha = LORA["rank"], LORA["alpha"]
    scale = alpha / r
    init = {}
    for l in range(CFG["n_layers"]):
        for p in LORA["targets"]:
            out_f, in_f = sh[p]
            A = (torch.rand(r, in_f, generator=g) * 2 - 1) / math.sqrt(in_f)
            init[mg.module(l, p)] = (A, randn(out_f, r, std=0.2))

    def seq(n):
        return torch.randint(0, CFG["vocab_size"], (n,), generator=g).tolist()

    examples = [(seq(9), 4), (seq(13), 7), (seq(6), 2)]  # different lengths: accumulation must weigh by tokens

    adapter_dir = os.path.join(OUT_DIR, NAME + "_adapter")
    os.makedirs(adapter_dir, exist_ok=True)
    write_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"),
                      [(f"base_model.model.{m}.lora_{ab}.weight", t)
                       for m, (A, B) in init.items() for ab, t in (("A", A), ("B", B))])
    with open(os.path.join(adapter_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "golden-tiny-llama",
                   "r": r, "lora_alpha": alpha, "lora_dropout": LORA["dropout"], "use_rslora": False,
                   "target_modules": LORA["targets"], "bias": "none", "fan_in_fan_out": False,
                   "inference_mode": False}, f, indent=2)

    tensors = list(W.items())
    runs = {}
    for name, spec in RUNS.items():
        runs[name], t = run(name, spec, W, init, scale, examples)
        tensors += t

    table, blob = {}, bytearray()
    for k, t in tensors:
        t = t.detach().contiguous().float()
        table[k] = {"dtype": "f32", "shape": list(t.shape), "offset": len(blob)}
        blob += struct.pack("<%df" % t.numel(), *t.flatten().tolist())
    manifest = {"config": CFG, "lora": dict(LORA, scale=scale),
                "examples": [{"tokens": s, "prompt_len": p} for s, p in examples],
                "runs": runs, "tensors": table}
    with open(os.path.join(OUT_DIR, NAME + ".json"), "w") as f:
        json.dump(manifest, f, indent=1)
    with open(os.path.join(OUT_DIR, NAME + ".bin"), "wb") as f:
        f.write(blob)
    for name, r_ in runs.items():
        print(f"{name}: losses {r_['losses']}, grad norms {r_['grad_norms']}")
    print(f"{NAME}: {len(blob)} bytes")


if __name__ == "__main__":
    main()
