"""Bulk embedding in worker processes, for ingestion.

The USE encoder's tokenizer is pure Python and holds the GIL, so threads do not scale it: two single-threaded
worker processes embed ~207 chunks/s of 700 characters here, one process with two BLAS threads ~162. Queries
stay in-process (one short text; a round trip to a worker would cost more than it saves).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from baimo.config import EmbedderConfig
from baimo.use_pooling import SegmentedText

BATCH = 64
_worker_embedder: Any = None


def _exit_with_parent(parent: int) -> None:
    """A worker outlives a parent killed with -9 (its queue never closes): leave when the parent is gone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def _init(config_json: str) -> None:
    global _worker_embedder
    from baimo.embeddings import EMBEDDER_KINDS

    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()

    config = EmbedderConfig.model_validate_json(config_json)
    _worker_embedder = EMBEDDER_KINDS[config.kind](config.model_copy(update={"threads": 1}))


def _embed(texts: list[str]) -> np.ndarray:
    return _worker_embedder.embed(texts)


def _embed_segments(items: list[SegmentedText]) -> tuple[np.ndarray, list[np.ndarray]]:
    return _worker_embedder.embed_segments(items)


class EmbedderPool:
    """A lazily started pool of worker processes, each holding its own copy of one embedder."""

    def __init__(self, config: EmbedderConfig, workers: int) -> None:
        self.config = config
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the parent runs LanceDB's and uvicorn's threads, which fork would copy mid-lock
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init, initargs=(self.config.model_dump_json(),))
        return self._pool

    def submit(self, texts: list[str]) -> Callable[[], np.ndarray]:
        """Queue the texts in batches across the workers; the returned function waits for all the vectors."""
        futures = [self._executor().submit(_embed, texts[i:i + BATCH]) for i in range(0, len(texts), BATCH)]
        return lambda: np.concatenate([f.result() for f in futures])

    def submit_segments(self, items: list[SegmentedText]) -> Callable[[], tuple[np.ndarray, list[np.ndarray]]]:
        """Like `submit` for `UseEmbedder.embed_segments`: the returned function waits for the passages' vectors
        and each passage's sentence vectors."""
        futures = [self._executor().submit(_embed_segments, items[i:i + BATCH]) for i in range(0, len(items), BATCH)]

        def wait() -> tuple[np.ndarray, list[np.ndarray]]:
            results = [f.result() for f in futures]
            return np.concatenate([r[0] for r in results]), [v for r in results for v in r[1]]
        return wait

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
