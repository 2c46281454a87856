"""Routers through the real server: rules, cascades (logprob and verifier), fallbacks, feedback, usage records."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.support.server import BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e


def remote(id_: str, upstream_model: str, base_url: str, price_in: float, price_out: float, window: int = 8192,
           fallbacks: str = "[]") -> str:
    return (f"  - id: {id_}\n    kind: openai\n    base_url: {base_url}\n    upstream_model: {upstream_model}\n"
            f"    price_input: {price_in}\n    price_output: {price_out}\n    context_window: {window}\n"
            f"    timeout: 5\n    connect_timeout: 1\n    connect_retries: 0\n    fallbacks: {fallbacks}\n")


@pytest.fixture(scope="module")
def upstreams():
    main = ScriptedUpstream({
        "weak": Behaviour("ok", text="A quick cheap answer.", logprob=-0.05, unsure_marker="[hard]"),
        "strong": Behaviour.ok("A careful expensive answer."),
        "judge-no": Behaviour.ok("no"),
        "big": Behaviour.echo(),
    }).start()
    doomed = ScriptedUpstream({"strong": Behaviour.ok("from the doomed upstream")}).start()
    yield main, doomed
    main.stop()
    doomed.stop()


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory):
    main, doomed = upstreams
    u = main.base_url
    config = (
        "default_model: baimo/rules\nmodels:\n"
        + remote("remote/weak", "weak", u, 0.1, 0.2, window=512)
        + remote("remote/strong", "strong", u, 10.0, 30.0, window=512)
        + remote("remote/big", "big", u, 1.0, 2.0, window=100000)
        + remote("remote/judge", "judge-no", u, 0.1, 0.1)
        + remote("remote/small", "weak", u, 0.1, 0.2, window=512, fallbacks="[remote/strong, remote/big]")
        + remote("remote/doomed", "strong", doomed.base_url, 10.0, 30.0, fallbacks="[remote/weak]")
        + """routers:
  - id: baimo/rules
    strategy: rules
    rules:
      - name: code
        has_code: true
        model: remote/strong
      - name: chinese
        language: [zh, ja]
        model: remote/weak
      - name: escalate-keyword
        keywords: [urgent]
        model: baimo/cascade
    default: remote/weak
  - id: baimo/cascade
    strategy: cascade
    cascade: [remote/weak, remote/strong]
    threshold: 0.5
  - id: baimo/judged
    strategy: cascade
    cascade: [remote/weak, remote/strong]
    scorer: verifier
    verifier: remote/judge
    threshold: 0.5
  - id: baimo/untrained
    strategy: learned
    learned: never-trained
  - id: baimo/doomed
    strategy: rules
    default: remote/doomed
  - id: baimo/overflow
    strategy: rules
    rules:
      - model: remote/weak
        min_chars: 0
    default: remote/big
"""
    )
    # a rule target's fallbacks come from the plan; overflow falls through to a larger window
    config = config.replace("""      - model: remote/weak
        min_chars: 0
    default: remote/big""", """      - model: baimo/overflow-chain
    default: remote/big""")
    config += """  - id: baimo/overflow-chain
    strategy: cascade
    cascade: [remote/weak, remote/big]
    mode: full
    threshold: 0.0
"""
    with BaimoServer(tmp_path_factory.mktemp("routing"), config) as s:
        yield s


@pytest.fixture
def oc(gateway):
    return openai.OpenAI(base_url=gateway.base_url, api_key="x", max_retries=0, timeout=60)


def ask(oc, model: str, text: str, **kw):
    return oc.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}],
                                                        **kw)


def test_routers_are_listed_as_models(oc) -> None:
    models = {m.id: m for m in oc.models.list()}
    rules = models["baimo/rules"].model_extra["baimo"]
    assert rules["kind"] == "router" and rules["strategy"] == "rules" and rules["default"] is True
    assert set(rules["candidates"]) >= {"remote/weak", "remote/strong"}


def test_rules_route_by_code_language_and_default(oc) -> None:
    code = ask(oc, "baimo/rules", "Fix this:\n```python\ndef f(x):\n    return x +\n```")
    assert code.parse().model == "remote/strong" and code.headers["x-baimo-route"] == "rules:code -> remote/strong"
    zh = ask(oc, "baimo/rules", "请用一句话介绍长城的历史。")
    assert zh.parse().model == "remote/weak" and zh.headers["x-baimo-route"].startswith("rules:chinese")
    plain = ask(oc, "baimo/rules", "What is a good name for a cat?")
    assert plain.parse().model == "remote/weak" and plain.headers["x-baimo-route"] == "rules:default -> remote/weak"


def test_cascade_keeps_confident_cheap_answers_and_escalates_unsure_ones(oc, gateway) -> None:
    easy = ask(oc, "baimo/cascade", "Say hello.")
    assert easy.parse().model == "remote/weak"
    assert easy.parse().choices[0].message.content == "A quick cheap answer."
    assert easy.headers["x-baimo-route"] == "cascade: remote/weak conf=0.95>=0.50 -> remote/weak"
    hard = ask(oc, "baimo/cascade", "[hard] Prove the Riemann hypothesis.")
    assert hard.parse().model == "remote/strong"
    assert hard.parse().choices[0].message.content == "A careful expensive answer."
    assert hard.headers["x-baimo-route"] == "cascade: remote/weak conf=0.05<0.50; -> remote/strong"
    # the client pays for both attempts, and each has its own usage record
    usage = hard.parse().usage
    strong_cost = (usage.prompt_tokens * 10 + usage.completion_tokens * 30) / 1e6
    assert float(hard.headers["x-baimo-cost"]) > strong_cost
    recent = httpx.get(gateway.url + "/api/usage").json()["recent"]
    escalated = next(r for r in recent if r["finish_reason"] == "escalated")
    assert escalated["model"] == "remote/weak" and escalated["model_requested"] == "baimo/cascade"
    assert escalated["prompt"].startswith("[hard]")


def test_streaming_client_only_sees_the_kept_answer(oc) -> None:
    chunks = list(oc.chat.completions.create(model="baimo/rules", stream=True, stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "urgent [hard] help me"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "A careful expensive answer."
    assert {c.model for c in chunks} == {"remote/strong"}
    assert "rules:escalate-keyword => cascade" in chunks[-1].model_extra["baimo"]["route"]


def test_verifier_cascade_escalates_when_the_judge_says_no(oc) -> None:
    r = ask(oc, "baimo/judged", "Say hello.")
    assert r.parse().model == "remote/strong" and "conf=0.10<0.50" in r.headers["x-baimo-route"]


def test_killed_upstream_falls_back(oc, upstreams, gateway) -> None:
    _, doomed = upstreams
    assert ask(oc, "baimo/doomed", "hi").parse().model == "remote/doomed"
    doomed.stop()
    r = ask(oc, "baimo/doomed", "hi again")
    assert r.parse().model == "remote/weak"
    assert r.headers["x-baimo-route"] == "rules:default | fallback: remote/doomed failed (503) -> remote/weak"
    recent = httpx.get(gateway.url + "/api/usage").json()["recent"]
    assert recent[0]["model"] == "remote/weak" and "fallback" in recent[0]["route"]


def test_context_overflow_moves_to_a_larger_window(oc) -> None:
    long_text = "lorem ipsum dolor sit amet " * 200  # ~1800 tokens by the estimate: over remote/weak's 512
    r = ask(oc, "baimo/overflow", long_text)
    assert r.parse().model == "remote/big"
    assert "remote/weak failed (400)" in r.headers["x-baimo-route"]
    # a model's fallbacks: upstream errors try the next; an overflow skips to one with a larger window
    r = ask(oc, "remote/small", long_text)
    assert r.parse().model == "remote/big"
    assert r.headers["x-baimo-route"] == "fallback: remote/small overflowed (400) -> remote/big"


def test_feedback_turns_routed_answers_into_outcomes(oc, gateway) -> None:
    r = ask(oc, "baimo/rules", "What rhymes with orange?")
    response_id = r.parse().id
    assert r.headers["x-request-id"] == response_id
    fb = httpx.post(gateway.url + "/api/feedback", json={"response_id": response_id, "rating": "down"}).json()
    assert fb == {"response_id": response_id, "model": "remote/weak", "router": "baimo/rules", "score": 0.0,
                  "outcome_recorded": True}
    bad = httpx.post(gateway.url + "/api/feedback", json={"response_id": "chatcmpl-nope", "rating": "up"})
    assert bad.status_code == 404
    both = httpx.post(gateway.url + "/api/feedback", json={"response_id": response_id, "rating": "up", "score": 1})
    assert both.status_code == 400


def test_usage_reports_savings_against_the_strongest_model(gateway) -> None:
    totals = httpx.get(gateway.url + "/api/usage").json()["totals"]
    assert totals["strongest_model"] in ("remote/strong", "remote/doomed")
    assert totals["requests"] > 5 and 0 < totals["cost"] < totals["cost_if_all_to_strongest"]


def test_a_learned_router_that_was_never_trained_is_503_with_the_fix(oc) -> None:
    with pytest.raises(openai.APIStatusError) as e:
        ask(oc, "baimo/untrained", "hello")
    assert e.value.status_code == 503 and "baimo router train --name never-trained" in e.value.message
