"""`baimo usage`: requests, tokens, cost and latency by key, team, model, persona or day, read from the database.

A table on a terminal, `--json` (one document: rows and totals) or `--csv` (a header line, then one line per
group, through the `csv` module). Bad `--by`/`--since`/`--until` values are one-line errors.
"""

from __future__ import annotations

import csv
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from baimo.cli_output import JsonOpt, print_json
from baimo.errors import InvalidRequest
from baimo.metering.usage_report import COLUMNS, GROUPS, check_group, report, totals, window

HEADERS = {"requests": "requests", "errors": "errors", "prompt_tokens": "prompt tok",
           "completion_tokens": "completion tok", "cached_tokens": "cached", "reasoning_tokens": "reasoning",
           "cost": "cost USD", "latency_ms_avg": "latency ms", "ttft_ms_avg": "TTFT ms"}


def usage(by: Annotated[str, typer.Option("--by", help=f"Group by {'|'.join(GROUPS)}.")] = "model",
          since: Annotated[str | None, typer.Option("--since", help="From a date (2026-11-01, UTC), a date-time "
                                                    "(2026-11-01T12:00Z) or a span back from now (24h, 7d).")]
          = None,
          until: Annotated[str | None, typer.Option("--until", help="Up to a date (included), a date-time or a "
                                                    "span back from now.")] = None,
          as_json: JsonOpt = False,
          as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV to stdout (header line first).")] = False
          ) -> None:
    """Usage report: requests, errors, tokens (prompt, completion, cached, reasoning), cost and mean latency and
    time to first token per key, team, model, persona or day."""
    from baimo.config import Settings
    from baimo.store.database import Database

    check_group(by)
    if as_json and as_csv:
        raise InvalidRequest("give either --json or --csv, not both")
    w = window(since, until)
    db = Database(Settings().db_url)
    try:
        rows = report(db, by, w)
    finally:
        db.close()
    if as_json:
        print_json({"by": by, "since": w.since, "until": w.until, "data": rows, "totals": totals(rows)})
    elif as_csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow([by, "label", *COLUMNS])
        for r in rows:
            out.writerow([r["key"] if r["key"] is not None else "", r["label"] or "", *(_csv(r[c]) for c in COLUMNS)])
    else:
        _table(by, rows)


def _csv(value: Any) -> Any:
    return "" if value is None else value


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column == "cost":
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def _table(by: str, rows: list[dict[str, Any]]) -> None:
    console = Console(width=max(Console().width, 140))
    if not rows:
        console.print("no usage recorded in this range")
        return
    table = Table(title=f"usage by {by}", title_justify="left")
    table.add_column(by)
    for c in COLUMNS:
        table.add_column(HEADERS[c], justify="right")
    for r in rows:
        # a key's or team's name with the start of its id (--json and --csv have the whole id)
        name = r["label"] if r["label"] == r["key"] or r["key"] is None else f"{r['label']} ({r['key'][:8]})"
        table.add_row("(none)" if name is None else str(name), *(_cell(c, r[c]) for c in COLUMNS))
    t = totals(rows)
    table.add_section()
    table.add_row("total", *(_cell(c, t[c]) for c in COLUMNS))
    console.print(table)
