"""Training on a fake embedder, the router's choice and explanation, and the save/load round trip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from baimo.errors import NotFound
from baimo.routing.learned import LearnedRouter, embed_prompts, train
from baimo.routing.metrics import calibrate


class FakeEmbedder:
    """Deterministic bag-of-words vectors: prompts sharing words are close. Counts its calls."""

    dim = 384

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str], *, is_query: bool = False) -> np.ndarray:
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def dataset(n: int = 120) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    prompts, scores = [], []
    for i in range(n):
        if i % 2:
            prompts.append(f"integrate the polynomial x^{i} derivative theorem {rng.integers(99)}")
            scores.append([0.0, 1.0])
        else:
            prompts.append(f"say hello to my friend nice weather today {rng.integers(99)}")
            scores.append([1.0, 1.0])
    costs = np.array([[0.001, 0.1]] * n)
    return prompts, np.array(scores), costs


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LearnedRouter, FakeEmbedder]:
    prompts, Y, C = dataset()
    emb = FakeEmbedder()
    E = embed_prompts(prompts, emb, cache_dir=tmp_path_factory.mktemp("cache"), model_id="fake")
    router, P_oof = train(prompts, ["small", "big"], Y, C, E, model_id="fake")
    router.embedder_obj = emb
    calibrate(router, P_oof, prompts, Y, C, target_quality=0.95, source="oof")
    return router, emb


def test_router_learns_which_prompts_need_the_big_model(trained: tuple[LearnedRouter, FakeEmbedder]) -> None:
    router, _ = trained
    model, probs, why = router.choose("integrate the polynomial theorem derivative")
    assert model == "big" and probs["small"] < 0.5 < probs["big"]
    assert why.startswith("learned:p=") and why.endswith("-> big") and "lam=" in why
    assert router.choose("say hello nice weather")[0] == "small"
    assert router.calibration["met"] and router.calibration["expected"]["quality"] >= 0.95


def test_embedding_cache_is_used(tmp_path: Path) -> None:
    prompts = ["one prompt", "another prompt"]
    emb = FakeEmbedder()
    first = embed_prompts(prompts, emb, cache_dir=tmp_path, model_id="fake")
    second = embed_prompts(prompts, emb, cache_dir=tmp_path, model_id="fake")
    assert emb.calls == 2 and np.array_equal(first, second)
    embed_prompts(prompts, emb, cache_dir=tmp_path, model_id="other")
    assert emb.calls == 4


def test_save_load_round_trip_and_atomic_replace(trained: tuple[LearnedRouter, FakeEmbedder],
                                                tmp_path: Path) -> None:
    router, emb = trained
    path = tmp_path / "routers" / "r1"
    router.save(path)
    router.lam = 123.0
    router.save(path)  # replaces the first one
    assert sorted(p.name for p in path.parent.iterdir()) == ["r1"]
    assert sorted(p.name for p in path.iterdir()) == ["router.json", "weights.npz"]
    loaded = LearnedRouter.load(path, embedder=emb)
    router.lam = 0.0
    assert loaded.lam == 123.0 and loaded.models == ["small", "big"] and loaded.embedder == "fake"
    prompts = dataset(10)[0]
    E = loaded.embed(prompts)
    assert np.allclose(loaded.probabilities(E), router.probabilities(E), atol=2e-3)  # kNN memory is float16
    assert loaded.calibration["table"] == router.calibration["table"]
    assert np.allclose(loaded.predicted_costs(prompts), [[0.001, 0.1]] * 10)


def test_load_missing_router(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LearnedRouter.load(tmp_path / "nope")
