"""`baimo eval report`, `baimo eval compare` and `baimo eval schedule`: reports of stored runs, what changed between
two runs (McNemar's exact test), and the drift watch of remote models on a canary suite.

Registered on the `eval` group of baimo/cli_eval.py (which imports this module). A RUN argument is a run id from
the database, a run.json file, or a report folder holding one.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from baimo.cli_eval import eval_app
from baimo.cli_output import JsonOpt, err, print_json
from baimo.errors import InvalidRequest, NotFound

RunArg = Annotated[str, typer.Argument(help="A run id, a run.json file or a report folder holding one.")]


def load_run_ref(ref: str) -> dict[str, Any]:
    """The run JSON named by `ref`: a file, a folder with run.json, else a run id in the database.
    Raises NotFound (one CLI line) when none matches, InvalidRequest when the file is not a run."""
    path = Path(ref)
    if path.is_dir():
        path = path / "run.json"
    if path.is_file():
        try:
            run = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidRequest(f"{path} is not a run JSON: {exc}") from None
        if not isinstance(run, dict) or not isinstance(run.get("targets"), list):
            raise InvalidRequest(f"{path} is not a run JSON (no 'targets' list)")
        return run
    from baimo.evaluation.store import load_run

    try:
        return load_run(ref)
    except NotFound:
        raise NotFound(f"no evaluation run {ref!r} (not a run id, nor a run.json file or folder)") from None


@eval_app.command("report")
def report(run_ref: RunArg,
           out: Annotated[Path, typer.Option("--out", "-o", help="Folder for run.json, report.html and "
                                             "frontier.png.")],
           as_json: JsonOpt = False) -> None:
    """Write a run's HTML report (cost–quality frontier, per-target table), run.json and frontier.png."""
    from baimo.evaluation.report import render_table, write_report

    run = load_run_ref(run_ref)
    page = write_report(run, out)
    if as_json:
        print_json({"run_id": run.get("run_id"), "report": str(page), "run_json": str(out / "run.json"),
                    "frontier_png": str(out / "frontier.png")})
        return
    Console().print(render_table(run))
    err.print(f"wrote {page}")


@eval_app.command("compare")
def compare(run_a: Annotated[str, typer.Argument(help="The earlier run (id, run.json or folder).")],
            run_b: Annotated[str, typer.Argument(help="The later run.")],
            as_json: JsonOpt = False) -> None:
    """What changed from RUN_A to RUN_B per target: accuracy on the paired items with McNemar's exact test
    (changes with p < 0.05 flagged), cost per item and latency."""
    from baimo.evaluation.compare import compare_runs

    result = compare_runs(load_run_ref(run_a), load_run_ref(run_b))
    if as_json:
        print_json(result)
        return
    Console().print(compare_table(result))
    for side, names in (("A", result["only_a"]), ("B", result["only_b"])):
        if names:
            err.print(f"only in run {side}: {', '.join(names)}")


def compare_table(result: dict[str, Any]) -> Table:
    """The compare result as a rich table: one row per target present in both runs."""
    table = Table(title=f"{result['run_a']} → {result['run_b']} · {result['test']}, α = {result['alpha']}",
                  title_justify="left")
    for col in ("Target", "Paired", "Accuracy A", "Accuracy B", "Δ", "Lost / gained", "p", "Change",
                "Δ cost/item", "Δ p50 ms"):
        table.add_column(col, justify="left" if col in ("Target", "Change") else "right")
    pct = lambda v: "–" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    for t in result["targets"]:
        delta = "–" if t["delta_accuracy"] is None else f"{100 * t['delta_accuracy']:+.1f} pt"
        change = {"worse": "[bold red]worse ▼[/]", "better": "[bold green]better ▲[/]"}.get(t["direction"], "same")
        table.add_row(t["target"], str(t["paired"]), pct(t["accuracy_a"]), pct(t["accuracy_b"]), delta,
                      f"{t['lost']} / {t['gained']}", f"{t['p_value']:.3g}", change,
                      f"{t['delta_cost_per_item_usd']:+.6f}", f"{t['delta_latency_p50_ms']:+.0f}")
    return table


@eval_app.command("schedule")
def schedule(suite: Annotated[str, typer.Option("--suite", help="The canary suite (built-in name or path).")]
             = "canary",
             every: Annotated[str, typer.Option("--every", help="Time between canary runs: 30m, 24h, 7d.")] = "24h",
             once: Annotated[bool, typer.Option("--once", help="Run the canary once and exit (for cron); exit "
                                                "code 3 when a drop was flagged.")] = False,
             models: Annotated[str | None, typer.Option("--models", help="Comma-separated model ids (default: "
                                                        "every remote model of the config).")] = None,
             as_json: JsonOpt = False) -> None:
    """Drift watch: re-run a small canary suite against each remote model, compare with that model's previous
    canary run (McNemar's exact test on the same items) and flag a significant drop (log line, metric, exit 3
    with --once)."""
    from baimo.evaluation.drift import canary_loop, canary_once, every_seconds

    seconds = every_seconds(every)
    ids = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if not once:
        err.print(f"drift watch: suite {suite} every {every}; Ctrl-C to stop")
        asyncio.run(canary_loop(suite=suite, every_s=seconds, models=ids, report=_print_checks))
        return
    checks = asyncio.run(canary_once(suite=suite, models=ids))
    if as_json:
        print_json({"suite": suite, "checks": [c.as_dict() for c in checks]})
    else:
        _print_checks(checks)
    if any(c.dropped for c in checks):
        raise typer.Exit(3)


def _print_checks(checks: list[Any]) -> None:
    table = Table(title="Canary drift watch (McNemar exact, α = 0.05)", title_justify="left")
    for col in ("Model", "Run", "Previous", "Accuracy", "Before", "Lost / gained", "p", "Drift"):
        table.add_column(col, justify="left" if col in ("Model", "Run", "Previous", "Drift") else "right")
    for c in checks:
        before = "–" if c.previous_accuracy is None else f"{100 * c.previous_accuracy:.1f} %"
        drift = "[bold red]DROP[/]" if c.dropped else ("first run" if c.previous_run_id is None else "ok")
        table.add_row(c.model, c.run_id[:8], (c.previous_run_id or "–")[:8], f"{100 * c.accuracy:.1f} %", before,
                      f"{c.lost} / {c.gained}", "–" if c.p_value is None else f"{c.p_value:.3g}", drift)
    Console().print(table)
