"""The evaluation run behind docs/evaluation.md: GSM8K's first N test questions through `baimo eval run` with a
local model, a scripted "strong" remote model and `baimo/auto` swept over λ, and its cost–quality frontier.

The strong model is tests/support/upstream_oracle.py (a scripted upstream answering from the gold answers, right
for `--strong-accuracy` of them, priced like a frontier API); the local model and the router are real. Prints
each target's accuracy, cost per item and latency with ratios against the strong model alone (the baseline,
measured in the same run), and writes the run's report (report.html, run.json, frontier.png) to `--out`.

    .venv/bin/python bench/eval_frontier.py --limit 40 --out docs/eval_gsm8k
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from _common import BAIMO_BIN, REPO_ROOT, dump_json, ensure_local_model, local_model_entry, print_table

from tests.support.upstream import ScriptedUpstream
from tests.support.upstream_oracle import OracleBehaviour

GSM8K = REPO_ROOT.parent / "shared" / "data" / "eval" / "gsm8k" / "test.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=40, help="GSM8K test questions (the first N)")
    ap.add_argument("--local", default="smollm2", help="the local model (bench/_common.py LOCAL_MODELS)")
    ap.add_argument("--sweep", default="0,1,10", help="λ values of baimo/auto's sweep")
    ap.add_argument("--strong-accuracy", type=float, default=0.92, help="share the scripted strong model gets right")
    ap.add_argument("--max-tokens", type=int, default=192)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", default=str(REPO_ROOT / "docs" / "eval_gsm8k"), help="report folder")
    ap.add_argument("--json", default=None, help="write the results as JSON to this path (- for stdout)")
    args = ap.parse_args()

    ensure_local_model(args.local)
    local = local_model_entry(args.local, threads=1)
    local.update({"parallel": 2, "price_input": 0.0, "price_output": 0.0, "strength": 0.1})
    oracle = OracleBehaviour.from_jsonl(GSM8K, accuracy=args.strong_accuracy, limit=args.limit)
    with ScriptedUpstream({"strong": oracle}) as up, tempfile.TemporaryDirectory(prefix="baimo-eval-") as home:
        config = {"default_model": local["id"], "privacy": {"mode": "off"},
                  "models": [local, {"id": "remote/strong", "kind": "openai", "base_url": up.base_url,
                                     "upstream_model": "strong", "price_input": 2.5, "price_output": 10.0,
                                     "strength": 0.95, "description": "scripted strong model (gold answers)"}],
                  "routers": [{"id": "baimo/auto", "strategy": "auto", "candidates": [local["id"], "remote/strong"],
                               "retrain_every": None}]}
        Path(home, "baimo.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        env = {**os.environ, "BAIMO_HOME": home, "BAIMO_EVAL_DATA": str(GSM8K.parents[1])}
        started = time.perf_counter()
        out = subprocess.run([str(BAIMO_BIN), "eval", "run", "gsm8k", "--models",
                              f"{local['id']},remote/strong,baimo/auto", "--sweep-lam", args.sweep,
                              "--limit", str(args.limit), "--max-tokens", str(args.max_tokens),
                              "--concurrency", str(args.concurrency), "--json", "--report", args.out],
                             env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"baimo eval run failed ({out.returncode}):\n{out.stderr[-3000:]}")
    run = json.loads(out.stdout)
    base = next(t for t in run["targets"] if t["id"] == "remote/strong")
    rows = []
    for t in run["targets"]:
        name = t["id"] if t.get("lam") is None else f"{t['router']} λ={t['lam']:g}"
        lo, hi = t["ci95"]
        share = ", ".join(f"{m.split('/')[-1]} {v:.0%}" for m, v in t["served_share"].items())
        rows.append([name, f"{t['accuracy']:.1%}", f"[{lo:.1%}, {hi:.1%}]", f"{t['accuracy'] / base['accuracy']:.2f}",
                     f"{t['cost_per_item_usd']:.6f}",
                     f"{t['cost_per_item_usd'] / base['cost_per_item_usd']:.2f}" if base["cost_per_item_usd"] else "-",
                     f"{t['latency_ms']['p50']:.0f}", share])
    print_table(f"GSM8K first {args.limit}: accuracy and cost per item vs remote/strong alone (same run; "
                f"wall {wall:.0f} s)",
                ["target", "accuracy", "95 % CI", "x strong", "USD/item", "x strong", "p50 ms", "served by"], rows,
                notes=[f"report: {args.out}/report.html; run {run['run_id']}"])
    dump_json(args.json, run)


if __name__ == "__main__":
    main()
