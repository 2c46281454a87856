"""A real, scripted, OpenAI-compatible HTTP server for tests and benchmarks.

Remote paid APIs are replaced in Baimo's tests by this server: it speaks the OpenAI wire protocol
over real HTTP on 127.0.0.1, and its answers are scripted per *upstream model name*, so a single
server can play a healthy model, a slow one, a failing one, and so on at the same time.

In-process (a uvicorn server in a background thread)::

    from tests.support.upstream import Behaviour, ScriptedUpstream

    with ScriptedUpstream({"flaky": Behaviour.fail(status=503)}) as up:
        client = openai.OpenAI(base_url=up.base_url, api_key="sk-test", max_retries=0)
        client.chat.completions.create(model="ok", messages=[...])
        assert up.requests[-1].authorization == "Bearer sk-test"

As a separate process (what the benchmarks use, so the server does not share the client's GIL)::

    python -m tests.support.upstream --port 8901 --tokens 100

or from Python with :class:`ScriptedUpstreamProcess`, which exposes the same ``base_url``,
``requests``, ``set_behaviour`` and ``clear`` through the control endpoints under ``/_scripted``.

Model names pick behaviours: an exact entry of the ``behaviours`` mapping wins; otherwise a name
of the form ``kind`` or ``kind:arg`` is parsed (``ok``, ``ok:100`` = 100 tokens, ``slow:2.5``,
``fail:429``, ``malformed``, ``midstream_error:5``, ``echo``, ``rich``); anything else gets the default
behaviour (``ok`` unless told otherwise). So a Baimo config can say ``upstream_model: fail:503``.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (streaming and not, with
``stream_options.include_usage``), ``POST /v1/completions`` (legacy text completions),
``POST /v1/embeddings`` (deterministic vectors, ``float`` or
``base64``), plus ``GET /_scripted/requests``, ``POST /_scripted/reset``,
``POST /_scripted/behaviours`` and ``GET /healthz`` for control.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

import httpx
import uvicorn
from starlette.applications import Starlette

__all__ = [
    "DEFAULT_TEXT",
    "KINDS",
    "Behaviour",
    "RecordedRequest",
    "ScriptedUpstream",
    "ScriptedUpstreamProcess",
    "build_app",
    "count_prompt_tokens",
    "embedding_vector",
]

from tests.support.processes import terminate
from tests.support.upstream_app import (  # noqa: F401  (re-exported for tests)
    DEFAULT_TEXT,
    KINDS,
    REPO_ROOT,
    Behaviour,
    RecordedRequest,
    _install_log_filter,
    _State,
    build_app,
    count_prompt_tokens,
    embedding_vector,
    last_user_text,
    split_tokens,
)

# --------------------------------------------------------------------------------------------------
# Running it
# --------------------------------------------------------------------------------------------------


def _listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn (port 0 = any free port).

    The protocol must be given explicitly: asyncio only sets TCP_NODELAY on accepted connections
    whose socket says IPPROTO_TCP, and without it Nagle + delayed ACK add ~40 ms before the first
    streamed chunk.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(False)
    return sock


def _uvicorn_config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        loop="asyncio",
        http="h11",
        ws="none",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        backlog=2048,
    )


class ScriptedUpstream:
    """The scripted server running in a background thread of this process.

    ``behaviours`` maps upstream model names to :class:`Behaviour` (or spec strings such as
    ``"fail:503"``); ``default`` is used for names that are neither mapped nor a spec.
    ``api_key``, if set, makes the server answer 401 unless ``Authorization: Bearer <api_key>``.
    """

    def __init__(
        self,
        behaviours: Mapping[str, Behaviour | str] | None = None,
        *,
        default: Behaviour | str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        record: bool = True,
        embedding_dim: int = 16,
        log_level: str = "warning",
    ) -> None:
        _install_log_filter()
        self.app = build_app(behaviours, default=default, api_key=api_key, record=record, embedding_dim=embedding_dim)
        self._state: _State = self.app.state.scripted
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> ScriptedUpstream:
        if self._thread is not None:
            return self
        sock = _listen_socket(self.host, self._requested_port)
        self.port = sock.getsockname()[1]
        config = _uvicorn_config(self.app, self.host, self.port, self._log_level)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"scripted-upstream-{self.port}",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("scripted upstream failed to start")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("scripted upstream did not start in time")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None

    def __enter__(self) -> ScriptedUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Addresses ----------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        if self.port is None:
            raise RuntimeError("not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    # Script and assertions ----------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._state.lock:
            return list(self._state.requests)

    def requests_for(self, path_suffix: str) -> list[RecordedRequest]:
        """Requests whose path ends with ``path_suffix`` (e.g. ``"/chat/completions"``)."""
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    @property
    def last_request(self) -> RecordedRequest:
        reqs = self.requests
        if not reqs:
            raise AssertionError("the scripted upstream received no request")
        return reqs[-1]

    def clear(self) -> None:
        with self._state.lock:
            self._state.requests.clear()

    def set_behaviour(self, model: str, behaviour: Behaviour | str) -> None:
        with self._state.lock:
            self._state.behaviours[model] = Behaviour.from_obj(behaviour)

    def set_default(self, behaviour: Behaviour | str) -> None:
        self._state.default = Behaviour.from_obj(behaviour)


class ScriptedUpstreamProcess:
    """The scripted server in a child process (``python -m tests.support.upstream``).

    Same surface as :class:`ScriptedUpstream`; ``requests``/``set_behaviour``/``clear`` go through
    the ``/_scripted`` control endpoints.
    """

    def __init__(
        self,
        behaviours: Mapping[str, Behaviour | str] | None = None,
        *,
        tokens: int | None = None,
        token_delay: float = 0.0,
        text: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        record: bool = True,
        python: str = sys.executable,
    ) -> None:
        self._behaviours = {k: Behaviour.from_obj(v) for k, v in (behaviours or {}).items()}
        self._args = [python, "-m", "tests.support.upstream", "--host", host, "--port", str(port)]
        if tokens is not None:
            self._args += ["--tokens", str(tokens)]
        if token_delay:
            self._args += ["--token-delay", str(token_delay)]
        if text is not None:
            self._args += ["--text", text]
        if api_key is not None:
            self._args += ["--api-key", api_key]
        if not record:
            self._args.append("--no-record")
        self.host = host
        self.port: int | None = None
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20.0) -> ScriptedUpstreamProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO_ROOT), env.get("PYTHONPATH", "")] if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(self._args, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=None, text=True)
        assert self.proc.stdout is not None
        result: dict[str, str] = {}

        def read_ready() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                if line.startswith("READY "):
                    result["url"] = line.split()[1]
                    break

        reader = threading.Thread(target=read_ready, daemon=True)
        reader.start()
        reader.join(timeout)
        if "url" not in result:
            self.stop()
            raise RuntimeError("scripted upstream process did not report READY")
        self.port = httpx.URL(result["url"]).port
        if self._behaviours:
            for name, b in self._behaviours.items():
                self.set_behaviour(name, b)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.proc, timeout)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> ScriptedUpstreamProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("not started")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        r = httpx.get(self.url + "/_scripted/requests", timeout=10)
        r.raise_for_status()
        return [RecordedRequest.from_dict(d) for d in r.json()]

    def clear(self) -> None:
        httpx.post(self.url + "/_scripted/reset", timeout=10).raise_for_status()

    def set_behaviour(self, model: str, behaviour: Behaviour | str) -> None:
        payload = {model: Behaviour.from_obj(behaviour).to_dict()}
        httpx.post(self.url + "/_scripted/behaviours", json=payload, timeout=10).raise_for_status()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.upstream",
        description="Scripted OpenAI-compatible upstream (for Baimo tests and benchmarks).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8901, help="0 picks a free port (see the READY line)")
    parser.add_argument("--tokens", type=int, default=None, help="default answer: N tokens 'tok0 tok1 ...'")
    parser.add_argument("--text", default=None, help="default answer text (ignored with --tokens)")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed tokens")
    parser.add_argument(
        "--behaviour",
        action="append",
        default=[],
        metavar="MODEL=SPEC",
        help="script a model name, e.g. --behaviour flaky=fail:503 (repeatable)",
    )
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument("--no-record", action="store_true", help="do not keep received requests")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)

    default = Behaviour.ok(args.text or DEFAULT_TEXT, tokens=args.tokens, token_delay=args.token_delay)
    behaviours: dict[str, Behaviour] = {"ok": default}
    for item in args.behaviour:
        name, sep, spec = item.partition("=")
        if not sep:
            parser.error(f"--behaviour expects MODEL=SPEC, got {item!r}")
        behaviours[name] = Behaviour.parse(spec)

    _install_log_filter()
    app = build_app(behaviours, default=default, api_key=args.api_key, record=not args.no_record)
    sock = _listen_socket(args.host, args.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(app, args.host, port, args.log_level))

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if server.started:
            print(f"READY http://{args.host}:{port}/v1", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    main()

