"""Group commit for usage records: one writer thread commits the records of concurrently finishing requests
in one transaction, and each request waits for its own record to be durable before its response ends.

Why: a transaction per request makes the database's commit path (SQLite's single writer lock, PostgreSQL's
WAL flush per commit) the bottleneck under load; batching N records into one transaction pays that cost once
(the "group commit" of database logs, e.g. PostgreSQL's `commit_delay`, Gray & Reuter, *Transaction
Processing*, 1993, §9.4.7). Batches form by themselves: while one batch commits, the records of requests
finishing meanwhile queue up and go in the next one. Under load the writer also waits up to `linger_ms` for
more records once it has one, but only when the previous transaction held more than one record (requests are
finishing together), so a lone request never waits: PostgreSQL's `commit_delay` with `commit_siblings` works
the same way. `max_batch` caps a transaction.

Durability: a record's future resolves only after the transaction holding it committed, so a response sent
after awaiting it is recorded (SQLite in WAL mode: the commit is in the WAL file and survives a kill -9 of the
process; PostgreSQL: the commit is flushed to its WAL). Records are committed in submission order.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError, ThreadPoolExecutor
from typing import Any

log = logging.getLogger("baimo.usage")

_STOP = object()


def _resolve(futures: Sequence[Future[None]], exc: BaseException | None = None) -> None:
    for f in futures:
        try:
            if exc is None:
                f.set_result(None)
            else:
                f.set_exception(exc)
        except InvalidStateError:  # the waiter gave up (cancelled): the record is written all the same
            pass


class UsageWriter:
    """Commits rows (dicts of column values) through `commit(rows)` in batches, from one daemon thread.

    `commit` is called with 1..`max_batch` rows and must write them in ONE transaction (raising if it fails).
    `group=False` commits each record in its own transaction on a worker thread (the per-request baseline of
    `bench/usage_writes.py`). A failed batch is retried row by row so one bad row does not lose the others;
    a row that still fails sets its future's exception.
    """

    def __init__(self, commit: Callable[[list[dict[str, Any]]], None], *, group: bool = True,
                 max_batch: int = 256, linger_ms: float = 0.0) -> None:
        self._commit = commit
        self.group = group
        self.max_batch = max(1, max_batch)
        self.linger_s = max(0.0, linger_ms) / 1000
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._last_batch = 0  # rows in the previous transaction: linger only when it held more than one
        self.batches = 0   # transactions committed (for tests and benchmarks)
        self.rows = 0      # rows committed

    def submit(self, row: dict[str, Any]) -> Future[None]:
        """Queue a row; the future resolves once its transaction committed (or holds the error). Never blocks:
        a request task being cancelled right after still gets its row written."""
        if not self.group:  # the per-request baseline: a transaction per row, on a worker thread
            return self._pool().submit(self._commit_single, row)
        fut: Future[None] = Future()
        self._ensure_thread()
        self._queue.put((row, fut))
        return fut

    async def write(self, row: dict[str, Any]) -> None:
        """Queue a row and wait until it is durable."""
        await asyncio.wrap_future(self.submit(row))

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:  # as many threads as asyncio's default executor
                self._executor = ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4), "baimo-usage-commit")
            return self._executor

    def _commit_single(self, row: dict[str, Any]) -> None:
        self._commit([row])
        with self._lock:
            self.batches, self.rows = self.batches + 1, self.rows + 1

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="baimo-usage-writer", daemon=True)
                self._thread.start()

    def _take_batch(self, first: Any) -> tuple[list[Any], bool]:
        """`first` plus whatever is queued (waiting up to linger for more), up to max_batch; (items, stop)."""
        items = [first]
        deadline = time.monotonic() + (self.linger_s if self._last_batch > 1 else 0.0)
        while len(items) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    item = self._queue.get(timeout=wait)
                except queue.Empty:
                    break
            if item is _STOP:
                return items, True
            items.append(item)
        return items, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is _STOP:
                return
            items, stop = self._take_batch(first)
            rows = [row for row, _ in items if row is not None]  # None: a flush() barrier
            self._last_batch = len(rows)
            futures = [fut for _, fut in items]
            try:
                if rows:
                    self._commit(rows)
                    self.batches, self.rows = self.batches + 1, self.rows + len(rows)
                _resolve(futures)
            except Exception:  # noqa: BLE001 - retry one by one so one bad row does not lose the batch
                log.exception("usage batch of %d rows failed; retrying row by row", len(rows))
                for row, fut in items:
                    try:
                        if row is not None:
                            self._commit([row])
                            self.batches, self.rows = self.batches + 1, self.rows + 1
                        _resolve([fut])
                    except Exception as exc:  # noqa: BLE001
                        log.exception("usage record lost: %s", {k: row.get(k) for k in ("endpoint", "model")})
                        _resolve([fut], exc)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every row queued so far is committed (rows are committed in FIFO order; the per-request
        mode has no queue: `close` waits for its commits)."""
        if self.group and self._thread is not None and self._thread.is_alive():
            barrier: Future[None] = Future()
            self._queue.put((None, barrier))
            barrier.result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread (and the per-request mode's workers)."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(_STOP)
            thread.join(timeout)
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
