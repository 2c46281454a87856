"""Format-3 routers: distance-weighted kNN, kNN cost prediction, and adding a model from a few labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from baimo.errors import InvalidRequest
from baimo.routing.learned import LearnedRouter, embed_prompts, predict_knn, train
from baimo.routing.metrics import calibrate
from baimo.routing.newmodel import add_model
from tests.unit.test_routing_learned import FakeEmbedder

TOPICS = {  # topic -> words; outcomes of (cheap, strong, mathy, coder) and costs differ by topic, not by length
    "code": "python function compile loop list return",
    "chat": "hello friend weather today nice walk",
    "math": "integrate polynomial derivative theorem proof limit",
}
SCORES = {"code": (0.0, 1.0, 0.0, 1.0), "chat": (1.0, 1.0, 0.0, 0.0), "math": (0.0, 1.0, 1.0, 0.0)}
COSTS = {"code": (0.004, 0.2, 0.003, 0.002), "chat": (0.001, 0.05, 0.001, 0.0005),
         "math": (0.001, 0.05, 0.001, 0.0005)}
KNOWN = ["cheap", "strong", "mathy"]


def topical(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    topics = [list(TOPICS)[i % 3] for i in range(n)]
    words = {t: w.split() for t, w in TOPICS.items()}
    return [" ".join(rng.choice(words[t], 4)) + f" {rng.integers(999)}" for t in topics], topics


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory) -> tuple[LearnedRouter, FakeEmbedder]:
    """A router over cheap/strong/mathy (the coder is held back, to be added later), on 150 topical prompts."""
    prompts, topics = topical(150)
    Y = np.array([SCORES[t][:3] for t in topics])
    C = np.array([COSTS[t][:3] for t in topics])
    emb = FakeEmbedder()
    E = embed_prompts(prompts, emb, cache_dir=tmp_path_factory.mktemp("cache"), model_id="fake")
    router, P_oof = train(prompts, KNOWN, Y, C, E, model_id="fake")
    router.embedder_obj = emb
    calibrate(router, P_oof, prompts, Y, C, target_quality=0.95, source="oof", C_pred=router.oof_costs)
    return router, emb


def test_weighted_knn_lets_the_closest_neighbour_dominate() -> None:
    E = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    Y = np.array([[1.0], [0.0], [0.0]])
    q = np.array([[0.99, 0.141]])
    assert predict_knn(E, Y, q, k=3)[0, 0] == pytest.approx(1 / 3)
    assert predict_knn(E, Y, q, k=3, tau=0.01)[0, 0] > 0.99  # cosines 0.99 vs 0.88: e^11 to 1
    Y_nan = np.array([[1.0], [np.nan], [0.0]])  # a neighbour without a label is skipped, weights renormalised
    assert predict_knn(E, Y_nan, q, k=2, tau=0.05)[0, 0] == pytest.approx(1.0)
    far_nan = np.array([[1.0], [0.0], [np.nan]])  # the unlabelled one is not among the 2 nearest: a plain mean
    assert predict_knn(E, far_nan, q, k=2)[0, 0] == pytest.approx(0.5)


def test_costs_are_predicted_from_the_prompt_not_its_length(routed: tuple[LearnedRouter, FakeEmbedder]) -> None:
    router, _ = routed
    assert router.hyper.cost_k > 0 and router.knn_C is not None
    assert router.oof_costs is not None and router.oof_costs.shape == (150, 3)
    prompts = ["python function loop return list", "hello friend weather walk today"]
    X = router.embed(prompts)
    C = router.predicted_costs(prompts, X)
    assert C[0, 1] == pytest.approx(0.2) and C[1, 1] == pytest.approx(0.05)
    by_length = router.predicted_costs(prompts)  # no embedding: the length model, blind to the topic
    assert abs(by_length[0, 1] - by_length[1, 1]) < 0.05


def test_format_3_round_trip_and_format_2_routers_still_load(routed: tuple[LearnedRouter, FakeEmbedder],
                                                             tmp_path: Path) -> None:
    router, emb = routed
    router.save(tmp_path / "r3")
    meta = json.loads((tmp_path / "r3" / "router.json").read_text())
    assert meta["format"] == 3 and meta["hyper"]["cost_k"] == router.hyper.cost_k and "tau" in meta["hyper"]
    loaded = LearnedRouter.load(tmp_path / "r3", embedder=emb)
    prompts = topical(6, seed=5)[0]
    X = loaded.embed(prompts)
    assert np.allclose(loaded.predicted_costs(prompts, X), router.predicted_costs(prompts, X))
    assert loaded.hyper == router.hyper
    # a format-2 router: no tau / cost_k in router.json, no knn_C in weights.npz
    meta["format"] = 2
    for key in ("tau", "cost_k"):
        del meta["hyper"][key]
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "router.json").write_text(json.dumps(meta))
    with np.load(tmp_path / "r3" / "weights.npz") as z:
        np.savez(tmp_path / "r2" / "weights.npz", **{k: z[k] for k in z.files if k != "knn_C"})
    old = LearnedRouter.load(tmp_path / "r2", embedder=emb)
    assert old.knn_C is None and old.hyper.tau == 0 and old.hyper.cost_k == 0
    assert np.allclose(old.predicted_costs(prompts, X), old.predicted_costs(prompts))  # the length model
    assert old.choose(prompts[0])[0] in old.models


def test_a_model_added_from_30_labels_is_routed_to_where_it_is_good(routed: tuple[LearnedRouter, FakeEmbedder]
                                                                    ) -> None:
    import copy

    router = copy.deepcopy(routed[0])
    prompts, topics = topical(150)  # the memory prompts: observed outcome vectors of the known models
    pick = np.random.default_rng(3).choice(150, 30, replace=False)
    summary = add_model(router, "coder", [prompts[i] for i in pick], np.array([SCORES[topics[i]][3] for i in pick]),
                        np.array([COSTS[topics[i]][3] for i in pick]))
    assert router.models == [*KNOWN, "coder"] and summary["in_memory"] == 30
    assert router.W.shape[0] == 4 and router.knn_Y.shape[1] == 4 and router.knn_C.shape[1] == 4
    new = ["python list loop compile function", "hello friend nice walk weather", "integrate theorem proof limit"]
    P = router.probabilities(router.embed(new))
    assert P[0, 3] > 0.8 and P[1, 3] < 0.2 and P[2, 3] < 0.2  # learned from 30 labels, via the known models
    assert router.choose(new[0])[0] == "coder"  # as good as strong on code, 100x cheaper
    assert router.choose(new[2])[0] == "mathy"
    assert router.predicted_costs(new[:1], router.embed(new[:1]))[0, 3] == pytest.approx(0.002, rel=0.05)


def test_add_model_rejects_known_names_and_too_few_labels(routed: tuple[LearnedRouter, FakeEmbedder]) -> None:
    router = routed[0]
    with pytest.raises(InvalidRequest, match="already routes"):
        add_model(router, "strong", ["a"] * 20, np.ones(20))
    with pytest.raises(InvalidRequest, match="at least 10"):
        add_model(router, "coder", ["a"] * 3, np.ones(3))
    assert router.models == KNOWN
