"""The query path of the multilingual USE (baimo.use_fast) gives the package's own vectors: 2,000 texts in eight
languages batched (500 of them one at a time), through a cache that evicts, on one thread and on two."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from baimo.config import EmbedderConfig
from baimo.embeddings import UseEmbedder
from baimo.use_fast import QueryEncoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ROOT = Path(__file__).resolve().parents[2]


def corpus_texts(n: int = 2000, seed: int = 0) -> list[str]:
    """n texts of 1 to 500 characters (and one of 700) cut from the knowledge-base fixtures (English, French,
    German, Spanish, Portuguese, Chinese, Arabic, ...), their questions and GSM8K prompts, plus edge cases."""
    docs = [p.read_text(encoding="utf-8") for d in ("kb_corpus", "kb_heldout")
            for p in sorted((FIXTURES / d / "docs").iterdir()) if p.suffix in {".md", ".txt", ".html"}]
    docs = [re.sub(r"\s+", " ", d) for d in docs]
    questions = [json.loads(line)["question"] for d in ("kb_corpus", "kb_heldout")
                 for line in (FIXTURES / d / "questions.jsonl").open(encoding="utf-8")]
    prompts = [json.loads(line)["prompt"] for line in (ROOT / "bench/outcomes/gsm8k5.jsonl").open()]
    rng = random.Random(seed)
    edge = ["", " ", "a", "?", "😀 🚀", "ありがとう", "x" * 700, "1 2 3 4 5 6 7 8 9 10"]
    texts = edge + questions + [p[-500:] for p in prompts]
    while len(texts) < n:
        doc = rng.choice(docs)
        size = rng.choice([8, 30, 80, 150, 300])
        start = rng.randrange(max(1, len(doc) - size))
        texts.append(doc[start:start + size])
    return texts[:n]


@pytest.fixture(scope="module")
def use() -> UseEmbedder:
    return UseEmbedder(EmbedderConfig(id="use", kind="use", threads=1))


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return corpus_texts()


@pytest.fixture(scope="module")
def reference(use: UseEmbedder, texts: list[str]) -> np.ndarray:
    """The package's vectors (its own batched pass: the passage path of UseEmbedder)."""
    return use.embed(texts)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def test_queries_get_the_packages_vectors_one_at_a_time_and_batched(use: UseEmbedder, texts: list[str],
                                                                   reference: np.ndarray) -> None:
    """Batched, a window never reaches into the neighbouring text (the zero rows between them); one at a time is
    the routing path."""
    batched = use.embed(texts, is_query=True)
    assert batched.shape == (2000, 512) and batched.dtype == np.float32
    assert min_cosine(batched, reference) >= 0.9999
    single = np.concatenate([use.embed([t], is_query=True) for t in texts[::4]])
    assert min_cosine(single, reference[::4]) >= 0.9999
    cache = use._queries.cache
    assert cache.hits > 3 * cache.misses  # pieces recur: most tokens come from the cache (it evicted here too)


def test_a_small_cache_evicts_and_still_gives_the_same_vectors(use: UseEmbedder, texts: list[str],
                                                              reference: np.ndarray) -> None:
    encoder = QueryEncoder(use._load(), capacity=600)
    got = np.concatenate([encoder.encode([t]) for t in texts[:300]])
    assert min_cosine(got, reference[:300]) >= 0.9999
    cache = encoder.cache
    assert cache.misses > cache.capacity  # it filled up and evicted
    live = np.flatnonzero(cache.slot_of)
    assert len(live) <= cache.capacity and len(np.unique(cache.slot_of[live])) == len(live)
    # a text of more tokens than the cache holds goes through the package's own pass
    long = " ".join(texts[8:200])
    assert min_cosine(encoder.encode([long]), use.embed([long])) >= 0.9999


def test_two_threads_give_the_same_vectors_and_the_blas_thread_count_is_restored(
        use: UseEmbedder, texts: list[str], reference: np.ndarray) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    encoder = QueryEncoder(use._load(), threads=2)
    use.embed(["the embedder's own query encoder"], is_query=True)
    assert encoder.pool is not None and use._queries.pool is None  # the embedder's own runs on one thread
    with threadpool_limits(limits=2, user_api="blas"):
        got = np.concatenate([encoder.encode([t]) for t in texts[:100]])
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
    assert min_cosine(got, reference[:100]) >= 0.9999
