"""Sentence vectors and best-sentence scoring: USE token features pooled per sentence (baimo.use_pooling), the
document title a heading-less chunk's sentences carry, storage next to the chunk, and the re-ranking of dense
hits by max(chunk, best sentence), with the real USE encoder and real LanceDB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from baimo.config import EmbedderConfig
from baimo.embeddings import UseEmbedder, embeds_segments
from baimo.knowledge.chunking import Chunk, document_title, sentence_context, sentence_spans
from baimo.knowledge.ingest import Ingestor, SourceFile
from baimo.knowledge.parsing import ParsedDocument, Section, parse_bytes
from baimo.knowledge.retrieval import Retriever, best_sentence_order
from baimo.knowledge.store import SENTENCE_COLUMN, StoredHit, pack_vectors, unpack_vectors
from baimo.use_pooling import TOKEN_BUDGET, SegmentedText
from tests.knowledge.conftest import Corpus, make_service

PASSAGES = [
    ("Le tramway de Valmoreau > Un budget de 612 millions",
     "L'État apporte 138 millions au titre de l'appel à projets. La région ajoute 95 millions. "
     "La métropole finance le reste par l'emprunt."),
    ("青石岭遗址博物馆",
     "这件方尊通高46.5厘米，器身四面装饰着长尾鸟纹。它出土于城内一座大型墓葬。修复团队用了近三年。"),
    ("", "シャトルの運賃は大人300円。65歳以上は150円で乗れる。運転手は23人が必要だ。"),
    ("", "يوفر الري بالتنقيط 42 في المئة من الماء. وقد رصدت سوسة النخيل الحمراء في 37 مزرعة."),
]


@pytest.fixture(scope="module")
def use() -> UseEmbedder:
    return UseEmbedder(EmbedderConfig(id="local/multilingual-use", kind="use"))


def segmented(heading: str, body: str, context: str = "") -> tuple[SegmentedText, list[str]]:
    text = f"{heading}\n{body}" if heading else body
    offset = len(text) - len(body)
    spans = sentence_spans(body)
    return (SegmentedText(text, [offset, *(offset + end for _, end in spans)], context),
            [body[a:b] for a, b in spans])


def test_use_pools_sentences_and_its_passage_vectors_are_the_packages_own(use: UseEmbedder) -> None:
    assert embeds_segments(use)
    items = [segmented(h, b)[0] for h, b in PASSAGES]
    passages, sentences = use.embed_segments(items)
    plain = use.embed([item.text for item in items])
    assert np.einsum("ij,ij->i", passages, plain) == pytest.approx(np.ones(len(items)), abs=1e-5)
    assert [len(s) for s in sentences] == [3, 3, 3, 2]
    for s in sentences:
        assert np.linalg.norm(s, axis=1) == pytest.approx(np.ones(len(s)), abs=1e-5)


def test_each_sentence_vector_is_nearest_to_its_own_sentence_embedded_alone(use: UseEmbedder) -> None:
    for heading, body in PASSAGES:
        item, texts = segmented(heading, body)
        _, (pooled,) = use.embed_segments([item])
        alone = use.embed([f"{heading}\n{t}" if heading else t for t in texts])
        similarity = pooled @ alone.T
        assert list(similarity.argmax(axis=1)) == list(range(len(texts))), (body, similarity.round(3))
        assert similarity.diagonal().min() > 0.85, (body, similarity.round(3))


def test_an_outside_context_is_pooled_into_every_sentence_but_not_the_passage(use: UseEmbedder) -> None:
    title = "Kestrel Bank wind farm gets the go-ahead"
    body = "Northmere expects first power in March 2028. Fishermen are another concern."
    with_title, texts = segmented("", body, title)
    without, _ = segmented("", body)
    (passage_t,), (sentences_t,) = use.embed_segments([with_title])
    (passage,), (sentences,) = use.embed_segments([without])
    assert passage_t @ passage == pytest.approx(1.0, abs=1e-5)
    prefixed = use.embed([f"{title}\n{t}" for t in texts])
    assert (np.einsum("ij,ij->i", sentences_t, prefixed) > np.einsum("ij,ij->i", sentences, prefixed)).all()


def test_batching_many_passages_gives_the_same_vectors_as_one_by_one(use: UseEmbedder) -> None:
    items = [segmented(h, b, "Titre" if i % 2 else "")[0] for i, (h, b) in enumerate(PASSAGES * 8)]
    assert sum(len(item.text) for item in items) > TOKEN_BUDGET  # several micro-batches
    together, parts = use.embed_segments(items)
    for i, item in enumerate(items[:4]):
        (alone,), (alone_parts,) = use.embed_segments([item])
        assert together[i] == pytest.approx(alone, abs=1e-5)
        assert parts[i] == pytest.approx(alone_parts, abs=1e-5)


def test_document_titles_come_from_the_parser_or_a_plain_text_headline() -> None:
    md = parse_bytes(b"# Tram line approved\n\nThe council voted.\n", "tram.md")
    assert document_title(md) == "Tram line approved"
    news = parse_bytes(b"Oasis bets on drip irrigation\n\nThe cooperative launched it.\n", "oasis.txt")
    assert document_title(news) == "Oasis bets on drip irrigation"
    prose = parse_bytes(b"The cooperative launched it this month.\nIt costs 85 million.\n", "notes.txt")
    assert document_title(prose) == ""  # the first line is a sentence
    one_line = parse_bytes(b"Just a title\n", "one.txt")
    assert document_title(one_line) == ""  # nothing follows it
    long_line = ParsedDocument("long.txt", "txt", "long", [Section("word " * 60 + "\nmore text", "")])
    assert document_title(long_line) == ""


def test_sentences_carry_the_heading_else_the_title_unless_the_chunk_starts_with_it() -> None:
    assert sentence_context(Chunk("Body.", "Guide > Install", "", 0), "Guide") == "Guide > Install"
    assert sentence_context(Chunk("Body.", "", "", 3), "Oasis bets on drip") == "Oasis bets on drip"
    assert sentence_context(Chunk("Oasis bets on drip\n\nBody.", "", "", 0), "Oasis bets on drip") == ""
    assert sentence_context(Chunk("Body.", "", "", 0), "") == ""


def test_packed_sentence_vectors_keep_cosines_within_two_thousandths(use: UseEmbedder) -> None:
    vectors = use.embed([t for _, body in PASSAGES for t in segmented("", body)[1]])
    packed = pack_vectors(vectors)
    assert len(packed) == len(vectors) * (512 + 4)
    restored = unpack_vectors(packed, 512)
    assert np.abs(restored @ vectors.T - vectors @ vectors.T).max() < 0.002
    assert unpack_vectors(pack_vectors(np.zeros((1, 4))), 4) == pytest.approx(np.zeros((1, 4)))


def hit(chunk_id: str, score: float, sentences: np.ndarray | None) -> StoredHit:
    return StoredHit(chunk_id=chunk_id, doc_id="d", source="s", location="", heading="", ordinal=0, text="",
                     vector=np.zeros(3, np.float32), score=score, sentence_vectors=sentences)


def test_dense_hits_are_reranked_by_their_best_sentence() -> None:
    query = np.array([1.0, 0.0, 0.0], np.float32)
    topical = hit("topical", 0.6, np.array([[0.5, 0.5, 0.0], [0.55, 0.0, 0.5]], np.float32))
    answer = hit("answer", 0.5, np.array([[0.2, 0.9, 0.0], [0.9, 0.1, 0.0]], np.float32))
    old = hit("old", 0.58, None)  # stored before sentence vectors: scored by the chunk alone
    order, best = best_sentence_order([topical, old, answer], query)
    assert [h.chunk_id for h in order] == ["answer", "topical", "old"]
    assert best == pytest.approx({"topical": 0.55, "answer": 0.9})


def test_the_fixture_corpus_stores_sentence_vectors_and_search_uses_them(corpus: Corpus) -> None:
    """The corpus fixture ingests through the worker processes (443 chunks), the path of large uploads."""
    service = corpus.service
    table = service.store._table(service.get("corpus").id)  # type: ignore[attr-defined]
    rows = table.search().select(["text", SENTENCE_COLUMN]).limit(50).to_list()
    for r in rows:
        assert len(r[SENTENCE_COLUMN]) == len(sentence_spans(r["text"])) * (512 + 4), r["text"][:80]
    passages = corpus.retriever.search(["corpus"], "What does a one-day public transport ticket cost?", k=5)
    assert all(p.sentence_similarity is not None for p in passages if p.dense_rank is not None)
    assert any(p.sentence_similarity > p.similarity for p in passages if p.sentence_similarity is not None)


def test_a_base_made_without_sentence_vectors_keeps_working_when_they_are_switched_on(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    service.config = service.config.model_copy(update={"sentence_vectors": False})
    service.create("old")
    first = [SourceFile("a.md", lambda: b"# Pumps\n\nThe pump runs at 40 bar. It weighs 12 kg.\n")]
    assert Ingestor(service).add("old", first).failed == []
    service.config = service.config.model_copy(update={"sentence_vectors": True})
    second = [SourceFile("b.md", lambda: b"# Valves\n\nThe valve opens at 3 bar. It is made of brass.\n")]
    assert Ingestor(service).add("old", second).failed == []
    table = service.store._table(service.get("old").id)  # type: ignore[attr-defined]
    assert SENTENCE_COLUMN not in table.schema.names
    passages = Retriever(service).search(["old"], "At what pressure does the valve open?", k=2)
    assert passages[0].source == "b.md" and passages[0].sentence_similarity is None
    service.db.close()
