"""Hybrid retrieval: BM25 full-text hits and the dense-vector hits of each of a base's embedders, fused by
weighted reciprocal rank fusion.

BM25 is exact on names, codes and numbers; the multilingual dense encoders find paraphrases and passages in
other languages. RRF (Cormack et al., 2009: score = sum of 1 / (60 + rank)) needs no score calibration between
the lists, which is why BM25 and the dense list are fused by it; each list's term is multiplied by its weight
(knowledge.fusion_weights). Every passage also carries its cosine similarity to the question under the base's
primary embedder, an absolute relevance measure that grounded mode compares with its threshold.

Several embedders (the multilingual USE and multilingual-e5-small) make different mistakes. RRF of their lists
throws away how sure each one is: e5 alone finds far fewer answers than USE on the held-out news corpus, and its
rank-17 guess counted like USE's confident rank 1, so RRF of the two lost answers USE had (README: Knowledge
bases). By default (knowledge.dense_fusion: scores) their similarities are added instead, each z-scored over
its own candidates (CombSUM of normalized scores: Fox and Shaw, TREC-2 1994; z-score normalization: Montague
and Aslam, CIKM 2001; a convex combination of normalized scores beat RRF in Bruch, Gai and Ingber, "An Analysis
of Fusion Functions for Hybrid Retrieval", ACM TOIS 2023), the further embedders' weighted by fusion_weights.fused
against the primary's 1; a list's gap between its best hit and the rest then counts.

Best-sentence scoring: a chunk's vector averages its sentences, so a question about one fact in it matches a
neighbouring chunk about the same topic nearly as well. When a base stores each chunk's sentence vectors (with
the chunk's heading or title; knowledge.sentence_vectors), the primary embedder's candidates are ranked by
max(cosine to the chunk, cosine to its best sentence), a light late interaction in the spirit of ColBERT's MaxSim
(Khattab and Zaharia, SIGIR 2020) at the sentence level. Only the candidates the chunk vectors found are
re-scored (their sentence vectors come with the hits), which on the held-out news corpus ranked as well as
searching every sentence (README: Knowledge bases).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from baimo.config import FusionWeights
from baimo.errors import InvalidRequest
from baimo.knowledge.bases import KnowledgeService, embedder_ids
from baimo.knowledge.store import StoredHit, vector_column
from baimo.store.tables import KnowledgeBase

Mode = Literal["hybrid", "bm25", "dense"]
MODES: tuple[str, ...] = ("hybrid", "bm25", "dense")
RRF_K = 60
CANDIDATES_PER_LIST = 4  # each ranked list contributes k x this many candidates to the fusion
# In hybrid mode a BM25 hit joins the fusion only if its cosine similarity is within this margin of the best
# dense hit's: word overlap on question words ("how", "the", "cost") otherwise drags in passages of the
# question's language when the answer is in another one. Exact-token hits (codes, names) sit close to the best
# dense similarity, since their passage is on topic, so they pass. The default (knowledge.bm25_margin) was
# chosen on the test corpus, on the USE encoder's similarity scale (README: Knowledge bases).


@dataclass
class Passage:
    knowledge_base: str
    source: str
    location: str
    heading: str
    ordinal: int
    text: str
    chunk_id: str
    score: float                # the ranking score of the mode used (RRF, BM25, cosine or fused z-scores)
    similarity: float           # cosine similarity between question and passage (the base's primary embedder)
    bm25_rank: int | None = None
    dense_rank: int | None = None  # rank under the primary embedder (by best sentence when the base has them)
    sentence_similarity: float | None = None  # cosine similarity of the question and the passage's best sentence
    fused_rank: int | None = None  # best rank under the base's further embedders

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def best_sentence_order(hits: list[StoredHit], query: np.ndarray) -> tuple[list[StoredHit], dict[str, float]]:
    """Dense hits re-ranked by max(chunk cosine, best sentence cosine), best first, and chunk id -> the best
    sentence's cosine for the hits that have sentence vectors. Ties keep the store's order."""
    best = {h.chunk_id: float(np.max(h.sentence_vectors @ query)) for h in hits
            if h.sentence_vectors is not None and len(h.sentence_vectors)}
    order = sorted(hits, key=lambda h: -max(h.score, best.get(h.chunk_id, -1.0)))
    return order, best


def rrf(rankings: list[list[str]], k: int = RRF_K, weights: list[float] | None = None) -> dict[str, float]:
    """Weighted reciprocal rank fusion of ranked id lists (rank 1 is best): id -> sum of w / (k + rank).

    Cormack, Clarke and Buettcher (SIGIR 2009) with k = 60; `weights` (default all 1) scale each list's term."""
    scores: dict[str, float] = {}
    for i, ranking in enumerate(rankings):
        w = 1.0 if weights is None else weights[i]
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + w / (k + rank)
    return scores


def zscore_fusion(lists: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """Weighted sum of z-scored scores: id -> sum of w * (score - mean) / std over the (id -> score, w) lists, the
    mean and std taken over each list's own scores. An id a list did not return gets that list's lowest score (it
    ranked below them all). CombSUM (Fox and Shaw, 1994) with z-score normalization (Montague and Aslam, 2001)."""
    fused = {key: 0.0 for scores, _ in lists for key in scores}
    for scores, w in lists:
        if not scores or not w:
            continue
        values = np.fromiter(scores.values(), dtype=np.float64)
        mean, std, lowest = values.mean(), values.std() or 1.0, values.min()
        for key in fused:
            fused[key] += w * (scores.get(key, lowest) - mean) / std
    return fused


class Retriever:
    """Searches knowledge bases; one per process (it keeps a small thread pool for BM25 and query embedding)."""

    def __init__(self, knowledge: KnowledgeService) -> None:
        self.knowledge = knowledge
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="baimo-retrieval")

    def _query_vectors(self, rows: list[KnowledgeBase], query: str, mode: str) -> dict[str, Callable[[], np.ndarray]]:
        """Embedder id -> the question's vector, or a future of it: the further embedders' run in the pool while
        the primary one's runs here (e5's C engine releases the GIL), so their time overlaps BM25 and search."""
        vectors: dict[str, Callable[[], np.ndarray]] = {}
        primary = {embedder_ids(base)[0] for base in rows}
        for base in rows:
            for eid in embedder_ids(base)[1:] if mode != "bm25" else []:
                if eid not in vectors and eid not in primary:
                    future = self._pool.submit(self.knowledge.embedders.get(eid).embed, [query], is_query=True)
                    vectors[eid] = lambda future=future: future.result()[0]
        for eid in primary:
            vector = self.knowledge.embedders.get(eid).embed([query], is_query=True)[0]
            vectors[eid] = lambda vector=vector: vector
        return vectors

    def search(self, bases: list[str], query: str, *, k: int = 5, mode: str = "hybrid",
               margin: float | None = None, weights: FusionWeights | None = None) -> list[Passage]:
        """The k best passages of `bases` for `query`, best first. `mode`: hybrid (BM25 and every embedder of
        each base, fused), bm25, or dense (every embedder, fused when a base has several). Errors: InvalidRequest
        (400) for a bad mode, empty query or k outside 1-100; NotFound (404) for an unknown base."""
        if mode not in MODES:
            raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", param="mode")
        if not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        if not 1 <= k <= 100:
            raise InvalidRequest("k must be between 1 and 100", param="k")
        rows = [self.knowledge.get(name) for name in bases]
        n = max(k * CANDIDATES_PER_LIST, 20)
        margin = self.knowledge.config.bm25_margin if margin is None else margin
        weights = weights or self.knowledge.config.fusion_weights
        query_vectors = self._query_vectors(rows, query, mode)
        rankings: list[list[str]] = []
        list_weights: list[float] = []
        hits: dict[str, tuple[KnowledgeBase, StoredHit]] = {}
        bm25_rank: dict[str, int] = {}
        dense_rank: dict[str, int] = {}
        fused_rank: dict[str, int] = {}
        sentence_sim: dict[str, float] = {}
        combined_scores: dict[str, float] = {}  # the score fusion of a base's embedders (dense_fusion: scores)
        sentences = self.knowledge.config.sentence_vectors
        for base in rows:
            ids = embedder_ids(base)
            qv = query_vectors[ids[0]]()
            # BM25 runs in a second thread while the vector search runs here (LanceDB releases the GIL).
            text_future = self._pool.submit(self.knowledge.store.text_search, base.id, query, n) \
                if mode in ("hybrid", "bm25") else None
            best_dense = -1.0
            if mode in ("hybrid", "dense"):
                dense_scores: list[tuple[dict[str, float], float]] = []
                for position, eid in enumerate(ids):
                    vector_hits = self.knowledge.store.vector_search(
                        base.id, query_vectors[eid](), n, vector_column(position), sentences=sentences and not position)
                    if position == 0:
                        best_dense = max((h.score for h in vector_hits), default=-1.0)
                        vector_hits, best = best_sentence_order(vector_hits, qv)
                        sentence_sim.update(best)
                    dense_scores.append(({h.chunk_id: max(h.score, sentence_sim.get(h.chunk_id, -1.0))
                                          for h in vector_hits}, 1.0 if position == 0 else weights.fused))
                    rankings.append([h.chunk_id for h in vector_hits])
                    list_weights.append(weights.dense if position == 0 else weights.fused)
                    ranks = dense_rank if position == 0 else fused_rank
                    for rank, h in enumerate(vector_hits, start=1):
                        hits.setdefault(h.chunk_id, (base, h))
                        ranks[h.chunk_id] = min(rank, ranks.get(h.chunk_id, rank))
                if len(ids) > 1 and self.knowledge.config.dense_fusion == "scores":
                    del rankings[-len(ids):], list_weights[-len(ids):]  # one dense list: their score fusion
                    combined = zscore_fusion(dense_scores)
                    combined_scores.update(combined)
                    rankings.append(sorted(combined, key=lambda cid: -combined[cid])[:n])
                    list_weights.append(weights.dense)
            if text_future is not None:
                text_hits = text_future.result()
                if mode == "hybrid":
                    floor = best_dense - margin
                    text_hits = [h for h in text_hits if float(np.dot(h.vector, qv)) >= floor]
                rankings.append([h.chunk_id for h in text_hits])
                list_weights.append(weights.bm25)
                for rank, h in enumerate(text_hits, start=1):
                    hits.setdefault(h.chunk_id, (base, h))
                    bm25_rank[h.chunk_id] = rank
        if len(rankings) > 1:
            scores = rrf(rankings, weights=list_weights)
        else:
            scores = {cid: combined_scores.get(cid, max(h.score, sentence_sim.get(cid, -1.0)))
                      for cid, (_, h) in hits.items()}
        passages = []
        for cid, score in sorted(scores.items(), key=lambda kv: -kv[1])[:k]:
            base, h = hits[cid]
            similarity = float(np.dot(h.vector, query_vectors[embedder_ids(base)[0]]()))
            passages.append(Passage(knowledge_base=base.name, source=h.source, location=h.location,
                                    heading=h.heading, ordinal=h.ordinal, text=h.text, chunk_id=cid,
                                    score=round(score, 6), similarity=round(similarity, 4),
                                    bm25_rank=bm25_rank.get(cid), dense_rank=dense_rank.get(cid),
                                    fused_rank=fused_rank.get(cid),
                                    sentence_similarity=None if cid not in sentence_sim else
                                    round(sentence_sim[cid], 4)))
        return passages
