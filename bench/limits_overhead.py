"""What budgets and rate limits add to a request: the admission check (and the settlement) in-process.

For one key, measures `Admission.admit` followed by `Ticket.settle`, sequentially (latency per request, p50/p99)
and from 50 threads at once (admissions per second), for: no limits (the baseline, measured in the same run),
RPM+TPM counted in memory, RPM+TPM in Redis (Debian's redis-server, started here), a budget on SQLite, a budget on
PostgreSQL (Debian's, started here), and a budget on PostgreSQL with RPM+TPM in Redis (the replicas' setup).

    .venv/bin/python bench/limits_overhead.py                 # 500 sequential, 1,000 concurrent per case
    .venv/bin/python bench/limits_overhead.py --requests 200 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import dump_json, percentile, print_table  # noqa: E402

from baimo.config import LimitsConfig, ModelConfig  # noqa: E402
from baimo.metering.admission import Admission  # noqa: E402
from baimo.metering.budgets import BudgetLedger  # noqa: E402
from baimo.metering.ratelimit import RateLimits  # noqa: E402
from baimo.store.database import Database  # noqa: E402
from tests.support.postgres import TempPostgres  # noqa: E402
from tests.support.redis_server import TempRedis  # noqa: E402

MODEL = ModelConfig(id="remote/m", kind="openai", base_url="http://127.0.0.1:9/v1", price_input=1.0,
                    price_output=2.0)
MESSAGES = [{"role": "user", "content": "How many moons does Jupiter have? Answer in one sentence."}]


def admission(db: Database, redis_url: str | None, *, budget: bool, rates: bool, key: str) -> Admission:
    ledger = BudgetLedger(db)
    if budget:
        ledger.set_limits(f"key:{key}", budget_usd=1e6, period="month")
    if rates:
        ledger.set_limits(f"key:{key}", rpm=10**8, tpm=10**9)
    return Admission(ledger, RateLimits("sliding-window", redis_url), LimitsConfig(), lambda _t: [MODEL])


def one(adm: Admission, key: str, loop: asyncio.AbstractEventLoop) -> float:
    started = time.perf_counter()
    ticket = loop.run_until_complete(adm.admit(key_id=key, target="remote/m", messages=MESSAGES, max_tokens=64))
    ticket.settle(0.0001)
    return (time.perf_counter() - started) * 1e6


def measure(adm: Admission, key: str, sequential: int, concurrent: int) -> tuple[float, float, float]:
    """(p50 µs, p99 µs, admissions/s with 50 threads)."""
    loop = asyncio.new_event_loop()
    for _ in range(20):  # warm caches and connections
        one(adm, key, loop)
    times = [one(adm, key, loop) for _ in range(sequential)]
    loop.close()

    def worker(n: int) -> None:
        own = asyncio.new_event_loop()
        for _ in range(n):
            one(adm, key, own)
        own.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        list(pool.map(worker, [concurrent // 50] * 50))
    rate = (concurrent // 50 * 50) / (time.perf_counter() - started)
    return percentile(times, 50), percentile(times, 99), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=500, help="sequential requests per case")
    ap.add_argument("--concurrent", type=int, default=1000, help="requests per case from 50 threads")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="baimo-limits-bench-"))
    sqlite = Database(f"sqlite:///{tmp / 'bench.db'}")
    with TempRedis() as redis:
        pg = TempPostgres().start()
        try:
            postgres = Database(pg.url)
            cases = [
                ("no limits (baseline)", sqlite, None, False, False),
                ("RPM+TPM, memory", sqlite, None, False, True),
                ("RPM+TPM, Redis", sqlite, redis.url, False, True),
                ("budget, SQLite", sqlite, None, True, False),
                ("budget, PostgreSQL", postgres, None, True, False),
                ("budget PostgreSQL + RPM/TPM Redis", postgres, redis.url, True, True),
            ]
            results = []
            for i, (name, db, url, budget, rates) in enumerate(cases):
                key = f"bench{i}"
                results.append((name, *measure(admission(db, url, budget=budget, rates=rates, key=key), key,
                                               args.requests, args.concurrent)))
            postgres.close()
        finally:
            pg.stop()
    sqlite.close()
    base = results[0][1]
    rows = [(name, f"{p50:.0f}", f"{p99:.0f}", f"{p50 / base:.1f}x", f"{rate:.0f}")
            for name, p50, p99, rate in results]
    print_table("Admission + settlement per request (one key; in-process; µs)",
                ["case", "p50 µs", "p99 µs", "p50 vs baseline", "admits/s (50 threads)"], rows,
                [f"{args.requests} sequential requests per case, {args.concurrent} from 50 threads; "
                 "the baseline is the same call for a key without limits, measured in this run."])
    dump_json(args.json, [{"case": n, "p50_us": a, "p99_us": b, "per_s": r} for n, a, b, r in results])


if __name__ == "__main__":
    main()
