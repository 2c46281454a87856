"""Fit the prompt-difficulty prior that `baimo/auto` ships with (baimo/routing/data/auto_prior.npz).

Data the project may publish: RouteLLM's released outcomes (Apache-2.0; MMLU and GSM8K train splits, as
`baimo router convert` makes them: Mixtral-8x7B and GPT-4) and Baimo's own five-model GSM8K runs
(`bench/outcomes/gsm8k5.train.jsonl`: SmolLM2-135M, Qwen2.5-Coder-0.5B/1.5B run here, plus Mixtral and GPT-4).
A benchmark's total weight grows with the square root of its size, so GSM8K's
word problems count next to MMLU's 7,082 questions. The L2 penalty is chosen by 5-fold cross-validation over prompts
(held-out log-loss of the fitted model), then the prior is refitted on everything.

    .venv/bin/python bench/make_auto_prior.py [--out baimo/routing/data/auto_prior.npz]

Prints the CV table and the fitted abilities (sigmoid(theta) = share of average prompts answered well).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baimo.routing import converters, learned  # noqa: E402
from baimo.routing.difficulty import DifficultyModel, fit, sigmoid  # noqa: E402

L2_GRID = (300.0, 1000.0, 3000.0, 10000.0, 30000.0)
CATALOGUE_IDS = {  # ids in gsm8k5 -> catalogue names, so abilities follow the model whatever its configured id
    "local/smollm2-135m": "catalogue:smollm2-135m-instruct-q4_1",
    "local/qwen2.5-coder-0.5b": "catalogue:qwen2.5-coder-0.5b-instruct-q4_k_m",
    "local/qwen2.5-coder-1.5b": "catalogue:qwen2.5-coder-1.5b-instruct-q4_k_m",
}


def load_rows(shared: Path) -> dict[str, list[dict]]:
    out = {}
    for name in ("mmlu", "gsm8k"):  # MT-Bench's 29 judged train prompts are too few to weigh in
        train, _ = converters.convert(name, shared / "data" / "routing" / "routellm")
        out[f"routellm-{name}"] = train
    out["baimo-gsm8k5"] = [json.loads(line) for line in (ROOT / "bench/outcomes/gsm8k5.train.jsonl").open()]
    return out


def logloss(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "baimo/routing/data/auto_prior.npz")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".baimo" / "cache" / "embeddings")
    args = ap.parse_args()

    sets = load_rows(args.shared)
    prompts, source, score_maps = [], [], []
    for name, rows in sets.items():
        for r in rows:
            prompts.append(r["prompt"])
            source.append(name)
            score_maps.append(r["scores"])
    models = sorted({m for s in score_maps for m in s})
    Y = np.full((len(prompts), len(models)), np.nan)
    for i, s in enumerate(score_maps):
        for m, v in s.items():
            Y[i, models.index(m)] = v
    src = np.array(source)
    weight = np.zeros(len(prompts))
    for name in sets:  # a set's total weight grows with the square root of its size
        weight[src == name] = 1 / np.sqrt(np.sum(src == name))
    weight *= len(prompts) / weight.sum()
    print(f"{len(prompts)} prompts, models {models}; rows per set "
          + ", ".join(f"{k} {len(v)}" for k, v in sets.items()), flush=True)

    t0 = time.time()
    embedder = learned.make_embedder("use")
    tail = learned.default_tail_chars("use")
    E = learned.embed_prompts(prompts, embedder, tail_chars=tail, cache_dir=args.cache)
    print(f"embedded in {time.time() - t0:.0f} s", flush=True)
    features = list(learned.DEFAULT_FEATURES)
    F = learned.prompt_features(prompts, features, tail)
    X = np.hstack([E, F])
    mu, sd = learned.standardiser(X, len(features))
    Xs = (X - mu) / sd

    rng = np.random.default_rng(0)
    fold = rng.integers(0, 5, len(prompts))
    print("\n| L2 | held-out log-loss (5-fold, weighted) | constant-difficulty baseline |")
    print("|---|---|---|")
    best = None
    for l2 in L2_GRID:
        losses, base = [], []
        for k in range(5):
            tr, te = fold != k, fold == k
            w, c, theta = fit(Xs[tr], Y[tr], l2=l2, row_weight=weight[tr])
            b = Xs[te] @ w + c
            rows, cols = np.nonzero(~np.isnan(Y[te]))
            p = sigmoid(theta[cols] - b[rows])
            y = Y[te][rows, cols]
            losses.append(logloss(p, y, weight[te][rows]))
            _, _, theta0 = fit(np.zeros((int(tr.sum()), 1)), Y[tr], l2=1.0, row_weight=weight[tr])
            base.append(logloss(sigmoid(theta0[cols]), y, weight[te][rows]))
        loss = float(np.mean(losses))
        print(f"| {l2:g} | {loss:.4f} | {np.mean(base):.4f} |", flush=True)
        if best is None or loss < best[1]:
            best = (l2, loss, float(np.mean(base)))
    assert best is not None
    l2, loss, base_loss = best
    w, c, theta = fit(Xs, Y, l2=l2, row_weight=weight)
    abilities = {CATALOGUE_IDS.get(m, m): float(t) for m, t in zip(models, theta, strict=True)}
    print(f"\nchosen L2 {l2:g}: held-out log-loss {loss:.4f} (constant difficulty {base_loss:.4f})")
    print("\n| model | theta | sigmoid(theta) |\n|---|---|---|")
    for m, t in sorted(abilities.items(), key=lambda kv: kv[1]):
        print(f"| {m} | {t:+.2f} | {sigmoid(t):.3f} |")
    b = Xs @ w + c
    print("\ndifficulty per set (mean, sd): " + ", ".join(
        f"{name} {b[src == name].mean():+.2f}/{b[src == name].std():.2f}" for name in sets))
    model = DifficultyModel(
        mu=mu.astype(np.float32), sd=sd.astype(np.float32), w=w.astype(np.float32), c=c, features=features,
        tail_chars=tail, embedder="use", abilities=abilities,
        meta={"made_by": "bench/make_auto_prior.py", "l2": l2, "cv_logloss": round(loss, 4),
              "cv_logloss_constant": round(base_loss, 4), "embedder_id": learned.embedder_id("use"),
              "sources": {k: len(v) for k, v in sets.items()},
              "licences": {"routellm": "Apache-2.0 (lm-sys/RouteLLM, commit 0b64fdaf)",
                           "baimo-gsm8k5": "this project (bench/outcomes, see docs/outcomes.md)"}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.save(args.out)
    print(f"\nwrote {args.out} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
