"""`baimo kb` (knowledge bases) and `baimo persona` (digital employees).

Listings and searches take --json and print one JSON document to stdout; progress bars go to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from baimo.cli_output import JsonOpt, app_state, err, print_json
from baimo.errors import InvalidRequest, UnprocessableFile

kb_app = typer.Typer(help="Knowledge bases: add documents, search them, answer from them.", no_args_is_help=True)
persona_app = typer.Typer(help="Personas ('digital employees'): instructions, knowledge, model, budget; callable "
                          "as persona/<name>.", no_args_is_help=True)




@kb_app.command("create")
def kb_create(name: str,
              description: Annotated[str, typer.Option("-d", "--description", help="What is in it.")] = "",
              embedder: Annotated[str | None, typer.Option(help="Embedder id (default: knowledge.embedder).")] = None,
              chunk_size: Annotated[int | None, typer.Option(help="Target chunk length in characters "
                                                             "(a CJK character counts 3).")] = None,
              chunk_overlap: Annotated[int | None, typer.Option(help="Overlap between chunks.")] = None,
              as_json: JsonOpt = False) -> None:
    """Create an empty knowledge base."""
    info = app_state().knowledge.create(name, description=description, embedder=embedder, chunk_size=chunk_size,
                                     chunk_overlap=chunk_overlap)
    if as_json:
        print_json(info.to_dict())
    else:
        err.print(f"created knowledge base {name} (embedder {info.embedder}, chunks of {info.chunk_size})")


@kb_app.command("add")
def kb_add(name: str,
           paths: Annotated[list[Path], typer.Argument(help="Files and folders (searched recursively).")],
           as_json: JsonOpt = False) -> None:
    """Add or update documents: unchanged files are skipped, changed files replace their chunks.

    A file that cannot be indexed is reported by name with the reason and the rest go on; when it is the only
    file, that is a one-line error (exit 1), the same words as the API's 422."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from baimo.knowledge.ingest import Ingestor, IngestReport, collect_files

    s = app_state()
    s.knowledge.get(name)
    files, missing = collect_files(paths)
    if not files and not missing:
        from baimo.knowledge.parsing import SUPPORTED_SUFFIXES

        raise InvalidRequest(f"no supported files found ({', '.join(sorted(SUPPORTED_SUFFIXES))})")
    ingestor = Ingestor(s.knowledge)
    if len(files) + len(missing) == 1:
        failure = missing[0] if missing else ingestor.parse_ahead(name, files[0])
        if failure is not None:
            raise UnprocessableFile(f"{failure['source']}: {failure['reason']}")
    report = IngestReport(failed=list(missing))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[chunks]} chunks"), TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("ingesting", total=len(files), chunks=0)

        def progress(p: Any) -> None:
            label = p.current if len(p.current) <= 40 else "…" + p.current[-39:]
            bar.update(task, completed=p.files_done, chunks=p.chunks_done, description=label or "indexing")

        report = ingestor.add(name, files, progress=progress, report=report)
    if as_json:
        print_json(report.to_dict())
    else:
        rate = f" ({report.chunks / report.seconds:.0f} chunks/s)" if report.seconds and report.chunks else ""
        err.print(f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
                  f"{len(report.failed)} failed; {report.chunks} chunks in {report.seconds:.1f} s{rate}")
        for f in report.failed:
            err.print(f"  failed: {f['source']}: {f['reason']}")
    if report.failed and not (report.added or report.updated or report.unchanged):
        raise typer.Exit(1)


@kb_app.command("list")
def kb_list(as_json: JsonOpt = False) -> None:
    """List knowledge bases with their document and chunk counts."""
    bases = app_state().knowledge.list()
    if as_json:
        print_json([b.to_dict() for b in bases])
        return
    for b in bases:
        typer.echo(f"{b.name}  {b.documents} documents  {b.chunks} chunks  {b.embedder}  {b.description}")


@kb_app.command("docs")
def kb_docs(name: str, as_json: JsonOpt = False) -> None:
    """List a knowledge base's documents."""
    docs = app_state().knowledge.documents(name)
    if as_json:
        print_json(docs)
        return
    for d in docs:
        typer.echo(f"{d['source']}  {d['format']}  {d['chunks']} chunks  {d['updated_at'][:19]}")


@kb_app.command("remove")
def kb_remove(name: str, doc: Annotated[str, typer.Argument(help="Document source name or id.")]) -> None:
    """Remove one document and its chunks."""
    removed = app_state().knowledge.remove_document(name, doc)
    err.print(f"removed {removed['source']} ({removed['chunks']} chunks)")


@kb_app.command("search")
def kb_search(name: str, query: str,
              k: Annotated[int, typer.Option("-k", help="How many hits.")] = 5,
              mode: Annotated[str, typer.Option(help="hybrid, bm25 or dense.")] = "hybrid",
              as_json: JsonOpt = False) -> None:
    """Search: hits best first, each with text, source, location and score."""
    hits = app_state().retriever.search([name], query, k=k, mode=mode)
    if as_json:
        print_json([h.to_dict() for h in hits])
        return
    for i, h in enumerate(hits, start=1):
        where = f"{h.source}, {h.location}" if h.location else h.source
        text = " ".join(h.text.split())
        typer.echo(f"[{i}] {where}  score={h.score:.4f} sim={h.similarity:.2f}\n    {text[:300]}")


@kb_app.command("delete")
def kb_delete(name: str) -> None:
    """Delete a knowledge base and everything in it."""
    personas = app_state().delete_knowledge_base(name)
    err.print(f"deleted knowledge base {name}" + (f"; removed from personas {', '.join(personas)}" if personas else ""))


# -- personas ----------------------------------------------------------------------------------------------------
# One definition of each persona option, shared by `create` and `update` (where unset means "keep").
InstructionsOpt = Annotated[str | None, typer.Option("-i", "--instructions", help="The system prompt.")]
DescriptionOpt = Annotated[str | None, typer.Option("-d", "--description", help="What the persona does.")]
ModelOpt = Annotated[str | None, typer.Option("-m", "--model", help="Model or router id.")]
TemperatureOpt = Annotated[float | None, typer.Option(help="Default sampling temperature.")]
KnowledgeOpt = Annotated[list[str] | None, typer.Option("-k", "--knowledge", help="A knowledge base (repeat).")]
GroundedOpt = Annotated[bool | None, typer.Option("--grounded/--not-grounded",
                                                  help="Decline when the knowledge has no relevant passage.")]
MinRelevanceOpt = Annotated[float | None, typer.Option(help="Grounded mode's similarity threshold.")]
TopKOpt = Annotated[int | None, typer.Option(help="Passages per answer.")]
BudgetOpt = Annotated[float | None, typer.Option(help="Monthly budget in USD.")]
ConfidentialOpt = Annotated[bool | None, typer.Option("--confidential/--not-confidential",
                                                      help="Serve its requests only with models on premises.")]


def _persona_fields(**options: Any) -> dict[str, Any]:
    return {k: v for k, v in options.items() if v is not None}


def _show_persona(p: Any, as_json: bool) -> None:
    if as_json:
        print_json(p.to_dict())
    else:
        kb = ", ".join(p.knowledge or []) or "none"
        budget = f"${p.budget_usd:.2f}/month" if p.budget_usd is not None else "none"
        typer.echo(f"{p.id}  model={p.model or '(default)'}  knowledge={kb}  grounded={p.grounded}  budget={budget}"
                   + ("  confidential" if p.confidential else ""))


@persona_app.command("create")
def persona_create(name: str, instructions: InstructionsOpt = None, description: DescriptionOpt = None,
                   model: ModelOpt = None, temperature: TemperatureOpt = None, knowledge: KnowledgeOpt = None,
                   grounded: GroundedOpt = False, min_relevance: MinRelevanceOpt = None, top_k: TopKOpt = None,
                   budget: BudgetOpt = None, confidential: ConfidentialOpt = False, as_json: JsonOpt = False) -> None:
    """Create a persona."""
    p = app_state().personas.create(name, **_persona_fields(
        instructions=instructions, description=description, model=model, temperature=temperature,
        knowledge=knowledge, grounded=grounded, min_relevance=min_relevance, top_k=top_k, budget_usd=budget,
        confidential=confidential))
    _show_persona(p, as_json)


@persona_app.command("update")
def persona_update(name: str, instructions: InstructionsOpt = None, description: DescriptionOpt = None,
                   model: ModelOpt = None, temperature: TemperatureOpt = None, knowledge: KnowledgeOpt = None,
                   grounded: GroundedOpt = None, min_relevance: MinRelevanceOpt = None, top_k: TopKOpt = None,
                   budget: BudgetOpt = None, confidential: ConfidentialOpt = None, as_json: JsonOpt = False) -> None:
    """Change some of a persona's fields."""
    p = app_state().personas.update(name, **_persona_fields(
        instructions=instructions, description=description, model=model, temperature=temperature,
        knowledge=knowledge, grounded=grounded, min_relevance=min_relevance, top_k=top_k, budget_usd=budget,
        confidential=confidential))
    _show_persona(p, as_json)


@persona_app.command("list")
def persona_list(as_json: JsonOpt = False) -> None:
    """List personas."""
    personas = app_state().personas.list()
    if as_json:
        print_json([p.to_dict() for p in personas])
        return
    for p in personas:
        _show_persona(p, False)


@persona_app.command("show")
def persona_show(name: str, as_json: JsonOpt = False) -> None:
    """Show one persona, instructions included."""
    p = app_state().personas.get(name)
    if as_json:
        print_json(p.to_dict())
    else:
        _show_persona(p, False)
        typer.echo(p.instructions)


@persona_app.command("delete")
def persona_delete(name: str) -> None:
    """Delete a persona (its usage records stay)."""
    app_state().personas.delete(name)
    err.print(f"deleted persona {name}")


@persona_app.command("usage")
def persona_usage(name: str, as_json: JsonOpt = False) -> None:
    """The persona's 'salary slip': requests, tokens, cost and the share each model served."""
    s = app_state()
    p = s.personas.get(name)
    report = {**s.usage.persona_report(p.name, p.owner), "budget_usd": p.budget_usd}
    if as_json:
        print_json(report)
        return
    typer.echo(f"{p.id}: {report['requests']} requests, {report['prompt_tokens']}+{report['completion_tokens']} "
               f"tokens, ${report['cost']:.6f} (this month ${report['this_month_cost']:.6f}"
               + (f" of ${p.budget_usd:.2f})" if p.budget_usd is not None else ")"))
    for m in report["models"]:
        typer.echo(f"  {m['model']}: {m['requests']} requests ({m['share']:.0%}), ${m['cost']:.6f}")
