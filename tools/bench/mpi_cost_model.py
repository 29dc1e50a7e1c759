#!/usr/bin/env python3
"""Cost model of data-parallel training under MPI (docs/benchmarks.md): per optimizer step, the
gradient bytes each rank exchanges against the step's compute, for Llama 3.2 1B and 3B with LoRA
on all 7 projections, a fixed global batch split over N ranks.

pricer sums gradients with an all-to-all of slices then an all-gather (each rank adds up one
slice in rank order): each rank sends and receives 2 (N - 1) / N times the gradient bytes, and the
exchange does not overlap compute. Compute rates are the README's (tokens per CPU-second, bf16
compute: 1.6x the f32 figures of 20 for 1B and 7 for 3B)."""

SHAPES = {  # dim, layers, ffn, kv width (kv heads x head dim), training tokens per CPU-second
    "1B": (2048, 16, 8192, 512, 32.0),
    "3B": (3072, 28, 8192, 1024, 11.2),
}
BATCH_ITEMS, TOKENS_PER_ITEM, CORES_PER_RANK = 256, 125, 32
LINKS = {"10 Gb/s": 1.25e9, "100 Gb/s": 12.5e9}


def lora_params(dim, layers, ffn, kv, rank):
    # r x (in + out) per adapted projection: q, o (dim -> dim), k, v (dim -> kv), gate, up, down.
    return layers * rank * (2 * (dim + dim) + 2 * (dim + kv) + 3 * (dim + ffn))


def main():
    print(f"global batch {BATCH_ITEMS} items x {TOKENS_PER_ITEM} tokens, {CORES_PER_RANK} cores per rank; "
          "communication as a share of compute per step:\n")
    print("| model | LoRA r | gradient MB | ranks | compute s | " + " | ".join(f"exchange s ({k})" for k in LINKS) + " |")
    print("|---|---|---|---|---|" + "---|" * len(LINKS))
    for name, (dim, layers, ffn, kv, rate) in SHAPES.items():
        for r in (32, 256):
            size = 4 * lora_params(dim, layers, ffn, kv, r)
            for n in (16, 32, 64, 128, 256):
                compute = BATCH_ITEMS * TOKENS_PER_ITEM / (rate * n * CORES_PER_RANK)
                cells = []
                for bw in LINKS.values():
                    t = 2 * (n - 1) / n * size / bw
                    cells.append(f"{t:.3f} ({100 * t / compute:.0f}%)")
                print(f"| {name} | {r} | {size / 1e6:.0f} | {n} | {compute:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
