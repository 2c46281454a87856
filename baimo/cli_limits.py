"""`baimo keys limit`: a key's or a team's budget (USD per day or month) and rate limits (RPM, TPM).

Limits live in the shared database (baimo/metering/budgets.py), so a change reaches every replica within a second.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baimo.cli_output import JsonOpt, err, print_json
from baimo.metering.admission import set_limits

BudgetOpt = Annotated[float | None, typer.Option("--budget", help="Budget in USD per --period (0 refuses every "
                                                 "request).")]
PeriodOpt = Annotated[str | None, typer.Option("--period", help="Budget period: day or month (calendar, UTC; "
                                               "default month).")]
RpmOpt = Annotated[int | None, typer.Option("--rpm", help="Requests per minute.")]
TpmOpt = Annotated[int | None, typer.Option("--tpm", help="Tokens per minute (prompt estimate + max_tokens).")]


def _ledger() -> Any:
    from baimo.config import Settings
    from baimo.metering.budgets import BudgetLedger
    from baimo.store.database import Database

    return BudgetLedger(Database(Settings().db_url))


def limits_line(view: dict[str, Any] | None) -> str:
    """'budget $5.00/day (spent $0.1200)  rpm 60  tpm 10000', or '' without limits."""
    if not view:
        return ""
    parts = []
    if view.get("budget_usd") is not None:
        parts.append(f"budget ${view['budget_usd']:.2f}/{view['period']} (spent ${view['spent_usd']:.4f})")
    parts += [f"{k} {view[k]}" for k in ("rpm", "tpm") if view.get(k)]
    return "  ".join(parts)


def keys_limit(key: Annotated[str | None, typer.Argument(help="Key id or name (or give --team).")] = None,
               team: Annotated[str | None, typer.Option("--team", help="Limit a team (id or name): all its keys "
                                                        "together.")] = None,
               budget: BudgetOpt = None, period: PeriodOpt = None, rpm: RpmOpt = None, tpm: TpmOpt = None,
               clear: Annotated[bool, typer.Option("--clear", help="Remove every limit.")] = False,
               as_json: JsonOpt = False) -> None:
    """Set (or show, without options) a key's or team's budget and rate limits."""
    ledger = _ledger()
    out = set_limits(ledger.db, key=key, team=team, budget=budget, period=period, rpm=rpm, tpm=tpm, clear=clear)
    if as_json:
        print_json(out)
        return
    kind = "key" if "key" in out else "team"
    typer.echo(f"{kind} {out[kind]['name']} ({out[kind]['id']}): {limits_line(out['limits']) or 'no limits'}")
    if out["limits"] and budget is not None:
        err.print("a request is refused (429 insufficient_quota) when its estimated cost no longer fits the budget")
