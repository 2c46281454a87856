"""Routing quality on RouteLLM's public MMLU and GSM8K data: convert, train, bench, print one table.

    .venv/bin/python bench/routing_quality.py            # full: ~14k MMLU + 1.3k GSM8K prompts, USE embedder
    .venv/bin/python bench/routing_quality.py --embedder e5              # the previous embedder
    .venv/bin/python bench/routing_quality.py --no-features              # embeddings only (format-1 routers)
    .venv/bin/python bench/routing_quality.py --datasets gsm8k5          # 5 models, bench/outcomes/gsm8k5.*
    .venv/bin/python bench/routing_quality.py --quick    # 400 train / 400 test prompts per dataset
    .venv/bin/python bench/routing_quality.py --max-train 2000 --max-test 2000   # fixed random subsets

Prompt embeddings are cached in BAIMO_HOME/cache/embeddings per embedder id, so only the first run per
embedder and tail length is slow (USE ~10 ms, e5 ~40–80 ms per prompt on one thread). λ is calibrated on
out-of-fold predictions of the TRAIN split only.
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
from baimo.routing.metrics import bench_report, calibrate  # noqa: E402
from baimo.routing.outcomes import OutcomeSet, load_outcomes, parse_outcome_lines  # noqa: E402

OUTCOMES = Path(__file__).resolve().parent / "outcomes"

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
        features: list[str]) -> dict:
    tr, te = splits(name, max_train, max_test)
    print(f"{name}: {len(tr)} train / {len(te)} test prompts, embedder {kind}, tail {tail_chars}", file=sys.stderr)
    embedder, model_id = learned.make_embedder(kind), learned.embedder_id(kind)
    t0 = time.perf_counter()
    E_tr = learned.embed_prompts(tr.prompts, embedder, tail_chars=tail_chars, cache_dir=cache, model_id=model_id,
                                 progress=progress)
    router, P_oof = learned.train(tr.prompts, tr.models, tr.scores, tr.costs, E_tr, tail_chars=tail_chars,
                                  model_id=model_id, features=features)
    calibrate(router, P_oof, tr.prompts, tr.scores, tr.costs, target_quality=0.95, source="out-of-fold")
    E_te = learned.embed_prompts(te.prompts, embedder, tail_chars=tail_chars, cache_dir=cache, model_id=model_id,
                                 progress=progress)
    report = bench_report(router, router.probabilities(router.inputs(E_te, te.prompts)), te.prompts, te.scores,
                          te.costs)
    report["hyper"] = router.to_json()["hyper"]
    report["embedder"], report["tail_chars"], report["features"] = model_id, tail_chars, features
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


def fmt(v: float | None, pct: bool = False) -> str:
    return "—" if v is None else (f"{v:.0%}" if pct else f"{v:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="400 train / 400 test prompts per dataset")
    ap.add_argument("--max-train", type=int, help="at most this many train prompts per dataset (fixed sample)")
    ap.add_argument("--max-test", type=int, help="at most this many test prompts per dataset (fixed sample)")
    ap.add_argument("--datasets", nargs="+", default=["mmlu", "gsm8k"], choices=[*ROUTELLM, "gsm8k5"],
                    help="gsm8k5: the 5-model outcome files bench/outcomes/gsm8k5.{train,test}.jsonl")
    ap.add_argument("--embedder", default=learned.DEFAULT_EMBEDDER, choices=["use", "e5"])
    ap.add_argument("--tail-chars", type=int, help="embed only the last N characters of each prompt "
                    "(default: the embedder's, 500 for use, 1000 for e5)")
    ap.add_argument("--no-features", action="store_true",
                    help="embeddings only: no scalar prompt features (routers before format 2)")
    ap.add_argument("--json-out", type=Path, help="also write the full reports (curves included) here")
    args = ap.parse_args()
    cache = Settings().home / "cache" / "embeddings"
    if args.tail_chars is None:
        args.tail_chars = learned.default_tail_chars(args.embedder)
    if args.quick:
        args.max_train, args.max_test = args.max_train or 400, args.max_test or 400
    features = [] if args.no_features else learned.DEFAULT_FEATURES
    reports = {name: run(name, args.max_train, args.max_test, cache, args.embedder, args.tail_chars, features)
               for name in args.datasets}
    if args.json_out:
        args.json_out.write_text(json.dumps(reports, indent=2))
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
        b = BASELINES.get(name)
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
