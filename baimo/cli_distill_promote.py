"""`baimo distill compare` and `baimo distill promote`: is the fine-tuned model good enough for its domain, and
send that domain's traffic to it (baimo/distill/compare.py, baimo/distill/promote.py)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.markup import escape

from baimo.cli_distill import distill_app
from baimo.cli_output import JsonOpt, err, print_json


def _ci(entry: dict[str, Any]) -> str:
    lo, hi = entry["ci95"]
    return f"{entry['accuracy']:.1%} [{lo:.1%}, {hi:.1%}]"


def _print_compare(result: dict[str, Any]) -> None:
    from baimo.cli_eval import _out, _table

    _out().print(_table(result["run"]))
    model = result["model"]
    typer.echo(f"{model['id']}: {_ci(model)}")
    for role in ("base", "teacher"):
        v = result.get(role)
        if v is None:
            continue
        if v["beats_outside_ci"]:
            word = "better than"
        elif v["worse_outside_ci"]:
            word = "worse than"
        else:
            word = "not separable from"
        typer.echo(f"  {word} its {role} {v['model']} ({_ci(v)}): {v['delta']:+.1%}, McNemar p = "
                   f"{v['mcnemar_p']:.3g} on {v['paired']} paired items")
    if result.get("saving_per_1k_usd") is not None:
        typer.echo(f"  serving this domain saves ${result['saving_per_1k_usd']:.4f} per 1,000 requests against "
                   f"the teacher")
    rule = result["rule"]
    cond = ", ".join(f"{k}: {v}" for k, v in rule.items() if k not in ("name", "model"))
    typer.echo(f"router setting: rule {cond} -> {rule['model']} (matches {result['coverage']:.0%} of the suite's "
               f"prompts); apply with `baimo distill promote {model['id'].split('/', 1)[1]}`")


@distill_app.command("compare")
def compare(name: Annotated[str, typer.Argument(help="The fine-tuned model's NAME (served as local/NAME).")],
            suite: Annotated[str, typer.Option(help="The held-out suite (an evaluation SUITE: built-in, path, ...).")],
            base: Annotated[str | None, typer.Option(help="The base model (default: what it was trained from).")]
            = None,
            teacher: Annotated[str | None, typer.Option(help="The teacher (default: the training data's).")] = None,
            limit: Annotated[int | None, typer.Option(min=1, help="Only the first N items.")] = None,
            concurrency: Annotated[int, typer.Option(min=1, max=64, help="Calls in flight at once.")] = 2,
            max_tokens: Annotated[int, typer.Option(min=1, help="Most tokens per answer.")] = 128,
            as_json: JsonOpt = False) -> None:
    """Score the fine-tuned model, its base and its teacher on a held-out suite (one stored evaluation run), say
    whether it beats its base outside the 95 % intervals, and propose the router setting for its domain."""
    result = asyncio.run(_compare(name, suite, base, teacher, limit, concurrency, max_tokens))
    if as_json:
        print_json(result)
    else:
        _print_compare(result)


async def _compare(name: str, suite: str, base: str | None, teacher: str | None, limit: int | None,
                   concurrency: int, max_tokens: int) -> dict[str, Any]:
    from baimo.cli_eval import eval_progress
    from baimo.cli_output import app_state
    from baimo.distill.compare import compare as run_compare

    s = app_state()
    try:
        with eval_progress() as progress:
            return await run_compare(s, name, suite, base=base, teacher=teacher, limit=limit,
                                     concurrency=concurrency, max_tokens=max_tokens, progress=progress,
                                     on_start=lambda run_id: progress.console.print(f"run {run_id}"))
    finally:
        await s.close()


@distill_app.command("promote")
def promote(name: Annotated[str, typer.Argument(help="The fine-tuned model's NAME (served as local/NAME).")],
            regex: Annotated[str | None, typer.Option(help="Send prompts matching this regex (default: the "
                                                      "training prompts' shared instruction).")] = None,
            keywords: Annotated[list[str] | None, typer.Option("--keyword", help="...or prompts with this word "
                                                               "(repeat).")] = None,
            persona: Annotated[list[str] | None, typer.Option(help="...or requests of this persona (repeat).")]
            = None,
            suite: Annotated[str | None, typer.Option(help="Take the domain's instruction from this suite's "
                                                      "prompts instead of the training data's.")] = None,
            router: Annotated[str, typer.Option(help="The rules router to write.")] = "baimo/distilled",
            as_json: JsonOpt = False) -> None:
    """Route the model's domain to it: a rule in the rules router (default baimo/distilled) whose default is the
    previous default model, and that router becomes the default model. The server picks it up on restart."""
    from baimo.config import Settings
    from baimo.distill.compare import training_options, training_rows, user_prompts
    from baimo.distill.promote import domain_rule, rule_yaml
    from baimo.distill.promote import promote as write

    settings = Settings()
    if suite is not None:
        from baimo.evaluation.suites import load_suite

        prompts = [str(item["question"]) for item in load_suite(suite).items]
    else:
        prompts = user_prompts(training_rows(training_options(settings.home, name)))
    rule = domain_rule(name, prompts, regex=regex, keywords=keywords, persona=persona)
    config = write(settings, name, rule, router)
    entry = next(r for r in config.routers if r.id == router)
    out = {"router": router, "rule": rule_yaml(rule), "default": entry.default, "default_model": config.default_model}
    if as_json:
        print_json(out)
        return
    err.print(f"{escape(router)}: {escape(str(out['rule']))}; everything else -> {escape(str(entry.default))}; "
              f"default model is now {escape(router)}")
