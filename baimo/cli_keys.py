"""`baimo keys` and `baimo teams`: API keys (create, list, revoke, rotate) and teams, straight on the database.

The CLI acts as the operator (an admin): it needs no key. Secrets are printed once, on stdout.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baimo.cli_limits import BudgetOpt, PeriodOpt, RpmOpt, TpmOpt, keys_limit, limits_line
from baimo.cli_output import JsonOpt, app_state, err, print_json
from baimo.errors import InvalidRequest
from baimo.metering.admission import set_limits
from baimo.metering.budgets import validate_limits

keys_app = typer.Typer(help="API keys: once any key exists (or `auth: required`), the API requires one.",
                       no_args_is_help=True)
teams_app = typer.Typer(help="Teams: keys of one team share conversations, knowledge, personas and usage.",
                        no_args_is_help=True)


def _key_line(k: dict) -> str:
    flags = [f for f, on in (("admin", k.get("admin")), ("confidential", k.get("confidential"))) if on]
    scope = f"  models={','.join(k['models'])}" if k.get("models") else ""
    return (f"{k['id']}  {k['prefix']}…  {k['name']}  user={k['user']}  team={k.get('team') or '-'}  "
            f"{'revoked' if k['revoked'] else 'active'}" + "".join(f"  {f}" for f in flags) + scope)


def _with_limits(db: Any, kind: str, rows: list[dict]) -> list[dict]:
    """Each key or team row with its `limits` (budget, period, rpm, tpm, this period's spend) or None."""
    from baimo.metering.budgets import BudgetLedger

    ledger = BudgetLedger(db)
    for row in rows:
        row["limits"] = ledger.describe(f"{kind}:{row['id']}")
    return rows


def _print_secret(record: dict, secret: str, as_json: bool, verb: str) -> None:
    if as_json:
        print_json({**record, "key": secret})
    else:
        typer.echo(secret)
        err.print(f"key {record['id']} ({record['name']}) {verb}; store it now, it is not shown again")


@keys_app.command("create")
def keys_create(
        name_arg: Annotated[str | None, typer.Argument(metavar="[NAME]", help="The key's name (or --name).")] = None,
        name: Annotated[str | None, typer.Option("--name", help="The key's name.")] = None,
        user: Annotated[str | None, typer.Option("--user", help="The person it belongs to (default: its name).")]
        = None,
        team: Annotated[str | None, typer.Option("--team", help="Its team (id or name; a new name creates the team)."
                                                 )] = None,
        models: Annotated[str | None, typer.Option("--models", help="Comma-separated model, router and persona ids "
                                                   "it may call (default: all).")] = None,
        admin: Annotated[bool, typer.Option("--admin", help="Manages keys and teams and sees every owner's "
                                            "objects.")] = False,
        confidential: Annotated[bool, typer.Option("--confidential", help="Serve this key's requests only with "
                                                   "models on premises.")] = False,
        budget: BudgetOpt = None, period: PeriodOpt = None, rpm: RpmOpt = None, tpm: TpmOpt = None,
        as_json: JsonOpt = False) -> None:
    """Create an API key; the secret is printed once. Budget and rate limits: see `baimo keys limit`."""
    key_name = name or name_arg
    if not key_name:
        raise InvalidRequest("give the key a name: baimo keys create --name NAME", param="name")
    s = app_state()
    allowed = [m.strip() for m in models.split(",")] if models is not None else None
    for model_id in allowed or []:
        if model_id:
            s.check_callable(model_id)  # one line "The model 'x' does not exist" for a typo
    validate_limits(budget, period, rpm, tpm)  # before the key exists
    record, secret = s.keys.create(key_name, user=user, team=team, models=allowed, admin=admin,
                                   confidential=confidential)
    if any(v is not None for v in (budget, period, rpm, tpm)):
        record["limits"] = set_limits(s.db, key=record["id"], budget=budget, period=period, rpm=rpm,
                                      tpm=tpm)["limits"]
    _print_secret(record, secret, as_json, "created")


@keys_app.command("list")
def keys_list(as_json: JsonOpt = False) -> None:
    """List API keys: id, prefix, name, user, team, state, flags, budget and rate limits (never their secrets)."""
    s = app_state()
    keys = _with_limits(s.db, "key", s.keys.list())
    if as_json:
        print_json(keys)
        return
    for k in keys:
        line = limits_line(k["limits"])
        typer.echo(_key_line(k) + (f"  {line}" if line else ""))


keys_app.command("limit")(keys_limit)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="Key id or name.")]) -> None:
    """Revoke an API key (servers stop accepting it within ~2 s)."""
    record = app_state().keys.revoke(key)
    err.print(f"revoked {record['id']} ({record['name']})")


@keys_app.command("rotate")
def keys_rotate(key: Annotated[str, typer.Argument(help="Key id or name.")], as_json: JsonOpt = False) -> None:
    """Give a key a new secret (same id, owner and limits); the old secret stops working within ~2 s."""
    record, secret = app_state().keys.rotate(key)
    _print_secret(record, secret, as_json, "rotated")


@teams_app.command("create")
def teams_create(name: Annotated[str, typer.Argument(help="Team name (letters, digits, . _ -).")],
                 as_json: JsonOpt = False) -> None:
    """Create a team (`keys create --team NAME` also creates it when it does not exist)."""
    team = app_state().keys.teams.create(name)
    if as_json:
        print_json(team)
    else:
        err.print(f"team {team['id']} ({team['name']}) created")


@teams_app.command("list")
def teams_list(as_json: JsonOpt = False) -> None:
    """List teams with their number of active keys, budget and rate limits."""
    s = app_state()
    teams = _with_limits(s.db, "team", s.keys.teams.list())
    if as_json:
        print_json(teams)
        return
    for t in teams:
        line = limits_line(t["limits"])
        typer.echo(f"{t['id']}  {t['name']}  keys={t['keys']}" + (f"  {line}" if line else ""))
