#!/usr/bin/env python3
"""A stacker fitted on every training item, priced out of fold, against the held-out linear stack.

The ensemble pricer fits its weights on the 918 held-out items because the fine-tuned models
learned from the training split. With K fine-tunings that each leave a fold out
(`train --cross-fit-folds K --cross-fit-fold k`), every training item has a price from a model
that never saw it, and a stacker can be fitted on all 10,552: enough rows for boosted trees over
the members' log prices, the spec table's weight and volume, the prompt's length and the category.
Pure Python with numpy (the trees are a small histogram gradient-boosting of squared log error).

  tools/analysis/cross_fit_stack.py split RECIPE DIR K    # DIR/split{k}/{train,test}.jsonl by the train hash
  for k in 0..K-1:
    pricer -t 1 train ... --data RECIPE/data --cross-fit-folds K --cross-fit-fold k --out DIR/model{k}
    pricer eval --data DIR/split{k} --split test --pricers tfidf,xgboost,comparables --out DIR/eval-split{k}
    pricer predict --model DIR/model{k}/last/model.gguf --base-dtype f32 --jsonl DIR/split{k}/test.jsonl \\
      --json --coverage 0.5 > DIR/oof{k}.jsonl
  for s in val test:
    pricer eval --data RECIPE/data --split $s --pricers tfidf,xgboost,comparables --out DIR/eval-$s
    for m in finetune finetune-b:
      pricer predict --model RECIPE/$m/last/model.gguf --base-dtype f32 --jsonl RECIPE/data/$s.jsonl \\
        --json --coverage 0.5 > DIR/$m-$s.jsonl
  tools/analysis/cross_fit_stack.py score RECIPE DIR K

RECIPE is a `make quality` out directory (quality-out). Val is scored; the held-out split (test)
is scored too, as a second look.
"""
import json
import math
import os
import re
import sys

import numpy as np

MASK = (1 << 64) - 1


def hash64(s):
    """data::hash64 (src/data/text.cpp): FNV-1a 64 of the UTF-8 bytes, then splitmix64's avalanche."""
    b = s.encode()
    h = 0xCBF29CE484222325
    for c in b:
        h = ((h ^ c) * 0x100000001B3) & MASK
    x = ((h ^ len(b)) + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def lines(path):
    return [json.loads(line) for line in open(path)]


def split(recipe, out, k):
    rows = open(os.path.join(recipe, "data", "train.jsonl")).read().splitlines()
    folds = [hash64(json.loads(r)["prompt"]) % k for r in rows]
    for f in range(k):
        d = os.path.join(out, f"split{f}")
        os.makedirs(d, exist_ok=True)
        for name, keep in (("train", lambda g: g != f), ("test", lambda g: g == f)):
            with open(os.path.join(d, name + ".jsonl"), "w") as w:
                w.writelines(r + "\n" for r, g in zip(rows, folds) if keep(g))
        print(f"fold {f}: {folds.count(f)} items")


WEIGHT = re.compile(r"weight:\s{0,8}([0-9]{1,9}(?:\.[0-9]{1,6})?)\s{0,8}(pounds?|lbs?|ounces?|oz|kilograms?|kg|grams?|g)\b",
                    re.IGNORECASE)
POUNDS = {"p": 1.0, "l": 1.0, "o": 1 / 16, "k": 2.20462, "g": 0.00220462}
DIMENSIONS = re.compile(r"dimensions:\s{0,8}([0-9.]{1,9})\s{0,3}x\s{0,3}([0-9.]{1,9})\s{0,3}x\s{0,3}([0-9.]{1,9})\s{0,3}"
                        r"(inches|cm|centimeters|mm)", re.IGNORECASE)
CATEGORIES = ["Appliances", "Software", "Unknown", "Musical Instruments", "Tools and Home Improvement", "Automotive",
              "Video Games", "Handmade Products", "Toys and Games", "Electronics", "Office Products",
              "Health and Personal Care"]


def item_columns(it):
    """What the trees read beside the members: log weight (lb), log volume (in^3), lengths, category."""
    m = WEIGHT.search(it["prompt"])
    unit = m.group(2).lower() if m else ""
    weight = math.log1p(float(m.group(1)) * POUNDS[unit[0]]) if m else -1.0
    volume = -1.0
    d = DIMENSIONS.search(it["prompt"])
    if d:
        try:
            v = float(d.group(1)) * float(d.group(2)) * float(d.group(3))
            u = d.group(4).lower()
            volume = math.log1p(v * (1 if u == "inches" else 1 / 16.387 if u.startswith("c") else 1 / 16387.0))
        except ValueError:
            pass
    return [weight, volume, len(it["prompt"]), len(it.get("title", ""))] + [float(it["category"] == c) for c in CATEGORIES]


def columns(items, classic, models):
    """Per item: log prices of TF-IDF, XGBoost, comparables, the models' median and expected value
    (log-averaged over `models`), their interval's width, then item_columns."""
    p = {k: np.log1p([e["predictions"][k] for e in classic]) for k in ("tfidf", "xgboost", "comparables")}
    median = np.mean([np.log1p([r["median"] for r in m]) for m in models], 0)
    expected = np.mean([np.log1p([r["expected"] for r in m]) for m in models], 0)
    width = np.mean([[math.log1p(r["interval"]["hi"]) - math.log1p(r["interval"]["lo"]) for r in m] for m in models], 0)
    members = np.stack([p["tfidf"], p["xgboost"], p["comparables"], median, expected, width], 1)
    return np.c_[members, np.array([item_columns(it) for it in items])], np.array([it["price"] for it in items])


def tree(x, g, cuts, depth, min_leaf=20, lam=1.0):
    """A regression tree on the gradient g, splits at the cuts (quantiles) of each column."""
    def grow(idx, level):
        n, total = len(idx), g[idx].sum()
        if level == depth or n < 2 * min_leaf:
            return total / (n + lam)
        best = None
        for j in range(x.shape[1]):
            col = x[idx, j]
            for t in cuts[j]:
                left = col <= t
                nl = int(left.sum())
                if nl < min_leaf or n - nl < min_leaf:
                    continue
                gl = g[idx][left].sum()
                gain = gl * gl / (nl + lam) + (total - gl) ** 2 / (n - nl + lam)
                if best is None or gain > best[0]:
                    best = (gain, j, t)
        if best is None:
            return total / (n + lam)
        _, j, t = best
        left = x[idx, j] <= t
        return (j, t, grow(idx[left], level + 1), grow(idx[~left], level + 1))
    return grow(np.arange(len(g)), 0)


def tree_predict(node, x):
    out = np.zeros(len(x))
    stack = [(node, np.arange(len(x)))]
    while stack:
        n, idx = stack.pop()
        if not isinstance(n, tuple):
            out[idx] = n
            continue
        left = x[idx, n[0]] <= n[1]
        stack += [(n[2], idx[left]), (n[3], idx[~left])]
    return out


def boosted_trees(x, y, rounds, lr, depth):
    cuts = [np.unique(np.quantile(x[:, j], np.linspace(0.02, 0.98, 32))) for j in range(x.shape[1])]
    base = y.mean()
    fit = np.full(len(y), base)
    trees = []
    for _ in range(rounds):
        t = tree(x, y - fit, cuts, depth)
        fit += lr * tree_predict(t, x)
        trees.append(t)
    return lambda z: base + lr * sum(tree_predict(t, z) for t in trees)


def linear(x, y):
    w = np.linalg.lstsq(np.c_[x, np.ones(len(x))], y, rcond=None)[0]
    return lambda z: np.c_[z, np.ones(len(z))] @ w


def mae(y, log_pred):
    return float(np.mean(np.abs(y - np.expm1(log_pred))))


def score(recipe, out, k):
    fit_items, fit_classic, fit_models = [], [], []
    for f in range(k):
        fit_items += lines(os.path.join(out, f"split{f}", "test.jsonl"))
        fit_classic += json.load(open(os.path.join(out, f"eval-split{f}", "results.json")))["items"]
        fit_models += lines(os.path.join(out, f"oof{f}.jsonl"))
    x_fit, y_fit = columns(fit_items, fit_classic, [fit_models])
    scored = {}
    for s in ("val", "test"):
        items = lines(os.path.join(recipe, "data", s + ".jsonl"))
        classic = json.load(open(os.path.join(out, f"eval-{s}", "results.json")))["items"]
        models = [lines(os.path.join(out, f"{m}-{s}.jsonl")) for m in ("finetune", "finetune-b")]
        scored[s] = columns(items, classic, models)
    print(f"{len(y_fit)} training items priced out of fold; MAE of each member alone (val / held-out):")
    for j, name in enumerate(("tfidf", "xgboost", "comparables", "models' median")):
        print(f"  {name}: " + " / ".join(f"{mae(y, x[:, j]):.2f}" for x, y in scored.values()))
    members, with_spec, everything = list(range(5)), list(range(8)), list(range(x_fit.shape[1]))
    x_ho, y_ho = scored["test"]
    variants = [
        ("linear, members, fitted on the held-out items", members, lambda c: linear(x_ho[:, c], np.log1p(y_ho))),
        ("linear, members, fitted out of fold", members, lambda c: linear(x_fit[:, c], np.log1p(y_fit))),
        ("trees (depth 3, 300 rounds), members + width, weight, volume", with_spec,
         lambda c: boosted_trees(x_fit[:, c], np.log1p(y_fit), 300, 0.05, 3)),
        ("trees (depth 3, 300 rounds), + lengths and category", everything,
         lambda c: boosted_trees(x_fit[:, c], np.log1p(y_fit), 300, 0.05, 3)),
        ("trees (depth 4, 600 rounds), + lengths and category", everything,
         lambda c: boosted_trees(x_fit[:, c], np.log1p(y_fit), 600, 0.03, 4)),
    ]
    for name, cols, make in variants:
        f = make(cols)
        val = mae(scored["val"][1], f(scored["val"][0][:, cols]))
        held = "(fitted there)" if "held-out" in name else f"{mae(y_ho, f(x_ho[:, cols])):.2f}"
        print(f"{name}: val {val:.2f}, held-out {held}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in ("split", "score"):
        sys.exit(__doc__)
    (split if sys.argv[1] == "split" else score)(sys.argv[2], sys.argv[3], int(sys.argv[4]))
