"""The evaluation runner's own costs: a cold run, the same run answered from the cache, a run cancelled half-way
and resumed, and the effect of `--concurrency`, all in-process against the scripted upstream (a remote model
that takes `--delay` seconds per answer). Ratios are against the cold run at concurrency 4 (the baseline,
measured in the same run); "calls" are the requests the upstream received (paid calls).

    .venv/bin/python bench/eval_runs.py --items 30 --delay 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, dump_json, print_table

from tests.support.upstream import Behaviour, ScriptedUpstream


def write_config(home: Path, url: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    models = "".join(f"  - id: remote/{m}\n    kind: openai\n    base_url: {url}\n    upstream_model: {m}\n"
                     f"    price_input: 1.0\n    price_output: 2.0\n" for m in ("a", "b"))
    (home / "baimo.yaml").write_text(f"default_model: remote/a\nprivacy:\n  mode: \"off\"\nmodels:\n{models}")


async def timed(suite: str, items: int, concurrency: int, **kw: Any) -> tuple[float, dict[str, Any]]:
    from baimo.api.state import AppState
    from baimo.config import Settings
    from baimo.evaluation.runner import run_suite

    state = AppState.build(Settings())
    try:
        start = time.perf_counter()
        run = await run_suite(state, suite, ["remote/a", "remote/b"], limit=items, concurrency=concurrency, **kw)
        return time.perf_counter() - start, run
    finally:
        await state.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=30, help="items of arith-bilingual per target (at most 30)")
    ap.add_argument("--delay", type=float, default=0.2, help="seconds the upstream takes per answer")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # "socket.send() raised" from the cancelled run's sockets
    n = min(args.items, 30)
    calls = 2 * n
    with tempfile.TemporaryDirectory() as tmp, ScriptedUpstream(default=Behaviour("ok", text="#### 42",
                                                                                     delay=args.delay)) as up:
        os.environ["BAIMO_HOME"] = str(Path(tmp) / "home")
        write_config(Path(os.environ["BAIMO_HOME"]), up.base_url)
        rows: list[dict[str, Any]] = []

        def measure(name: str, seconds: float, before: int) -> None:
            rows.append({"case": name, "seconds": seconds, "calls": len(up.requests_for("/chat/completions")) - before})

        asyncio.run(timed("arith-bilingual", 2, 4, temperature=0.9))  # warm-up: imports, HTTP clients
        before = len(up.requests_for("/chat/completions"))
        seconds, _ = asyncio.run(timed("arith-bilingual", n, 4))
        measure("cold, concurrency 4 (baseline)", seconds, before)
        before = len(up.requests_for("/chat/completions"))
        seconds, _ = asyncio.run(timed("arith-bilingual", n, 4))
        measure("same run again: from the cache", seconds, before)
        before = len(up.requests_for("/chat/completions"))
        seconds, _ = asyncio.run(timed("arith-bilingual", n, 1, use_cache=False))
        measure("cold, concurrency 1 (--no-cache)", seconds, before)
        before = len(up.requests_for("/chat/completions"))
        seconds, _ = asyncio.run(timed("arith-bilingual", n, 16, use_cache=False))
        measure("cold, concurrency 16 (--no-cache)", seconds, before)
        before = len(up.requests_for("/chat/completions"))
        cut = args.delay * n / 4  # about half of the 2n calls at concurrency 4
        seconds, _ = asyncio.run(_resume_case(n, cut))
        measure(f"cancelled after {cut:.1f} s, then resumed", seconds, before)

    base = rows[0]["seconds"]
    print_table(f"baimo eval run: {n} items x 2 remote targets, upstream {args.delay:.2f} s per answer "
                f"({calls} calls in a full run)",
                ["case", "wall s", "ratio", "upstream calls"],
                [(r["case"], f"{r['seconds']:.2f}", f"{r['seconds'] / base:.2f}", str(r["calls"])) for r in rows],
                notes=["ratio: wall time / the cold run at concurrency 4, same process and upstream",
                       "a resumed run repeats at most the calls in flight when it was cancelled "
                       f"(calls above {calls} in the last row)"])
    dump_json(args.json, {"items": n, "delay": args.delay, "rows": rows})


async def _resume_case(n: int, cut: float) -> tuple[float, None]:
    """A cold run (temperature 0.3: calls no earlier case made) cancelled after `cut` seconds, then resumed (its
    stored parameters, so the calls that finished before the cancel are cache hits): total wall time."""
    from baimo.api.state import AppState
    from baimo.config import Settings
    from baimo.evaluation.runner import run_suite

    started: list[str] = []
    state = AppState.build(Settings())
    t0 = time.perf_counter()
    task = asyncio.create_task(run_suite(state, "arith-bilingual", ["remote/a", "remote/b"], limit=n,
                                         concurrency=4, temperature=0.3, on_start=started.append))
    await asyncio.sleep(cut)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await state.close()
    state = AppState.build(Settings())
    try:
        await run_suite(state, "arith-bilingual", resume=started[0])
    finally:
        await state.close()
    return time.perf_counter() - t0, None


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    main()
