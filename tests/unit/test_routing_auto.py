"""The hybrid router `baimo/auto`: the shipped difficulty prior, model abilities, the decision, refits."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from baimo.backends import catalogue
from baimo.config import BaimoConfig, Settings, default_config_text
from baimo.routing import auto
from baimo.routing.difficulty import DifficultyModel, ability_map, fit, sigmoid
from baimo.routing.request import RouteRequest
from baimo.routing.strategies import RouterSet

EASY = "What is the capital of France?"
HARD = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
        "friends every day with four. She sells the remainder at the farmers' market daily for $2.15 per fresh "
        "duck egg, and 7% of buyers pay with a 12.5% surcharge. How much in dollars does she make every week?")


def fleet(tmp_path: Path, extra: str = "", router: str = "", pulled: tuple[str, ...] = (
        "smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct-q4_k_m")) -> RouterSet:
    """The default config's local models (files faked as present) plus `extra` models, and an auto router."""
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    for name in pulled:
        catalogue.model_path(models, name).write_bytes(b"GGUF")
    raw = yaml.safe_load(default_config_text())
    raw["models"] += yaml.safe_load(extra) if extra else []
    if router:
        raw["routers"] = [yaml.safe_load(router)]
    config = BaimoConfig.model_validate(raw)
    return RouterSet(config, Settings(home=tmp_path, models_dir=models))


def plan(routers: RouterSet, text: str, router_id: str = "baimo/auto"):
    return asyncio.run(routers.plan(router_id, RouteRequest([{"role": "user", "content": text}])))


GPT = """
- {id: remote/gpt, kind: openai, base_url: "http://127.0.0.1:9/v1", price_input: 2.5, price_output: 10,
   strength: 0.9}
"""


def test_the_shipped_prior_loads_with_its_provenance() -> None:
    prior = auto.shipped_prior()
    assert prior.embedder == "use" and prior.w.shape == prior.mu.shape
    assert prior.meta["sources"]["routellm-mmlu"] > 1000 and "Apache-2.0" in prior.meta["licences"]["routellm"]
    # fitted on held-out prompts it must beat a difficulty that ignores the prompt
    assert prior.meta["cv_logloss"] < prior.meta["cv_logloss_constant"]
    # the abilities it measured keep the models' known order
    a = prior.abilities
    order = ["catalogue:smollm2-135m-instruct-q4_1", "catalogue:qwen2.5-coder-0.5b-instruct-q4_k_m",
             "catalogue:qwen2.5-coder-1.5b-instruct-q4_k_m", "mixtral-8x7b", "gpt-4"]
    assert [a[m] for m in order] == sorted(a[m] for m in order)


def test_a_multi_step_word_problem_is_harder_than_a_trivia_question(tmp_path: Path) -> None:
    strategy = fleet(tmp_path).strategy("baimo/auto")
    assert strategy.difficulty(HARD) > strategy.difficulty(EASY) + 0.5


def test_where_abilities_come_from(tmp_path: Path) -> None:
    prior = auto.shipped_prior()
    config = fleet(tmp_path, extra="""
- {id: r/declared, kind: openai, base_url: "http://x/v1", strength: 0.8, price_input: 100, price_output: 100}
- {id: r/cheap, kind: openai, base_url: "http://x/v1", price_input: 0.1, price_output: 0.2}
- {id: r/dear, kind: openai, base_url: "http://x/v1", price_input: 10, price_output: 30}
- {id: r/free, kind: openai, base_url: "http://x/v1"}
""").config
    by = {m.id: auto.prior_ability(m, prior) for m in config.models}
    assert by["r/declared"] == (pytest.approx(math.log(0.8 / 0.2)), "declared")
    assert by["local/qwen2.5-coder-0.5b"][1] == "measured"
    assert by["r/cheap"][1] == by["r/dear"][1] == "price"
    assert by["r/cheap"][0] < by["r/dear"][0]
    assert by["r/free"][0] == pytest.approx(prior.abilities["mixtral-8x7b"])


def test_only_pulled_local_models_are_candidates(tmp_path: Path) -> None:
    routers = fleet(tmp_path, pulled=("smollm2-135m-instruct-q4_1",))
    assert [c.config.id for c in routers.strategy("baimo/auto").candidates()] == ["local/smollm2-135m"]
    p = plan(routers, EASY)
    assert p.models == ["local/smollm2-135m"] and p.reason.endswith("-> local/smollm2-135m")


ALL_LOCAL = ("smollm2-135m-instruct-q4_1", "qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-1.5b-instruct-q4_k_m")


def test_a_remote_model_joins_without_retraining_and_takes_the_hard_prompts(tmp_path: Path) -> None:
    routers = fleet(tmp_path, extra=GPT, pulled=ALL_LOCAL)
    easy, hard = plan(routers, EASY), plan(routers, HARD)
    assert "remote/gpt" in easy.models and "remote/gpt" in hard.models
    assert easy.models[0].startswith("local/"), easy.reason
    assert hard.models[0] == "remote/gpt", hard.reason
    assert hard.reason.startswith("auto: hard prompt") or "most capable" in hard.reason
    assert easy.baseline == hard.baseline == "remote/gpt"
    assert set(easy.probabilities) == {"local/smollm2-135m", "local/qwen2.5-coder-0.5b", "local/qwen2.5-coder-1.5b",
                                       "remote/gpt"}
    assert easy.reason.isascii() and hard.reason.isascii()  # it goes into the x-baimo-route header


def test_the_knob_trades_quality_for_cost(tmp_path: Path) -> None:
    best = fleet(tmp_path, extra=GPT, router="{id: baimo/auto, strategy: auto, lam: 0}")
    assert plan(best, EASY).models[0] == "remote/gpt"
    cheap = fleet(tmp_path, extra=GPT, router="{id: baimo/auto, strategy: auto, lam: 5}", pulled=ALL_LOCAL)
    assert plan(cheap, HARD).models[0].startswith("local/")


def test_candidates_limit_the_router(tmp_path: Path) -> None:
    routers = fleet(tmp_path, extra=GPT, router="{id: baimo/auto, strategy: auto, candidates: [remote/gpt]}")
    assert plan(routers, EASY).models == ["remote/gpt"]


def test_fit_recovers_abilities_and_difficulties() -> None:
    rng = np.random.default_rng(1)
    n, d = 3000, 4
    X = rng.normal(size=(n, d))
    w_true, theta_true = np.array([1.0, -0.5, 0.0, 0.8]), np.array([-1.0, 0.5, 2.0])
    P = sigmoid(theta_true[None, :] - (X @ w_true)[:, None])
    Y = (rng.random(P.shape) < P).astype(float)
    Y[rng.random(Y.shape) < 0.3] = np.nan  # not every model answered every prompt
    w, c, theta = fit(X, Y, l2=1.0)
    assert np.allclose(w, w_true, atol=0.15)
    assert np.allclose(theta - c, theta_true, atol=0.15)  # theta is reported on the centred scale


def test_ability_map_moves_with_evidence_and_stays_near_the_prior_without() -> None:
    b = np.zeros(200)
    assert ability_map(0.0, b[:0], b[:0]) == pytest.approx(0.0)
    good = ability_map(0.0, b, np.ones(200))
    few_good = ability_map(0.0, b[:3], np.ones(3))
    assert good > few_good > 0.0
    assert ability_map(0.0, b, np.zeros(200)) < -2.0


def test_retrain_refines_a_model_from_outcomes(tmp_path: Path) -> None:
    routers = fleet(tmp_path, extra=GPT)
    strategy = routers.strategy("baimo/auto")
    before = {c.config.id: c.theta for c in strategy.candidates()}
    outcomes = [{"prompt": f"Question {i}: what is {i} plus {i}?", "model": "local/qwen2.5-coder-0.5b",
                 "score": 1.0} for i in range(40)]
    table = auto.refine("baimo/auto", routers.settings.routers_dir, strategy.candidates(), outcomes, strategy._embed)
    assert table["local/qwen2.5-coder-0.5b"]["n"] == 40 and table["remote/gpt"]["n"] == 0
    strategy.invalidate()  # as `retrain` does; another process's refit is seen within RECHECK_S
    after = {c.config.id: (c.theta, c.source) for c in strategy.candidates()}
    assert after["local/qwen2.5-coder-0.5b"][0] > before["local/qwen2.5-coder-0.5b"] + 0.5
    assert after["local/qwen2.5-coder-0.5b"][1] == "outcomes"
    assert after["remote/gpt"] == (pytest.approx(before["remote/gpt"]), "declared")
    assert (tmp_path / "routers" / "baimo__auto" / "abilities.json").exists()


def test_a_prior_round_trips(tmp_path: Path) -> None:
    prior = auto.shipped_prior()
    path = tmp_path / "p.npz"
    prior.save(path)
    again = DifficultyModel.load(path)
    assert np.array_equal(again.w, prior.w) and again.abilities == prior.abilities and again.c == prior.c
