"""Cold start of `baimo serve`: time to ready, idle memory, memory once a local model is loaded.

Each run starts `baimo serve` with a fresh BAIMO_HOME (new database) and a baimo.yaml holding one
local GGUF model, and measures: process start -> first 200 from /readyz; VmRSS of the server
(plus any children) once ready and idle; the first chat request (includes loading the model
unless --preload); VmRSS after it. Medians over N runs.

    .venv/bin/python bench/cold_start.py                        # smollm2, 5 runs
    .venv/bin/python bench/cold_start.py --model qwen0.5b --runs 3 --preload
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    LOCAL_MODELS,
    BaimoServer,
    baimo_available,
    dump_json,
    local_model_entry,
    median,
    print_table,
    tree_rss_kb,
)


def one_run(args: argparse.Namespace, config: dict[str, Any], model_id: str) -> dict[str, Any]:
    extra = ["--log-level", "warning"] + (["--preload"] if args.preload else [])
    env = {"BAIMO_LLAMA_THREADS": str(args.threads)}
    server = BaimoServer(config, env=env, extra_args=extra)
    try:
        server.start(timeout=args.timeout)
        result: dict[str, Any] = {"ready_s": server.startup_seconds}
        time.sleep(args.settle)
        result["idle_rss_mb"] = (tree_rss_kb(server.pid) or 0) / 1024
        if not args.no_chat:
            body = {
                "model": model_id,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "temperature": 0,
            }
            t = time.perf_counter()
            r = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=args.timeout)
            result["first_chat_s"] = time.perf_counter() - t
            if r.status_code != 200:
                raise RuntimeError(f"chat answered HTTP {r.status_code}: {r.text[:500]}")
            time.sleep(args.settle)
            result["loaded_rss_mb"] = (tree_rss_kb(server.pid) or 0) / 1024
            t = time.perf_counter()
            httpx.post(server.url + "/v1/chat/completions", json=body, timeout=args.timeout).raise_for_status()
            result["second_chat_s"] = time.perf_counter() - t
        return result
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(LOCAL_MODELS), default="smollm2")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--preload", action="store_true", help="start with `baimo serve --preload`")
    p.add_argument("--no-chat", action="store_true", help="skip the chat request (idle numbers only)")
    p.add_argument("--settle", type=float, default=0.5, help="seconds to wait before reading RSS")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON ('-' = stdout)")
    args = p.parse_args()

    reason = baimo_available()
    if reason:
        raise SystemExit(f"cannot run Baimo: {reason}")
    entry = local_model_entry(args.model, threads=args.threads)
    config = {"default_model": entry["id"], "models": [entry]}

    runs = []
    for i in range(args.runs):
        r = one_run(args, config, entry["id"])
        runs.append(r)
        shown = ", ".join(f"{k} {v:.2f}" for k, v in r.items())
        print(f"  run {i + 1}: {shown}", flush=True)

    def col(key: str) -> list[float]:
        return [r[key] for r in runs if key in r]

    rows = []
    labels = [
        ("ready_s", "start -> /readyz 200", "s"),
        ("idle_rss_mb", "RSS ready, idle", "MiB"),
        ("first_chat_s", "first chat (max_tokens 8)" + ("" if args.preload else ", loads model"), "s"),
        ("loaded_rss_mb", "RSS after first chat", "MiB"),
        ("second_chat_s", "second chat (max_tokens 8)", "s"),
    ]
    summary = {}
    for key, label, unit in labels:
        xs = col(key)
        if not xs:
            continue
        summary[key] = {"median": median(xs), "min": min(xs), "max": max(xs)}
        rows.append([label, unit, median(xs), min(xs), max(xs)])
    print()
    print_table(
        f"baimo serve cold start, {LOCAL_MODELS[args.model]['file']}"
        f"{' (--preload)' if args.preload else ''}, {args.runs} runs",
        ["measure", "unit", "median", "min", "max"],
        rows,
        notes=["RSS = VmRSS of the server process plus its children, from /proc."],
    )
    dump_json(args.json, {"model": args.model, "preload": args.preload, "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
