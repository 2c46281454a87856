"""What metrics, request ids, JSON access logs and redaction add to a request (issue 11 §3).

Two copies of the Baimo app run in this process, each with its own BAIMO_HOME and one model answering a fixed text
in process (the `StaticAnswer` backend, registered as kind `static`: a network upstream's delayed-ACK jitter of up
to 40 ms would drown a sub-millisecond difference): `on` is the app as served (observability middleware,
usage listener counting metrics, JSON log lines written to a file through the redaction filter), `off` is the same
app with the middleware, the listener and the log handler removed. Requests go through httpx's ASGI transport (no
sockets on Baimo's side, so the difference is the observability code, not the network), one at a time, in
alternating rounds (off, on, off, on, ...) so that load on the machine drifts into both alike. Reported: p50, mean
and p99 latency per variant, the added milliseconds and the on/off ratio; and the time of one /metrics scrape.

    .venv/bin/python bench/observability_overhead.py                 # 6 rounds x 300 requests per variant
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
from _common import percentile, print_table  # noqa: E402

BODY = {"model": "remote/bench", "messages": [{"role": "user", "content": "Say something short."}]}


def make_app(home: Path, observed: bool) -> Any:
    from baimo.api.app import create_app
    from baimo.backends.registry import BACKEND_KINDS, register_kind
    from baimo.backends.static import StaticAnswer
    from baimo.config import Settings
    from baimo.observability.middleware import RequestObservability

    if "static" not in BACKEND_KINDS:
        register_kind("static", lambda config, _settings: StaticAnswer("A short fixed answer.", config.id))
    home.mkdir(parents=True, exist_ok=True)
    (home / "baimo.yaml").write_text("models:\n  - id: remote/bench\n    kind: static\n", encoding="utf-8")
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

    tmp = Path(tempfile.mkdtemp(prefix="baimo-obs-bench-"))
    log_file = (tmp / "server.log").open("w", encoding="utf-8")
    apps = {"off": make_app(tmp / "off", False), "on": make_app(tmp / "on", True)}
    samples: dict[str, list[float]] = {"off": [], "on": []}
    scrape: list[float] = []
    cpu = {"off": 0.0, "on": 0.0}  # process CPU seconds (all threads), less sensitive to other processes' load
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
        for round_ in range(rounds):
            for name in (("off", "on") if round_ % 2 == 0 else ("on", "off")):
                client = clients[name]
                set_logging(log_file if name == "on" else None)
                cpu0 = time.process_time()
                for _ in range(requests):
                    t0 = time.perf_counter()
                    r = await client.post("/v1/chat/completions", json=BODY)
                    samples[name].append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
                cpu[name] += time.process_time() - cpu0
            t0 = time.perf_counter()
            (await clients["on"].get("/metrics")).raise_for_status()
            scrape.append((time.perf_counter() - t0) * 1000)
    log_file.close()
    lines = sum(1 for _ in (tmp / "server.log").open(encoding="utf-8"))
    off, on = samples["off"], samples["on"]
    rows = []
    for label, fn in (("p50", lambda v: percentile(v, 50)), ("mean", statistics.fmean),
                      ("p99", lambda v: percentile(v, 99))):
        rows.append([label, fn(off), fn(on), fn(on) - fn(off), f"{fn(on) / fn(off):.3f}"])
    cpu_off, cpu_on = (cpu[n] * 1000 / (rounds * requests) for n in ("off", "on"))
    rows.append(["CPU ms/request", cpu_off, cpu_on, cpu_on - cpu_off, f"{cpu_on / cpu_off:.3f}"])
    print_table(f"Observability overhead per request ({rounds} rounds x {requests} sequential requests per variant,"
                " in-process ASGI, fixed-answer model)",
                ["latency ms", "off (baseline)", "on", "added ms", "ratio on/off"], rows,
                notes=[f"/metrics scrape: median {statistics.median(scrape):.2f} ms; {lines} JSON log lines written "
                       f"by `on` ({lines / max(1, len(on) + 10):.2f} per request)"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.rounds, args.requests))


if __name__ == "__main__":
    main()
