"""The cost-quality frontier of Baimo's local models, a strong remote model and the `baimo/auto` router on GSM8K
(first 200 test questions) and the CMMLU subset: `baimo eval run` as a user runs it, with the HTML/JSON reports.

The local models run for real (SmolLM2-135M, Qwen2.5-Coder-0.5B and, when pulled, Qwen2.5-Coder-1.5B); the strong
model is the scripted upstream's `oracle` (tests/support/upstream_oracle.py: right at GPT-4's published rates,
priced like GPT-4o at $2.50/$10 per million tokens), and the router is swept over λ (its curve; its choices are
answered from the models' cached answers, so the sweep costs only routing decisions).

    .venv/bin/python bench/eval_frontier.py [--limit 200] [--out docs/eval] [--suites gsm8k,cmmlu]

Writes OUT/<suite>/report.html, run.json and frontier.png, and prints each run's table. Interrupted, it resumes:
the eval cache keeps every answer already paid for.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import BAIMO_BIN, LOCAL_MODELS, MODELS_DIR, print_table  # noqa: E402
from tests.support.upstream import Behaviour, ScriptedUpstreamProcess  # noqa: E402

LAMS = "0,0.02,0.1,0.25,1,4"


def config(upstream_url: str, local: dict[str, Path]) -> str:
    lines = ["default_model: baimo/auto", "privacy:", "  mode: \"off\"", "models:"]
    for mid, path in local.items():
        lines += [f"  - id: {mid}", "    kind: llamacpp", f"    path: {path}", "    threads: 1",
                  "    max_output_tokens: 256"]
    lines += ["  - id: remote/strong", "    kind: openai", f"    base_url: {upstream_url}",
              "    upstream_model: oracle", "    price_input: 2.5", "    price_output: 10", "    strength: 0.92",
              "routers:", "  - id: baimo/auto", "    strategy: auto", "    retrain_every: null"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--suites", default="gsm8k,cmmlu")
    ap.add_argument("--out", default="docs/eval")
    ap.add_argument("--home", help="BAIMO_HOME to use (default: a new temporary one); reuse it to resume")
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()

    local = {m["id"]: MODELS_DIR / m["file"] for m in LOCAL_MODELS.values() if (MODELS_DIR / m["file"]).exists()}
    if not local:
        raise SystemExit(f"no local model in {MODELS_DIR}: run `baimo models pull` first")
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="baimo-frontier-"))
    home.mkdir(parents=True, exist_ok=True)
    print(f"BAIMO_HOME={home}", file=sys.stderr)
    timings = []
    with ScriptedUpstreamProcess({"oracle": Behaviour("oracle")}) as up:
        (home / "baimo.yaml").write_text(config(up.base_url, local), encoding="utf-8")
        env = {**os.environ, "BAIMO_HOME": str(home)}
        for suite in args.suites.split(","):
            out = Path(args.out) / suite.replace(":", "-")
            t0 = time.perf_counter()
            subprocess.run([str(BAIMO_BIN), "eval", "run", suite, "--models",
                            ",".join([*local, "remote/strong", "baimo/auto"]), "--sweep-lam", LAMS,
                            "--limit", str(args.limit), "--max-tokens", "48", "--concurrency",
                            str(args.concurrency), "--report", str(out)], env=env, check=True)
            timings.append((suite, args.limit, time.perf_counter() - t0, str(out / "report.html")))
    print_table("Evaluation runs", ["suite", "items", "seconds", "report"], timings)


if __name__ == "__main__":
    main()
