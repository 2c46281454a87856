"""A throwaway PostgreSQL server (Debian's binaries) on a free loopback port, for tests of BAIMO_DATABASE_URL."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

from tests.support.server import free_port


def _bindir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    if not found:
        raise RuntimeError("PostgreSQL server binaries are missing: run `make system-deps` (apt package postgresql)")
    return found[-1]


class TempPostgres:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.datadir = tempfile.mkdtemp(prefix="baimo-pg-")
        self.port = free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [f"{self.bindir}/{args[0]}", *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/baimo"

    def start(self) -> TempPostgres:
        if self.as_root:
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run("initdb", "-D", self.datadir, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", self.datadir, "-o", opts, "-w", "-l", f"{self.datadir}/log", "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "baimo")
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.datadir, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
