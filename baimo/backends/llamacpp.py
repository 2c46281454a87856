"""Local GGUF models, each served by its own supervised llama.cpp `llama-server` worker process.

The worker is llama.cpp's own OpenAI-compatible server, so a local model is one more OpenAI-compatible
upstream behind Baimo's routing, fallbacks and metering, and it brings what llama.cpp already does well:
parallel slots with continuous batching, JSON-schema grammars, token logprobs, tool calls through the
model's chat template, and every sampler. This backend adds what the API process must own: the worker's
life cycle (see `baimo.engine.worker`), and the checks that turn what a local model cannot honour into a
400 naming the field instead of silently ignoring it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from baimo.backends import catalogue, tool_emulation
from baimo.backends.base import Finish, GenerationParams, StreamEvent, TextDelta, ToolCallDelta, message_text
from baimo.backends.capabilities import check_content_parts
from baimo.backends.json_schema import check_enforceable, response_schema
from baimo.backends.openai_compat import OpenAICompatBackend, finite_logprobs
from baimo.config import ModelConfig, Settings
from baimo.errors import ContextLengthExceeded, InvalidRequest, UpstreamError, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("baimo.worker")

# Request fields a local model uses or may safely ignore: OpenAI's (bookkeeping ones such as `user`, `store` and
# `metadata` have nothing to do on a local model) and llama.cpp's own sampler and grammar extensions. Anything
# else is refused by name, as OpenAI refuses an unrecognized argument, instead of being silently dropped.
LOCAL_FIELDS = {
    "n", "stop", "logit_bias", "logprobs", "top_logprobs", "user", "metadata", "store", "service_tier",
    "reasoning_effort",
    "response_format", "modalities", "prompt_cache_key", "safety_identifier",
    "audio", "prediction", "functions", "function_call",  # refused below with a reason
    "top_k", "min_p", "typical_p", "top_n_sigma", "repeat_penalty", "repetition_penalty", "repeat_last_n",
    "dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n", "dry_sequence_breakers",
    "xtc_probability", "xtc_threshold", "mirostat", "mirostat_tau", "mirostat_eta", "dynatemp_range",
    "dynatemp_exponent", "min_keep", "samplers", "ignore_eos", "n_probs", "post_sampling_probs", "grammar",
    "json_schema", "chat_template_kwargs", "reasoning_format", "parse_tool_calls", "cache_prompt", "n_keep",
    "t_max_predict_ms", "continue_final_message", "id_slot",
}
# Request fields a text-only llama.cpp worker cannot honour: a 400 naming them beats silence.
UNHONOURED = {"audio": "audio output", "prediction": "predicted outputs", "functions": "legacy function "
              "calling (use `tools`)", "function_call": "legacy function calling (use `tools` and `tool_choice`)"}


def local_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages as a GGUF chat template takes them: `developer` becomes `system` (many templates, Qwen's among
    them, raise on roles they do not know), text parts are joined into one string, an assistant turn with tool
    calls and no content gets an empty one, and leading system messages merge into one. Call
    check_content_parts first."""
    out: list[dict[str, Any]] = []
    for m in messages:
        msg = dict(m)
        if msg.get("role") == "developer":
            msg["role"] = "system"
        if isinstance(msg.get("content"), list):
            msg["content"] = message_text(msg)
        if msg.get("role") == "assistant" and msg.get("content") is None:
            msg["content"] = ""
        if msg["role"] == "system" and out and all(o["role"] == "system" for o in out):
            # leading instructions (a persona's, then the client's) become one system message: several
            # templates accept only one, and only first
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{msg['content']}"}
            continue
        out.append(msg)
    return out


def drop_empty_stops(body: dict[str, Any]) -> None:
    """llama.cpp ends generation at once on an empty stop string; OpenAI ignores it (and an empty list): keep only
    the non-empty stop sequences, and no `stop` at all when none is left."""
    if "stop" not in body:
        return
    stop = [body["stop"]] if isinstance(body["stop"], str) else body["stop"] or []
    body["stop"] = [x for x in stop if x]
    if not body["stop"]:
        del body["stop"]


def legacy_logprobs(tokens: list[dict[str, Any]], offsets: dict[int, int], index: int) -> dict[str, Any]:
    """Chat-shaped token logprobs as the legacy completions shape: parallel lists of tokens, their logprobs,
    {token: logprob} dicts of the alternatives, and each token's character offset in the choice's text."""
    out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for t in tokens:
        out["tokens"].append(t.get("token", ""))
        out["token_logprobs"].append(t["logprob"])
        out["top_logprobs"].append({alt.get("token", ""): alt["logprob"] for alt in t.get("top_logprobs") or []})
        out["text_offset"].append(offsets.get(index, 0))
        offsets[index] = offsets.get(index, 0) + len(t.get("token", ""))
    return out


class LlamaCppBackend(OpenAICompatBackend):
    """A GGUF model served by a supervised llama-server worker on a loopback port."""

    KEEPALIVE_S = 2.0  # llama-server (cpp-httplib) closes idle keep-alive connections after 5 s

    def __init__(self, config: ModelConfig, settings: Settings) -> None:
        super().__init__(config, settings)
        self._settings = settings
        self._worker: Any = None

    @property
    def model_path(self) -> Path:
        return catalogue.weights_path(self.config.path, self.config.catalogue, self._settings.model_cache)

    @property
    def worker(self) -> Any:
        """The supervisor of this model's worker process (created on first use)."""
        if self._worker is None and self._settings.engine_url:  # `serve --workers N`: the master owns the worker
            from baimo.engine.host import RemoteWorker

            self._worker = RemoteWorker(self._settings.engine_url, self.config.id)
        if self._worker is None:
            from baimo.engine import build
            from baimo.engine.worker import Worker, WorkerSpec

            engine = build.installed()
            if engine is None:
                raise UpstreamUnavailable(f"{self.config.id}: the local engine is not built on this machine; "
                                          "run `baimo engine build`", code="engine_missing")
            threads = self.config.threads or self._settings.llama_threads or min(2, os.cpu_count() or 1)
            self._worker = Worker(WorkerSpec(
                model_id=self.config.id, server=engine.server, model_path=self.model_path,
                context_window=self.config.context_window, parallel=self.config.parallel, threads=threads,
                repack=self.config.repack, load_timeout=self.config.load_timeout,
                keep_alive=self.config.keep_alive or None,
                log_path=self._settings.home / "logs" / f"worker-{self.config.id.replace('/', '_')}.log"))
        return self._worker

    @property
    def ready(self) -> bool:
        return self._worker is not None and self._worker.running

    async def start(self) -> None:
        """Start the HTTP session and the worker (loading the model); 503 when the model file is missing."""
        await super().start()
        if not self.model_path.exists():
            hint = (f"run `baimo models pull {self.config.id}`" if self.config.catalogue
                    else "check `path` in baimo.yaml")
            raise UpstreamUnavailable(f"model file for {self.config.id} is missing ({self.model_path}); {hint}")
        await self.worker.url()

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker.close()
        await super().close()

    @property
    def _url(self) -> str:
        return self.worker.base_url + "/v1/chat/completions"

    def check(self, params: GenerationParams) -> None:
        """Refuse, naming the field, what a text-only local model cannot honour."""
        check_content_parts(self.config, params.messages)
        extra = params.extra
        for name in extra:
            if name not in LOCAL_FIELDS:
                raise InvalidRequest(f"Unrecognized request argument supplied: {name} ({self.config.id} is a local "
                                     "model and does not use it)", param=name, code="unknown_parameter")
        for name, what in UNHONOURED.items():
            if extra.get(name) not in (None, False, [], {}):
                raise InvalidRequest(f"{self.config.id} is a local model and cannot give {what}; remove `{name}` "
                                     "or choose a remote model that supports it", param=name)
        if any(m != "text" for m in extra.get("modalities") or []):
            raise InvalidRequest(f"{self.config.id} only produces text; set `modalities` to [\"text\"]",
                                 param="modalities")
        n = extra.get("n")
        if isinstance(n, int) and n > self._most_choices:
            raise InvalidRequest(f"{self.config.id} generates at most {self._most_choices} choices per request "
                                 f"(`max_n` and `parallel` in baimo.yaml); n={n} is too many", param="n")
        schema = response_schema(extra.get("response_format"))
        if schema is not None:
            check_enforceable(schema)
        for key in (extra.get("logit_bias") or {}):
            if not str(key).lstrip("-").isdigit():
                raise InvalidRequest("logit_bias keys are token ids (as strings of digits)", param="logit_bias")

    def _body(self, params: GenerationParams) -> dict[str, Any]:
        """The worker's request, with what llama-server does differently from OpenAI adjusted here."""
        body = super()._body(params)
        body["messages"] = local_messages(params.messages)
        if body.get("n") == 1:
            del body["n"]
        body.pop("id_slot", None)  # slots are Baimo's to schedule, not a client's
        if "repetition_penalty" in body:  # vLLM's name for llama.cpp's repeat_penalty
            body.setdefault("repeat_penalty", body.pop("repetition_penalty"))
        drop_empty_stops(body)
        if body.get("logprobs"):
            # llama-server gives 20 alternatives when top_logprobs is absent and none at all with 0; OpenAI gives
            # none when it is absent. Ask for at least 1 and cut the lists to what the client asked for.
            body["top_logprobs"] = max(1, int(body.get("top_logprobs") or 0))
        if not self._template_calls_tools:
            if body.get("tools") and body.get("tool_choice") != "none":
                return tool_emulation.emulate(body)
            body.pop("tools", None)
            body.pop("tool_choice", None)
            body.pop("parallel_tool_calls", None)
            body["messages"] = tool_emulation.history_as_text(body["messages"])
            return body
        choice = body.get("tool_choice")
        if isinstance(choice, dict) and body.get("tools"):
            # llama-server treats a named function as "auto"; offering only that tool, required, enforces it.
            body["tools"], body["tool_choice"] = tool_emulation.named_tools(body["tools"], choice), "required"
        return body

    @property
    def _most_choices(self) -> int:
        """The most choices one request may ask for: `max_n`, and never more than the worker's slots."""
        return min(self.config.max_n, self.config.parallel)

    @property
    def _template_calls_tools(self) -> bool:
        """Whether the model's chat template can express tools (llama.cpp's analysis of it, from /props)."""
        caps = (self._worker.props if self._worker else {}).get("chat_template_caps") or {}
        return bool(caps.get("supports_tool_calls", True))

    async def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        worker = self.worker
        async with worker.in_use(int(params.extra.get("n") or 1), self.config.queue_timeout):
            await worker.url()
            emulated = bool(params.tools) and params.tool_choice != "none" and not self._template_calls_tools
            events = super().stream(params)
            if emulated:
                events = self._emulated_tool_events(events)
            try:
                async for ev in events:
                    if isinstance(ev, TextDelta) and ev.logprobs:
                        keep = int(params.extra.get("top_logprobs") or 0)
                        for token in ev.logprobs:
                            token["top_logprobs"] = (token.get("top_logprobs") or [])[:keep]
                            token.pop("id", None)
                    yield ev
            except UpstreamTimeout as exc:
                log.warning("%s: %s; checking the worker's health", self.config.id, exc.message)
                await worker.check_health()  # a hung worker is killed and replaced
                raise
            except UpstreamUnavailable as exc:
                exc.message = self._why(exc.message)
                raise
            except UpstreamError as exc:
                if not worker.running:
                    exc.message = f"{self.config.id}: the model worker stopped mid-answer ({worker.last_log_line()})"
                raise
            worker.served()

    def _completion_slots(self, body: dict[str, Any]) -> int:
        """Slots a text completion takes (one per prompt and choice); raises 400 for what the worker would
        silently ignore or cannot hold at once."""
        if body.get("suffix"):
            raise InvalidRequest(f"{self.config.id} cannot fill in the middle: `suffix` is not supported for local "
                                 "models", param="suffix")
        if (body.get("best_of") or 1) > 1:
            raise InvalidRequest("`best_of` is not supported for local models; use `n`", param="best_of")
        prompt = body.get("prompt")
        prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
        slots = (body.get("n") or 1) * prompts
        if slots > self._most_choices:
            raise InvalidRequest(f"{self.config.id} generates at most {self._most_choices} completions per request "
                                 f"(prompts × n); this asks for {slots}", param="n")
        return slots

    def completions_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """A text completion for the worker: `echo` is Baimo's to do, and llama.cpp's own slot choice stays off."""
        out = super().completions_body({k: v for k, v in body.items() if k not in ("echo", "suffix", "best_of",
                                                                                  "id_slot")})
        drop_empty_stops(out)
        return out

    async def text_completions(self, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Text completions from the worker, in OpenAI's legacy shape: `echo` puts the prompt before each choice's
        text, and token logprobs become {tokens, token_logprobs, top_logprobs, text_offset}."""
        echo = bool(body.get("echo"))
        prompt = body.get("prompt")
        if echo and not isinstance(prompt, str):
            raise InvalidRequest("`echo` is supported for a single text prompt on local models", param="echo")
        worker = self.worker
        async with worker.in_use(self._completion_slots(body), self.config.queue_timeout):
            await worker.url()
            echoed: set[int] = set()
            offsets: dict[int, int] = {}
            async for chunk in super().text_completions(body):
                for choice in chunk.get("choices") or []:
                    index = int(choice.get("index") or 0)
                    if echo and index not in echoed:
                        echoed.add(index)
                        choice["text"] = str(prompt) + (choice.get("text") or "")
                        offsets[index] = len(str(prompt))
                    content = (choice.get("logprobs") or {}).get("content") if isinstance(
                        choice.get("logprobs"), dict) else None
                    if content is not None:
                        choice["logprobs"] = legacy_logprobs(finite_logprobs(content), offsets, index)
                yield chunk
            worker.served()

    @staticmethod
    async def _emulated_tool_events(events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        """Collect an emulated tool answer (JSON) and give it back as tool calls or as text."""
        parts: list[str] = []
        async for ev in events:
            if isinstance(ev, TextDelta):
                parts.append(ev.text)
            elif isinstance(ev, Finish):
                content, calls = tool_emulation.parse_answer("".join(parts))
                if calls:
                    yield ToolCallDelta(calls)
                    ev.reason, ev.reasons = "tool_calls", {0: "tool_calls"}
                elif content:
                    yield TextDelta(content)
                yield ev

    def _why(self, message: str) -> str:
        if self._worker is not None and not self._worker.running:
            return f"{self.config.id}: the model worker is not running ({self._worker.last_log_line()}); " \
                   "it restarts on the next request"
        return message

    async def _open(self, params: GenerationParams) -> aiohttp.ClientResponse:
        try:
            return await super()._open(params)
        except InvalidRequest as exc:
            if "context" in exc.message and ("exceed" in exc.message or "size" in exc.message):
                raise ContextLengthExceeded(
                    f"This model's maximum context length is {self.config.context_window} tokens; the messages "
                    f"and the reply do not fit ({exc.message.split(': ', 2)[-1]})", param="messages") from exc
            raise
