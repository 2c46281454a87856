"""`baimo eval`: evaluate models, routers and personas on a suite (run, list, show, suites).

Targets are called in-process exactly as `baimo chat` calls them and metered as usage with endpoint "eval".
Results go to the database as each item finishes; Ctrl-C or SIGTERM marks the run interrupted, and
`baimo eval run --resume RUN` finishes it without repeating a finished item or a paid (cached) call.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from baimo.cli_output import JsonOpt, app_state, err, print_json
from baimo.errors import InvalidRequest

eval_app = typer.Typer(help="Evaluate models, routers and personas on suites: accuracy with 95 % CI, cost, latency.",
                       no_args_is_help=True)


def _floats(text: str | None, option: str) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidRequest(f"{option} takes numbers separated by commas, e.g. 0,0.3,1,3", param=option) from None


def _table(run: dict[str, Any]) -> Any:
    """R's report table when present (Pareto-front marks), else a plain one."""
    try:
        from baimo.evaluation.report import render_table
    except ImportError:  # the reports module is optional for the core
        from rich.table import Table

        table = Table(title=f"{run['suite']['name']} · run {run['run_id']} · {run['status']}")
        for col in ("target", "n", "accuracy ± 95% CI", "cost $", "tokens in/out", "p50/p95 ms", "served"):
            table.add_column(col)
        for t in run["targets"]:
            lo, hi = t["ci95"]
            table.add_row(t["id"], str(t["n"]), f"{t['accuracy']:.1%} [{lo:.1%}, {hi:.1%}]", f"{t['cost_usd']:.6f}",
                          f"{t['prompt_tokens']}/{t['completion_tokens']}",
                          f"{t['latency_ms']['p50']:.0f}/{t['latency_ms']['p95']:.0f}",
                          ", ".join(f"{m} {s:.0%}" for m, s in t["served_share"].items()))
        return table
    return render_table(run)


def _write_report(run: dict[str, Any], out_dir: Path) -> Path:
    """run.json and, when the reports module is there, report.html with the frontier plot."""
    try:
        from baimo.evaluation.report import write_report
    except ImportError:
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "run.json"
        path.write_text(json.dumps(run, ensure_ascii=False, indent=2), encoding="utf-8")
        return path
    return write_report(run, out_dir)


@eval_app.command("run")
def run(suite: Annotated[str | None, typer.Argument(help="A built-in suite (baimo eval suites), a .jsonl path, "
                                                         "gsm8k, cmmlu[:subject] or mt-bench; omit with --resume.")]
        = None,
        models: Annotated[str | None, typer.Option("--models", "-m", help="Model, router or persona/<name> ids, "
                                                   "comma-separated.")] = None,
        limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
        concurrency: Annotated[int, typer.Option(min=1, max=64, help="Calls in flight at once.")] = 4,
        few_shot: Annotated[int, typer.Option("--few-shot", min=0, help="Solved examples before each question "
                                              "(the suite's few-shot or dev examples).")] = 0,
        cot: Annotated[bool, typer.Option("--cot", help="Ask for step-by-step reasoning before the answer.")]
        = False,
        judge: Annotated[str | None, typer.Option(help="The judge model of judged, pairwise and kb_qa suites.")]
        = None,
        temperature: Annotated[float, typer.Option(min=0, max=2, help="Sampling temperature.")] = 0.0,
        max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per answer.")] = 512,
        sweep_lam: Annotated[str | None, typer.Option("--sweep-lam", help="For routers: one target per λ "
                                                      "(comma-separated), the router's cost-quality curve.")] = None,
        resume: Annotated[str | None, typer.Option(help="Finish an interrupted run (its suite, targets and "
                                                   "parameters).")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Call again even when the same call was "
                                               "answered before.")] = False,
        report: Annotated[Path | None, typer.Option(help="Write run.json and the HTML report into this folder.")]
        = None,
        as_json: JsonOpt = False) -> None:
    """Run a suite against models, routers and personas; print accuracy ± 95 % CI, cost, tokens, latency and, for
    routers, the share served by each model."""
    from baimo.evaluation.runner import EvalParams

    if resume is None and (suite is None or not models):
        raise InvalidRequest("give a SUITE and --models (or --resume RUN)", param="models")
    params = EvalParams(limit=limit, few_shot=few_shot, cot=cot, temperature=temperature, max_tokens=max_tokens,
                        judge=judge, concurrency=concurrency, sweep_lam=_floats(sweep_lam, "--sweep-lam"))
    started: list[str] = []
    try:
        result = asyncio.run(_run(suite or "", (models or "").split(","), params, resume, not no_cache, started))
    except (KeyboardInterrupt, asyncio.CancelledError):
        if started:
            err.print(f"interrupted: run {started[0]} is saved; finish it with `baimo eval run --resume {started[0]}`")
        raise typer.Exit(130) from None
    if report is not None:
        err.print(f"wrote {_write_report(result, report)}")
    if as_json:
        print_json(result)
    else:
        _out().print(_table(result))


def _out() -> Console:
    """stdout; 160 columns when it is not a terminal (a wide table wrapped at 80 columns is unreadable)."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def eval_progress() -> Any:
    """The progress bar of an evaluation run on stderr (items done of the total, time left): a rich Progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=err)


async def _run(suite: str, models: list[str], params: Any, resume: str | None, use_cache: bool,
               started: list[str]) -> dict[str, Any]:
    from baimo.evaluation.runner import run_suite

    task = asyncio.current_task()
    if task is not None:  # SIGTERM (kill) ends the run like Ctrl-C: marked interrupted, resumable
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    s = app_state()
    try:
        with eval_progress() as progress:
            def on_start(run_id: str) -> None:
                started.append(run_id)
                progress.console.print(f"run {run_id}")

            return await run_suite(s, suite, models, params=params, resume=resume, use_cache=use_cache,
                                   progress=progress, on_start=on_start)
    finally:
        await s.close()


@eval_app.command("list")
def list_(as_json: JsonOpt = False,
          limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
          suite: Annotated[str | None, typer.Option(help="Only runs of this suite.")] = None) -> None:
    """List evaluation runs, newest first."""
    from baimo.evaluation.store import list_runs

    runs = list_runs(limit, suite=suite)
    if as_json:
        print_json(runs)
        return
    for r in runs:
        typer.echo(f"{r['run_id']}  {(r['created_at'] or '')[:19]}  {r['status']:<11}  {r['suite']}  "
                   f"{','.join(r['targets'])}  ({r['results']} results)")


@eval_app.command("show")
def show(run_id: Annotated[str, typer.Argument(help="A run id (or a unique prefix).")],
         as_json: JsonOpt = False) -> None:
    """Show a run: the table, or the whole run JSON with --json."""
    from baimo.evaluation.store import load_run

    result = load_run(run_id)
    if as_json:
        print_json(result)
    else:
        _out().print(_table(result))


@eval_app.command("suites")
def suites(as_json: JsonOpt = False) -> None:
    """List the built-in suites (gsm8k, cmmlu[:subject] and mt-bench are read from BAIMO_EVAL_DATA)."""
    from baimo.evaluation.suites import builtin_suites

    rows = [s.describe() for s in builtin_suites()]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['name']:<18} {r['kind']:<16} {r['items']:>4} items  {r['license'] or ''}")


from baimo import cli_eval_report  # noqa: E402,F401  (R: report, compare, schedule on eval_app)
