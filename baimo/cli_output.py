"""What every `baimo` subcommand shares: the `--json` option, JSON on stdout, messages on stderr, the state."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document to stdout.")]


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


def app_state() -> Any:
    """The same services a server holds (database, models, knowledge, personas), built from the environment."""
    from baimo.api.state import AppState
    from baimo.config import Settings

    return AppState.build(Settings())
