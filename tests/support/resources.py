"""What a server process holds, read through psutil: open TCP connections and resident memory.

Used by the reliability tests and `bench/load.py` to prove that faulted or heavy traffic leaks no connection
and that memory stays bounded.
"""

from __future__ import annotations

import time

import psutil


def open_sockets(pid: int) -> int:
    """TCP connections of process `pid` that are not listening sockets (ESTABLISHED, CLOSE_WAIT, ...)."""
    return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp") if c.status != psutil.CONN_LISTEN)


def sockets_by_state(pid: int) -> dict[str, int]:
    """{TCP state: count} for process `pid`, listening sockets left out (for assertion messages)."""
    out: dict[str, int] = {}
    for c in psutil.Process(pid).net_connections(kind="tcp"):
        if c.status != psutil.CONN_LISTEN:
            out[c.status] = out.get(c.status, 0) + 1
    return out


def split_sockets(pid: int, server_port: int, upstream_port: int) -> tuple[int, int]:
    """(connections from clients to `server_port`, connections to `upstream_port`) held by process `pid`."""
    conns = [c for c in psutil.Process(pid).net_connections(kind="tcp") if c.status != psutil.CONN_LISTEN]
    from_clients = sum(1 for c in conns if c.laddr.port == server_port)
    to_upstream = sum(1 for c in conns if c.raddr and c.raddr.port == upstream_port)
    return from_clients, to_upstream


def settle_sockets(pid: int, at_most: int, timeout: float = 10.0) -> int:
    """Poll until process `pid` holds at most `at_most` open TCP connections or `timeout` seconds pass; the count.

    Closing is asynchronous (the peer's FIN, the event loop's next turn), so a count taken the instant a batch
    ends can be briefly high; a leak stays high however long one waits."""
    deadline = time.monotonic() + timeout
    n = open_sockets(pid)
    while n > at_most and time.monotonic() < deadline:
        time.sleep(0.1)
        n = open_sockets(pid)
    return n


def rss_mib(pid: int) -> float:
    """Resident set size of process `pid` in MiB (psutil's memory_info().rss / 2**20)."""
    return psutil.Process(pid).memory_info().rss / 2**20
