"""`baimo distill`: training data for small models from strong ones: export, generate, mix, task make.

(`train`, `convert`, `register` are added by baimo/cli_distill_train.py.) Data goes to the --out file; a summary
goes to stderr (or one JSON document to stdout with --json); every error is one line and a non-zero exit.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from baimo.cli_output import JsonOpt, err, print_json
from baimo.errors import BaimoError, InvalidRequest

distill_app = typer.Typer(help="Distillation: training data from strong models' answers (export, generate, mix, "
                               "task), then training.", no_args_is_help=True)
task_app = typer.Typer(help="Synthetic narrow tasks for the distillation flywheel.", no_args_is_help=True)
distill_app.add_typer(task_app, name="task")

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="JSONL file to write.")]
MixOpt = Annotated[str | None, typer.Option("--mix", help="Ratios of named sources, e.g. general=0.7,domain=0.3.")]
SizeOpt = Annotated[int | None, typer.Option("--size", help="Rows in the mix (default: the most that need no "
                                                           "repeated row).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (the same seed gives the same file).")]
RepeatOpt = Annotated[bool, typer.Option("--allow-repeat", help="Reuse rows of a source too small for its share.")]


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"--since {value!r} is not a date (YYYY-MM-DD or ISO 8601)", param="since") from None
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _principal(db: Any, key: str | None) -> Any:
    """The caller: the principal of `key` (tenancy: its owner's conversations, an admin all), None without one
    (the operator at the machine, like every other `baimo` command: all owners)."""
    if not key:
        return None
    from baimo.metering.keys import KeyStore

    return KeyStore(db).resolve(f"Bearer {key}")


def _sources(named: list[str] | None) -> dict[str, list[dict[str, Any]]]:
    """`NAME=FILE` (or FILE, named by its stem) -> rows."""
    from baimo.distill.dedup import read_jsonl

    out: dict[str, list[dict[str, Any]]] = {}
    for spec in named or []:
        name, eq, path = spec.partition("=")
        if not eq:
            name, path = Path(spec).stem, spec
        if name in out:
            raise InvalidRequest(f"source {name!r} is given twice", param="sources")
        out[name] = list(read_jsonl(Path(path)))
    return out


def _write_mix(sources: dict[str, list[dict[str, Any]]], spec: str, size: int | None, seed: int,
               allow_repeat: bool, out: Path) -> dict[str, int]:
    from baimo.distill.dedup import write_jsonl
    from baimo.distill.mix import mix, parse_mix

    rows, counts = mix(sources, parse_mix(spec), size=size, seed=seed, allow_repeat=allow_repeat)
    write_jsonl(out, rows)
    return counts


@distill_app.command("export")
def export(out: OutOpt,
           from_usage: Annotated[bool, typer.Option("--from-usage", help="From stored conversations (the only "
                                                    "source so far; required).")] = False,
           persona: Annotated[str | None, typer.Option(help="Only answers given as this persona.")] = None,
           model: Annotated[list[str] | None, typer.Option("--model", "-m", help="Teacher model(s) whose answers "
                            "to take (repeat; default: every remote model and the largest local one).")] = None,
           min_rating: Annotated[float | None, typer.Option(help="Only answers rated at least this (0..1; thumbs "
                                                            "up = 1, down = 0).")] = None,
           since: Annotated[str | None, typer.Option(help="Only answers from this date on (YYYY-MM-DD).")] = None,
           scrub: Annotated[bool, typer.Option("--scrub/--no-scrub", help="Replace personal data with typed "
                                               "placeholders (<PERSON>, <EMAIL_ADDRESS>, <CN_ID>...).")] = True,
           pairs: Annotated[bool, typer.Option("--pairs", help="Preference pairs (DPO: prompt, chosen, rejected) "
                                               "from thumbs up/down and cascade escalations instead.")] = False,
           key: Annotated[str | None, typer.Option("--key", envvar="BAIMO_API_KEY", help="Export as this API key: "
                          "only its owner's conversations (an admin key: all). Default: all.")] = None,
           mix: MixOpt = None,
           with_: Annotated[list[str] | None, typer.Option("--with", help="With --mix: another source NAME=FILE "
                                                          "(the export is the source named `export`).")] = None,
           size: SizeOpt = None, seed: SeedOpt = 0, allow_repeat: RepeatOpt = False,
           as_json: JsonOpt = False) -> None:
    """Export chat-format SFT rows (or DPO pairs) from conversations answered by strong models: rated answers
    first, de-duplicated, personal data scrubbed."""
    from baimo.config import Settings, load_config
    from baimo.distill.dedup import write_jsonl
    from baimo.distill.export import ExportOptions, export_sft
    from baimo.distill.pairs import export_pairs
    from baimo.store.database import Database

    if not from_usage:
        raise InvalidRequest("say where from: --from-usage (stored conversations)", param="from_usage")
    if with_ and not mix:
        raise InvalidRequest("--with needs --mix", param="mix")
    settings = Settings()
    config = load_config(settings)
    db = Database(settings.db_url)
    opts = ExportOptions(models=model, persona=persona, min_rating=min_rating, since=_since(since), scrub=scrub,
                         who=_principal(db, key))
    rows, stats = export_pairs(db, opts) if pairs else export_sft(db, config, opts, settings)
    summary: dict[str, Any] = {"out": str(out), "kind": "pairs" if pairs else "sft", **stats.__dict__}
    out.parent.mkdir(parents=True, exist_ok=True)
    if mix:
        sources = {"export": rows, **_sources(with_)}
        summary["mix"] = _write_mix(sources, mix, size, seed, allow_repeat, out)
        summary["rows"] = sum(summary["mix"].values())
    else:
        write_jsonl(out, rows)
    _report(summary, as_json, f"{out}: {summary['rows']} {'pairs' if pairs else 'rows'} "
                              f"({stats.answers} found; duplicates dropped: {stats.exact_duplicates} exact, "
                              f"{stats.near_duplicates} near; scrubbed: {_counts(stats.scrubbed)})")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) or "nothing"


def _report(summary: dict[str, Any], as_json: bool, line: str) -> None:
    if as_json:
        print_json(summary)
    else:
        err.print(line, highlight=False, soft_wrap=True)


@distill_app.command("generate")
def generate(prompts: Annotated[Path, typer.Option("--prompts", help="Prompts: JSONL ({\"prompt\"} or "
                                                   "{\"messages\"}) or plain text, one per line.")],
             teacher: Annotated[str, typer.Option("--teacher", "-m", help="The strong model, router or "
                                                  "persona/<name> that answers.")],
             out: OutOpt,
             system: Annotated[str | None, typer.Option("--system", "-s", help="A system prompt for every "
                                                       "prompt.")] = None,
             concurrency: Annotated[int, typer.Option(help="Prompts answered at once.")] = 4,
             temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.0,
             max_tokens: Annotated[int | None, typer.Option(help="Most tokens per answer.")] = None,
             as_json: JsonOpt = False) -> None:
    """A teacher model answers a domain's prompts (model-assisted labelling) into SFT rows. Answers are cached
    (a rerun pays nothing) and the output is appended to, so an interrupted run resumes where it stopped."""
    from baimo.distill.generate import GenerateParams, load_prompts

    messages = load_prompts(prompts, system)
    stats = asyncio.run(_generate(messages, teacher, out, GenerateParams(temperature, max_tokens), concurrency))
    summary = {"out": str(out), **{k: v for k, v in stats.__dict__.items() if k != "errors"},
               "errors": stats.errors[:20]}
    _report(summary, as_json, f"{out}: {stats.prompts} prompts: {stats.present} already there, {stats.cached} "
                              f"from the cache, {stats.called} answered by {teacher} (${stats.cost_usd:.6f}), "
                              f"{stats.failed} failed")
    if stats.failed:
        raise BaimoError(f"{stats.failed} prompt(s) failed (first: {stats.errors[0]}); rerun to retry them")


async def _generate(messages: list[list[dict[str, Any]]], teacher: str, out: Path, params: Any,
                    concurrency: int) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from baimo.cli_output import app_state
    from baimo.distill.generate import generate as run

    s = app_state()
    try:
        with Progress(TextColumn(f"{teacher}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err) as bar:
            task = bar.add_task("answering", total=len(messages))
            return await run(s, messages, teacher, out, params=params, concurrency=concurrency,
                             progress=lambda n: bar.advance(task, n))
    finally:
        await s.close()


@distill_app.command("mix")
def mix_cmd(sources: Annotated[list[str], typer.Argument(help="JSONL sources: NAME=FILE, or FILE (named by its "
                                                         "stem: general.jsonl is `general`).")],
            mix: Annotated[str, typer.Option("--mix", help="Ratios by name, e.g. general=0.7,domain=0.3.")],
            out: OutOpt, size: SizeOpt = None, seed: SeedOpt = 0, allow_repeat: RepeatOpt = False,
            as_json: JsonOpt = False) -> None:
    """Mix named data sources by ratio: exact counts (largest remainder), deterministic by seed."""
    counts = _write_mix(_sources(sources), mix, size, seed, allow_repeat, out)
    _report({"out": str(out), "rows": sum(counts.values()), "counts": counts}, as_json,
            f"{out}: {sum(counts.values())} rows ({_counts(counts)})")


@task_app.command("make")
def task_make(name: Annotated[str, typer.Argument(help="The task (baimo distill task list).")],
              out: Annotated[Path, typer.Option("--out", "-o", help="Directory for train.jsonl and test.jsonl.")],
              train: Annotated[int, typer.Option(help="Training rows.")] = 500,
              test: Annotated[int, typer.Option(help="Held-out test items.")] = 100,
              seed: SeedOpt = 0, as_json: JsonOpt = False) -> None:
    """Write a synthetic task: DIR/train.jsonl (chat-format SFT rows) and DIR/test.jsonl (a held-out suite for
    `baimo eval run`, kind json_schema: exact field values)."""
    from baimo.distill.dedup import write_jsonl
    from baimo.distill.tasks import make_task

    rows, suite = make_task(name, train, test, seed)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "train.jsonl", rows)
    write_jsonl(out / "test.jsonl", suite)
    _report({"name": name, "train": str(out / "train.jsonl"), "test": str(out / "test.jsonl"),
             "train_rows": len(rows), "test_items": len(suite) - 1}, as_json,
            f"{name}: {len(rows)} training rows in {out / 'train.jsonl'}, {len(suite) - 1} test items in "
            f"{out / 'test.jsonl'}")


@task_app.command("list")
def task_list(as_json: JsonOpt = False) -> None:
    """The synthetic tasks."""
    from baimo.distill.tasks import tasks

    rows = [{"name": t.name, "description": t.description, "fields": list(t.fields)} for t in tasks().values()]
    if as_json:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['name']}  {r['description']}")

# registers train, convert, register, prepare (T) and compare, promote (coordinator) on distill_app
from baimo import cli_distill_promote, cli_distill_train  # noqa: E402,F401
