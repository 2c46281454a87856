"""`baimo engine`: build the local model engine (llama.cpp's llama-server) and show how it was built."""

from __future__ import annotations

import subprocess
from typing import Annotated, Any

import typer

from baimo.cli_output import JsonOpt, err, print_json

engine_app = typer.Typer(help="The local model engine (llama.cpp's llama-server): build it, show its build.",
                         no_args_is_help=True)


@engine_app.command("build")
def engine_build(force: Annotated[bool, typer.Option("--force", help="Build again even if built.")] = False,
                 jobs: Annotated[int | None, typer.Option("-j", "--jobs", help="Parallel compile jobs.")] = None
                 ) -> None:
    """Compile llama-server portably (runtime CPU dispatch, no AMX) once per machine; later calls return at once."""
    from baimo.engine import build

    if not force and (engine := build.installed()) is not None:
        err.print(f"llama-server: built ({engine.root})")
        return
    with err.status("building llama-server (about 20 minutes on 2 cores, once)") as status:
        engine = build.build(force=force, jobs=jobs, progress=lambda m: status.update(f"llama-server: {m}"))
    err.print(f"llama-server: built in {engine.manifest.get('build_seconds', '?')} s ({engine.root})")


def engine_facts() -> dict[str, Any]:
    """The build manifest, the CPU variants on disk, and what the binary says of its version."""
    from baimo.engine import build

    engine = build.require()
    variants = sorted(p.name.removeprefix("libggml-cpu-").split(".so")[0] for p in engine.root.glob("libggml-cpu-*.so"))
    version = subprocess.run([str(engine.server), "--version"], capture_output=True, text=True, timeout=30)
    return {"root": str(engine.root), "server": str(engine.server), "cpu_variants_on_disk": variants,
            "version": (version.stdout + version.stderr).strip(), **engine.manifest}


@engine_app.command("info")
def engine_info(as_json: JsonOpt = False) -> None:
    """Where the engine is, its build flags, its CPU variants (chosen at run time) and its version."""
    facts = engine_facts()
    if as_json:
        print_json(facts)
        return
    for key in ("root", "source", "cpu_variants_on_disk", "cmake_flags", "version", "built_at"):
        value = facts.get(key)
        typer.echo(f"{key}: {' '.join(value) if isinstance(value, list) else value}")
