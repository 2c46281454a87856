"""Shared helpers for Baimo's benchmarks: ports, server subprocesses, statistics, tables."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = REPO_ROOT / ".venv" / "bin"
BAIMO_BIN = VENV_BIN / "baimo"
# Where `baimo models pull` puts GGUF files (Baimo's own rule): BAIMO_MODELS_DIR, else $BAIMO_HOME/models,
# else ~/.baimo/models.
MODELS_DIR = Path(
    os.environ.get("BAIMO_MODELS_DIR") or Path(os.environ.get("BAIMO_HOME") or Path.home() / ".baimo") / "models"
)

LOCAL_MODELS: dict[str, dict[str, Any]] = {
    "smollm2": {
        "id": "local/smollm2-135m",
        "file": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "catalogue": "smollm2-135m-instruct-q4_1",
        "context_window": 2048,
    },
    "qwen0.5b": {
        "id": "local/qwen2.5-coder-0.5b",
        "file": "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        "catalogue": "qwen2.5-coder-0.5b-instruct-q4_k_m",
        "context_window": 4096,
    },
    "qwen1.5b": {
        "id": "local/qwen2.5-coder-1.5b",
        "file": "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        "catalogue": "qwen2.5-coder-1.5b-instruct-q4_k_m",
        "context_window": 4096,
    },
}

if str(REPO_ROOT) not in sys.path:  # so `tests.support.upstream` imports when run as `python bench/x.py`
    sys.path.insert(0, str(REPO_ROOT))


# --- small utilities -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def fmt(value: float | int | str | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def print_table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]], notes: Sequence[str] = ()) -> str:
    """Print (and return) a plain-text table; numbers right-aligned."""
    cells = [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True)))

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    out = [title, rule, line(list(headers)), rule, *(line(r) for r in cells), rule, *notes]
    text = "\n".join(out)
    print(text, flush=True)
    return text


def dump_json(path: str | None, data: Any) -> None:
    if not path:
        return
    text = json.dumps(data, indent=2, default=str)
    if path == "-":
        print(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n", encoding="utf-8")
        print(f"wrote {path}")


def rss_kb(pid: int) -> int | None:
    """VmRSS of one process in KiB (None if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Child processes, recursively (via /proc/PID/task/*/children)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        p = stack.pop()
        for task in Path(f"/proc/{p}/task").glob("*") if Path(f"/proc/{p}/task").exists() else []:
            try:
                kids = [int(x) for x in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError, ValueError):
                continue
            out.extend(kids)
            stack.extend(kids)
    return out


def tree_rss_kb(pid: int) -> int | None:
    """VmRSS of a process plus all its descendants, in KiB."""
    own = rss_kb(pid)
    if own is None:
        return None
    return own + sum(rss_kb(k) or 0 for k in descendants(pid))


def baimo_available() -> str | None:
    """None when `baimo serve` looks runnable, otherwise the reason it is not."""
    if not BAIMO_BIN.exists():
        return f"{BAIMO_BIN} does not exist (pip install -e . in the venv?)"
    try:
        r = subprocess.run([str(BAIMO_BIN), "serve", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`baimo serve --help` failed: {exc}"
    if r.returncode != 0:
        return f"`baimo serve --help` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-400:]}"
    return None


def ensure_local_model(name: str, *, pull: bool = True) -> Path:
    """The GGUF file of one of LOCAL_MODELS in MODELS_DIR, fetched with `baimo models pull` when missing
    (with a throw-away BAIMO_HOME, so no baimo.yaml is written to the user's)."""
    spec = LOCAL_MODELS[name]
    path = MODELS_DIR / spec["file"]
    if path.exists():
        return path
    if not pull:
        raise SystemExit(f"model file missing: {path} (run `baimo models pull {spec['id']}`)")
    print(f"{path} missing: baimo models pull {spec['id']}", flush=True)
    with tempfile.TemporaryDirectory(prefix="baimo-bench-pull-") as home:
        env = {**os.environ, "BAIMO_HOME": home, "BAIMO_MODELS_DIR": str(MODELS_DIR)}
        r = subprocess.run([str(BAIMO_BIN), "models", "pull", spec["id"]], env=env)
    if r.returncode != 0 or not path.exists():
        raise SystemExit(f"`baimo models pull {spec['id']}` failed (exit {r.returncode}); {path} is missing")
    return path


def proc_cpu_seconds(pid: int | None) -> float | None:
    """utime+stime of a process (seconds), from /proc/PID/stat."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, IndexError, ValueError):
        return None


def local_model_entry(name: str, *, threads: int | None = None, by_path: bool = True) -> dict[str, Any]:
    """A baimo.yaml model entry for one of the bundled GGUF files."""
    spec = LOCAL_MODELS[name]
    entry: dict[str, Any] = {"id": spec["id"], "kind": "llamacpp", "context_window": spec["context_window"]}
    if by_path:
        entry["path"] = str(MODELS_DIR / spec["file"])
    else:
        entry["catalogue"] = spec["catalogue"]
    if threads is not None:
        entry["threads"] = threads
    return entry


# --- Baimo server subprocess -----------------------------------------------------------------------


class BaimoServer:
    """`baimo serve` in a child process with a throw-away BAIMO_HOME holding the given baimo.yaml."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        keep_home: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.config = dict(config)
        self.extra_env = dict(env or {})
        self.port = port or free_port()
        self.keep_home = keep_home
        self.extra_args = list(extra_args)
        self.home: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None  # perf_counter just before Popen
        self.ready_at: float | None = None  # perf_counter at the first 200 from /readyz
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def log_path(self) -> Path | None:
        return self.home / "server.log" if self.home else None

    def start(self, timeout: float = 120.0) -> BaimoServer:
        self.home = Path(tempfile.mkdtemp(prefix="baimo-bench-"))
        (self.home / "baimo.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")
        env = dict(os.environ)
        env.update({"BAIMO_HOME": str(self.home), "BAIMO_MODELS_DIR": str(MODELS_DIR), "PYTHONUNBUFFERED": "1"})
        env.update(self.extra_env)
        args = [str(BAIMO_BIN), "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.extra_args]
        self._log = open(self.home / "server.log", "wb")  # noqa: SIM115 - closed in stop()
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.home)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> float:
        """Poll /readyz every 10 ms; returns seconds from Popen to the first 200."""
        assert self.proc is not None and self.started_at is not None
        deadline = self.started_at + timeout
        with httpx.Client(timeout=2.0) as c:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"baimo serve exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if c.get(self.url + "/readyz").status_code == 200:
                        self.ready_at = time.perf_counter()
                        return self.ready_at - self.started_at
                except httpx.TransportError:
                    pass
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"baimo serve not ready after {timeout:g}s:\n{self.log_tail()}")
                time.sleep(0.01)

    @property
    def startup_seconds(self) -> float | None:
        if self.started_at is None or self.ready_at is None:
            return None
        return self.ready_at - self.started_at

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.home is not None and not self.keep_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> BaimoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_upstream(tokens: int = 100, token_delay: float = 0.0):
    """The scripted OpenAI-compatible upstream (tests/support/upstream.py) in a child process."""
    from tests.support.upstream import ScriptedUpstreamProcess

    return ScriptedUpstreamProcess(tokens=tokens, token_delay=token_delay, record=False).start()


def parse_int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


class SSEError(Exception):
    """A chunk of an SSE stream carried an `error` object."""


async def sse_chunks(response: Any) -> AsyncIterator[dict[str, Any] | None]:
    """The parsed `data:` chunks of an httpx streaming response, in order; None for `data: [DONE]`.

    Raises SSEError for an error chunk and ValueError for a chunk that is not JSON."""
    buf = b""
    async for data in response.aiter_bytes():
        buf += data
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                yield None
                continue
            chunk = json.loads(payload)
            if "error" in chunk:
                raise SSEError(f"error chunk: {payload[:300].decode('utf-8', 'replace')}")
            yield chunk


def terminate(proc: subprocess.Popen[Any] | None, timeout: float = 10.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL after `timeout` seconds; always reaped."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

