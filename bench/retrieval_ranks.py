"""Where each ranked list of hybrid retrieval puts the answer: BM25, USE (chunk and best sentence), e5, and fusions
of them, on the held-out news corpus (tests/fixtures/kb_heldout) and the fixture corpus (tests/fixtures/kb_corpus).

    .venv/bin/python bench/retrieval_ranks.py [--home /tmp/baimo-ranks] [--per-question] [--corpus heldout,fixture]

Each corpus is ingested once into a base with USE (and its sentence vectors) and e5 (kept under --home, reused by
later runs). For every question the script takes each list in full (every chunk), finds the rank of the first
answer passage (right document, containing the answer string), and fuses the lists offline with the same
weighted reciprocal rank fusion as `baimo.knowledge.retrieval` (checked against the real Retriever for the
default setting). It prints hit@1 / hit@5 per split and setting. `--per-question` prints each question's ranks,
for the `tune` split only: the `heldout` split is only ever counted, never read question by question.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import FUSED_EMBEDDER, KNOWLEDGE_EMBEDDER, FusionWeights, KnowledgeConfig  # noqa: E402
from baimo.embeddings import EmbedderRegistry  # noqa: E402
from baimo.knowledge.bases import KnowledgeService  # noqa: E402
from baimo.knowledge.ingest import Ingestor, collect_files  # noqa: E402
from baimo.knowledge.retrieval import RRF_K, Retriever, best_sentence_order, rrf, zscore_fusion  # noqa: E402
from baimo.knowledge.store import vector_column  # noqa: E402
from baimo.store.database import Database  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
CORPORA = {"heldout": FIXTURES / "kb_heldout", "fixture": FIXTURES / "kb_corpus"}
BASE = "ranks"
K = 5
MISS = 999


@dataclass
class Lists:
    """One question's ranked chunk ids (every chunk of the base) under each list, and its answer chunks."""

    bm25: list[str]
    passes: set[str]        # chunks within the margin of the best USE chunk similarity (the default BM25 gate)
    use_chunk: list[str]    # USE, chunk vectors only
    use_best: dict[str, float]  # max(chunk, best sentence) cosine: the default re-ranks the chunk search's hits by it
    e5: list[str]
    e5_score: dict[str, float]  # e5 cosine of every chunk
    bm25_score: dict[str, float]
    answers: set[str]


def service(home: Path) -> KnowledgeService:
    db = Database(f"sqlite:///{home / 'baimo.db'}")
    registry = EmbedderRegistry([KNOWLEDGE_EMBEDDER.model_copy(), FUSED_EMBEDDER.model_copy()])
    config = KnowledgeConfig(fuse_embedders=[FUSED_EMBEDDER.id])
    return KnowledgeService(db, registry, config, home / "knowledge")


def ingested(home: Path, corpus: Path) -> KnowledgeService:
    home.mkdir(parents=True, exist_ok=True)
    svc = service(home)
    if BASE not in {b.name for b in svc.list()}:
        svc.create(BASE)
        files, missing = collect_files([corpus / "docs"])
        assert not missing and Ingestor(svc).add(BASE, files).failed == []
    return svc


def question_lists(svc: KnowledgeService, q: dict, margin: float) -> Lists:
    base = svc.get(BASE)
    n = svc.store.count(base.id)
    use_q = svc.embedders.get(KNOWLEDGE_EMBEDDER.id).embed([q["question"]], is_query=True)[0]
    e5_q = svc.embedders.get(FUSED_EMBEDDER.id).embed([q["question"]], is_query=True)[0]
    use_hits = svc.store.vector_search(base.id, use_q, n, vector_column(0), sentences=True)
    e5_hits = svc.store.vector_search(base.id, e5_q, n, vector_column(1))
    text_hits = svc.store.text_search(base.id, q["question"], n)
    floor = max(h.score for h in use_hits) - margin
    _, best = best_sentence_order(use_hits, use_q)
    answers = {h.chunk_id for h in use_hits if h.source.rsplit("/", 1)[-1] == q["source"] and q["answer"] in h.text}
    return Lists(bm25=[h.chunk_id for h in text_hits],
                 passes={h.chunk_id for h in text_hits if float(np.dot(h.vector, use_q)) >= floor},
                 use_chunk=[h.chunk_id for h in use_hits],
                 use_best={h.chunk_id: max(h.score, best.get(h.chunk_id, -1.0)) for h in use_hits},
                 e5=[h.chunk_id for h in e5_hits], e5_score={h.chunk_id: h.score for h in e5_hits},
                 bm25_score={h.chunk_id: h.score for h in text_hits}, answers=answers)


def answer_rank(ranking: list[str], answers: set[str]) -> int:
    return next((i for i, cid in enumerate(ranking, start=1) if cid in answers), MISS)


def fused(lists: list[tuple[list[str], float, int]], k: int = RRF_K) -> list[str]:
    """Weighted RRF of (ranking, weight, depth) lists, each cut to its first `depth` ids."""
    scores = rrf([r[:depth] for r, _, depth in lists], k=k, weights=[w for _, w, _ in lists])
    return [cid for cid, _ in sorted(scores.items(), key=lambda kv: -kv[1])]


def use(ls: Lists, depth: int = 20) -> list[str]:
    """USE's first `depth` chunk hits in best-sentence order (the default's dense list)."""
    return sorted(ls.use_chunk[:depth], key=lambda cid: -ls.use_best[cid])


def gated(ls: Lists, depth: int = 20) -> list[str]:
    """BM25's first `depth` hits that pass the gate (the Retriever gates the hits it fetched)."""
    return [cid for cid in ls.bm25[:depth] if cid in ls.passes]


def default_setting(ls: Lists, depth: int = 20) -> list[str]:
    return fused([(use(ls, depth), 1.0, depth), (gated(ls, depth), 1.0, depth)])


def fused_setting(ls: Lists, weights: FusionWeights, depth: int = 20) -> list[str]:
    """knowledge.dense_fusion: rrf (the former way): USE's, e5's and BM25's lists fused by weighted RRF."""
    return fused([(use(ls, depth), weights.dense, depth), (ls.e5, weights.fused, depth),
                  (gated(ls, depth), weights.bm25, depth)])


def score_fused_setting(ls: Lists, weights: FusionWeights, depth: int = 20) -> list[str]:
    """knowledge.dense_fusion: scores: USE's and e5's z-scored similarities added into one dense list, then RRF
    with BM25."""
    combined = zscore_fusion([({c: ls.use_best[c] for c in use(ls, depth)}, 1.0),
                              ({c: ls.e5_score[c] for c in ls.e5[:depth]}, weights.fused)])
    dense = sorted(combined, key=lambda cid: -combined[cid])[:depth]
    return fused([(dense, weights.dense, depth), (gated(ls, depth), weights.bm25, depth)])


SETTINGS = {
    "bm25": lambda ls: ls.bm25,
    "USE (best sentence)": lambda ls: use(ls, len(ls.use_chunk)),
    "USE (chunk)": lambda ls: ls.use_chunk,
    "e5": lambda ls: ls.e5,
    "default: USE + BM25 gated": default_setting,
    "USE + e5 (RRF 1/1)": lambda ls: fused([(use(ls), 1.0, 20), (ls.e5, 1.0, 20)]),
    "RRF USE + e5 + BM25, 1/0.5/1": lambda ls: fused_setting(ls, FusionWeights(fused=0.5)),
    "RRF USE + e5 + BM25, 1/1/1": lambda ls: fused_setting(ls, FusionWeights(fused=1.0)),
    **{f"scores USE + {w} e5, RRF BM25": lambda ls, w=w: score_fused_setting(ls, FusionWeights(fused=w))
       for w in (0.1, 0.25, 0.5, 1.0)},
}


def counts(ranks: list[int]) -> str:
    return f"{sum(r == 1 for r in ranks):2d} / {sum(r <= K for r in ranks):2d} of {len(ranks)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=Path("/tmp/baimo-ranks"))
    ap.add_argument("--corpus", default="heldout,fixture")
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--per-question", action="store_true", help="ranks per tune question")
    args = ap.parse_args()
    for name in args.corpus.split(","):
        corpus = CORPORA[name]
        svc = ingested(args.home / name, corpus)
        questions = [json.loads(line) for line in (corpus / "questions.jsonl").read_text("utf-8").splitlines()
                     if line.strip()]
        lists = {q["id"]: question_lists(svc, q, args.margin) for q in questions}
        check = Retriever(svc)
        for q in questions[:8]:  # the offline fusions are the Retriever's (ties included)
            got = [p.chunk_id for p in check.search([BASE], q["question"], k=K, margin=args.margin)]
            assert got == score_fused_setting(lists[q["id"]], FusionWeights())[:K], q["id"]
            svc.config = svc.config.model_copy(update={"dense_fusion": "rrf"})
            for weights in (FusionWeights(fused=0.0), FusionWeights(fused=0.5)):
                got = [p.chunk_id for p in check.search([BASE], q["question"], k=K, weights=weights,
                                                        margin=args.margin)]
                assert got == fused_setting(lists[q["id"]], weights)[:K], q["id"]
            svc.config = svc.config.model_copy(update={"dense_fusion": "scores"})
        splits = sorted({q.get("split", "all") for q in questions}, reverse=True)
        print(f"\n## {name}: hit@1 / hit@5")
        for label, setting in SETTINGS.items():
            row = [counts([answer_rank(setting(lists[q["id"]]), lists[q["id"]].answers)
                           for q in questions if q.get("split", "all") == s]) for s in splits]
            print(f"{label:32s} " + "   ".join(f"{s}: {r}" for s, r in zip(splits, row, strict=True)))
        if args.per_question:
            print("\nid   qlang>lang " + " ".join(f"{label[:10]:>10s}" for label in SETTINGS))
            for q in questions:
                if q.get("split", "tune") != "tune":
                    continue
                ranks = [answer_rank(s(lists[q["id"]]), lists[q["id"]].answers) for s in SETTINGS.values()]
                label = f"{q['id']:4s} {q.get('qlang', '?'):>2s}>{q.get('lang', '?'):2s}"
                print(f"{label:15s}" + " ".join(f"{r:10d}" for r in ranks))
        svc.close()
        svc.db.close()


if __name__ == "__main__":
    main()
