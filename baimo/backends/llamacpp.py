"""In-process GGUF models through llama-cpp-python, with the GGUF's own chat template.

A llama.cpp context is not thread-safe, so each model has one context and one worker thread:
requests queue on an asyncio lock and run one at a time. Tokens cross from the worker thread to
the event loop through an asyncio queue as they are produced; closing the stream (the client went
away) sets a flag the worker checks after every token, so generation stops within a token.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from baimo.backends import catalogue
from baimo.backends.base import Finish, GenerationParams, StreamEvent, TextDelta
from baimo.config import ModelConfig, Settings
from baimo.errors import ConfigError, InvalidRequest, UpstreamError, UpstreamUnavailable

DEFAULT_TEMPERATURE = 0.7
DEFAULT_TOP_P = 0.95
_DONE = object()


def _plain_transcript(messages: list[dict[str, str]]) -> str:
    """Prompt for a base model with no chat template: a plain role-labelled transcript."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n".join(lines) + "\nAssistant:"


class _TokenLogprobs:
    """A logits processor that records log P of each sampled token, without llama.cpp's costly `logits_all`.

    It sees the raw logits of step t; at step t+1 the token sampled at t is the last input id, so its
    log-probability is looked up then (and the last one at the end, from the final input id).
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0
        self._last: Any = None  # log-softmax of the previous step
        self._start: int | None = None

    def _take(self, input_ids: Any) -> None:
        if self._last is not None:
            self.total += float(self._last[int(input_ids[-1])])
            self.count += 1

    def __call__(self, input_ids: Any, logits: Any) -> Any:
        import numpy as np

        self._take(input_ids)
        z = logits.astype(np.float64)
        z = z - z.max()
        self._last = z - np.log(np.exp(z).sum())
        return logits

    def finish(self, llm: Any) -> tuple[float | None, int]:
        if self._last is not None and llm.n_tokens:
            self._take(llm.input_ids[: llm.n_tokens])
            self._last = None
        return (self.total if self.count else None), self.count


class LlamaCppBackend:
    """A GGUF model run in this process."""

    def __init__(self, config: ModelConfig, settings: Settings) -> None:
        self.config = config
        self._settings = settings
        self._llm: Any = None
        self._formatter: Any = None
        self._stop_words: list[str] = []
        self._load_lock = asyncio.Lock()
        self._run_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{config.id}")

    @property
    def model_path(self) -> Path:
        if self.config.path:
            return Path(os.path.expanduser(self.config.path))
        assert self.config.catalogue is not None
        return catalogue.model_path(self._settings.model_cache, self.config.catalogue)

    @property
    def ready(self) -> bool:
        return self._llm is not None

    @property
    def has_chat_template(self) -> bool:
        return self._formatter is not None

    async def start(self) -> None:
        async with self._load_lock:
            if self._llm is not None:
                return
            path = self.model_path
            if not path.exists():
                hint = (f"run `baimo models pull {self.config.id}`" if self.config.catalogue
                        else "check `path` in baimo.yaml")
                raise UpstreamUnavailable(f"model file for {self.config.id} is missing ({path}); {hint}")
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, self._load, path)

    def _load(self, path: Path) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        threads = self.config.threads or self._settings.llama_threads or min(2, os.cpu_count() or 1)
        try:
            llm = Llama(model_path=str(path), n_ctx=self.config.context_window, n_threads=threads,
                        n_threads_batch=threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load {path}: {exc}") from exc
        eos_id, bos_id = llm.token_eos(), llm.token_bos()
        eos = llm._model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = llm._model.token_get_text(bos_id) if bos_id != -1 else ""
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            self._formatter = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)
            self._stop_words = [eos] if eos else []
        else:
            self._stop_words = ["\nUser:"]
        self._llm = llm

    async def close(self) -> None:
        async with self._run_lock:
            self._llm = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        if self._formatter is not None:
            text = self._formatter(messages=messages).prompt
            return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        return self._llm.tokenize(_plain_transcript(messages).encode("utf-8"), add_bos=True, special=False)

    def count_tokens(self, messages: list[dict[str, str]]) -> int:
        if any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
            raise InvalidRequest(f"{self.config.id} cannot take tool calls or tool results; send requests with "
                                 "tools to a model that calls tools (or route them there with a `tools` rule)",
                                 param="messages", code="tools_not_supported")
        if self._llm is None:
            from baimo.backends.base import estimate_tokens

            return estimate_tokens(messages)
        return len(self._prompt_tokens(messages))

    async def stream(self, params: GenerationParams) -> AsyncIterator[StreamEvent]:
        if params.tools:
            raise InvalidRequest(f"{self.config.id} cannot call tools; send requests with tools to a model that "
                                 "calls tools (or route them there with a `tools` rule)", param="tools",
                                 code="tools_not_supported")
        await self.start()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        async with self._run_lock:
            future = loop.run_in_executor(self._executor, self._generate, params, cancel, put)
            try:
                while True:
                    item = await queue.get()
                    if item is _DONE:
                        break
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.set()
                # The context is busy until the worker returns; hold the lock until then.
                await asyncio.shield(future)

    def _json_grammar(self) -> Any:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)

    def _generate(self, params: GenerationParams, cancel: threading.Event, put: Any) -> None:
        try:
            llm = self._llm
            prompt = self._prompt_tokens(params.messages)
            room = self.config.context_window - len(prompt)
            if room <= 0:
                raise UpstreamError(f"prompt of {len(prompt)} tokens fills the context window of {self.config.id}")
            max_tokens = min(params.max_tokens or room, room)
            scorer = _TokenLogprobs() if params.logprobs else None
            chunks = llm.create_completion(
                prompt, max_tokens=max_tokens, stream=True,
                temperature=DEFAULT_TEMPERATURE if params.temperature is None else params.temperature,
                top_p=DEFAULT_TOP_P if params.top_p is None else params.top_p,
                stop=self._stop_words + params.stop, seed=params.seed,
                presence_penalty=params.presence_penalty or 0.0,
                frequency_penalty=params.frequency_penalty or 0.0,
                logits_processor=[scorer] if scorer else None,
                grammar=self._json_grammar() if params.json_mode else None,
            )
            text_parts: list[str] = []
            reason = "length"
            try:
                for chunk in chunks:
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        text_parts.append(choice["text"])
                        put(TextDelta(choice["text"]))
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
                    if cancel.is_set():
                        reason = "cancelled"
                        break
            finally:
                chunks.close()
            text = "".join(text_parts)
            completion = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0
            lp_sum, lp_n = scorer.finish(llm) if scorer else (None, 0)
            put(Finish(reason=reason, prompt_tokens=len(prompt), completion_tokens=completion,
                       logprob_sum=lp_sum, logprob_tokens=lp_n))
        except BaseException as exc:  # forwarded to the event loop and raised there
            put(exc)
        finally:
            put(_DONE)
