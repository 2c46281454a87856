"""Latency Baimo adds in front of a remote OpenAI-compatible model.

Starts the scripted upstream (tests/support/upstream.py, 100 streamed tokens, no delay) and
`baimo serve` with one `kind: openai` model pointing at it, then, for each concurrency level,
streams the same chat request straight to the upstream and through Baimo with an httpx async
client, and reports time-to-first-token and total latency (p50/p99) and what Baimo adds.

    .venv/bin/python bench/gateway_overhead.py                      # 1/10/100 x 200/500/1000
    .venv/bin/python bench/gateway_overhead.py --requests 50,100,200 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    BaimoServer,
    SSEError,
    baimo_available,
    dump_json,
    parse_int_list,
    percentile,
    print_table,
    proc_cpu_seconds,
    sse_chunks,
    start_upstream,
)

GOAL_P50_MS = 2.0
GOAL_P99_MS = 10.0
MESSAGES = [{"role": "user", "content": "Count to one hundred, please."}]


@dataclass
class Sample:
    total: float  # seconds, request sent -> stream finished
    ttft: float | None  # seconds, request sent -> first non-empty content delta
    error: str | None = None


async def one_request(client: httpx.AsyncClient, url: str, body: bytes, expected: str | None) -> Sample:
    t0 = time.perf_counter()
    ttft: float | None = None
    parts: list[str] = []
    done = False
    try:
        async with client.stream("POST", url, content=body, headers={"content-type": "application/json"}) as r:
            if r.status_code != 200:
                text = (await r.aread())[:300].decode("utf-8", "replace")
                return Sample(time.perf_counter() - t0, None, f"HTTP {r.status_code}: {text}")
            async for chunk in sse_chunks(r):
                if chunk is None:
                    done = True
                    continue
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                        parts.append(content)
    except SSEError as exc:
        return Sample(time.perf_counter() - t0, ttft, str(exc))
    except (httpx.HTTPError, ValueError) as exc:
        return Sample(time.perf_counter() - t0, ttft, f"{type(exc).__name__}: {exc}")
    total = time.perf_counter() - t0
    if not done:
        return Sample(total, ttft, "stream ended without [DONE]")
    if expected is not None and "".join(parts) != expected:
        return Sample(total, ttft, f"unexpected content ({len(''.join(parts))} chars)")
    return Sample(total, ttft)


class Target:
    """One path under test (direct or through Baimo) with `concurrency` virtual users.

    Each virtual user has its own single-connection keep-alive client: one shared pool of 100
    connections makes httpcore's pool bookkeeping (O(connections) per event) the bottleneck.
    """

    def __init__(self, name: str, url: str, model: str, concurrency: int) -> None:
        self.name = name
        self.url = url
        self.concurrency = concurrency
        self.body = json.dumps(
            {"model": model, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
        ).encode()
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.clients = [httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)) for _ in range(concurrency)]

    async def run(self, count: int, expected: str | None) -> tuple[list[Sample], float]:
        samples: list[Sample] = []
        remaining = count

        async def user(client: httpx.AsyncClient) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                samples.append(await one_request(client, self.url, self.body, expected))

        t0 = time.perf_counter()
        await asyncio.gather(*(user(c) for c in self.clients[: max(1, min(self.concurrency, count))]))
        return samples, time.perf_counter() - t0

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients))


def summarise(samples: list[Sample], elapsed: float) -> dict[str, Any]:
    ok = [s for s in samples if s.error is None]
    totals = [s.total * 1000 for s in ok]
    ttfts = [s.ttft * 1000 for s in ok if s.ttft is not None]
    errors: dict[str, int] = {}
    for s in samples:
        if s.error:
            errors[s.error] = errors.get(s.error, 0) + 1
    return {
        "requests": len(samples),
        "ok": len(ok),
        "errors": errors,
        "ttft_p50_ms": percentile(ttfts, 50),
        "ttft_p99_ms": percentile(ttfts, 99),
        "total_p50_ms": percentile(totals, 50),
        "total_p99_ms": percentile(totals, 99),
        "req_per_s": len(samples) / elapsed if elapsed > 0 else float("nan"),
        "elapsed_s": elapsed,
    }


async def bench(args: argparse.Namespace, direct_url: str, baimo_url: str, pids: dict[str, int | None]) -> dict:
    expected = "".join(f"tok{i} " for i in range(args.tokens))
    results: list[dict[str, Any]] = []
    for conc, count in zip(args.concurrency, args.requests, strict=True):
        targets = [
            Target("direct", direct_url + "/chat/completions", args.upstream_model, conc),
            Target("baimo", baimo_url + "/chat/completions", args.model, conc),
        ]
        try:
            for t in targets:  # warm-up: opens the keep-alive connections, warms both servers
                warm, _ = await t.run(max(args.warmup, 2 * conc), expected)
                bad = [s.error for s in warm if s.error]
                if bad and len(bad) == len(warm):
                    raise SystemExit(f"{t.name}: every warm-up request failed, e.g. {bad[0]}")
            samples: dict[str, list[Sample]] = {t.name: [] for t in targets}
            elapsed = {t.name: 0.0 for t in targets}
            cpu = {t.name: {k: 0.0 for k in pids} for t in targets}
            rounds = max(1, min(args.rounds, count))
            for rnd in range(rounds):  # interleave the paths so drift hits both alike
                n = count // rounds + (1 if rnd < count % rounds else 0)
                for t in targets if rnd % 2 == 0 else targets[::-1]:
                    cpu0 = {k: proc_cpu_seconds(p) for k, p in pids.items()}
                    got, secs = await t.run(n, expected)
                    cpu1 = {k: proc_cpu_seconds(p) for k, p in pids.items()}
                    samples[t.name] += got
                    elapsed[t.name] += secs
                    for k in pids:
                        if cpu0[k] is not None and cpu1[k] is not None:
                            cpu[t.name][k] += cpu1[k] - cpu0[k]
        finally:
            for t in targets:
                await t.aclose()
        for t in targets:
            row = {"concurrency": conc, "target": t.name, **summarise(samples[t.name], elapsed[t.name])}
            for k, p in pids.items():
                if p is not None:
                    row[f"{k}_cpu_ms_per_req"] = cpu[t.name][k] * 1000 / max(1, len(samples[t.name]))
            results.append(row)
            print(
                f"  c={conc:<4} {t.name:<6} n={len(samples[t.name]):<5} total p50 {row['total_p50_ms']:.2f} ms"
                f"  p99 {row['total_p99_ms']:.2f} ms  errors {row['requests'] - row['ok']}",
                flush=True,
            )
    return {"results": results}


def report(args: argparse.Namespace, data: dict[str, Any]) -> None:
    rows = []
    for r in data["results"]:
        rows.append(
            [
                str(r["concurrency"]),
                str(r["requests"]),
                r["target"],
                r["ttft_p50_ms"],
                r["ttft_p99_ms"],
                r["total_p50_ms"],
                r["total_p99_ms"],
                f"{r['req_per_s']:.0f}",
                fmt_cpu(r.get("baimo_cpu_ms_per_req")),
                fmt_cpu(r.get("upstream_cpu_ms_per_req")),
                str(r["requests"] - r["ok"]),
            ]
        )
    print()
    print_table(
        f"Streaming latency, {args.tokens} tokens/answer, loopback (ms)",
        [
            "conc",
            "reqs",
            "path",
            "ttft p50",
            "ttft p99",
            "total p50",
            "total p99",
            "req/s",
            "baimo cpu/req",
            "upstr cpu/req",
            "errors",
        ],
        rows,
    )
    added = []
    by = {(r["concurrency"], r["target"]): r for r in data["results"]}
    summary = []
    for conc in args.concurrency:
        d, b = by.get((conc, "direct")), by.get((conc, "baimo"))
        if not d or not b:
            continue
        a = {
            "concurrency": conc,
            "ttft_p50_ms": b["ttft_p50_ms"] - d["ttft_p50_ms"],
            "ttft_p99_ms": b["ttft_p99_ms"] - d["ttft_p99_ms"],
            "total_p50_ms": b["total_p50_ms"] - d["total_p50_ms"],
            "total_p99_ms": b["total_p99_ms"] - d["total_p99_ms"],
        }
        a["goal_met"] = a["total_p50_ms"] <= GOAL_P50_MS and a["total_p99_ms"] <= GOAL_P99_MS
        summary.append(a)
        added.append(
            [
                str(conc),
                a["ttft_p50_ms"],
                a["ttft_p99_ms"],
                a["total_p50_ms"],
                a["total_p99_ms"],
                "yes" if a["goal_met"] else "NO",
            ]
        )
    data["added"] = summary
    print()
    print_table(
        f"Added by Baimo (baimo minus direct, ms) - goal: added p50 <= {GOAL_P50_MS:g} ms, p99 <= {GOAL_P99_MS:g} ms",
        ["conc", "ttft +p50", "ttft +p99", "total +p50", "total +p99", "goal met (total)"],
        added,
        notes=[
            "client, upstream and Baimo share this machine's "
            f"{os.cpu_count()} cores; at high concurrency the numbers include CPU contention.",
            "cpu/req = server process CPU time (user+sys) per measured request.",
        ],
    )
    for r in data["results"]:
        for err, n in r["errors"].items():
            print(f"  errors c={r['concurrency']} {r['target']}: {n} x {err}")


def fmt_cpu(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=parse_int_list, default=[1, 10, 100], help="levels, e.g. 1,10,100")
    p.add_argument("--requests", type=parse_int_list, default=[200, 500, 1000], help="measured requests per level")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured requests per level and path (min 2x conc)")
    p.add_argument("--rounds", type=int, default=4, help="alternate direct/baimo batches this many times per level")
    p.add_argument("--tokens", type=int, default=100, help="tokens per scripted answer")
    p.add_argument("--model", default="remote/scripted", help="Baimo model id to request")
    p.add_argument("--upstream-model", default="ok", help="upstream model name (scripted behaviour)")
    p.add_argument("--baimo-url", default=None, help="use a running Baimo (base URL ending in /v1)")
    p.add_argument("--upstream-url", default=None, help="use a running upstream (base URL ending in /v1)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON ('-' = stdout)")
    p.add_argument("--baimo-log-level", default=None, help="pass --log-level to baimo serve (default: its own)")
    p.add_argument("--keep-home", action="store_true", help="keep Baimo's temporary BAIMO_HOME (logs, db)")
    args = p.parse_args()
    if len(args.requests) == 1:
        args.requests = args.requests * len(args.concurrency)
    if len(args.requests) != len(args.concurrency):
        p.error("--requests needs one count per concurrency level (or a single count)")

    upstream = server = None
    try:
        if args.upstream_url:
            direct_url, upstream_pid = args.upstream_url.rstrip("/"), None
        else:
            upstream = start_upstream(tokens=args.tokens)
            direct_url, upstream_pid = upstream.base_url, upstream.pid
        if args.baimo_url:
            baimo_url, baimo_pid = args.baimo_url.rstrip("/"), None
        else:
            reason = baimo_available()
            if reason:
                raise SystemExit(f"cannot run Baimo: {reason}")
            config = {
                "default_model": args.model,
                "models": [
                    {
                        "id": args.model,
                        "kind": "openai",
                        "base_url": direct_url,
                        "upstream_model": args.upstream_model,
                        "price_input": 1.0,
                        "price_output": 2.0,
                        "context_window": 8192,
                    }
                ],
            }
            extra = ["--log-level", args.baimo_log_level] if args.baimo_log_level else []
            server = BaimoServer(config, keep_home=args.keep_home, extra_args=extra).start()
            baimo_url, baimo_pid = server.url + "/v1", server.pid
            print(f"baimo serve ready in {server.startup_seconds:.2f}s at {baimo_url} (home {server.home})")
        print(f"upstream {direct_url}; levels {args.concurrency} x {args.requests} requests", flush=True)
        data = asyncio.run(bench(args, direct_url, baimo_url, {"baimo": baimo_pid, "upstream": upstream_pid}))
        data["config"] = {
            "concurrency": args.concurrency,
            "requests": args.requests,
            "tokens": args.tokens,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "cpus": os.cpu_count(),
        }
        report(args, data)
        dump_json(args.json, data)
    finally:
        if server is not None:
            server.stop()
        if upstream is not None:
            upstream.stop()


if __name__ == "__main__":
    main()
