"""Retrieval quality on the multilingual fixture corpus: hit@5 for BM25 only, dense only and hybrid (RRF), with
the chunks in each store (LanceDB, PostgreSQL with pgvector).

A question is a hit when one of the first five passages comes from the right document and contains the known
answer string. Hybrid must beat both single methods, and English questions must find passages in other languages.
"""

from __future__ import annotations

import pytest

from tests.knowledge.conftest import Corpus, load_questions

K = 5


def is_hit(passages: list, q: dict) -> bool:
    return any(p.source.rsplit("/", 1)[-1] == q["source"] and q["answer"] in p.text for p in passages)


def hit_rate(corpus: Corpus, mode: str, questions: list[dict]) -> float:
    hits = sum(is_hit(corpus.retriever.search(["corpus"], q["question"], k=K, mode=mode), q) for q in questions)
    return hits / len(questions)


def test_the_whole_corpus_is_ingested(stored_corpus: Corpus) -> None:
    assert stored_corpus.report.failed == []
    assert len(stored_corpus.report.added) >= 20
    assert stored_corpus.report.chunks >= 100


def test_hybrid_beats_bm25_and_dense(stored_corpus: Corpus, record_property) -> None:  # type: ignore[no-untyped-def]
    questions = load_questions()
    rates = {mode: hit_rate(stored_corpus, mode, questions) for mode in ("bm25", "dense", "hybrid")}
    for kind in ("crosslingual", "exact", "paraphrase"):
        subset = [q for q in questions if q["kind"] == kind]
        for mode in ("bm25", "dense", "hybrid"):
            record_property(f"hit@5 {kind} {mode}", round(hit_rate(stored_corpus, mode, subset), 3))
    for mode, rate in rates.items():
        record_property(f"hit@5 {mode}", round(rate, 3))
    print("hit@5:", rates)
    assert rates["hybrid"] > rates["bm25"], rates
    assert rates["hybrid"] > rates["dense"], rates
    assert rates["hybrid"] >= 0.8, rates


@pytest.mark.parametrize("lang", ["fr", "pt", "ar", "ja"])
def test_english_questions_find_passages_in_other_languages(stored_corpus: Corpus, lang: str) -> None:
    questions = [q for q in load_questions() if q["kind"] == "crosslingual" and q["lang"] == lang]
    assert questions, f"the corpus has no cross-lingual question for {lang}"
    found = [q["id"] for q in questions if is_hit(stored_corpus.retriever.search(["corpus"], q["question"], k=K), q)]
    assert found, f"no English question found its {lang} passage"


def test_unrelated_questions_fall_below_the_relevance_threshold(stored_corpus: Corpus) -> None:
    threshold = stored_corpus.service.config.min_relevance
    related = load_questions()
    unrelated = load_questions("unrelated_questions.jsonl")
    best_unrelated = [stored_corpus.retriever.search(["corpus"], q["question"], k=K)[0].similarity for q in unrelated]
    best_related = [max(p.similarity for p in stored_corpus.retriever.search(["corpus"], q["question"], k=K))
                    for q in related]
    print("unrelated best similarities:", best_unrelated)
    assert max(best_unrelated) < threshold
    assert sum(s >= threshold for s in best_related) / len(best_related) >= 0.9
