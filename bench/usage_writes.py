"""Usage writes under load: a transaction per request versus group commit, in the same run.

Starts the scripted upstream (tests/support/upstream.py, in its own process) and one `baimo serve` per
variant, each with a `kind: openai` model pointing at it and its own database:

  per-request   metering.group_commit: false  (each finished request commits its own usage row)
  group         metering.group_commit: true, linger_ms: 0  (one writer commits the rows of requests that
                finish together in one transaction)
  group+linger  group commit that also waits `--linger-ms` (5, the default) for more rows once it has one,
                when the previous transaction held more than one (requests finishing together)

Every variant answers the same streamed chat request (`--tokens` tokens, no delay) from `--concurrency`
clients; in both modes the final SSE chunks are sent only after the request's usage row is committed. The
variants are measured in interleaved rounds so that drift hits them alike. Reports requests/s, latency
p50/p99, Baimo's CPU per request and the ratio to per-request commits; checks that every request has its row.

First, the writes alone: `UsageLog.write` from `--concurrency` coroutines in this process (no HTTP), rows/s
and the time a request waits for its row to be durable, per variant, on the same kind of database.

    .venv/bin/python bench/usage_writes.py                          # 50 streams, 2,000 requests per variant
    .venv/bin/python bench/usage_writes.py --postgres               # the same on a temporary PostgreSQL
    .venv/bin/python bench/usage_writes.py --requests 4000 --json out.json
    .venv/bin/python bench/usage_writes.py --writes-only [--postgres]     # the in-process table alone
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BaimoServer, dump_json, percentile, print_table, proc_cpu_seconds, start_upstream  # noqa: E402
from gateway_overhead import Sample, Target, summarise  # noqa: E402

MODEL = "remote/scripted"


def usage_rows(server: BaimoServer, database_url: str | None) -> int:
    if database_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(database_url)
        with engine.connect() as conn:
            n = conn.execute(text("SELECT count(*) FROM usage")).scalar_one()
        engine.dispose()
        return int(n)
    assert server.home is not None
    db = sqlite3.connect(server.home / "baimo.db")
    try:
        return db.execute("SELECT count(*) FROM usage").fetchone()[0]
    finally:
        db.close()


async def bench(args: argparse.Namespace, servers: dict[str, tuple[BaimoServer, str | None]]) -> dict[str, Any]:
    targets = {name: Target(name, server.url + "/v1/chat/completions", MODEL, args.concurrency)
               for name, (server, _) in servers.items()}
    try:
        for name, target in targets.items():  # warm-up: connections, imports, the first transactions
            warm, _ = await target.run(args.warmup, None)
            if any(s.error for s in warm):
                raise SystemExit(f"{name}: warm-up failed: {[s.error for s in warm if s.error][:3]}")
        start_rows = {name: usage_rows(s, db) for name, (s, db) in servers.items()}
        samples: dict[str, list[Sample]] = {n: [] for n in servers}
        elapsed = dict.fromkeys(servers, 0.0)
        cpu = dict.fromkeys(servers, 0.0)
        names = list(servers)
        per_round = args.requests // args.rounds
        for rnd in range(args.rounds):  # interleaved, so that drift hits every variant alike
            for name in names if rnd % 2 == 0 else names[::-1]:
                pid = servers[name][0].pid
                cpu0 = proc_cpu_seconds(pid) or 0.0
                got, secs = await targets[name].run(per_round, None)
                cpu[name] += (proc_cpu_seconds(pid) or 0.0) - cpu0
                samples[name] += got
                elapsed[name] += secs
                print(f"  round {rnd + 1}/{args.rounds} {name:<13} {per_round / secs:7.0f} req/s", flush=True)
    finally:
        for target in targets.values():
            await target.aclose()
    results = []
    for name, (server, db) in servers.items():
        row = {"variant": name, **summarise(samples[name], elapsed[name]),
               "usage_rows": usage_rows(server, db) - start_rows[name],
               "baimo_cpu_ms_per_req": cpu[name] * 1000 / max(1, len(samples[name]))}
        results.append(row)
    return {"concurrency": args.concurrency, "tokens": args.tokens, "database": args.database, "results": results}


async def writes_alone(args: argparse.Namespace, urls: dict[str, str],
                       variants: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """`UsageLog.write` from `args.concurrency` coroutines, `args.requests` rows per variant, interleaved."""
    from baimo.metering.usage import Usage, UsageLog
    from baimo.store.database import Database

    logs = {name: UsageLog(Database(urls[name]), **variants[name]) for name in variants}
    waits: dict[str, list[float]] = {n: [] for n in variants}
    elapsed = dict.fromkeys(variants, 0.0)
    per_round = args.requests // args.rounds

    async def run(log: UsageLog, count: int, into: list[float]) -> float:
        left = count

        async def writer() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                await log.write(Usage(endpoint="chat.completions", model=MODEL, route="direct -> " + MODEL,
                                      prompt_tokens=12, completion_tokens=20, cost=4.2e-5, latency_ms=30.0,
                                      ttft_ms=5.0, response_id="chatcmpl-bench"))
                into.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(args.concurrency)))
        return time.perf_counter() - t0

    for log in logs.values():
        await run(log, args.warmup, [])
    names = list(variants)
    for rnd in range(args.rounds):
        for name in names if rnd % 2 == 0 else names[::-1]:
            elapsed[name] += await run(logs[name], per_round, waits[name])
    out = []
    for name, log in logs.items():
        log.close()
        log.db.close()
        n = len(waits[name])
        out.append({"variant": name, "rows": n, "rows_per_s": n / elapsed[name],
                    "wait_p50_ms": percentile(waits[name], 50) * 1000,
                    "wait_p99_ms": percentile(waits[name], 99) * 1000, "transactions": log.writer.batches})
    return out


def report_writes(data: dict[str, Any]) -> None:
    rows = data["writes_alone"]
    base = next(r for r in rows if r["variant"] == "per-request")
    print()
    print_table(f"Usage writes alone: UsageLog.write from {data['concurrency']} coroutines, {data['database']}",
                ["variant", "rows", "rows/s", "vs per-request", "wait p50 ms", "wait p99 ms", "transactions"],
                [[r["variant"], str(r["rows"]), f"{r['rows_per_s']:.0f}",
                  f"{r['rows_per_s'] / base['rows_per_s']:.2f}x", r["wait_p50_ms"], r["wait_p99_ms"],
                  str(r["transactions"])] for r in rows],
                notes=["wait: from write() to the row being committed (what a response waits for).",
                       "transactions include the warm-up."])


def report(data: dict[str, Any]) -> None:
    base = next(r for r in data["results"] if r["variant"] == "per-request")
    rows = [[r["variant"], str(r["requests"]), f"{r['req_per_s']:.0f}", f"{r['req_per_s'] / base['req_per_s']:.2f}x",
             r["total_p50_ms"], r["total_p99_ms"], r["baimo_cpu_ms_per_req"], str(r["usage_rows"]),
             str(r["requests"] - r["ok"])] for r in data["results"]]
    print()
    print_table(f"Usage writes: {data['concurrency']} concurrent streams of {data['tokens']} tokens, "
                f"{data['database']} (every response ends after its usage row is committed)",
                ["variant", "reqs", "req/s", "vs per-request", "p50 ms", "p99 ms", "baimo cpu ms/req", "usage rows",
                 "errors"], rows,
                notes=[f"client, upstream and Baimo share this machine's {os.cpu_count()} cores.",
                       "usage rows: rows written during the measured rounds (must equal reqs)."])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--requests", type=int, default=2000, help="measured requests per variant")
    p.add_argument("--rounds", type=int, default=4, help="interleaved rounds the requests are split into")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--tokens", type=int, default=20, help="tokens per streamed answer")
    p.add_argument("--linger-ms", type=float, default=5.0, help="the group+linger variant's wait")
    p.add_argument("--postgres", action="store_true", help="each server on its own database of a temporary "
                   "PostgreSQL (Debian's binaries) instead of SQLite")
    p.add_argument("--writes-only", action="store_true", help="only the in-process table (no servers, seconds of "
                   "CPU)")
    p.add_argument("--json", help="write the results to this file")
    args = p.parse_args()
    args.database = "PostgreSQL" if args.postgres else "SQLite (WAL)"
    variants = {"per-request": {"group_commit": False}, "group": {"group_commit": True, "linger_ms": 0.0},
                "group+linger": {"group_commit": True, "linger_ms": args.linger_ms}}
    upstream = None if args.writes_only else start_upstream(tokens=args.tokens)
    pg = None
    servers: dict[str, tuple[BaimoServer, str | None]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="baimo-usage-writes-"))
    try:
        if args.postgres:
            from tests.support.postgres import TempPostgres

            pg = TempPostgres(fsync=True).start()  # commits flushed to disk, as in production
        urls = {name: pg.create_database("alone_" + name.replace("+", "_").replace("-", "_")) if pg else
                f"sqlite:///{scratch / (name + '.db')}" for name in variants}
        alone = asyncio.run(writes_alone(args, urls, variants))
        data: dict[str, Any] = {"concurrency": args.concurrency, "database": args.database, "writes_alone": alone}
        for name, metering in variants.items() if not args.writes_only else ():
            db_url = None
            if pg is not None:
                db_url = pg.create_database(name.replace("+", "_").replace("-", "_"))
            config = {"default_model": MODEL, "metering": metering,
                      "models": [{"id": MODEL, "kind": "openai", "base_url": upstream.base_url,
                                  "upstream_model": f"ok:{args.tokens}", "price_input": 1.0, "price_output": 2.0}]}
            env = {"BAIMO_DATABASE_URL": db_url} if db_url else {}
            servers[name] = (BaimoServer(config, env=env, extra_args=["--log-level", "warning"]).start(), db_url)
        if servers:
            data.update(asyncio.run(bench(args, servers)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        for server, _ in servers.values():
            server.stop()
        if upstream is not None:
            upstream.stop()
        if pg is not None:
            pg.stop()
    report_writes(data)
    if "results" in data:
        report(data)
    dump_json(args.json, data)


if __name__ == "__main__":
    main()
