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
    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync  # off for tests (fast); on for benchmarks of commit cost (bench/usage_writes.py)
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
        fsync = "on" if self.fsync else "off"
        opts = f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync={fsync}"
        self._run("pg_ctl", "-D", self.datadir, "-o", opts, "-w", "-l", f"{self.datadir}/log", "start")
        self.create_database("baimo")
        return self

    def create_database(self, name: str) -> str:
        """Create another database on this server; returns its SQLAlchemy URL."""
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.datadir, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
