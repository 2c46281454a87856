"""One local model in a supervised `llama-server` worker process (the pattern of Ollama's runners).

The API process never loads a model itself: a native crash in llama.cpp ends only the worker. The
supervisor starts the worker on a free loopback port when a request needs it, waits for `/health`, and
watches the process. When the worker dies (crash, kill, exit on load), requests in flight fail with a
clean error from the HTTP client, and the next request starts a new worker: at once after a first
failure, then after a backoff that grows with consecutive failures (0.5 s, 1 s, 2 s, ... up to 30 s; reset
once a worker has served a request). A request waits out a backoff of up to 5 s; a longer one gets a 503. A worker that
stops answering `/health` while requests wait is killed and replaced. A worker idle for `keep_alive`
seconds is stopped, freeing its memory; the next request starts it again.

Workers die with the process that started them (PR_SET_PDEATHSIG), and every exit is awaited, so no
zombie or orphan is left behind even after a kill -9 of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from baimo.errors import UpstreamUnavailable

log = logging.getLogger("baimo.worker")

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_WAIT_FOR_RESTART_S = 5.0  # a request waits out a shorter backoff; a longer one answers 503 at once
HEALTH_TIMEOUT_S = 5.0
STOP_GRACE_S = 5.0
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the worker binds it right away)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class WorkerSpec:
    """How to run one model: the binary, the GGUF, and the serving parameters.

    `parallel` slots share one KV cache of `parallel * context_window` tokens (each request may use up to
    `context_window`); `threads` are CPU threads for generation and prompt processing; `repack` keeps
    llama.cpp's weight repacking (extra buffer types) on; `load_timeout`/`keep_alive` are seconds."""

    model_id: str
    server: Path
    model_path: Path
    context_window: int
    parallel: int = 8
    threads: int = 2
    repack: bool = True
    load_timeout: float = 120.0
    keep_alive: float | None = 300.0
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()

    def argv(self, port: int) -> list[str]:
        # Each slot gets its own `context_window` (the KV cache is split, not unified, so one long request can
        # not starve the others); the prompt cache in RAM is capped (llama.cpp's default is 8 GiB); a trailing
        # assistant message is history, as in OpenAI's API, not a prefix to continue.
        args = [str(self.server), "--model", str(self.model_path), "--host", "127.0.0.1", "--port", str(port),
                "--ctx-size", str(self.context_window * self.parallel), "--parallel", str(self.parallel),
                "--no-kv-unified", "--threads", str(self.threads), "--threads-batch", str(self.threads),
                "--jinja", "--no-webui", "--no-slots", "--metrics", "--cache-ram", "256",
                "--no-prefill-assistant", "--alias", self.model_id]
        if not self.repack:
            args.append("--no-repack")
        return args + list(self.extra_args)


class Worker:
    """Supervises one llama-server process; `url()` returns its base URL, starting it when needed."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self._proc: asyncio.subprocess.Process | None = None
        self._port: int | None = None
        self._loaded = False  # the running worker finished loading its model (/health answered 200)
        self._lock = asyncio.Lock()
        self._failures = 0
        self._next_start = 0.0
        self._last_error: str | None = None
        self._busy = 0
        self._waiting = 0
        self._slots = asyncio.Semaphore(spec.parallel)
        self._admit = asyncio.Lock()
        self._last_used = time.monotonic()
        self._idle_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.props: dict = {}  # what the worker says of its model (/props): chat template capabilities, ...
        self._log_tail: deque[str] = deque(maxlen=40)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._port is not None

    @property
    def serving(self) -> bool:
        """Running and done loading its model: requests may go to it (while it loads, llama-server answers
        every request 503 "Loading model")."""
        return self.running and self._loaded

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    @property
    def in_flight(self) -> int:
        """Requests being served now (holding slots)."""
        return self._busy - self._waiting

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def url(self) -> str:
        """The worker's base URL, after starting it (and waiting for the model to load) when it is not running.

        Raises UpstreamUnavailable (503) while in backoff after a crash, or when the worker fails to load."""
        if self.serving:
            return self.base_url
        async with self._lock:  # a request arriving while another starts the worker waits here for the load
            if self.serving:
                return self.base_url
            wait = self._next_start - time.monotonic()
            if wait > MAX_WAIT_FOR_RESTART_S:
                raise UpstreamUnavailable(
                    f"{self.spec.model_id}: the model worker failed ({self._last_error}); it restarts in "
                    f"{wait:.1f}s", code="worker_restarting")
            if wait > 0:
                await asyncio.sleep(wait)
            await self._start()
            return self.base_url

    async def _start(self) -> None:
        if not self.spec.model_path.exists():
            raise UpstreamUnavailable(f"model file for {self.spec.model_id} is missing ({self.spec.model_path})")
        port = free_port()  # a port taken meanwhile makes the worker exit on load: a retried failure, as any
        if self.spec.log_path is not None:
            self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        self._loaded = False
        proc = await asyncio.create_subprocess_exec(
            *self.spec.argv(port), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, preexec_fn=_die_with_parent, start_new_session=True)
        self._proc, self._port = proc, port
        logf = self.spec.log_path.open("a", encoding="utf-8") if self.spec.log_path else None
        self._watch_task = asyncio.create_task(self._watch(proc, logf))
        try:
            await self._wait_ready(proc, port)
        except BaseException as exc:
            await self._kill(proc)
            self._failed(str(exc) if isinstance(exc, UpstreamUnavailable) else type(exc).__name__)
            if isinstance(exc, UpstreamUnavailable):
                exc.message = f"{self.spec.model_id}: {exc.message}"
            raise
        self._loaded = True
        log.info("worker %s ready on port %d (pid %d) in %.1fs", self.spec.model_id, port, proc.pid,
                 time.monotonic() - started)
        self._last_used = time.monotonic()
        if self.spec.keep_alive and (self._idle_task is None or self._idle_task.done()):
            self._idle_task = asyncio.create_task(self._idle_watch())

    async def _wait_ready(self, proc: asyncio.subprocess.Process, port: int) -> None:
        deadline = time.monotonic() + self.spec.load_timeout
        timeout = aiohttp.ClientTimeout(total=2)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                if proc.returncode is not None:
                    await asyncio.sleep(0.05)  # let the watcher read the last lines
                    raise UpstreamUnavailable(f"worker exited with code {proc.returncode} while loading: "
                                              f"{self.last_log_line()}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, ValueError):
                    async with session.get(f"http://127.0.0.1:{port}/health") as r:
                        ready = r.status == 200
                    if ready:
                        async with session.get(f"http://127.0.0.1:{port}/props") as r:
                            self.props = await r.json()
                        return
                await asyncio.sleep(0.05)
        raise UpstreamUnavailable(f"worker did not load within {self.spec.load_timeout:g}s")

    def last_log_line(self) -> str:
        for line in reversed(self._log_tail):
            if line.strip():
                return line.strip()[:300]
        return "no output"

    async def _watch(self, proc: asyncio.subprocess.Process, logf: object) -> None:
        """Copy the worker's output to its log file and notice its exit (and reap it: no zombie)."""
        assert proc.stdout is not None
        try:
            async for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                self._log_tail.append(line.rstrip())
                if logf is not None:
                    logf.write(line)  # type: ignore[attr-defined]
        finally:
            code = await proc.wait()
            if logf is not None:
                logf.close()  # type: ignore[attr-defined]
        if self._proc is proc and code != 0 and not getattr(proc, "_baimo_stopping", False):
            log.warning("worker %s (pid %d) exited with code %s: %s", self.spec.model_id, proc.pid, code,
                        self.last_log_line())
            self._failed(f"exit code {code}")
            self.restarts += 1

    def _failed(self, why: str) -> None:
        """Note a failure: the first restart is immediate, consecutive ones wait 0.5 s, 1 s, 2 s ... 30 s."""
        self._last_error = why
        delay = 0.0 if self._failures == 0 else min(BACKOFF_MAX_S, BACKOFF_START_S * 2 ** (self._failures - 1))
        self._failures += 1
        self._next_start = time.monotonic() + delay

    def served(self) -> None:
        """A request completed: the worker is healthy, so the next crash starts the backoff afresh."""
        self._failures = 0

    @contextlib.asynccontextmanager
    async def in_use(self, slots: int = 1, queue_timeout: float = 60.0):  # type: ignore[no-untyped-def]
        """Hold `slots` of the worker's parallel slots for one request (a request with `n` choices takes n),
        waiting in arrival order for them; idle unloading waits while any request holds or waits.

        Baimo admits requests itself instead of letting them queue inside llama-server, so a request's read
        timeout (a stuck generation) starts only once it is being served, and a full worker answers 503 with
        Retry-After after `queue_timeout` seconds instead of an indefinite wait."""
        self._busy += 1
        self._waiting += 1
        taken = 0
        try:
            try:
                async with asyncio.timeout(queue_timeout):
                    async with self._admit:  # whole requests in arrival order, not slot by slot
                        for _ in range(slots):
                            await self._slots.acquire()
                            taken += 1
            except TimeoutError:
                raise UpstreamUnavailable(
                    f"{self.spec.model_id}: all {self.spec.parallel} slots stayed busy for {queue_timeout:g}s; "
                    "retry later", code="model_busy", headers={"retry-after": "5"}) from None
            finally:
                self._waiting -= 1
            yield
        finally:
            for _ in range(taken):
                self._slots.release()
            self._busy -= 1
            self._last_used = time.monotonic()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return self._waiting

    async def check_health(self) -> bool:
        """True when the worker answers /health within HEALTH_TIMEOUT_S; a hung worker is killed."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return False
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)) as session:
                async with session.get(self.base_url + "/health") as r:
                    # 503 means loading or no free slot: alive
                    return r.status in (200, 503)
        except (aiohttp.ClientError, TimeoutError):
            log.warning("worker %s does not answer /health; killing it", self.spec.model_id)
            self._failed("stopped answering")
            await self._kill(proc)
            return False

    async def _idle_watch(self) -> None:
        assert self.spec.keep_alive
        while self.running:
            await asyncio.sleep(min(5.0, self.spec.keep_alive / 2))
            if self._busy == 0 and time.monotonic() - self._last_used >= self.spec.keep_alive:
                log.info("worker %s idle for %.0fs: unloading", self.spec.model_id, self.spec.keep_alive)
                await self.stop()
                return

    async def _kill(self, proc: asyncio.subprocess.Process, grace: float = 0.0) -> None:
        proc._baimo_stopping = True  # type: ignore[attr-defined]
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM if grace else signal.SIGKILL)
            try:
                await asyncio.wait_for(proc.wait(), grace or 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._proc is proc:
            self._proc, self._port = None, None

    async def stop(self) -> None:
        """Stop the worker (SIGTERM, then SIGKILL after STOP_GRACE_S) and wait for it to exit."""
        proc = self._proc
        if proc is not None:
            await self._kill(proc, grace=STOP_GRACE_S)
        if self._watch_task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._watch_task, 5)

    async def close(self) -> None:
        if self._idle_task is not None and self._idle_task is not asyncio.current_task():
            self._idle_task.cancel()
        await self.stop()


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists and is not a zombie (for tests and `baimo engine info`)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
