"""`baimo distill export` against a real server's database: conversations made through the API by two teams' keys
(answers from a scripted upstream, thumbs through /api/feedback, a cascade that escalates), then the real CLI as a
subprocess: rated-first order, exact de-duplication, PII scrubbing, tenancy, and DPO pairs from thumbs and cascades.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import BAIMO, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e

ADMIN = "bm-admin-distill-secret-0123456789"
PII_EN = "Hello, I am John Smith, write to john.smith@example.com about my order."
PII_ZH = "我叫张伟，电话13812345678，身份证110105198803151232，请帮我查询订单。"


@dataclass
class World:
    server: BaimoServer
    keys: dict[str, str]


def _model(id_: str, upstream: str, base_url: str, price: float) -> str:
    return (f"  - id: {id_}\n    kind: openai\n    base_url: {base_url}\n    upstream_model: {upstream}\n"
            f"    price_input: {price}\n    price_output: {price}\n    on_premises: true\n    timeout: 10\n")


def _ask(http: httpx.Client, content: str, model: str) -> str:
    """A new conversation with one exchange; returns the answer's response id."""
    conv = http.post("/api/conversations", json={}).json()
    with http.stream("POST", f"/api/conversations/{conv['id']}/messages",
                     json={"content": content, "model": model}) as r:
        assert r.status_code == 200
        body = "".join(r.iter_text())
    return re.search(r'"response_id": ?"([^"]+)"', body).group(1)


def _rate(http: httpx.Client, response_id: str, score: float) -> None:
    r = http.post("/api/feedback", json={"response_id": response_id, "score": score})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    behaviours = {"strong": Behaviour.echo(), "other": Behaviour.ok("Another answer."),
                  "weak": Behaviour("ok", text="A quick cheap answer.", logprob=-0.05, unsure_marker="[hard]")}
    with ScriptedUpstream(behaviours) as up:
        config = ("default_model: remote/strong\nmodels:\n" + _model("remote/strong", "strong", up.base_url, 10)
                  + _model("remote/other", "other", up.base_url, 1) + _model("remote/weak", "weak", up.base_url, 0.1)
                  + "routers:\n  - id: baimo/cascade\n    strategy: cascade\n"
                    "    cascade: [remote/weak, remote/strong]\n    threshold: 0.5\n"
                  "privacy:\n  mode: \"off\"\n")  # no detector warm-up: the export scrubs by itself
        with BaimoServer(tmp_path_factory.mktemp("distill"), config, env={"BAIMO_ADMIN_KEY": ADMIN}) as server:
            keys = {"admin": ADMIN}
            with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {ADMIN}"}) as admin:
                for name, team in (("bob", "blue"), ("alice", "red")):
                    r = admin.post("/api/keys", json={"name": name, "team": team})
                    assert r.status_code == 201, r.text
                    keys[name] = r.json()["key"]
            with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {keys['bob']}"},
                              timeout=60) as bob:
                _rate(bob, _ask(bob, PII_EN, "remote/strong"), 1.0)
                _ask(bob, PII_ZH, "remote/strong")                          # unrated
                _rate(bob, _ask(bob, "What is 2+2?", "remote/strong"), 1.0)  # thumbs up ...
                _rate(bob, _ask(bob, "What is 2+2?", "remote/other"), 0.0)   # ... and down: a pair
                _ask(bob, "What is 2+2?", "remote/strong")                   # an exact duplicate
                _rate(bob, _ask(bob, "Tell me about rivers.", "remote/strong"), 0.7)
                _ask(bob, "[hard] Prove that primes never end.", "baimo/cascade")  # escalates weak -> strong
                r = bob.post("/api/personas", json={"name": "planner", "model": "remote/strong",
                                                    "instructions": "You plan weeks."})
                assert r.status_code == 201, r.text
                _ask(bob, "Plan my week.", "persona/planner")
            with httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {keys['alice']}"},
                              timeout=60) as alice:
                _ask(alice, "The red team's own question.", "remote/strong")
            yield World(server, keys)


def _export(world: World, tmp_path: Path, *args: str, key: str | None = "bob") -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    env = {**world.server.env}
    env.pop("BAIMO_API_KEY", None)
    if key:
        env["BAIMO_API_KEY"] = world.keys[key]
    proc = subprocess.run([str(BAIMO), "distill", "export", "--from-usage", "--out", str(out), *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]


def _user(row: dict[str, Any]) -> str:
    return next(m["content"] for m in row["messages"] if m["role"] == "user")


def test_rated_first_deduplicated_and_scrubbed(world: World, tmp_path: Path) -> None:
    rows = _export(world, tmp_path, "--model", "remote/strong")
    users = [_user(r) for r in rows]
    # rated 1.0 (oldest first), then 0.7, then the unrated ones; the repeated "What is 2+2?" answer is dropped
    assert [r["meta"]["rating"] for r in rows] == [1.0, 1.0, 0.7, None, None, None]
    assert users[1:3] == ["What is 2+2?", "Tell me about rivers."]
    assert users[4:] == ["[hard] Prove that primes never end.", "Plan my week."]
    assert [r["meta"]["persona"] for r in rows] == [None] * 5 + ["planner"]
    assert rows[5]["messages"][0] == {"role": "system", "content": "You plan weeks."}  # the persona's instructions
    assert {r["meta"]["model"] for r in rows} == {"remote/strong"}
    assert all(r["meta"]["conversation_id"] and r["messages"][-1]["role"] == "assistant" for r in rows)
    en, zh = rows[0], rows[3]
    for text in (en["messages"][0]["content"], en["messages"][1]["content"]):  # the echoed answer is scrubbed too
        assert "<PERSON>" in text and "<EMAIL_ADDRESS>" in text
        assert "John Smith" not in text and "john.smith" not in text
    assert {"<PERSON>", "<PHONE_NUMBER>", "<CN_ID>"} <= set(re.findall(r"<[A-Z_]+>", _user(zh)))
    assert "13812345678" not in _user(zh) and "110105198803151232" not in _user(zh) and "张伟" not in _user(zh)


def _export_here(world: World, key: str, monkeypatch: pytest.MonkeyPatch, **options: Any) -> list[dict[str, Any]]:
    """The same export in-process, on the server's database (faster than a CLI process per variant)."""
    from baimo.config import Settings, load_config
    from baimo.distill.export import ExportOptions, export_sft
    from baimo.distill.pairs import export_pairs
    from baimo.metering.keys import KeyStore
    from baimo.store.database import Database

    monkeypatch.setenv("BAIMO_HOME", str(world.server.home))
    settings = Settings()
    db = Database(settings.db_url)
    try:
        pairs = options.pop("pairs", False)
        opts = ExportOptions(who=KeyStore(db).resolve(f"Bearer {world.keys[key]}"), scrub=False, **options)
        return (export_pairs(db, opts) if pairs else export_sft(db, load_config(settings), opts, settings))[0]
    finally:
        db.close()


def test_min_rating_and_since_filter(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = _export_here(world, "bob", monkeypatch, models=["remote/strong"], min_rating=0.8)
    assert [_user(r) for r in rows] == [PII_EN, "What is 2+2?"]  # unscrubbed: the text as stored
    assert _export_here(world, "bob", monkeypatch, since=datetime.now(UTC) + timedelta(days=1)) == []
    assert [_user(r) for r in _export_here(world, "bob", monkeypatch, persona="planner")] == ["Plan my week."]


def test_export_sees_only_the_callers_owner(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"general {i}"},
                                                        {"role": "assistant", "content": "ok"}]}) + "\n"
                               for i in range(3)), encoding="utf-8")
    red = _export(world, tmp_path, "--no-scrub", "--mix", "export=0.5,general=0.5", "--with", f"general={general}",
                  "--size", "2", key="alice")  # the CLI, as alice's key (BAIMO_API_KEY), mixed with another source
    assert [_user(r) for r in red if r["meta"]["source"] == "export"] == ["The red team's own question."]
    assert [r["meta"]["source"] for r in red].count("general") == 1
    every = {_user(r) for r in _export_here(world, "admin", monkeypatch)}
    assert "The red team's own question." in every and "Tell me about rivers." in every
    blue = {_user(r) for r in _export_here(world, "bob", monkeypatch)}
    assert "The red team's own question." not in blue
    assert "What is 2+2?" in blue  # the default teachers are every remote model: remote/other's answer too
    assert _export_here(world, "alice", monkeypatch, pairs=True) == []


def test_pairs_from_thumbs_and_a_cascade_escalation(world: World, tmp_path: Path) -> None:
    pairs = _export(world, tmp_path, "--pairs", "--no-scrub")
    by_source = {p["meta"]["source"]: p for p in pairs}
    assert len(pairs) == 2 and set(by_source) == {"thumbs", "cascade"}
    thumbs, cascade = by_source["thumbs"], by_source["cascade"]
    assert thumbs["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert thumbs["chosen"] == [{"role": "assistant", "content": "What is 2+2?"}]  # the echoing strong model
    assert thumbs["rejected"] == [{"role": "assistant", "content": "Another answer."}]
    assert cascade["prompt"][-1]["content"] == "[hard] Prove that primes never end."
    assert cascade["rejected"][0]["content"] == "A quick cheap answer."  # the weak model's draft, stored
    assert cascade["chosen"][0]["content"] == "[hard] Prove that primes never end."
    assert (cascade["meta"]["rejected_model"], cascade["meta"]["chosen_model"]) == ("remote/weak", "remote/strong")


def test_bad_options_are_one_line_errors(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from baimo.errors import InvalidRequest

    env = {**world.server.env, "BAIMO_API_KEY": world.keys["bob"]}
    proc = subprocess.run([str(BAIMO), "distill", "export", "--from-usage", "--out", str(tmp_path / "x.jsonl"),
                           "--min-rating", "3"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "0..1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()
    with pytest.raises(InvalidRequest, match="unknown model"):
        _export_here(world, "bob", monkeypatch, models=["nope/none"])
