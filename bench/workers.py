"""Throughput and added latency of `baimo serve --workers N` (1, 2 and 4) at 50 concurrent streams.

`--load native` (the default when Debian's nginx and wrk are installed; bench/native_load.py): nginx answers as
the upstream with a fixed 50-token stream, and wrk (one thread, 50 keep-alive connections) streams the same chat
request for `--seconds` per worker count, after a warm-up. Both cost a few per cent of Baimo's CPU per request,
so the machine's cores go to Baimo: this is the mode that measures how Baimo scales. wrk reports whole-response
latency only (no TTFT).

`--load python`: starts the scripted upstream (tests/support/upstream.py, in its own process, 50 streamed tokens,
no delay), then, for each worker count, `baimo serve --workers N` with one `kind: openai` model pointing at it,
and streams the same chat request with 50 virtual users (httpx, one keep-alive connection each, the client of
gateway_overhead.py).
The same requests straight to the upstream, in the same run, give the latency Baimo adds. Throughput ratios are
against one worker measured in the same run. Goal (issue 11): 2 workers >= 1.7x one worker's requests/s.

The load generator, the upstream and Baimo share this machine's cores: on 2 cores the client and the upstream take
a large share, which caps what more workers can show (the table says how much CPU each side used).

    .venv/bin/python bench/workers.py                           # 1,2,4 workers, 20 s each at 50 streams (native)
    .venv/bin/python bench/workers.py --load python             # 1,2,4 workers x 2,000 requests (httpx client)
    .venv/bin/python bench/workers.py --workers 1,2 --requests 1000 --database-url postgresql+psycopg://...
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BaimoServer,
    baimo_available,
    descendants,
    dump_json,
    parse_int_list,
    print_table,
    proc_cpu_seconds,
    start_upstream,
)
from gateway_overhead import MESSAGES, Target, summarise  # noqa: E402
from native_load import StaticSSEUpstream, run_wrk  # noqa: E402

GOAL_RATIO = 1.7


def tree_cpu(pid: int | None) -> float | None:
    """CPU seconds (user+sys) of a process and its children alive now (a --workers server's processes)."""
    if pid is None:
        return None
    return sum(proc_cpu_seconds(p) or 0.0 for p in [pid, *descendants(pid)])


class CPUMeter:
    """CPU seconds used by each named process tree between `start()` and `add_to(row)` (as `<name>_cpu_s`)."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids
        self.before: dict[str, float | None] = {}

    def start(self) -> None:
        self.before = {k: tree_cpu(p) for k, p in self.pids.items()}

    def add_to(self, row: dict[str, Any]) -> dict[str, Any]:
        for k, p in self.pids.items():
            now = tree_cpu(p)
            if self.before.get(k) is not None and now is not None:
                row[f"{k}_cpu_s"] = now - self.before[k]
        return row


async def measure(name: str, url: str, model: str, concurrency: int, count: int, warmup: int, expected: str,
                  pids: dict[str, int | None]) -> dict[str, Any]:
    target = Target(name, url + "/chat/completions", model, concurrency)
    try:
        warm, _ = await target.run(max(warmup, 2 * concurrency), expected)
        if all(s.error for s in warm):
            raise SystemExit(f"{name}: every warm-up request failed, e.g. {warm[0].error}")
        meter = CPUMeter(pids)
        meter.start()
        samples, elapsed = await target.run(count, expected)
        row = meter.add_to({"target": name, **summarise(samples, elapsed)})
    finally:
        await target.aclose()
    print(f"  {name:<10} n={count} {row['req_per_s']:.0f} req/s  total p50 {row['total_p50_ms']:.1f} ms  "
          f"errors {row['requests'] - row['ok']}", flush=True)
    return row


def measure_native(name: str, url: str, model: str, concurrency: int, seconds: float, warmup_s: float,
                   expected: str, pids: dict[str, int | None]) -> dict[str, Any]:
    """One wrk run of `seconds` (after an unmeasured `warmup_s` one) with CPU seconds per process tree."""
    body = {"model": model, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    url = url + "/chat/completions"
    warm = run_wrk(url, body, connections=concurrency, duration_s=warmup_s, expected=expected)
    if warm["ok"] == 0:
        raise SystemExit(f"{name}: every warm-up request failed: {warm['detail']}")
    meter = CPUMeter(pids)
    meter.start()
    row = meter.add_to({"target": name, **run_wrk(url, body, connections=concurrency, duration_s=seconds,
                                                  expected=expected)})
    print(f"  {name:<10} {row['requests']} in {row['elapsed_s']:.0f} s: {row['req_per_s']:.0f} req/s  "
          f"total p50 {row['total_p50_ms']:.1f} ms  errors {row['errors']}", flush=True)
    return row


def config(upstream_url: str) -> dict[str, Any]:
    return {"default_model": "remote/scripted",
            "models": [{"id": "remote/scripted", "kind": "openai", "base_url": upstream_url,
                        "upstream_model": "ok", "context_window": 8192, "price_input": 1.0, "price_output": 2.0,
                        "timeout": 120}]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    native_ok = bool(shutil.which("wrk")) and (Path("/usr/sbin/nginx").exists() or bool(shutil.which("nginx")))
    p.add_argument("--load", choices=["native", "python"], default="native" if native_ok else "python",
                   help="native: nginx upstream + wrk client (default when installed); python: scripted upstream "
                        "+ httpx client")
    p.add_argument("--workers", type=parse_int_list, default=[1, 2, 4], help="worker counts, e.g. 1,2,4")
    p.add_argument("--concurrency", type=int, default=50, help="concurrent streams")
    p.add_argument("--seconds", type=float, default=20, help="native: measured seconds per worker count")
    p.add_argument("--warmup-seconds", type=float, default=4, help="native: unmeasured seconds first")
    p.add_argument("--requests", type=int, default=2000, help="python: measured requests per worker count")
    p.add_argument("--warmup", type=int, default=200, help="python: unmeasured requests first (min 2x concurrency)")
    p.add_argument("--tokens", type=int, default=50, help="tokens per scripted answer")
    p.add_argument("--database-url", default=None, help="BAIMO_DATABASE_URL for the servers (default: SQLite)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON ('-' = stdout)")
    args = p.parse_args()
    reason = baimo_available()
    if reason:
        raise SystemExit(reason)
    expected = "".join(f"tok{i} " for i in range(args.tokens))
    env = {"BAIMO_DATABASE_URL": args.database_url} if args.database_url else {}

    def run(name: str, url: str, model: str, pids: dict[str, int | None]) -> dict[str, Any]:
        if args.load == "native":
            # wrk sees the raw SSE text: check that the last token ends a JSON string in it (and [DONE])
            return measure_native(name, url, model, args.concurrency, args.seconds, args.warmup_seconds,
                                  f'tok{args.tokens - 1} "', pids)
        return asyncio.run(measure(name, url, model, args.concurrency, args.requests, args.warmup, expected, pids))

    upstream = StaticSSEUpstream(args.tokens).start() if args.load == "native" else start_upstream(tokens=args.tokens)
    upstream_pid = upstream.proc.pid if args.load == "native" else upstream.pid
    rows: list[dict[str, Any]] = []
    try:
        pids = {"upstream": upstream_pid}
        print(f"direct to the upstream, {args.concurrency} streams ({args.load} load):", flush=True)
        rows.append(run("direct", upstream.base_url, "ok", pids))
        for n in args.workers:
            print(f"baimo serve --workers {n}:", flush=True)
            with BaimoServer(config(upstream.base_url), env=env,
                             extra_args=["--workers", str(n), "--log-level", "warning"]) as server:
                row = run(f"{n} worker{'s' if n > 1 else ''}", server.url + "/v1", "remote/scripted",
                          {**pids, "baimo": server.pid})
                rows.append({**row, "workers": n})
    finally:
        upstream.stop()
    direct = rows[0]
    base = next((r for r in rows if r.get("workers") == 1), None)

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    table = []
    for r in rows:
        ratio = r["req_per_s"] / base["req_per_s"] if base and "workers" in r else None
        table.append([r["target"], f"{r['req_per_s']:.0f}", "-" if ratio is None else f"{ratio:.2f}x",
                      ms(r["ttft_p50_ms"]), ms(r["ttft_p99_ms"]), ms(r["total_p50_ms"]), ms(r["total_p99_ms"]),
                      "-" if "workers" not in r else f"{r['total_p50_ms'] - direct['total_p50_ms']:.1f}",
                      f"{r.get('baimo_cpu_s', 0):.1f}", f"{r.get('upstream_cpu_s', 0):.1f}",
                      str(r["requests"] - r["ok"] if args.load == "python" else r["errors"])])
    print()
    size = (f"{args.seconds:g} s each, nginx upstream + wrk client" if args.load == "native"
            else f"{args.requests} requests each, scripted upstream + httpx client")
    print_table(f"baimo serve --workers N: {args.concurrency} concurrent streams of {args.tokens} tokens, {size} (ms)",
                ["path", "req/s", "vs 1 worker", "ttft p50", "ttft p99", "total p50", "total p99", "added p50",
                 "baimo cpu s", "upstream cpu s", "errors"], table,
                notes=[f"client, upstream and Baimo share this machine's {os.cpu_count()} cores; "
                       f"goal: 2 workers >= {GOAL_RATIO}x one worker's req/s.",
                       "added p50 = Baimo's total p50 minus the direct one; cpu s = CPU seconds during the "
                       "measured requests (Baimo: all its processes)."
                       + (" wrk measures whole responses: no TTFT." if args.load == "native" else "")])
    two = next((r for r in rows if r.get("workers") == 2), None)
    if base and two:
        ratio = two["req_per_s"] / base["req_per_s"]
        print(f"2 workers / 1 worker: {ratio:.2f}x ({'goal met' if ratio >= GOAL_RATIO else 'goal NOT met'})")
    dump_json(args.json, {"load": args.load, "results": rows})


if __name__ == "__main__":
    main()
