"""Routing quality on RouteLLM's public MMLU and GSM8K data and on RouterBench: train, bench, print tables.

    .venv/bin/python bench/routing_quality.py            # full: ~14k MMLU + 1.3k GSM8K prompts, USE embedder
    .venv/bin/python bench/routing_quality.py --embedder e5              # the previous embedder
    .venv/bin/python bench/routing_quality.py --no-features              # embeddings only (format-1 routers)
    .venv/bin/python bench/routing_quality.py --datasets gsm8k5          # 5 models, bench/outcomes/gsm8k5.*
    .venv/bin/python bench/routing_quality.py --quick    # 400 train / 400 test prompts per dataset
    .venv/bin/python bench/routing_quality.py --max-train 2000 --max-test 2000   # fixed random subsets
    .venv/bin/python bench/routing_quality.py --datasets routerbench --methods format3 current [--fold-seeds 0 42]
        # RouterBench (11 models, real per-answer costs), 5-fold CV on ../shared/data/routing/routerbench/train.jsonl

--methods: `current` (the default router: kNN k up to 400, distance-weighted, kNN cost prediction, λ calibrated on
leave-one-out kNN predictions over 400 λ values), `format3` (the same router with λ calibrated on 5-fold
out-of-fold predictions over 120 λ values, as before) and/or `format2` (k in 20/50/100, plain mean, costs from the
prompt length, 5-fold calibration), side by side.

Prompt embeddings are cached in BAIMO_HOME/cache/embeddings per embedder id, so only the first run per
embedder and tail length is slow (USE ~10 ms, e5 ~40–80 ms per prompt on one thread). λ is calibrated on
held-out predictions of the TRAIN split only.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import Settings  # noqa: E402
from baimo.routing import learned  # noqa: E402
from baimo.routing.converters import convert  # noqa: E402
from baimo.routing.metrics import CALIBRATION_POINTS, bench_report, calibrate  # noqa: E402
from baimo.routing.outcomes import OutcomeSet, load_outcomes, parse_outcome_lines  # noqa: E402

OUTCOMES = Path(__file__).resolve().parent / "outcomes"
# RouterBench's train split lives beside the checkout (no licence: evaluation only, never copied into the repo).
ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing" / "routerbench" / "train.jsonl"
REFERENCE_MODEL = "gpt-4-1106-preview"
# train() arguments of each method (and `lambda_points`, calibrate()'s)
METHODS: dict[str, dict] = {
    "current": {},
    "format3": {"calibration": "oof", "lambda_points": 120},
    "format2": {"k_grid": learned.LEGACY_K_GRID, "tau_grid": (0.0,), "cost_k": 0, "calibration": "oof",
                "lambda_points": 120},
}


def fit(method: str, prompts: list[str], models: list[str], Y: np.ndarray, C: np.ndarray, E: np.ndarray,
        **kw: object) -> learned.LearnedRouter:
    """Train with `method`'s arguments and calibrate λ for 95 % of the best model on the training data only."""
    args = dict(METHODS[method])
    points = args.pop("lambda_points", CALIBRATION_POINTS)
    router, P_cal = learned.train(prompts, models, Y, C, E, **args, **kw)  # type: ignore[arg-type]
    calibrate(router, P_cal, prompts, Y, C, target_quality=0.95, source="held-out (train)", C_pred=router.oof_costs,
              lambda_points=points)
    return router

# ROUTING-NOTES baselines (USE embeddings, 50/50 random split) and RouteLLM's published cost cuts at 95%.
ROUTELLM = ["mmlu", "gsm8k", "mt-bench"]
BASELINES = {"mmlu": {"apgr": 0.687, "cpt50": 0.268, "cpt80": 0.566, "share95": 0.41, "routellm_cut": 0.45},
             "gsm8k": {"apgr": 0.594, "cpt50": 0.389, "cpt80": 0.617, "share95": 0.62, "routellm_cut": 0.35}}


def progress(stage: str, done: int, total: int) -> None:
    if done == total or done % 500 == 0:
        print(f"  {stage} {done}/{total}", file=sys.stderr, flush=True)


def sample(rows: list[dict], n: int | None) -> list[dict]:
    """A fixed random subset (seed 0) of at most n rows, in file order."""
    if n is None or n >= len(rows):
        return rows
    return [rows[i] for i in sorted(np.random.default_rng(0).choice(len(rows), n, replace=False))]


def splits(name: str, max_train: int | None, max_test: int | None) -> tuple[OutcomeSet, OutcomeSet]:
    """Train and test outcomes: RouteLLM data converted here, or outcome files in bench/outcomes/."""
    if name in ROUTELLM:
        train_rows, test_rows = convert(name)
        train_rows, test_rows = sample(train_rows, max_train), sample(test_rows, max_test)
        return (parse_outcome_lines([json.dumps(r) for r in train_rows], f"{name}.train"),
                parse_outcome_lines([json.dumps(r) for r in test_rows], f"{name}.test"))
    return load_outcomes(OUTCOMES / f"{name}.train.jsonl"), load_outcomes(OUTCOMES / f"{name}.test.jsonl")


def run(name: str, max_train: int | None, max_test: int | None, cache: Path, kind: str, tail_chars: int,
        features: list[str], method: str = "current") -> dict:
    tr, te = splits(name, max_train, max_test)
    print(f"{name}: {len(tr)} train / {len(te)} test prompts, embedder {kind}, tail {tail_chars}, method {method}",
          file=sys.stderr)
    embedder, model_id = learned.make_embedder(kind), learned.embedder_id(kind)
    t0 = time.perf_counter()
    E_tr = learned.embed_prompts(tr.prompts, embedder, tail_chars=tail_chars, cache_dir=cache, model_id=model_id,
                                 progress=progress)
    router = fit(method, tr.prompts, tr.models, tr.scores, tr.costs, E_tr, tail_chars=tail_chars, model_id=model_id,
                 features=features)
    E_te = learned.embed_prompts(te.prompts, embedder, tail_chars=tail_chars, cache_dir=cache, model_id=model_id,
                                 progress=progress)
    X_te = router.inputs(E_te, te.prompts)
    report = bench_report(router, router.probabilities(X_te), te.prompts, te.scores, te.costs, X=X_te)
    report["hyper"] = router.to_json()["hyper"]
    report["embedder"], report["tail_chars"], report["features"] = model_id, tail_chars, features
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def run_cv(path: Path, cache: Path, kind: str, tail_chars: int, features: list[str], method: str,
           n_folds: int = 5, seed: int = 0) -> dict:
    """K-fold CV on one outcome file: train (with its own inner CV for hyper-parameters and λ) on K−1 folds,
    decide at 95 % of the best model's OOF quality on the held-out fold. Pooled over folds: the deployed
    quality and cost as fractions of REFERENCE_MODEL's; per fold (then averaged): APGR and cost at 95 % of the
    best single model on the held-out fold's cost–quality curve."""
    o = load_outcomes(path)
    print(f"{path.name}: {len(o)} prompts, {len(o.models)} models, {n_folds}-fold CV, method {method}",
          file=sys.stderr)
    embedder, model_id = learned.make_embedder(kind), learned.embedder_id(kind)
    t0 = time.perf_counter()
    E = learned.embed_prompts(o.prompts, embedder, tail_chars=tail_chars, cache_dir=cache, model_id=model_id,
                              progress=progress)
    order = np.random.default_rng(seed).permutation(len(o))
    folds = [order[f::n_folds] for f in range(n_folds)]
    chosen = np.zeros(len(o), dtype=int)
    per_fold = []
    for f, te in enumerate(folds):
        tr = np.concatenate([folds[g] for g in range(n_folds) if g != f])
        p_tr, p_te = [o.prompts[i] for i in tr], [o.prompts[i] for i in te]
        router = fit(method, p_tr, o.models, o.scores[tr], o.costs[tr], E[tr], tail_chars=tail_chars,
                     model_id=model_id, features=features)
        X_te = router.inputs(E[te], p_te)
        rep = bench_report(router, router.probabilities(X_te), p_te, o.scores[te], o.costs[te], X=X_te)
        chosen[te] = router.choose_index(router.probabilities(X_te), router.predicted_costs(p_te, X_te))
        per_fold.append({"apgr_cost": rep["learned"]["apgr_cost"], "cost_at_target": rep["learned"]["cost_at_target"],
                         "strong_cost": rep["reference"]["strong_cost"], "lambda": router.lam,
                         "hyper": router.to_json()["hyper"]})
        print(f"  fold {f + 1}/{n_folds}: λ {router.lam:.4g}, hyper {per_fold[-1]['hyper']}", file=sys.stderr)
    rows = np.arange(len(o))
    ref = o.models.index(REFERENCE_MODEL) if REFERENCE_MODEL in o.models else int(np.argmax(o.scores.mean(0)))
    quality = float(o.scores[rows, chosen].mean() / o.scores[:, ref].mean())
    cost = float(o.costs[rows, chosen].sum() / o.costs[:, ref].sum())
    cut = [1 - r["cost_at_target"] / r["strong_cost"] if r["cost_at_target"] is not None else 0.0 for r in per_fold]
    return {"method": method, "n": len(o), "folds": n_folds, "seed": seed, "reference": o.models[ref],
            "quality_vs_reference": round(quality, 4), "cost_vs_reference": round(cost, 4),
            "apgr_cost": round(float(np.mean([r["apgr_cost"] for r in per_fold])), 4),
            "cost_at_95_vs_best": round(1 - float(np.mean(cut)), 4),
            "share_by_model": {m: round(float((chosen == j).mean()), 4) for j, m in enumerate(o.models)},
            "per_fold": per_fold, "seconds": round(time.perf_counter() - t0, 1)}


def print_cv(reports: list[dict]) -> None:
    print("| data (5-fold CV) | router | quality vs GPT-4 (deployed λ) | cost vs GPT-4 (deployed λ) | APGR (cost axis) "
          "| cost @95% of best (test curve) |")
    print("|---|---|---|---|---|---|")
    for r in reports:
        print(f"| RouterBench, {r['n']} prompts, fold seed {r['seed']} | {r['method']} | "
              f"{r['quality_vs_reference']:.1%} | {r['cost_vs_reference']:.1%} | {r['apgr_cost']:.3f} | "
              f"{r['cost_at_95_vs_best']:.1%} |")
    for r in reports:
        print(f"{r['method']}: {r['seconds']} s; calls by model: "
              + ", ".join(f"{m.split('/')[-1]} {v:.0%}" for m, v in r["share_by_model"].items() if v >= 0.005),
              file=sys.stderr)


def fmt(v: float | None, pct: bool = False) -> str:
    return "—" if v is None else (f"{v:.0%}" if pct else f"{v:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="400 train / 400 test prompts per dataset")
    ap.add_argument("--max-train", type=int, help="at most this many train prompts per dataset (fixed sample)")
    ap.add_argument("--max-test", type=int, help="at most this many test prompts per dataset (fixed sample)")
    ap.add_argument("--datasets", nargs="+", default=["mmlu", "gsm8k"], choices=[*ROUTELLM, "gsm8k5", "routerbench"],
                    help="gsm8k5: the 5-model outcome files bench/outcomes/gsm8k5.{train,test}.jsonl; routerbench: "
                    "5-fold CV on RouterBench's train file")
    ap.add_argument("--methods", nargs="+", default=["current"], choices=list(METHODS),
                    help="current: the default router; format2: the router before kNN costs and the wider kNN grid")
    ap.add_argument("--embedder", default=learned.DEFAULT_EMBEDDER, choices=["use", "e5"])
    ap.add_argument("--tail-chars", type=int, help="embed only the last N characters of each prompt "
                    "(default: the embedder's, 500 for use, 1000 for e5)")
    ap.add_argument("--no-features", action="store_true",
                    help="embeddings only: no scalar prompt features (routers before format 2)")
    ap.add_argument("--fold-seeds", type=int, nargs="+", default=[0],
                    help="RouterBench: the seeds of the 5-fold splits (one CV per seed and method)")
    ap.add_argument("--json-out", type=Path, help="also write the full reports (curves included) here")
    args = ap.parse_args()
    cache = Settings().home / "cache" / "embeddings"
    if args.tail_chars is None:
        args.tail_chars = learned.default_tail_chars(args.embedder)
    if args.quick:
        args.max_train, args.max_test = args.max_train or 400, args.max_test or 400
    features = [] if args.no_features else learned.DEFAULT_FEATURES
    cv = [run_cv(ROUTERBENCH, cache, args.embedder, args.tail_chars, features, method, seed=seed)
          for seed in args.fold_seeds for method in args.methods] if "routerbench" in args.datasets else []
    reports = {f"{name}:{method}" if len(args.methods) > 1 else name:
               run(name, args.max_train, args.max_test, cache, args.embedder, args.tail_chars, features, method)
               for name in args.datasets if name != "routerbench" for method in args.methods}
    if args.json_out:
        args.json_out.write_text(json.dumps({**reports, **{f"routerbench:{r['method']}": r for r in cv}}, indent=2))
    if cv:
        print_cv(cv)
    if not reports:
        return
    print(f"embedder {learned.embedder_id(args.embedder)}, tail {args.tail_chars} chars, "
          f"prompt features: {', '.join(features) or 'none'}")
    print("| data | rule | APGR | CPT(50%) | CPT(80%) | APGR (cost axis) | strong share @95% | cost cut @95% "
          "| op. point (test) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in reports.items():
        op = r["learned"]["operating_point"]
        for rule in ("learned", "threshold_rule", "random", "oracle"):
            m = r[rule]
            point = (f"q={op['quality']:.3f} ({op['quality'] / r['reference']['strong_quality']:.1%}), "
                     f"cut {1 - op['cost'] / r['reference']['strong_cost']:.0%}") if rule == "learned" else ""
            print(f"| {name} | {rule} | {fmt(m['apgr'])} | {fmt(m['cpt50'])} | {fmt(m['cpt80'])} | "
                  f"{fmt(m['apgr_cost'])} | {fmt(m['strong_share_at_target'])} | "
                  f"{fmt(m['cost_reduction_at_target'], True)} | {point} |")
        b = BASELINES.get(name.split(":")[0])
        if b:
            print(f"| {name} | ROUTING-NOTES best | {b['apgr']:.3f} | {b['cpt50']:.3f} | {b['cpt80']:.3f} | | "
                  f"{b['share95']:.2f} | — | |")
            print(f"| {name} | RouteLLM published | | | | | | ~{b['routellm_cut']:.0%} | |")
    for name, r in reports.items():
        ref = r["reference"]
        print(f"{name}: {r['n']} test prompts, {ref['weak_model']} {ref['weak_quality']:.3f}, "
              f"{ref['strong_model']} {ref['strong_quality']:.3f}; hyper {r['hyper']}; {r['seconds']} s",
              file=sys.stderr)


if __name__ == "__main__":
    main()
