"""One engine supervisor for `baimo serve --workers N`: the master process owns the local llama-server workers.

With several server worker processes, each would otherwise start its own llama-server per local model (N copies
of the weights in memory, N x the CPU threads). Instead the master process (uvicorn's supervisor) runs an
`EngineHost`: a small HTTP server on a loopback port, in a thread of its own, holding one `LlamaCppBackend` (and so
one supervised `Worker`, see `worker.py`) per local model. Server workers find it through BAIMO_ENGINE_URL and
reach a model at `<engine>/m/<model token>/v1/...` (`model_token`): the host admits the request to the model's
slots (arrival order, `queue_timeout`, 503 with Retry-After when full: the same rules as one process), starts the
llama-server when needed (and after a crash, with the same backoff), and streams the answer back unchanged.
Idle unloading (`keep_alive`) and health checks stay with the host's Worker.

In a server worker, `RemoteWorker` stands in for `Worker` with the same interface (`url`, `in_use`, `served`,
`check_health`, `props`...), so `LlamaCppBackend` keeps one code path.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from baimo.errors import BaimoError, UpstreamUnavailable

log = logging.getLogger("baimo.worker")


def model_token(model_id: str) -> str:
    """A model id as one URL path segment (ids contain slashes): unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(model_id.encode()).decode().rstrip("=")


def _model_id(token: str) -> str:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def _error(exc: BaimoError) -> web.Response:
    return web.json_response(exc.to_dict(), status=exc.status_code, headers=exc.headers or None)


class EngineHost:
    """The master process's local-model supervisor, served on 127.0.0.1 (see the module docstring).

    `start()` returns once the host listens; `url` is then its base URL; `stop()` stops every llama-server."""

    def __init__(self, settings: Any) -> None:
        from baimo.backends.llamacpp import LlamaCppBackend
        from baimo.config import load_config

        config = load_config(settings)
        self.backends = {m.id: LlamaCppBackend(m, settings) for m in config.models if m.kind == "llamacpp"}
        self.preload = settings.load_models_at_start
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._done: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="baimo-engine-host", daemon=True)
        self._error: BaseException | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> EngineHost:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._done is not None:
            self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(30)

    def _run(self) -> None:
        # The llama-server processes are children of this thread: PR_SET_PDEATHSIG fires when the thread that
        # forked them ends, so the thread lives as long as the host.
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start(); a failure after start is logged
            self._error = exc
            self._ready.set()
            log.exception("engine host stopped")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/m/{token}/props", self._props)
        app.router.add_get("/m/{token}/health", self._health)
        app.router.add_get("/workers", self._workers)
        app.router.add_post("/m/{token}/v1/{tail:.*}", self._proxy)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                                              auto_decompress=False)
        log.info("engine host for %d local model(s) on %s", len(self.backends), self.url)
        self._ready.set()
        if self.preload:
            for backend in self.backends.values():
                with contextlib.suppress(BaimoError):
                    await backend.worker.url()
        try:
            await self._done.wait()
        finally:
            await self._session.close()
            for backend in self.backends.values():
                await backend.close()
            await runner.cleanup()

    def _backend(self, request: web.Request) -> Any:
        try:
            return self.backends[_model_id(request.match_info["token"])]
        except (KeyError, ValueError, UnicodeDecodeError):
            raise web.HTTPNotFound(text="no such local model") from None

    async def _props(self, request: web.Request) -> web.Response:
        """The model's /props (starting its worker): what the chat template can express, for tool emulation."""
        backend = self._backend(request)
        try:
            await backend.worker.url()
        except BaimoError as exc:
            return _error(exc)
        return web.json_response(backend.worker.props)

    async def _health(self, request: web.Request) -> web.Response:
        alive = await self._backend(request).worker.check_health()
        return web.json_response({"alive": alive}, status=200 if alive else 503)

    async def _workers(self, request: web.Request) -> web.Response:
        rows = {}
        for model_id, b in self.backends.items():
            w = b._worker
            rows[model_id] = {"running": bool(w and w.running), "pid": w.pid if w else None,
                              "restarts": w.restarts if w else 0, "in_flight": w.in_flight if w else 0,
                              "queued": w.queued if w else 0}
        return web.json_response(rows)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        """Admit the request to the model's slots, then stream llama-server's answer back as it comes."""
        backend = self._backend(request)
        body = await request.read()
        tail = request.match_info["tail"]
        try:
            payload = json.loads(body)
            slots = backend._completion_slots(payload) if tail == "completions" else int(payload.get("n") or 1)
        except (ValueError, TypeError):
            slots = 1
        except BaimoError as exc:
            return _error(exc)
        worker = backend.worker
        assert self._session is not None
        try:
            async with worker.in_use(slots, backend.config.queue_timeout):
                url = await worker.url()
                async with self._session.post(f"{url}/v1/{tail}", data=body,
                                              headers={"content-type": "application/json"}) as upstream:
                    response = web.StreamResponse(status=upstream.status, headers={
                        "content-type": upstream.headers.get("content-type", "application/json")})
                    await response.prepare(request)
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
                    await response.write_eof()
                    if upstream.status < 400:
                        worker.served()
                    return response
        except BaimoError as exc:
            return _error(exc)
        except (aiohttp.ClientError, ConnectionResetError) as exc:
            log.warning("%s: engine host proxy: %s", backend.config.id, type(exc).__name__)
            if not worker.running:
                return _error(UpstreamUnavailable(f"{backend.config.id}: the model worker stopped mid-answer "
                                                  f"({worker.last_log_line()})"))
            raise


class RemoteWorker:
    """A local model's worker as seen from a server worker process: owned by the master's `EngineHost`."""

    def __init__(self, engine_url: str, model_id: str) -> None:
        self.model_id = model_id
        self.base_url = f"{engine_url.rstrip('/')}/m/{model_token(model_id)}"
        self.props: dict = {}
        self.restarts = 0
        self.pid: int | None = None
        self.running = False  # as far as this process knows: set by the last request
        self._busy = 0

    @property
    def in_flight(self) -> int:
        return self._busy

    @property
    def queued(self) -> int:
        return 0  # the queue is in the engine host (its /workers)

    async def url(self) -> str:
        """The model's base URL at the engine host; the first call starts the model there and reads its /props."""
        if not self.props:
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
                    async with session.get(self.base_url + "/props") as r:
                        data = await r.json(content_type=None)
                        if r.status != 200:
                            error = data.get("error", {})
                            raise UpstreamUnavailable(error.get("message") or f"engine host answered {r.status}",
                                                      code=error.get("code"))
            except aiohttp.ClientError as exc:
                raise UpstreamUnavailable(f"{self.model_id}: the engine host is not reachable "
                                          f"({type(exc).__name__})") from exc
            self.props = data
        self.running = True
        return self.base_url

    @contextlib.asynccontextmanager
    async def in_use(self, slots: int = 1, queue_timeout: float = 60.0) -> AsyncIterator[None]:
        """Counts this process's requests; the engine host admits them to the model's slots."""
        self._busy += 1
        try:
            yield
        finally:
            self._busy -= 1

    def served(self) -> None:
        self.running = True

    def last_log_line(self) -> str:
        return "see the server's worker log"

    async def check_health(self) -> bool:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
                async with session.get(self.base_url + "/health") as r:
                    self.running = r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            self.running = False
        return self.running

    async def stop(self) -> None:
        return None

    async def close(self) -> None:
        return None
