"""A new model from few labels: RouterBench, one model held out, added with 50/100/200 labels vs all of them.

    .venv/bin/python bench/routing_add_model.py [--models zero-one-ai/Yi-34B-Chat gpt-3.5-turbo-1106] [--folds 5]

Per outer fold of a K-fold CV on ../shared/data/routing/routerbench/train.jsonl: train the default router on the
K−1 training folds with all 11 models (the "full data" router, λ calibrated on its out-of-fold predictions at
95 %), drop the held-out model from it (its rows, memory column and costs: a router that never saw that model),
then add the model back with `newmodel.add_model` from its outcomes on n random training prompts. Every router
decides on the test fold with the full router's λ. Reported, pooled over folds: quality and cost as fractions
of GPT-4's, the held-out model's share of calls, and the quality gap to the full-data router in points.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import Settings  # noqa: E402
from baimo.routing import learned  # noqa: E402
from baimo.routing.metrics import calibrate  # noqa: E402
from baimo.routing.newmodel import add_model  # noqa: E402
from baimo.routing.outcomes import load_outcomes  # noqa: E402

ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing" / "routerbench" / "train.jsonl"
REFERENCE = "gpt-4-1106-preview"


def drop(router: learned.LearnedRouter, j: int) -> learned.LearnedRouter:
    """A copy of the router without model j (as if trained without it: models are fitted independently)."""
    r = copy.deepcopy(router)
    keep = [i for i in range(len(r.models)) if i != j]
    r.models = [r.models[i] for i in keep]
    r.W, r.knn_Y = r.W[keep], r.knn_Y[:, keep]
    r.cost_a, r.cost_b = r.cost_a[keep], r.cost_b[keep]
    if r.knn_C is not None:
        r.knn_C = r.knn_C[:, keep]
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["zero-one-ai/Yi-34B-Chat", "gpt-3.5-turbo-1106",
                                                    "mistralai/mixtral-8x7b-chat"])
    ap.add_argument("--labels", nargs="+", type=int, default=[50, 100, 200])
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    o = load_outcomes(ROUTERBENCH)
    kind = learned.DEFAULT_EMBEDDER
    tail, model_id = learned.default_tail_chars(kind), learned.embedder_id(kind)
    E = learned.embed_prompts(o.prompts, learned.make_embedder(kind), tail_chars=tail,
                              cache_dir=Settings().home / "cache" / "embeddings", model_id=model_id)
    order = np.random.default_rng(0).permutation(len(o))
    folds = [order[f::args.folds] for f in range(args.folds)]
    g = o.models.index(REFERENCE)
    variants = ["full data", "without it", *[f"added, {n} labels" for n in args.labels], "added, all labels"]
    # (model, variant) -> chosen index per prompt (in the full router's model order)
    chosen = {(m, v): np.zeros(len(o), dtype=int) for m in args.models for v in variants}
    for f, te in enumerate(folds):
        tr = np.concatenate([folds[h] for h in range(args.folds) if h != f])
        p_tr, p_te = [o.prompts[i] for i in tr], [o.prompts[i] for i in te]
        full, P_oof = learned.train(p_tr, o.models, o.scores[tr], o.costs[tr], E[tr], tail_chars=tail,
                                    model_id=model_id)
        calibrate(full, P_oof, p_tr, o.scores[tr], o.costs[tr], target_quality=0.95, source="oof",
                  C_pred=full.oof_costs)
        X_te, X_tr = full.inputs(E[te], p_te), full.inputs(E[tr], p_tr)
        rng = np.random.default_rng(f)
        for m in args.models:
            j = o.models.index(m)
            routers = {"full data": full, "without it": drop(full, j)}
            for n in [*args.labels, len(tr)]:
                pick = rng.choice(len(tr), min(n, len(tr)), replace=False)
                r = drop(full, j)
                add_model(r, m, [p_tr[i] for i in pick], o.scores[tr][pick, j], o.costs[tr][pick, j],
                          X=X_tr[pick])
                routers[f"added, {n} labels" if n < len(tr) else "added, all labels"] = r
            for v, r in routers.items():
                ch = r.choose_index(r.probabilities(X_te), r.predicted_costs(p_te, X_te), full.lam)
                chosen[(m, v)][te] = [o.models.index(r.models[c]) for c in ch]
        print(f"fold {f + 1}/{args.folds} done", file=sys.stderr, flush=True)
    rows = np.arange(len(o))
    print("| held-out model | router | quality vs GPT-4 | cost vs GPT-4 | its share of calls | gap to full data |")
    print("|---|---|---|---|---|---|")
    for m in args.models:
        j = o.models.index(m)
        base = o.scores[rows, chosen[(m, "full data")]].mean() / o.scores[:, g].mean()
        for v in variants:
            ch = chosen[(m, v)]
            q = o.scores[rows, ch].mean() / o.scores[:, g].mean()
            c = o.costs[rows, ch].sum() / o.costs[:, g].sum()
            print(f"| {m.split('/')[-1]} | {v} | {q:.1%} | {c:.1%} | {(ch == j).mean():.0%} | "
                  f"{(q - base) * 100:+.1f} |")


if __name__ == "__main__":
    main()
