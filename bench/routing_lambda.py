"""RouterBench: where λ lands, and how far a prompt embedding can take a router (docs/routing.md, RouterBench).

    .venv/bin/python bench/routing_lambda.py [--fold-seeds 0 1 2 3]     # ~1 min on 2 cores, embeddings cached

Three measurements on ../shared/data/routing/routerbench/train.jsonl (evaluation only, never copied into the repo):

1. λ calibration, on the kNN part of the router alone (k 200, τ 0.1, kNN costs with k 10: the fits are cheap, so
   several fold seeds fit in a minute): 5-fold CV; inside each training part, λ is picked for 95 % of the best
   model's quality from held-out predictions made 5-fold / 10-fold out-of-fold or leave-one-out, over 120 or 400
   λ values; then deployed on the held-out fold. Pooled quality and cost as fractions of GPT-4's.
2. The task-level ceiling: a router that knows each prompt's task (the file's `task` field) and mixes models
   optimally inside each task (the upper-left convex hull of each task's models, filled greedily by quality per
   USD), with no other information about the prompt: the cost at which it reaches 95 % of GPT-4's quality.
3. Within-task signal: AUC of the leave-one-out k-nearest-neighbour mean outcome (k 1..50, neighbours from the
   same task only) for the cheap models that matter and GPT-4; 0.5 is no signal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import Settings  # noqa: E402
from baimo.routing import learned  # noqa: E402
from baimo.routing.metrics import Reference, pick, utility_curve  # noqa: E402
from baimo.routing.outcomes import load_outcomes  # noqa: E402

ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing" / "routerbench" / "train.jsonl"
REFERENCE = "gpt-4-1106-preview"
K, TAU, COST_K = 200, 0.1, 10
# (label, held-out predictions for calibration, λ values)
VARIANTS = [("5-fold OOF, 120 λ (before)", 5, 120), ("5-fold OOF, 400 λ", 5, 400), ("10-fold OOF, 400 λ", 10, 400),
            ("leave-one-out, 120 λ", 0, 120), ("leave-one-out, 400 λ (now)", 0, 400)]


def held_out(E: np.ndarray, Y: np.ndarray, C: np.ndarray, n_folds: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, costs) of every prompt from the others: n_folds-fold out-of-fold, or leave-one-out for n_folds = 0."""
    if n_folds == 0:
        return learned.predict_knn_loo(E, Y, K, TAU), learned.predict_knn_loo(E, C, COST_K)
    P, Cp = np.zeros_like(Y), np.zeros_like(C)
    for test in learned._folds(len(E), n_folds, 0):
        train = np.setdiff1d(np.arange(len(E)), test)
        P[test] = learned.predict_knn(E[train], Y[train], E[test], K, TAU)
        Cp[test] = learned.predict_knn(E[train], C[train], E[test], COST_K)
    return P, Cp


def calibration_cv(E: np.ndarray, Y: np.ndarray, C: np.ndarray, ref: int, seed: int) -> dict[str, tuple]:
    """Per variant: pooled (quality, cost) vs the reference model, and the per-fold quality range."""
    order = np.random.default_rng(seed).permutation(len(Y))
    folds = [order[f::5] for f in range(5)]
    chosen = {v[0]: np.zeros(len(Y), dtype=int) for v in VARIANTS}
    fold_q: dict[str, list[float]] = {v[0]: [] for v in VARIANTS}
    for f, te in enumerate(folds):
        tr = np.concatenate([folds[g] for g in range(5) if g != f])
        scale = float(C[tr].mean(0).max())
        P_te = learned.predict_knn(E[tr], Y[tr], E[te], K, TAU)
        C_te = learned.predict_knn(E[tr], C[tr], E[te], COST_K) / scale
        cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for label, n_folds, points in VARIANTS:
            if n_folds not in cache:
                cache[n_folds] = held_out(E[tr], Y[tr], C[tr], n_folds)
            P, Cp = cache[n_folds]
            r = Reference.of(Y[tr], C[tr])
            curve = utility_curve(P, Cp / scale, Y[tr], C[tr], r.strong, points)
            lam = pick(curve, r.strong_quality, target_quality=0.95)[0].param
            chosen[label][te] = learned.utility_choice(P_te, C_te, lam)
            rows = np.arange(len(te))
            fold_q[label].append(float(Y[te][rows, chosen[label][te]].mean() / Y[te, ref].mean()))
    rows = np.arange(len(Y))
    return {label: (float(Y[rows, ch].mean() / Y[:, ref].mean()), float(C[rows, ch].sum() / C[:, ref].sum()),
                    min(fold_q[label]), max(fold_q[label])) for label, ch in chosen.items()}


def task_ceiling(Y: np.ndarray, C: np.ndarray, tasks: np.ndarray, ref: int, frac: float = 0.95) -> float | None:
    """Cost (fraction of the reference model's) at which a task-aware, prompt-blind mix reaches frac of its quality."""
    q_total, c_total, steps = 0.0, 0.0, []
    for t in np.unique(tasks):
        i = tasks == t
        pts = sorted(zip(C[i].sum(0), Y[i].sum(0), strict=True))
        cur = pts[0]
        q_total, c_total = q_total + cur[1], c_total + cur[0]
        while True:  # walk up the task's upper-left hull: steepest quality gain per USD first
            better = [((q - cur[1]) / (c - cur[0]), (c, q)) for c, q in pts if c > cur[0] and q > cur[1]]
            if not better:
                break
            slope, nxt = max(better)
            steps.append((slope, nxt[0] - cur[0], nxt[1] - cur[1]))
            cur = nxt
    need = frac * Y[:, ref].sum()
    for _slope, dc, dq in sorted(steps, reverse=True):  # across tasks, best quality per USD first
        if q_total + dq >= need:
            return (c_total + dc * (need - q_total) / dq) / C[:, ref].sum()
        q_total, c_total = q_total + dq, c_total + dc
    return None if q_total < need else c_total / C[:, ref].sum()


def auc(score: np.ndarray, y: np.ndarray) -> float:
    """Mann–Whitney AUC of `score` for the binary outcome y; tied scores share their mean rank (count ½)."""
    values, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = (first + (counts - 1) / 2)[inverse]  # 0-based mean rank of each tie group
    pos = y > 0.5
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((rank[pos].sum() - n1 * (n1 - 1) / 2) / (n1 * n0)) if n1 and n0 else float("nan")


def within_task(E: np.ndarray, Y: np.ndarray, tasks: np.ndarray, models: list[str], names: list[str]) -> list[str]:
    lines = []
    for t in np.unique(tasks):
        idx = np.where(tasks == t)[0]
        S = E[idx] @ E[idx].T
        np.fill_diagonal(S, -np.inf)
        near = np.argsort(-S, axis=1)
        for name in names:
            y = Y[idx, models.index(name)]
            aucs = [auc(y[near[:, :k]].mean(1), y) for k in (1, 5, 20, 50)]
            lines.append(f"| {t} | {name.split('/')[-1]} | {y.mean():.3f} | " + " | ".join(f"{a:.3f}" for a in aucs)
                         + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fold-seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    args = ap.parse_args()
    o = load_outcomes(ROUTERBENCH)
    tasks = np.array([json.loads(line).get("task", "") for line in ROUTERBENCH.read_text(encoding="utf-8").split("\n")
                      if line.strip()])
    kind = learned.DEFAULT_EMBEDDER
    E = learned.embed_prompts(o.prompts, learned.make_embedder(kind), tail_chars=learned.default_tail_chars(kind),
                              cache_dir=Settings().home / "cache" / "embeddings", model_id=learned.embedder_id(kind))
    E = E.astype(np.float64)
    ref = o.models.index(REFERENCE)
    Y, C = o.scores.astype(np.float64), o.costs.astype(np.float64)

    print("| λ calibrated on (kNN part alone) | " + " | ".join(f"fold seed {s}: quality, cost" for s in args.fold_seeds)
          + " | mean cost | per-fold quality |")
    print("|---|" + "---|" * (len(args.fold_seeds) + 2))
    results = [calibration_cv(E, Y, C, ref, s) for s in args.fold_seeds]
    for label, *_ in VARIANTS:
        cells = [f"{r[label][0]:.1%}, {r[label][1]:.1%}" for r in results]
        lo, hi = min(r[label][2] for r in results), max(r[label][3] for r in results)
        print(f"| {label} | " + " | ".join(cells) + f" | {np.mean([r[label][1] for r in results]):.1%} "
              f"| {lo:.1%}–{hi:.1%} |")
    ceiling = task_ceiling(Y, C, tasks, ref)
    print(f"\ntask-level ceiling (task known, no within-task information): 95 % of {REFERENCE} at "
          f"{'never' if ceiling is None else f'{ceiling:.1%}'} of its cost\n")
    print("| task | model | mean score | AUC of LOO kNN mean, k = 1 | k = 5 | k = 20 | k = 50 |")
    print("|---|---|---|---|---|---|---|")
    for line in within_task(E, Y, tasks, o.models, ["zero-one-ai/Yi-34B-Chat", "mistralai/mixtral-8x7b-chat",
                                                    "gpt-3.5-turbo-1106", REFERENCE]):
        print(line)


if __name__ == "__main__":
    main()
