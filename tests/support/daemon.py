"""A server binary from Debian (redis-server, nginx, ...) run in the foreground for a test, on a loopback port.

Subclasses give `command()` (the argv) and may override `ready()` (default: the port accepts a connection) and
`failure()` (text for the error when it exits early); `start()` waits for readiness, `stop()` ends the process and
removes its directory. Used by tests/support/redis_server.py (and open to nginx.py and others).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

from tests.support.processes import terminate
from tests.support.server import free_port


class LoopbackDaemon:
    name = "daemon"
    package = ""  # the Debian package to name when the binary is missing

    def __init__(self, binary: str) -> None:
        self.binary = shutil.which(binary) or binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix=f"baimo-{self.name}-")
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready(self) -> bool:
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        return True

    def failure(self) -> str:
        return ""

    def start(self, timeout: float = 15):  # type: ignore[no-untyped-def]  (returns self, typed by subclasses)
        if not shutil.which(self.binary):
            raise RuntimeError(f"{self.name} is missing: run `make system-deps` (apt package {self.package})")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.failure()}")
            try:
                if self.ready():
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} was not ready in {timeout}s")

    def stop(self) -> None:
        terminate(self.proc, 10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
