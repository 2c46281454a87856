"""Load: many concurrent streaming clients for a fixed time, straight to the scripted upstream and through Baimo.

Starts the scripted upstream (tests/support/upstream.py, a child process, `--tokens` tokens `--token-delay` s
apart) and `baimo serve` with one `kind: openai` model in front of it. Then `--clients` virtual users, each with
its own keep-alive connection, stream chat completions back to back for `--seconds`: first straight to the
upstream, then through Baimo (same client code, same run, so the client's own cost cancels out). Reports errors,
incomplete streams, Baimo's RSS and open sockets at start and end, and p50/p99 time to first token and total
latency of both paths with what Baimo adds.

    .venv/bin/python bench/load.py                                 # 200 clients x 60 s (issue 11 section 5)
    .venv/bin/python bench/load.py --clients 50 --seconds 10 --json out.json

The test `tests/reliability/test_load.py` runs `run_load` for 10 s with 50 clients and asserts what can be
asserted without timing: no error, every stream complete, Baimo's sockets back to their baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BaimoServer, baimo_available, dump_json, print_table, start_upstream  # noqa: E402
from gateway_overhead import Sample, one_request, summarise  # noqa: E402

from tests.support.resources import open_sockets, rss_mib, settle_sockets, split_sockets  # noqa: E402

MESSAGES = [{"role": "user", "content": "Count for me, please."}]


@dataclass
class LoadResult:
    """The samples of one path (`direct` or `baimo`) and the server's resources around the run."""

    target: str
    samples: list[Sample] = field(default_factory=list)
    elapsed_s: float = 0.0
    rss_start_mib: float | None = None
    rss_end_mib: float | None = None
    sockets_start: int | None = None
    sockets_end: int | None = None

    @property
    def errors(self) -> dict[str, int]:
        """{error text: count} (HTTP errors, SSE error events, streams without [DONE], wrong content)."""
        out: dict[str, int] = {}
        for s in self.samples:
            if s.error:
                out[s.error] = out.get(s.error, 0) + 1
        return out


async def run_load(url: str, model: str, clients: int, seconds: float, expected: str | None,
                   pid: int | None = None) -> LoadResult:
    """`clients` virtual users stream `model` from `url` (a base URL ending in /v1) back to back for `seconds`.

    A user starts no new request after the deadline, so the run lasts `seconds` plus one stream. With `pid`, the
    RSS (MiB) and open TCP sockets of that process are read before the first request and after the last, once
    its connections to clients have closed (settle_sockets)."""
    result = LoadResult("baimo" if pid else "direct")
    body = json.dumps({"model": model, "messages": MESSAGES, "stream": True,
                       "stream_options": {"include_usage": True}}).encode()
    endpoint = url.rstrip("/") + "/chat/completions"
    if pid:
        result.rss_start_mib, result.sockets_start = rss_mib(pid), open_sockets(pid)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    users = [httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120.0)) for _ in range(clients)]
    deadline = time.perf_counter() + seconds

    async def user(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            result.samples.append(await one_request(client, endpoint, body, expected))

    t0 = time.perf_counter()
    try:
        await asyncio.gather(*(user(c) for c in users))
    finally:
        result.elapsed_s = time.perf_counter() - t0
        await asyncio.gather(*(c.aclose() for c in users))
    if pid:
        result.sockets_end = await asyncio.to_thread(settle_sockets, pid, result.sockets_start or 0)
        result.rss_end_mib = rss_mib(pid)
    return result


def gateway_config(model: str, upstream_url: str, upstream_model: str) -> dict[str, Any]:
    """baimo.yaml for one remote model in front of the scripted upstream."""
    return {"default_model": model, "models": [{
        "id": model, "kind": "openai", "base_url": upstream_url, "upstream_model": upstream_model,
        "price_input": 1.0, "price_output": 2.0, "context_window": 8192}]}


def idle_sockets(server: BaimoServer, upstream_port: int, baseline: int) -> dict[str, Any]:
    """Baimo's sockets right after the run (from clients, to the upstream) and once its idle keep-alive connections
    to the upstream have expired (OpenAICompatBackend.KEEPALIVE_S, 30 s), polled for up to 45 s."""
    from_clients, to_upstream = split_sockets(server.pid, server.port, upstream_port)
    t0 = time.perf_counter()
    left = settle_sockets(server.pid, baseline, timeout=45)
    return {"from_clients": from_clients, "to_upstream": to_upstream, "after_idle": left,
            "idle_wait_s": time.perf_counter() - t0}


def report(direct: LoadResult, baimo: LoadResult, clients: int, seconds: float,
           idle: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print the table (times in ms; added = Baimo minus direct, same percentile) and return it as JSON data."""
    d, b = summarise(direct.samples, direct.elapsed_s), summarise(baimo.samples, baimo.elapsed_s)
    rows = []
    for label, key in (("TTFT p50", "ttft_p50_ms"), ("TTFT p99", "ttft_p99_ms"), ("total p50", "total_p50_ms"),
                       ("total p99", "total_p99_ms")):
        rows.append([label, d[key], b[key], b[key] - d[key], b[key] / d[key] if d[key] else float("nan")])
    rows.append(["streams/s", d["req_per_s"], b["req_per_s"], b["req_per_s"] - d["req_per_s"],
                 b["req_per_s"] / d["req_per_s"] if d["req_per_s"] else float("nan")])
    rows.append(["streams", d["requests"], b["requests"], "-", "-"])
    rows.append(["errors", d["requests"] - d["ok"], b["requests"] - b["ok"], "-", "-"])
    print_table(f"{clients} concurrent streaming clients for {seconds:g} s (ms unless said)",
                ["measure", "direct", "via Baimo", "added", "ratio"], rows)
    print_table("Baimo server process", ["measure", "start", "end"],
                [["RSS MiB", baimo.rss_start_mib, baimo.rss_end_mib],
                 ["open TCP sockets", baimo.sockets_start, baimo.sockets_end]])
    if idle:
        print(f"  right after the run: {idle['from_clients']} sockets from clients, {idle['to_upstream']} idle "
              f"keep-alive to the upstream; {idle['after_idle']} open after {idle['idle_wait_s']:.0f} s idle")
    for res in (direct, baimo):
        for err, n in res.errors.items():
            print(f"  {res.target} error x{n}: {err}")
    return {"direct": d, "baimo": b, "rss_mib": [baimo.rss_start_mib, baimo.rss_end_mib],
            "sockets": [baimo.sockets_start, baimo.sockets_end], "idle_sockets": idle, "clients": clients,
            "seconds": seconds,
            "cpus": os.cpu_count()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=200, help="concurrent streaming clients")
    p.add_argument("--seconds", type=float, default=60.0, help="how long each path is loaded")
    p.add_argument("--tokens", type=int, default=20, help="tokens per scripted answer")
    p.add_argument("--token-delay", type=float, default=0.01, help="seconds between scripted tokens")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON ('-' = stdout)")
    args = p.parse_args()
    reason = baimo_available()
    if reason:
        raise SystemExit(f"cannot run Baimo: {reason}")
    expected = "".join(f"tok{i} " for i in range(args.tokens))
    model = "remote/scripted"
    upstream = start_upstream(tokens=args.tokens, token_delay=args.token_delay)  # started: not `with` (starts again)
    try:
        with BaimoServer(gateway_config(model, upstream.base_url, "ok")) as server:
            print(f"upstream {upstream.base_url}, baimo {server.url}; {args.clients} clients x {args.seconds:g} s",
                  flush=True)
            asyncio.run(run_load(server.url + "/v1", model, min(args.clients, 20), 2, expected))  # warm-up
            direct = asyncio.run(run_load(upstream.base_url, "ok", args.clients, args.seconds, expected))
            baimo = asyncio.run(run_load(server.url + "/v1", model, args.clients, args.seconds, expected,
                                         server.pid))
            idle = idle_sockets(server, upstream.port, baimo.sockets_start or 0)
    finally:
        upstream.stop()
    data = report(direct, baimo, args.clients, args.seconds, idle)
    data["config"] = {"tokens": args.tokens, "token_delay": args.token_delay}
    dump_json(args.json, data)


if __name__ == "__main__":
    main()
