"""The scale-out topology of deploy/ built from Debian packages, no Docker: one PostgreSQL with pgvector
(conversations, usage, keys, budgets, ingestion jobs, knowledge chunks), one redis-server (rate limits), a scripted
OpenAI-compatible upstream as the remote model, two `baimo serve` replicas (the first with `--workers 2`) sharing
an upload folder, and nginx in front, round robin. Started once per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from baimo.store.database import Database
from tests.support.nginx import TempNginx
from tests.support.redis_server import TempRedis
from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

BAIMO = str(Path(sys.executable).parent / "baimo")
# remote/ten answers 10 tokens (one every 20 ms); at 100 USD per million prompt tokens and 1,000 per million
# completion tokens a request of "Say hi" costs 8 x 100e-6 + 10 x 1000e-6 = $0.0108 (3 + 4 + 1 prompt tokens).
ONE_REQUEST = 8 * 100e-6 + 10 * 1000e-6


def config(upstream_url: str) -> str:
    return (f"default_model: remote/ten\nmodels:\n  - id: remote/ten\n    kind: openai\n    base_url: {upstream_url}\n"
            "    upstream_model: ten\n    price_input: 100\n    price_output: 1000\n    context_window: 8192\n"
            "    timeout: 20\n  - id: remote/slow\n    kind: openai\n"
            f"    base_url: {upstream_url}\n    upstream_model: slow\n    price_input: 100\n    price_output: 1000\n"
            "    context_window: 8192\n    timeout: 20\n"
            # a local model: with --workers, one llama-server started by the main process (tests/scaleout/test_workers)
            "  - id: local/smollm2-135m\n    kind: llamacpp\n    catalogue: smollm2-135m-instruct-q4_1\n"
            "    context_window: 2048\n    max_output_tokens: 96\n    threads: 1\n")


@dataclass
class Topology:
    a: BaimoServer  # `baimo serve --workers 2`
    b: BaimoServer  # one process: the replica the tests kill
    nginx: TempNginx
    upstream: ScriptedUpstream
    database_url: str
    key: str  # an admin API key every test may use (once a key exists, the API requires one)

    @property
    def url(self) -> str:
        return self.nginx.url

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([BAIMO, *args], env=self.a.env, capture_output=True, text=True, timeout=120)

    def sql(self, query: str, *params: object) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            return conn.execute(query, params).fetchall()

    def new_key(self, name: str, *options: str) -> dict:
        made = self.cli("keys", "create", name, *options, "--json")
        assert made.returncode == 0, made.stderr
        return json.loads(made.stdout)


@pytest.fixture(scope="session")
def topology(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    root = tmp_path_factory.mktemp("scaleout")
    behaviours = {"ten": Behaviour.ok(tokens=10, token_delay=0.02), "slow": Behaviour.ok(tokens=40, token_delay=0.1)}
    with ScriptedUpstream(behaviours) as upstream, TempRedis() as redis:
        env = {"BAIMO_DATABASE_URL": postgres_url, "BAIMO_VECTOR_URL": postgres_url, "BAIMO_REDIS_URL": redis.url,
               "BAIMO_UPLOAD_DIR": str(root / "uploads"), "BAIMO_LOG_FORMAT": "text"}
        Database(postgres_url).close()  # migrate first, so the replicas start side by side
        a = BaimoServer(root / "a", config(upstream.base_url), env=env, args=["--workers", "2"])
        b = BaimoServer(root / "b", config(upstream.base_url), env=env)
        try:
            with ThreadPoolExecutor(2) as pool:
                for started in [pool.submit(server.start, timeout=240) for server in (a, b)]:
                    started.result()
            with TempNginx([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]) as nginx:
                topo = Topology(a, b, nginx, upstream, postgres_url, key="")
                topo.key = topo.new_key("scaleout", "--admin")["key"]  # the CLI once; then the API
                yield topo
        finally:
            b.stop()
            a.stop()


@pytest.fixture
def client(topology: Topology):  # type: ignore[no-untyped-def]
    import openai

    return openai.OpenAI(base_url=topology.url + "/v1", api_key=topology.key, max_retries=0, timeout=60)


def pids_of_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a `--workers` server's processes)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == p:
                    todo.append(int(entry.name))
    return found


os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
