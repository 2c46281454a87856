"""`baimo router`: train, calibrate, decide with and benchmark learned routers; convert RouteLLM data.

Routers live in BAIMO_HOME/routers/NAME/ (router.json + weights.npz); prompt embeddings are cached in
BAIMO_HOME/cache/embeddings/. Progress goes to stderr, JSON to stdout, errors are one line (BaimoError).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from baimo.cli_output import JsonOpt, err, print_json
from baimo.config import NAME_PATTERN, Settings
from baimo.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    import numpy as np

router_app = typer.Typer(help="Learned routers: train on outcome files, calibrate, decide, benchmark.",
                         no_args_is_help=True)

DataOpt = Annotated[Path, typer.Option("--data", help="Outcome file (JSONL: prompt, scores, costs).")]
PricesOpt = Annotated[Path | None, typer.Option("--prices", help="YAML: model -> {input, output, output_tokens}; "
                                                "USD per million tokens, used when a line has no `costs`.")]
QualityOpt = Annotated[float | None, typer.Option("--target-quality", help="Fraction of the best single model's "
                                                  "quality to reach as cheaply as possible, e.g. 0.95.")]
CostOpt = Annotated[float | None, typer.Option("--max-cost", help="Maximum mean USD per request.")]


def _router_dir(name: str) -> Path:
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(f"router name {name!r}: use letters, digits, '.', '_' or '-'")
    return Settings().routers_dir / name


def _cache_dir() -> Path:
    return Settings().home / "cache" / "embeddings"


def _knob(target_quality: float | None, max_cost: float | None) -> None:
    if target_quality is not None and max_cost is not None:
        raise InvalidRequest("give either --target-quality or --max-cost, not both")
    if target_quality is not None and not 0 < target_quality <= 1.5:
        raise InvalidRequest("--target-quality is a fraction of the best model's quality, e.g. 0.95")
    if max_cost is not None and max_cost < 0:
        raise InvalidRequest("--max-cost must be >= 0 (USD per request)")


@contextmanager
def _progress() -> Iterator[Any]:
    """A rich progress bar on stderr, one task per stage, driven by (stage, done, total) callbacks."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err, transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _load(data: Path, prices: Path | None) -> Any:
    from baimo.routing.outcomes import load_outcomes, load_prices

    return load_outcomes(data, load_prices(prices) if prices else None)


def _aligned(router: Any, outcomes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Score and cost matrices in the router's model order."""
    if set(outcomes.models) != set(router.models):
        raise InvalidRequest(f"{outcomes.source}: models {sorted(outcomes.models)} differ from the router's "
                             f"{sorted(router.models)}")
    order = [outcomes.models.index(m) for m in router.models]
    return outcomes.scores[:, order], outcomes.costs[:, order]


def _open(name: str) -> Any:
    from baimo.routing.learned import LearnedRouter

    path = _router_dir(name)
    if not (path / "router.json").exists():
        raise NotFound(f"no router named {name!r} (train it with `baimo router train --name {name}`)")
    return LearnedRouter.load(path)


@router_app.command("train")
def train(data: DataOpt, name: Annotated[str, typer.Option("--name", help="Router name.")],
          target_quality: QualityOpt = None, max_cost: CostOpt = None, prices: PricesOpt = None,
          tail_chars: Annotated[int | None, typer.Option(help="Embed only the last N characters of each prompt "
                                                         "(default: 500 with use, 1000 with e5).")] = None,
          embedder: Annotated[str, typer.Option("--embedder", help="Prompt embedder: use (multilingual Universal "
                                                "Sentence Encoder, ~15x faster here) or e5 (multilingual-e5-small); "
                                                "stored with the router.")] = "use",
          as_json: JsonOpt = False) -> None:
    """Train a learned router; λ is calibrated on out-of-fold predictions (default --target-quality 0.95)."""
    from baimo.routing import learned
    from baimo.routing.metrics import calibrate

    _knob(target_quality, max_cost)
    if target_quality is None and max_cost is None:
        target_quality = 0.95
    kind = learned.embedder_kind(embedder)
    tail_chars = learned.default_tail_chars(kind) if tail_chars is None else tail_chars
    path = _router_dir(name)
    outcomes = _load(data, prices)
    err.print(f"{len(outcomes)} prompts, models: {', '.join(outcomes.models)}; embedder {kind}, "
              f"prompt tail {tail_chars} chars")
    with _progress() as progress:
        E = learned.embed_prompts(outcomes.prompts, learned.make_embedder(kind), tail_chars=tail_chars,
                                  cache_dir=_cache_dir(), model_id=learned.embedder_id(kind), progress=progress)
        router, P_oof = learned.train(outcomes.prompts, outcomes.models, outcomes.scores, outcomes.costs, E,
                                      tail_chars=tail_chars, progress=progress, model_id=learned.embedder_id(kind))
    cal = calibrate(router, P_oof, outcomes.prompts, outcomes.scores, outcomes.costs,
                    target_quality=target_quality, max_cost=max_cost, source=f"out-of-fold:{data}",
                    C_pred=router.oof_costs)
    router.save(path)
    summary = {"name": name, "path": str(path), "models": router.models, "embedder": router.embedder,
               "tail_chars": router.tail_chars, "lambda": router.lam,
               "hyper": router.to_json()["hyper"], "expected": cal["expected"], "met": cal["met"],
               "stats": router.stats}
    exp = cal["expected"]
    err.print(f"router {name}: λ={router.lam:.4g}, out-of-fold quality {exp['quality']:.4f} "
              f"(best single {cal['best_quality']:.4f}) at ${exp['cost']:.6g}/request"
              + ("" if cal["met"] else " — the knob could not be met on the training data"))
    if as_json:
        print_json(summary)


@router_app.command("retrain")
def retrain_cmd(name: str, as_json: JsonOpt = False) -> None:
    """Fold production outcomes (ratings, cascade escalations) of routers using NAME into it."""
    from baimo.config import load_config
    from baimo.metering.usage import UsageLog
    from baimo.routing import learned
    from baimo.store.database import Database

    settings = Settings()
    config = load_config(settings)
    if any(r.id == name and r.strategy == "auto" for r in config.routers):
        _retrain_auto(name, as_json)
        return
    users = [r for r in config.routers if r.learned == name]
    if not users:
        raise NotFound(f"no router in baimo.yaml uses the learned router {name!r} (`learned: {name}`)")
    router = _open(name)
    since = int(router.stats.get("outcomes_through_id", 0))
    rows = [o for o in UsageLog(Database(settings.db_url)).outcomes()
            if o["id"] > since and o["router"] in {r.id for r in users}]
    reverse = {configured: trained for r in users for trained, configured in r.model_map.items()}
    labels = [{reverse.get(o["model"], o["model"]): o["score"]} for o in rows]
    with _progress() as progress:
        learned.retrain(router, [o["prompt"] for o in rows], labels, progress=progress)
    if rows:
        router.stats["outcomes_through_id"] = rows[-1]["id"]
        router.save(_router_dir(name))
    summary = {"name": name, "new_outcomes": len(rows),
               "total_production_outcomes": router.stats.get("n_production_outcomes", 0)}
    err.print(f"router {name}: folded in {len(rows)} new outcome rows")
    if as_json:
        print_json(summary)


def _retrain_auto(router_id: str, as_json: bool) -> None:
    """`baimo router retrain baimo/auto`: refit the hybrid's model abilities from its recorded outcomes."""
    from baimo.cli_output import app_state
    from baimo.routing.auto import retrain

    s = app_state()
    summary = retrain(s.routers.strategy(router_id), s.usage)
    for model, row in summary["models"].items():
        err.print(f"{model}: ability {row['theta']:+.2f} from {row['n']} outcomes "
                  f"(prior {row['prior']:+.2f}, {row['prior_source']})", highlight=False)
    err.print(f"router {router_id}: refitted from {summary['outcomes']} outcomes")
    if as_json:
        print_json(summary)


@router_app.command("add-model")
def add_model_cmd(model: Annotated[str, typer.Argument(help="Id of the model to add, as in the data's `scores`.")],
                  router_name: Annotated[str, typer.Option("--router", help="Trained router to add it to.")],
                  data: DataOpt, prices: PricesOpt = None, as_json: JsonOpt = False) -> None:
    """Add a model to a trained router from its outcomes on a few prompts (≤ 200 suffice; other models'
    scores in the file are ignored). λ is kept; re-pick it with `calibrate` on held-out outcomes."""
    from baimo.routing.newmodel import add_model

    router = _open(router_name)
    outcomes = _load_few(data, prices)
    if model not in outcomes.models:
        raise InvalidRequest(f"{data}: no scores for {model!r} (found {', '.join(outcomes.models)})")
    if model in router.models:
        raise InvalidRequest(f"the router already routes to {model!r}")
    j = outcomes.models.index(model)
    with _progress() as progress:
        X = router.embed(outcomes.prompts, cache_dir=_cache_dir(), progress=progress)
    summary = add_model(router, model, outcomes.prompts, outcomes.scores[:, j], outcomes.costs[:, j], X=X)
    router.save(_router_dir(router_name))
    err.print(f"router {router_name}: added {model} from {len(outcomes)} labelled prompts "
              f"({summary['in_memory']} of them in its memory); mean score {summary['mean_score']:.3f}")
    if as_json:
        print_json(summary)


def _load_few(data: Path, prices: Path | None) -> Any:
    from baimo.routing.outcomes import load_outcomes, load_prices

    return load_outcomes(data, load_prices(prices) if prices else None, min_models=1)


@router_app.command("calibrate")
def calibrate_cmd(name: str, data: DataOpt, target_quality: QualityOpt = None, max_cost: CostOpt = None,
                  prices: PricesOpt = None, as_json: JsonOpt = False) -> None:
    """Pick λ on held-out outcomes for one knob and store it with the router."""
    from baimo.routing.metrics import calibrate

    _knob(target_quality, max_cost)
    if target_quality is None and max_cost is None:
        raise InvalidRequest("give --target-quality or --max-cost")
    router = _open(name)
    outcomes = _load(data, prices)
    Y, C = _aligned(router, outcomes)
    with _progress() as progress:
        E = router.embed(outcomes.prompts, cache_dir=_cache_dir(), progress=progress)
    cal = calibrate(router, router.probabilities(E), outcomes.prompts, Y, C, target_quality=target_quality,
                    max_cost=max_cost, source=f"held-out:{data}", X=E)
    router.save(_router_dir(name))
    exp = cal["expected"]
    err.print(f"router {name}: λ={router.lam:.4g}, held-out quality {exp['quality']:.4f} at ${exp['cost']:.6g}"
              "/request" + ("" if cal["met"] else " — the knob could not be met"))
    if as_json:
        print_json({"name": name, "lambda": router.lam, "expected": exp, "met": cal["met"]})


@router_app.command("decide")
def decide(name: str, data: DataOpt, target_quality: QualityOpt = None, max_cost: CostOpt = None,
           as_json: JsonOpt = False) -> None:
    """Choose a model for each line's `prompt` (other fields are ignored)."""
    from baimo.routing.metrics import lambda_for
    from baimo.routing.outcomes import load_outcomes

    _knob(target_quality, max_cost)
    router = _open(name)
    lam = router.lam
    if target_quality is not None or max_cost is not None:
        lam, met = lambda_for(router.calibration, target_quality=target_quality, max_cost=max_cost)
        if not met:
            err.print("warning: the knob cannot be met according to the calibration data; using the closest λ")
    outcomes = load_outcomes(data, need_scores=False)
    with _progress() as progress:
        E = router.embed(outcomes.prompts, cache_dir=_cache_dir(), progress=progress)
    choice = router.choose_index(router.probabilities(E), router.predicted_costs(outcomes.prompts, E), lam)
    chosen = [router.models[int(j)] for j in choice]
    err.print(f"λ={lam:.4g}: " + ", ".join(f"{m} {chosen.count(m)}" for m in router.models))
    if as_json:
        print_json(chosen)
    else:
        sys.stdout.write("".join(m + "\n" for m in chosen))


@router_app.command("bench")
def bench(name: str, data: DataOpt, prices: PricesOpt = None, as_json: JsonOpt = False,
          plot: Annotated[Path | None, typer.Option("--plot", help="Write the cost–quality curve as a PNG.")] = None,
          quality_frac: Annotated[float, typer.Option(help="Quality target as a fraction of the best model.")]
          = 0.95) -> None:
    """Cost–quality curve on scored data: APGR, CPT(50%/80%), cost at 95% of the best model, baselines."""
    from baimo.routing.metrics import bench_report

    router = _open(name)
    outcomes = _load(data, prices)
    Y, C = _aligned(router, outcomes)
    with _progress() as progress:
        E = router.embed(outcomes.prompts, cache_dir=_cache_dir(), progress=progress)
    report = {"router": name, "data": str(data), **bench_report(router, router.probabilities(E), outcomes.prompts,
                                                                 Y, C, quality_frac, X=E)}
    if plot:
        from baimo.routing.plot import plot_bench

        plot_bench(report, plot, title=f"router {name} on {Path(data).name}")
        err.print(f"wrote {plot}")
    if as_json:
        print_json(report)
        return
    from rich.table import Table

    table = Table("rule", "APGR", "CPT(50%)", "CPT(80%)", "APGR (cost)", f"cost cut @{quality_frac:.0%}")
    for key in ("learned", "threshold_rule", "random", "oracle"):
        r = report[key]
        table.add_row(key, *[("—" if r[k] is None else f"{r[k]:.3f}")
                             for k in ("apgr", "cpt50", "cpt80", "apgr_cost", "cost_reduction_at_target")])
    Console(width=None if sys.stdout.isatty() else 120).print(table)


@router_app.command("convert")
def convert(dataset: Annotated[str, typer.Argument(help="mmlu, gsm8k or mt-bench.")],
            out: Annotated[Path, typer.Option("--out", help="Writes PREFIX.train.jsonl and PREFIX.test.jsonl.")],
            source: Annotated[Path | None, typer.Option(help="RouteLLM data folder (default: "
                                                        "<repo>/../shared/data/routing/routellm).")] = None) -> None:
    """Convert RouteLLM's public outcomes (contaminated prompts dropped) into a fixed 50/50 train/test split."""
    from baimo.routing.converters import convert as run
    from baimo.routing.outcomes import write_outcomes

    train_rows, test_rows = run(dataset, source)
    for split, rows in (("train", train_rows), ("test", test_rows)):
        path = out.with_name(f"{out.name}.{split}.jsonl")
        write_outcomes(path, rows)
        err.print(f"wrote {path} ({len(rows)} prompts)")
