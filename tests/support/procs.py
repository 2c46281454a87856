"""Processes as /proc shows them: children of a pid and their states (to prove no zombie or orphan is left)."""

from __future__ import annotations

import time
from pathlib import Path


def _stat(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])  # state, ppid


def state(pid: int) -> str | None:
    """The process state letter (R, S, Z, T, ...), or None when no such process exists."""
    st = _stat(pid)
    return st[0] if st else None


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid`: {child pid: state}."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st and st[1] == pid:
                out[int(entry.name)] = st[0]
    return out


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    """True once the process no longer exists at all (reaped, not a zombie)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(pid) is None:
            return True
        time.sleep(0.05)
    return False


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    """True once the process is gone or a zombie (no longer running; reaping it is its parent's business)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if state(pid) in (None, "Z"):
            return True
        time.sleep(0.05)
    return False
