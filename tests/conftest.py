"""Shared fixtures: every test gets its own BAIMO_HOME; `server` is a real `baimo serve` with SmolLM2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import BaimoServer, models_dir


@pytest.fixture(autouse=True)
def baimo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "baimo-home"
    monkeypatch.setenv("BAIMO_HOME", str(home))
    monkeypatch.setenv("BAIMO_MODELS_DIR", models_dir())
    monkeypatch.delenv("BAIMO_DATABASE_URL", raising=False)
    return home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    with BaimoServer(tmp_path_factory.mktemp("server-home")) as s:
        yield s


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server for the whole session (Debian's binaries, started here)."""
    from tests.support.postgres import TempPostgres

    pg = TempPostgres().start()
    try:
        yield pg.url
    finally:
        pg.stop()


@pytest.fixture
def client(server: BaimoServer):  # type: ignore[no-untyped-def]
    from openai import OpenAI

    return OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
