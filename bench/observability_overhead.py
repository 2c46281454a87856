"""What metrics, request ids, JSON access logs and redaction add to a request (issue 11 §3).

Two copies of the Baimo app run in this process, each with its own BAIMO_HOME, in front of the scripted upstream
(tests/support/upstream.py, a separate process, 20 tokens): `on` is the app as served (observability middleware,
usage listener counting metrics, JSON log lines written to a file through the redaction filter), `off` is the same
app with the middleware, the listener and the log handler removed. Requests go through httpx's ASGI transport (no
sockets on Baimo's side, so the difference is the observability code, not the network), one at a time, in
alternating rounds (off, on, off, on, ...) so that load on the machine drifts into both alike. Reported: p50, mean
and p99 latency per variant, the added milliseconds and the on/off ratio; and the time of one /metrics scrape.

    .venv/bin/python bench/observability_overhead.py                 # 6 rounds x 100 requests per variant
    .venv/bin/python bench/observability_overhead.py --rounds 2 --requests 50
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import percentile, print_table, start_upstream  # noqa: E402

BODY = {"model": "remote/bench", "messages": [{"role": "user", "content": "Say something short."}]}


def make_app(home: Path, upstream_url: str, observed: bool) -> Any:
    from baimo.api.app import create_app
    from baimo.config import Settings
    from baimo.observability.middleware import RequestObservability

    home.mkdir(parents=True, exist_ok=True)
    (home / "baimo.yaml").write_text(
        "models:\n  - id: remote/bench\n    kind: openai\n    base_url: " + upstream_url
        + "\n    upstream_model: ok\n    price_input: 1.0\n    price_output: 2.0\n", encoding="utf-8")
    app = create_app(Settings(home=home))
    if not observed:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not RequestObservability]
    return app


def set_logging(log_file: Any | None) -> None:
    """Baimo's JSON log handler writing to `log_file`, or no handler at all (None)."""
    from baimo.observability.logs import HANDLER_NAME, setup_logging

    root = logging.getLogger()
    if log_file is None:
        for h in [h for h in root.handlers if h.name == HANDLER_NAME]:
            root.removeHandler(h)
        logging.getLogger("baimo").setLevel(logging.WARNING)  # the access log line is not even formatted
    else:
        setup_logging("json", "info", stream=log_file)


async def run(rounds: int, requests: int) -> None:
    from baimo.observability import metrics

    upstream = start_upstream(tokens=20)
    tmp = Path(tempfile.mkdtemp(prefix="baimo-obs-bench-"))
    log_file = (tmp / "server.log").open("w", encoding="utf-8")
    apps = {"off": make_app(tmp / "off", upstream.base_url, False), "on": make_app(tmp / "on", upstream.base_url,
                                                                                    True)}
    samples: dict[str, list[float]] = {"off": [], "on": []}
    scrape: list[float] = []
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            if name == "off":
                app.state.baimo.usage.listeners.remove(metrics.observe_usage)
            clients[name] = await stack.enter_async_context(httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://baimo", timeout=30))
        for name, client in clients.items():  # warm-up: connections, first-request imports
            set_logging(log_file if name == "on" else None)
            for _ in range(10):
                (await client.post("/v1/chat/completions", json=BODY)).raise_for_status()
        for _ in range(rounds):
            for name, client in clients.items():
                set_logging(log_file if name == "on" else None)
                for _ in range(requests):
                    t0 = time.perf_counter()
                    r = await client.post("/v1/chat/completions", json=BODY)
                    samples[name].append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
            t0 = time.perf_counter()
            (await clients["on"].get("/metrics")).raise_for_status()
            scrape.append((time.perf_counter() - t0) * 1000)
    upstream.stop()
    log_file.close()
    lines = sum(1 for _ in (tmp / "server.log").open(encoding="utf-8"))
    off, on = samples["off"], samples["on"]
    rows = []
    for label, fn in (("p50", lambda v: percentile(v, 50)), ("mean", statistics.fmean),
                      ("p99", lambda v: percentile(v, 99))):
        rows.append([label, fn(off), fn(on), fn(on) - fn(off), f"{fn(on) / fn(off):.3f}"])
    print_table(f"Observability overhead per request ({rounds} rounds x {requests} sequential requests per variant,"
                " in-process ASGI, scripted upstream 20 tokens)",
                ["latency ms", "off (baseline)", "on", "added ms", "ratio on/off"], rows,
                notes=[f"/metrics scrape: median {statistics.median(scrape):.2f} ms; {lines} JSON log lines written "
                       f"by `on` ({lines / max(1, len(on) + 10):.2f} per request)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.requests))


if __name__ == "__main__":
    main()
