"""The distillation flywheel end to end, as a user runs it, timed: synthetic task -> a strong teacher answers its
prompts -> LoRA on SmolLM2-135M -> GGUF -> registered -> compared with its base and teacher on the held-out split
-> promoted into the router -> `baimo eval` through the router shows who served and what it cost.

Every step is the `baimo` CLI as a subprocess in a fresh BAIMO_HOME. The teacher is the scripted upstream
(tests/support/upstream.py, behaviour `solve`: the right answer of the task, priced like GPT-4o at $2.50/$10 per
million tokens); the student is the real local model, trained and served for real on this CPU.

    .venv/bin/python bench/flywheel.py [--train 400] [--test 100] [--steps 250] [--batch-size 1] [--lr 1e-3]
        [--threads 2] [--json out.json]

Prints a table of stages (seconds) and the results (accuracy with 95 % Wilson intervals, McNemar p, cost).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BAIMO_BIN, MODELS_DIR, dump_json, ensure_local_model, print_table  # noqa: E402
from tests.support.upstream import Behaviour, ScriptedUpstreamProcess  # noqa: E402

BASE = "local/smollm2-135m"
TEACHER = "remote/strong"


def config(upstream_url: str, base_gguf: Path) -> str:
    return (f"default_model: baimo/auto\nmodels:\n"
            f"  - id: {BASE}\n    kind: llamacpp\n    path: {base_gguf}\n    threads: 2\n"
            f"  - id: {TEACHER}\n    kind: openai\n    base_url: {upstream_url}\n    upstream_model: solve\n"
            f"    price_input: 2.5\n    price_output: 10\n    strength: 0.95\n"
            "routers:\n  - id: baimo/auto\n    strategy: auto\n    retrain_every: null\n")


def baimo(env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run `baimo ARGS`; returns (seconds, stdout). Progress (stderr) goes to this terminal."""
    t0 = time.perf_counter()
    done = subprocess.run([str(BAIMO_BIN), *args], env=env, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"baimo {' '.join(args)} failed with {done.returncode}")
    return time.perf_counter() - t0, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="travel-json")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=100)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--lr", type=float, default=1e-3, help="LoRA learns a narrow format fast at 1e-3")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on a machine other jobs share)")
    ap.add_argument("--json", dest="json_out")
    ap.add_argument("--keep", action="store_true", help="keep the BAIMO_HOME (its path is printed)")
    args = ap.parse_args()

    base_gguf = ensure_local_model("smollm2")
    home = Path(tempfile.mkdtemp(prefix="baimo-flywheel-"))
    work = home / "task"
    stages: list[tuple[str, float]] = []
    with ScriptedUpstreamProcess({"solve": Behaviour("solve", text="{}")}) as up:
        (home / "baimo.yaml").write_text(config(up.base_url, base_gguf), encoding="utf-8")
        env = {**os.environ, "BAIMO_HOME": str(home), "BAIMO_MODELS_DIR": str(MODELS_DIR)}
        t_all = time.perf_counter()
        secs, _ = baimo(env, "distill", "task", "make", args.task, "--train", str(args.train), "--test",
                        str(args.test), "--out", str(work))
        stages.append(("task make", secs))
        secs, _ = baimo(env, "distill", "generate", "--prompts", str(work / "train.jsonl"), "--teacher", TEACHER,
                        "--out", str(home / "data.jsonl"), "--max-tokens", "64")
        stages.append((f"generate ({args.train} teacher answers)", secs))
        secs, out = baimo(env, "distill", "train", "--base", BASE, "--data", str(home / "data.jsonl"), "--out",
                          "travel", "--steps", str(args.steps), "--max-seq-len", "128", "--batch-size",
                          str(args.batch_size), "--lr", str(args.lr), "--threads", str(args.threads), "--json")
        trained = json.loads(out)
        stages.append((f"train {args.steps} steps + merge + GGUF + register", secs))
        secs, out = baimo(env, "distill", "compare", "travel", "--suite", str(work / "test.jsonl"), "--max-tokens",
                          "64", "--json")
        compared = json.loads(out)
        stages.append((f"compare on {args.test} held-out items (3 models)", secs))
        secs, out = baimo(env, "distill", "promote", "travel", "--json")
        promoted = json.loads(out)
        stages.append(("promote", secs))
        secs, out = baimo(env, "eval", "run", str(work / "test.jsonl"), "--models", f"{promoted['router']},{TEACHER}",
                          "--max-tokens", "64", "--json")
        routed = json.loads(out)
        stages.append(("eval through the router", secs))
        total = time.perf_counter() - t_all

    print_table("Flywheel stages", ["stage", "seconds"], [*stages, ("total", total)])
    rows = [(compared["model"]["id"], compared["model"]["accuracy"], compared["model"]["ci95"],
             compared["model"]["cost_per_item_usd"], "")]
    for role in ("base", "teacher"):
        v = compared[role]
        rows.append((f"{v['model']} ({role})", v["accuracy"], v["ci95"], v["cost_per_item_usd"],
                     f"{v['delta']:+.1%}, p={v['mcnemar_p']:.2g}, outside CI: {v['beats_outside_ci']}"))
    print_table("Held-out split", ["model", "accuracy", "95% CI", "USD per item", "fine-tuned vs this"],
                [(m, f"{a:.1%}", f"[{c[0]:.1%}, {c[1]:.1%}]", f"{u:.6f}", d) for m, a, c, u, d in rows])
    print_table("Through the promoted router", ["target", "accuracy", "USD per item", "served by"],
                [(t["id"], f"{t['accuracy']:.1%}", f"{t['cost_per_item_usd']:.6f}",
                  ", ".join(f"{k} {v:.0%}" for k, v in t["served_share"].items())) for t in routed["targets"]],
                notes=[f"rule: {promoted['rule']}", f"saving per 1,000 requests: ${compared.get('saving_per_1k_usd')}"])
    dump_json(args.json_out, {"stages": stages, "total_s": total, "train": trained, "compare": {
        k: v for k, v in compared.items() if k != "run"}, "routed": routed["targets"], "promoted": promoted})
    if args.keep:
        print(f"BAIMO_HOME kept: {home}")


if __name__ == "__main__":
    main()
