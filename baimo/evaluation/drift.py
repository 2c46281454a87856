"""Drift watch: re-run a small canary suite against each remote model and flag a significant drop.

Users of hosted models report silent quality changes (a provider swaps weights or quantization behind the same
name). Every `every` (CLI `baimo eval schedule`, or the server when baimo.yaml sets `evaluation.canary_every`),
the canary suite (built-in `canary`: 20 deterministic numeric questions, temperature 0) runs against each remote
model (every configured model whose kind is not `llamacpp`), and each model's run is compared with that model's
previous canary run of the same suite on the paired items with McNemar's exact test
(`baimo.evaluation.compare`): a **drop** is flagged when p < 0.05 and the accuracy fell. McNemar rather than
Wilson-interval non-overlap because the items are the same in both runs: the paired test uses that and is the
more powerful of the two (non-overlapping 95 % intervals correspond to a much smaller p; Schenker and Gentleman
2001).

A flagged drop is a WARNING log line (`canary drift: ...`), `baimo_eval_drift_drops_total{model}` +1 and the
`baimo_eval_canary_accuracy{model}` gauge; `baimo eval schedule --once` also exits 3 (for cron). In the server,
one process per BAIMO_HOME runs the watch (a lock file), whatever `--workers N` says.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from prometheus_client import Counter, Gauge

from baimo.errors import InvalidRequest
from baimo.evaluation.compare import ALPHA, compare_targets
from baimo.observability.metrics import model_label

log = logging.getLogger("baimo.evaluation.drift")

CANARY_SUITE = "canary"
CANARY_ACCURACY = Gauge("baimo_eval_canary_accuracy", "Accuracy (0-1) of a model's latest canary run",
                        ["model"], multiprocess_mode="livemostrecent")
DRIFT_DROPS = Counter("baimo_eval_drift_drops", "Canary runs flagged as a significant drop (McNemar exact, "
                      "p < 0.05) against the model's previous canary run", ["model"])
_EVERY = re.compile(r"^(\d+)\s*([mhdw])$")
_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


def every_seconds(text: str) -> float:
    """Seconds of a period like `30m`, `24h`, `7d`, `2w` (the form of `evaluation.canary_every`).
    Raises InvalidRequest (param `every`) for anything else or zero."""
    m = _EVERY.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise InvalidRequest(f"--every {text!r}: use a period like 30m, 24h, 7d or 2w", param="every")
    return int(m.group(1)) * _SECONDS[m.group(2)]


@dataclass
class DriftCheck:
    """One model's canary result against its previous canary run (`previous_*` None on a first run).
    `lost`/`gained`: paired items right only before / only now; `dropped`: a significant fall (p < ALPHA)."""

    model: str
    run_id: str
    accuracy: float
    previous_run_id: str | None = None
    previous_accuracy: float | None = None
    paired: int = 0
    lost: int = 0
    gained: int = 0
    p_value: float | None = None
    dropped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check(model: str, current: dict[str, Any], previous: dict[str, Any] | None, alpha: float = ALPHA) -> DriftCheck:
    """Compare `model`'s target in the `current` canary run with the `previous` one (run JSONs)."""
    now = next(t for t in current["targets"] if t["id"] == model)
    result = DriftCheck(model, current["run_id"], now["accuracy"])
    before = next((t for t in (previous or {}).get("targets", []) if t["id"] == model), None)
    if previous is None or before is None:
        return result
    c = compare_targets(before, now, previous, current, alpha)
    result.previous_run_id, result.previous_accuracy = previous["run_id"], c["accuracy_a"]
    result.paired, result.lost, result.gained, result.p_value = c["paired"], c["lost"], c["gained"], c["p_value"]
    result.dropped = c["direction"] == "worse"
    return result


def publish(c: DriftCheck) -> None:
    """The check as metrics and, for a drop, a WARNING log line."""
    CANARY_ACCURACY.labels(model_label(c.model)).set(c.accuracy)
    if c.dropped:
        DRIFT_DROPS.labels(model_label(c.model)).inc()
        log.warning("canary drift: %s dropped from %.1f %% to %.1f %% on %d paired items (%d lost, %d gained, "
                    "McNemar exact p = %.4g); runs %s -> %s", c.model, 100 * (c.previous_accuracy or 0),
                    100 * c.accuracy, c.paired, c.lost, c.gained, c.p_value, c.previous_run_id, c.run_id)
    else:
        log.info("canary: %s %.1f %% (previous %s, p = %s)", c.model, 100 * c.accuracy,
                 c.previous_run_id or "none", "-" if c.p_value is None else f"{c.p_value:.3g}")


def remote_models(state: Any) -> list[str]:
    """Ids of the configured models served by a remote API (kind other than `llamacpp`)."""
    return [m.id for m in state.config.models if m.kind != "llamacpp"]


def previous_canary(state: Any, suite: str, model: str, before_run: str) -> dict[str, Any] | None:
    """The latest finished run of the suite named `suite` that evaluated `model`, other than `before_run`
    (None if none)."""
    from baimo.evaluation.store import EvalStore

    store = EvalStore(state.db)
    for summary in store.list_runs(suite=suite):
        if summary["run_id"] != before_run and summary["status"] == "finished" and model in summary["targets"]:
            return store.load_run(summary["run_id"])
    return None


async def canary_once(state: Any = None, suite: str = CANARY_SUITE, models: list[str] | None = None,
                      ) -> list[DriftCheck]:
    """Run `suite` once against `models` (default: every remote model), one run per model so that each model's
    history stands alone, compare each with its previous canary run, publish and return the checks.
    `state`: a running AppState (the server's), else one is built from the environment and closed after."""
    from baimo.evaluation.runner import run_suite

    own = state is None
    if own:
        from baimo.cli_output import app_state

        state = app_state()
    try:
        checks = []
        for model in models if models is not None else remote_models(state):
            # no answer cache: the point is to ask the model again
            run = await run_suite(state, suite, [model], use_cache=False, temperature=0.0)
            c = check(model, run, await asyncio.to_thread(previous_canary, state, run["suite"]["name"], model,
                                                            run["run_id"]))
            publish(c)
            checks.append(c)
        return checks
    finally:
        if own:
            await state.close()


async def canary_loop(state: Any = None, suite: str = CANARY_SUITE, every_s: float = 86400.0,
                      models: list[str] | None = None,
                      report: Callable[[list[DriftCheck]], None] | None = None) -> None:
    """`canary_once` every `every_s` seconds until cancelled; a failed round is logged and retried next period."""
    while True:
        try:
            checks = await canary_once(state, suite, models)
            if report:
                report(checks)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one failed round (an upstream down) must not end the watch
            log.exception("canary: the %s round failed; next try in %.0f s", suite, every_s)
        await asyncio.sleep(every_s)


def _only_process(path: Path) -> IO[bytes] | None:
    """An exclusive lock on `path` (the open file, which holds it until closed), or None when another process
    holds it: of the N workers of `baimo serve --workers N` sharing one BAIMO_HOME, one runs the watch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


async def watch(state: Any) -> None:
    """The server's drift watch (`evaluation.canary_every` in baimo.yaml): `canary_loop` with the configured suite,
    period and models, in one process per BAIMO_HOME (a lock file under BAIMO_HOME/run)."""
    ev = state.config.evaluation
    lock = _only_process(state.settings.home / "run" / "canary.lock")
    if lock is None:
        log.info("canary: another process of this server runs the drift watch")
        return
    try:
        await canary_loop(state, ev.canary_suite, every_seconds(ev.canary_every), ev.canary_models)
    finally:
        lock.close()
