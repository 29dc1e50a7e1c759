#!/usr/bin/env python3
"""Stacking variants beyond the ensemble pricer's linear stack, measured on saved predictions.

Fits every variant on the held-out split (the ensemble's fit items) and scores it on val, for two
fine-tuned models A and B (docs/results.md, rows 40-43). Pure Python; the predictions come from
pricer itself (RECIPE is a `make quality` out directory, e.g. quality-out):

  for split in test val; do
    pricer eval --data RECIPE/data --split $split --pricers tfidf,xgboost --out DIR/eval-$split
    for m in finetune finetune-b; do
      pricer predict --model RECIPE/$m/last/model.gguf --base-dtype f32 --jsonl RECIPE/data/$split.jsonl \\
        --json --top 1000 --coverage 0.5 > DIR/$m-$split.jsonl
    done
  done
  tools/analysis/stacking_variants.py DIR [RECIPE]

With RECIPE it also prints how the stack of TF-IDF and the models errs by the weight the items
state (fifths of the held-out and val items that state one; docs/results.md, before row 45).
"""
import json
import math
import re
import sys

# The weight as pricer's features read it (src/eval/features.cpp), in pounds.
WEIGHT = re.compile(r"weight:\s{0,8}([0-9]{1,9}(?:\.[0-9]{1,6})?)\s{0,8}(pounds?|lbs?|ounces?|oz|kilograms?|kg|grams?|g)\b",
                    re.IGNORECASE)


def log_price(p):
    return math.log(max(p, 0.01))


def mae(pred, y):
    return sum(abs(a - b) for a, b in zip(pred, y)) / len(y)


def compass(f, theta, step=0.05):
    """Coordinate search minimising f from theta; the step halves when no move helps."""
    best = f(theta)
    while step > 1e-4:
        improved = False
        for c in range(len(theta)):
            for d in (step, -step):
                t = list(theta)
                t[c] += d
                m = f(t)
                if m < best:
                    best, theta, improved = m, t, True
        if not improved:
            step /= 2
    return theta, best


def load_model(path):
    """Per item: the readouts and the distribution over number tokens, {value: probability}."""
    out = []
    for line in open(path):
        j = json.loads(line)
        dist = {}
        for t in j["top"]:
            tok = t["token"].strip()
            if tok.isdigit():
                dist[int(tok)] = dist.get(int(tok), 0.0) + t["prob"]
        total = sum(dist.values())
        out.append({"median": j["median"], "expected": j["expected"], "lo": j["interval"]["lo"],
                    "hi": j["interval"]["hi"], "dist": {v: p / total for v, p in dist.items()}})
    return out


def load_split(d, split):
    ev = json.load(open(f"{d}/eval-{split}/results.json"))["items"]
    a, b = load_model(f"{d}/finetune-{split}.jsonl"), load_model(f"{d}/finetune-b-{split}.jsonl")
    assert len(a) == len(b) == len(ev), f"{d}: {split} files disagree on the number of items"
    l1 = math.log1p
    s = {"y": [r["price"] for r in ev]}
    for name in ("tfidf", "xgboost"):
        s[name] = [r["predictions"][name] for r in ev]
    # The two models priced as one, as eval does: the mean of log(1 + price).
    s["median"] = [math.expm1((l1(p["median"]) + l1(q["median"])) / 2) for p, q in zip(a, b)]
    s["expected"] = [math.expm1((l1(p["expected"]) + l1(q["expected"])) / 2) for p, q in zip(a, b)]
    s["width"] = [(l1(p["hi"]) - l1(p["lo"]) + l1(q["hi"]) - l1(q["lo"])) / 2 for p, q in zip(a, b)]
    s["disagreement"] = [abs(l1(p["median"]) - l1(q["median"])) for p, q in zip(a, b)]
    s["dist"] = []
    for p, q in zip(a, b):
        m = {}
        for dist in (p["dist"], q["dist"]):
            for v, pr in dist.items():
                m[v] = m.get(v, 0.0) + pr / 2
        s["dist"].append(m)
    return s


def columns(s, names):
    return [[log_price(p) for p in s[n]] for n in names]


def linear(x, t):
    """exp(b + sum_j w_j x_j): the ensemble pricer's form."""
    return [math.exp(t[0] + sum(t[1 + j] * x[j][i] for j in range(len(x)))) for i in range(len(x[0]))]


def gated(x, u, t):
    """Each weight (and the intercept) linear in a per-item signal u."""
    out = []
    for i in range(len(u)):
        z = t[0] + t[1] * u[i]
        for j in range(len(x)):
            z += (t[2 + 2 * j] + t[3 + 2 * j] * u[i]) * x[j][i]
        out.append(math.exp(z))
    return out


def weighted_median(pairs):
    pairs = sorted(pairs)
    half, c = sum(p for _, p in pairs) / 2, 0.0
    for v, p in pairs:
        c += p
        if c >= half:
            return v
    return pairs[-1][0]


def fused(dist, z, sigma, power):
    """Median of the model's distribution (to a power) times a log-normal around z."""
    pairs = [(v, p ** power * math.exp(-0.5 * ((math.log(max(v, 0.5)) - z) / sigma) ** 2)) for v, p in dist.items()]
    return weighted_median(pairs) if sum(q for _, q in pairs) > 0 else math.exp(z)


def fit_linear(s, names):
    x = columns(s, names)
    return compass(lambda t: mae(linear(x, t), s["y"]), [0.0] + [1.0 / len(names)] * len(names))[0]


def pounds(text):
    m = WEIGHT.search(text)
    if not m:
        return None
    v, u = float(m.group(1)), m.group(2)[0].lower()
    return v if u in "pl" else v / 16 if u == "o" else v * 2.2046 if u == "k" else v / 453.6


def by_weight(d, recipe):
    """Mean log error of the even stack of TF-IDF and the models, by fifths of stated weight."""
    rows = []
    for split in ("test", "val"):
        s = load_split(d, split)
        texts = [json.loads(line)["prompt"] for line in open(f"{recipe}/data/{split}.jsonl")]
        assert len(texts) == len(s["y"]), f"{recipe}: {split} has another number of items"
        for i, text in enumerate(texts):
            w = pounds(text)
            stack = (math.log1p(s["tfidf"][i]) + math.log1p(s["median"][i])) / 2
            if w is not None and w > 0:
                rows.append((w, math.log1p(s["y"][i]) - stack))
    rows.sort()
    n = len(rows)
    for f in range(5):
        part = rows[f * n // 5:(f + 1) * n // 5]
        print(f"stated weight {part[0][0]:.2f}-{part[-1][0]:.2f} lb ({len(part)} items): "
              f"mean log error {sum(r for _, r in part) / len(part):+.3f}")


def main(d, recipe=None):
    if recipe:
        by_weight(d, recipe)
    h, v = load_split(d, "test"), load_split(d, "val")
    four = ["tfidf", "xgboost", "median", "expected"]
    for names in (four, ["tfidf", "median"]):
        t = fit_linear(h, names)
        print(f"linear stack of {'+'.join(names)}: val MAE {mae(linear(columns(v, names), t), v['y']):.2f}")
    for signal in ("width", "disagreement"):
        centre = sum(h[signal]) / len(h[signal])
        uh, uv = [u - centre for u in h[signal]], [u - centre for u in v[signal]]
        start = fit_linear(h, four)
        theta = [start[0], 0.0] + [w for j in range(len(four)) for w in (start[1 + j], 0.0)]
        xh = columns(h, four)
        t, _ = compass(lambda t: mae(gated(xh, uh, t), h["y"]), theta)
        print(f"weights linear in the models' {signal}: val MAE {mae(gated(columns(v, four), uv, t), v['y']):.2f}")
    classic = ["tfidf", "xgboost"]
    tc = fit_linear(h, classic)
    zh = [math.log(p) for p in linear(columns(h, classic), tc)]
    zv = [math.log(p) for p in linear(columns(v, classic), tc)]
    grid = [(power, sigma) for power in (0.25, 0.5, 0.75, 1.0, 1.5) for sigma in (0.3, 0.45, 0.6, 0.8, 1.0, 1.3)]
    fit = lambda ps: mae([fused(h["dist"][i], zh[i], ps[1], ps[0]) for i in range(len(zh))], h["y"])
    power, sigma = min(grid, key=fit)
    score = mae([fused(v["dist"][i], zv[i], sigma, power) for i in range(len(zv))], v["y"])
    print(f"distribution x log-normal around the classic stack (power {power}, sigma {sigma}): val MAE {score:.2f}")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])
