"""A throwaway Redis server (Debian's redis-server) on a free loopback port, for tests of BAIMO_REDIS_URL."""

from __future__ import annotations

import socket

from tests.support.daemon import LoopbackDaemon


class TempRedis(LoopbackDaemon):
    """`redis-server` in the foreground, no persistence, its own directory; `url` is redis://127.0.0.1:PORT/0."""

    name = "redis-server"
    package = "redis-server"

    def __init__(self) -> None:
        super().__init__("redis-server")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.dir, "--daemonize", "no"]

    def ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
