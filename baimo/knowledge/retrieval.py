"""Hybrid retrieval: BM25 full-text hits and dense-vector hits, fused by reciprocal rank fusion.

BM25 is exact on names, codes and numbers; the multilingual dense encoder finds paraphrases and passages in
other languages. RRF (Cormack et al., 2009: score = sum of 1 / (60 + rank)) needs no score calibration between
the two, which is why it is the default. Every passage also carries its cosine similarity to the question, an
absolute relevance measure that grounded mode compares with its threshold.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from baimo.errors import InvalidRequest
from baimo.knowledge.bases import KnowledgeService
from baimo.knowledge.store import StoredHit
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
    score: float                # the ranking score of the mode used (RRF, BM25 or cosine)
    similarity: float           # cosine similarity between question and passage
    bm25_rank: int | None = None
    dense_rank: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def rrf(rankings: list[list[str]], k: int = RRF_K) -> dict[str, float]:
    """Reciprocal rank fusion of ranked id lists (rank 1 is best)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


class Retriever:
    def __init__(self, knowledge: KnowledgeService) -> None:
        self.knowledge = knowledge
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="baimo-bm25")

    def search(self, bases: list[str], query: str, *, k: int = 5, mode: str = "hybrid",
               margin: float | None = None) -> list[Passage]:
        if mode not in MODES:
            raise InvalidRequest(f"mode must be one of {', '.join(MODES)}", param="mode")
        if not query.strip():
            raise InvalidRequest("the query is empty", param="query")
        if not 1 <= k <= 100:
            raise InvalidRequest("k must be between 1 and 100", param="k")
        rows = [self.knowledge.get(name) for name in bases]
        n = max(k * CANDIDATES_PER_LIST, 20)
        margin = self.knowledge.config.bm25_margin if margin is None else margin
        query_vectors: dict[str, np.ndarray] = {}
        rankings: list[list[str]] = []
        hits: dict[str, tuple[KnowledgeBase, StoredHit]] = {}
        bm25_rank: dict[str, int] = {}
        dense_rank: dict[str, int] = {}
        for base in rows:
            if base.embedder not in query_vectors:
                query_vectors[base.embedder] = self.knowledge.embedder_for(base).embed([query], is_query=True)[0]
            qv = query_vectors[base.embedder]
            # BM25 runs in a second thread while the vector search runs here (LanceDB releases the GIL).
            text_future = self._pool.submit(self.knowledge.store.text_search, base.id, query, n) \
                if mode in ("hybrid", "bm25") else None
            best_dense = -1.0
            if mode in ("hybrid", "dense"):
                vector_hits = self.knowledge.store.vector_search(base.id, qv, n)
                rankings.append([h.chunk_id for h in vector_hits])
                for rank, h in enumerate(vector_hits, start=1):
                    hits.setdefault(h.chunk_id, (base, h))
                    dense_rank[h.chunk_id] = rank
                best_dense = max((h.score for h in vector_hits), default=-1.0)
            if text_future is not None:
                text_hits = text_future.result()
                if mode == "hybrid":
                    floor = best_dense - margin
                    text_hits = [h for h in text_hits if float(np.dot(h.vector, qv)) >= floor]
                rankings.append([h.chunk_id for h in text_hits])
                for rank, h in enumerate(text_hits, start=1):
                    hits.setdefault(h.chunk_id, (base, h))
                    bm25_rank[h.chunk_id] = rank
        if mode == "hybrid" or len(rows) > 1:
            scores = rrf(rankings)
        else:
            scores = {cid: h.score for cid, (_, h) in hits.items()}
        passages = []
        for cid, score in sorted(scores.items(), key=lambda kv: -kv[1])[:k]:
            base, h = hits[cid]
            similarity = float(np.dot(h.vector, query_vectors[base.embedder]))
            passages.append(Passage(knowledge_base=base.name, source=h.source, location=h.location,
                                    heading=h.heading, ordinal=h.ordinal, text=h.text, chunk_id=cid,
                                    score=round(score, 6), similarity=round(similarity, 4),
                                    bm25_rank=bm25_rank.get(cid), dense_rank=dense_rank.get(cid)))
        return passages
