#!/usr/bin/python3
"""Reference LoRA training step in PyTorch, for the ratio quoted in docs/benchmarks.md.

Runs the same step as `pricer bench train`: a Llama-architecture model with random frozen weights
(bf16 or fp32), LoRA on all 7 projections, a batch of sequences with the loss on the last tokens
of each, forward + backward + AdamW on the adapters. The output head is applied only at the loss
positions, as pricer does. Prints one JSON line like pricer's benchmark.

  python3 tools/bench/torch_train_step.py --dtype bf16 --threads 2
(Debian: apt-get install python3-torch)
"""
import argparse
import json
import math
import resource
import time

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class LoraLinear(torch.nn.Module):
    def __init__(self, out_f, in_f, r, alpha, dtype):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out_f, in_f, dtype=dtype) * 0.02, requires_grad=False)
        self.A = torch.nn.Parameter(torch.empty(r, in_f).uniform_(-1 / math.sqrt(in_f), 1 / math.sqrt(in_f)))
        self.B = torch.nn.Parameter(torch.zeros(out_f, r))
        self.scale = alpha / r

    def forward(self, x):
        y = x @ self.weight.t()
        return y + ((x.float() @ self.A.t()) @ self.B.t() * self.scale).to(y.dtype)


class Layer(torch.nn.Module):
    def __init__(self, a, dtype):
        super().__init__()
        d, hd = a.dim, a.dim // a.heads
        self.a = a
        self.q = LoraLinear(a.heads * hd, d, a.rank, 2 * a.rank, dtype)
        self.k = LoraLinear(a.kv_heads * hd, d, a.rank, 2 * a.rank, dtype)
        self.v = LoraLinear(a.kv_heads * hd, d, a.rank, 2 * a.rank, dtype)
        self.o = LoraLinear(d, a.heads * hd, a.rank, 2 * a.rank, dtype)
        self.gate = LoraLinear(a.ffn, d, a.rank, 2 * a.rank, dtype)
        self.up = LoraLinear(a.ffn, d, a.rank, 2 * a.rank, dtype)
        self.down = LoraLinear(d, a.ffn, a.rank, 2 * a.rank, dtype)
        self.n1 = torch.ones(d, dtype=dtype)
        self.n2 = torch.ones(d, dtype=dtype)

    def forward(self, x, cos, sin, mask):
        a = self.a
        B, T, d = x.shape
        hd = d // a.heads
        h = rms_norm(x, self.n1, 1e-5)
        q = self.q(h).view(B, T, a.heads, hd).transpose(1, 2)
        k = self.k(h).view(B, T, a.kv_heads, hd).transpose(1, 2)
        v = self.v(h).view(B, T, a.kv_heads, hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = a.heads // a.kv_heads
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        p = torch.softmax(s.float(), dim=-1).to(q.dtype)
        o = (p @ v).transpose(1, 2).reshape(B, T, d)
        x = x + self.o(o)
        h = rms_norm(x, self.n2, 1e-5)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=8)
    ap.add_argument("--ffn", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--loss-tokens", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    emb = torch.randn(a.vocab, a.dim, dtype=dtype) * 0.02
    layers = torch.nn.ModuleList([Layer(a, dtype) for _ in range(a.layers)])
    norm = torch.ones(a.dim, dtype=dtype)
    hd = a.dim // a.heads
    inv = 1.0 / (500000.0 ** (torch.arange(0, hd, 2).float() / hd))
    ang = torch.outer(torch.arange(a.seq).float(), inv)
    ang = torch.cat((ang, ang), dim=-1)
    cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
    mask = torch.full((a.seq, a.seq), float("-inf")).triu(1).to(dtype)
    params = [p for p in layers.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.001)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    times, cpu_times = [], []
    for step in range(a.warmup + a.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        x = emb[ids[:, :-1]]
        for layer in layers:
            x = layer(x, cos, sin, mask)
        h = rms_norm(x[:, -a.loss_tokens:], norm, 1e-5)
        logits = (h @ emb.t()).float()
        loss = F.cross_entropy(logits.reshape(-1, a.vocab), ids[:, -a.loss_tokens:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    sec = sorted(times)[len(times) // 2]
    cpu_sec = sorted(cpu_times)[len(cpu_times) // 2]
    tokens = a.batch * a.seq
    print(json.dumps({
        "impl": "pytorch-" + a.dtype, "torch": torch.__version__, "threads": a.threads,
        "tokens_per_s": tokens / sec, "step_s": sec,
        "cpu_s": cpu_sec, "tokens_per_cpu_s": tokens / cpu_sec,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
