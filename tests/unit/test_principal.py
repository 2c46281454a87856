"""The Principal and the KeyStore on a real SQLite database: owners, model scopes, caching, rotation, bootstrap."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from baimo.errors import AuthenticationError, InvalidRequest, NotFound
from baimo.metering import keys as keys_module
from baimo.metering.keys import ENV_ADMIN_NAME, KeyStore, start_keys
from baimo.metering.principal import LOCAL, Principal, owner_clause
from baimo.store.database import Database


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(Database(f"sqlite:///{tmp_path / 'k.db'}"))


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


def test_owner_is_the_team_else_the_user_else_the_local_user() -> None:
    assert Principal(key_id="k", user="ann", team_id="t1").owner == "team:t1"
    assert Principal(key_id="k", user="ann").owner == "user:ann"
    assert LOCAL.owner is None and LOCAL.is_admin and LOCAL.is_local
    assert Principal.of_owner("team:t1").owner == "team:t1" and not Principal.of_owner("team:t1").is_admin
    assert Principal.of_owner("user:ann").owner == "user:ann"
    assert Principal.of_owner(None).owner is None and not Principal.of_owner(None).is_admin


def test_sees_and_may_call() -> None:
    ann = Principal(key_id="k", user="ann", models=frozenset({"m1", "persona/p"}))
    assert ann.sees("user:ann") and not ann.sees("user:bob") and not ann.sees(None)
    assert Principal(key_id="a", user="root", is_admin=True).sees("user:bob")
    assert ann.may_call("m1") and ann.may_call("persona/p") and not ann.may_call("m2")
    assert ann.allowed(["m2", "m1"]) == ["m1"]
    assert Principal(key_id="k", user="bob").may_call("anything")


def test_owner_clause_filters_sql() -> None:
    from sqlalchemy import column

    assert str(owner_clause(column("owner"), Principal(key_id="k", user="a"))) == "owner = :owner_1"
    assert str(owner_clause(column("owner"), Principal())) == "owner IS NULL"
    assert str(owner_clause(column("owner"), None)) == "true"


def test_auth_is_off_until_a_key_exists(store: KeyStore) -> None:
    assert store.resolve(None) is LOCAL
    record, secret = store.create("ci", team="red", models=["m1"])
    who = store.resolve(bearer(secret))
    assert (who.key_id, who.user, who.team, who.team_id, who.is_admin) == (record["id"], "ci", "red",
                                                                           record["team_id"], False)
    assert who.models == frozenset({"m1"}) and who.owner == f"team:{record['team_id']}"
    with pytest.raises(AuthenticationError):
        store.resolve(None)
    with pytest.raises(AuthenticationError):
        store.resolve(bearer("bm-wrong"))


def test_same_team_name_is_one_team(store: KeyStore) -> None:
    a, _ = store.create("a", team="red")
    b, _ = store.create("b", user="bea", team="red")
    assert a["team_id"] == b["team_id"] and b["user"] == "bea"
    assert [(t["name"], t["keys"]) for t in store.teams.list()] == [("red", 2)]


def test_bad_input_is_refused(store: KeyStore) -> None:
    with pytest.raises(InvalidRequest):
        store.create("")
    with pytest.raises(InvalidRequest):
        store.create("x", models=[" "])
    with pytest.raises(InvalidRequest):
        store.teams.create("bad name/..")
    with pytest.raises(NotFound):
        store.revoke("nobody")


def test_rotation_and_revocation_apply_after_the_cache(store: KeyStore, monkeypatch: pytest.MonkeyPatch) -> None:
    record, old = store.create("ci")
    assert store.resolve(bearer(old)).key_id == record["id"]
    rotated, new = store.rotate("ci")
    assert rotated["id"] == record["id"] and new != old
    with pytest.raises(AuthenticationError):  # this process forgets at once ...
        store.resolve(bearer(old))
    assert store.resolve(bearer(new)).key_id == record["id"]
    other = KeyStore(store.db)  # ... another replica after PRINCIPAL_TTL_S: simulate its clock moving on
    assert other.resolve(bearer(new)).key_id == record["id"]
    store.revoke(record["id"])
    assert other.resolve(bearer(new)).key_id == record["id"]  # still cached there
    clock = keys_module.time.monotonic() + keys_module.PRINCIPAL_TTL_S + keys_module.ENABLED_TTL_S + 0.1
    monkeypatch.setattr(keys_module.time, "monotonic", lambda: clock)
    assert other.resolve(bearer(new)) is LOCAL  # no active key left: auth is off again
    with pytest.raises(NotFound):
        store.rotate(record["id"])  # a revoked key cannot be rotated


def test_required_mode_makes_and_prints_one_admin_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    with pytest.raises(AuthenticationError):
        KeyStore(db, required=True).resolve(None)  # required: on even with no key
    store = start_keys(db, required=True, env_admin_key=None)
    printed = re.findall(r"created admin key (bm-\S+)", capsys.readouterr().err)
    assert len(printed) == 1 and store.resolve(bearer(printed[0])).is_admin
    start_keys(db, required=True, env_admin_key=None)  # next start (or the next worker): nothing new
    assert capsys.readouterr().err == ""
    assert [k["name"] for k in store.list()] == ["admin"]


def test_env_admin_key_is_stored_and_replaced(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'k.db'}")
    store = KeyStore(db)
    assert store.bootstrap("bm-first-admin-secret") is None
    assert store.resolve(bearer("bm-first-admin-secret")).is_admin
    KeyStore(db).bootstrap("bm-second-admin-secret")
    fresh = KeyStore(db)
    assert fresh.resolve(bearer("bm-second-admin-secret")).is_admin
    with pytest.raises(AuthenticationError):
        fresh.resolve(bearer("bm-first-admin-secret"))
    assert [k["revoked"] for k in fresh.list() if k["name"] == ENV_ADMIN_NAME] == [True, False]


def test_a_trusted_proxy_user_gets_a_key_of_its_own(store: KeyStore) -> None:
    zoe = store.resolve_trusted("zoe")
    assert (zoe.user, zoe.owner, zoe.is_admin) == ("zoe", "user:zoe", False)
    assert store.resolve_trusted("zoe").key_id == zoe.key_id  # made once
    assert [k["name"] for k in store.list()] == ["sso:zoe"]
    store.revoke("sso:zoe")
    with pytest.raises(AuthenticationError):
        store.resolve_trusted("zoe")
    with pytest.raises(AuthenticationError):
        store.resolve_trusted("  ")
