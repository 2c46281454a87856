"""`baimo distill generate`: a strong (teacher) model answers a narrow domain's prompts: model-assisted labelling.

The teacher is called in-process exactly as `baimo chat` calls a model (`Assistant.resolve` then `open`), so it may
be a model, a router or `persona/<name>`, and every paid call is metered as a usage row with endpoint "distill".
Answers are cached on disk under BAIMO_HOME/distill-cache, keyed by the SHA-256 of (teacher, messages, params), so
a rerun pays nothing for what was answered before; the output file is appended to as answers arrive, and a rerun
appends only the prompts it does not hold yet (resumable after an interruption).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baimo.distill.dedup import read_jsonl, write_jsonl
from baimo.errors import BaimoError, InvalidRequest

ENDPOINT = "distill"


@dataclass(frozen=True)
class GenerateParams:
    """Sampling parameters sent with every prompt (None: the model's default)."""

    temperature: float | None = 0.0
    max_tokens: int | None = None
    seed: int | None = None


@dataclass
class GenerateStats:
    """What one run did: prompts read, already in the output, answered from the cache, paid for, failed; USD."""

    prompts: int = 0
    present: int = 0
    cached: int = 0
    called: int = 0
    failed: int = 0
    cost_usd: float = 0.0
    errors: list[str] = field(default_factory=list)


def load_prompts(path: Path, system: str | None = None) -> list[list[dict[str, Any]]]:
    """Prompts as chat message lists. A line is a JSON object with `prompt` (a string) or `messages` (a chat), or
    else plain text (one prompt per line). `system` is put first unless a prompt has its own system message.
    Raises InvalidRequest naming the line of a malformed one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequest(f"{path}: cannot read: {exc.strerror}", param="prompts") from exc
    out: list[list[dict[str, Any]]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"{path} line {n}: not valid JSON ({exc.msg})", param="prompts") from exc
            if isinstance(obj.get("prompt"), str) and obj["prompt"].strip():
                messages = [{"role": "user", "content": obj["prompt"]}]
            elif isinstance(obj.get("messages"), list) and obj["messages"]:
                messages = obj["messages"][:-1] if obj["messages"][-1].get("role") == "assistant" else obj["messages"]
            else:
                raise InvalidRequest(f"{path} line {n}: needs `prompt` (a string) or `messages` (a list)",
                                     param="prompts")
        else:
            messages = [{"role": "user", "content": line.strip()}]
        if system and not any(m.get("role") == "system" for m in messages):
            messages = [{"role": "system", "content": system}, *messages]
        out.append(messages)
    if not out:
        raise InvalidRequest(f"{path}: no prompts", param="prompts")
    return out


def cache_key(teacher: str, messages: list[dict[str, Any]], params: GenerateParams) -> str:
    """SHA-256 (hex) of the canonical JSON of teacher, messages and sampling parameters."""
    doc = {"teacher": teacher, "messages": messages, "params": params.__dict__}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class AnswerCache:
    """One JSON file per key under `root` (written to a temporary name, then renamed: a crash leaves no half)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None

    def put(self, key: str, value: dict[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)


async def ask(state: Any, teacher: str, messages: list[dict[str, Any]], params: GenerateParams) -> dict[str, Any]:
    """One answer of `teacher` as `baimo chat` gets it: {"answer", "model" (served), "route", "cost_usd",
    "prompt_tokens", "completion_tokens", "latency_ms"}. Raises the BaimoError of a failed call."""
    from baimo.backends.base import GenerationParams
    from baimo.chat import ChatContext

    ctx = ChatContext(endpoint=ENDPOINT, stream=False, store_message=False)
    gp = GenerationParams(messages=messages, max_tokens=params.max_tokens, temperature=params.temperature,
                          seed=params.seed)
    target, gp, options = state.assistant.resolve(teacher, gp, ctx, None)
    run = await state.assistant.open(target, gp, ctx, options)
    await run.collect()
    return {"answer": run.text, "model": run.model_id, "route": run.route, "cost_usd": run.total_cost,
            "prompt_tokens": run.tokens[0], "completion_tokens": run.tokens[1], "latency_ms": round(run.latency_ms, 1)}


def _present_keys(out: Path) -> set[str]:
    if not out.exists():
        return set()
    return {str((row.get("meta") or {}).get("key")) for row in read_jsonl(out)}


async def generate(state: Any, prompts: list[list[dict[str, Any]]], teacher: str, out: Path, *,
                   params: GenerateParams | None = None, concurrency: int = 4,
                   progress: Callable[[int], None] | None = None) -> GenerateStats:
    """Answer every prompt not yet in `out` with `teacher` (at most `concurrency` at once) and append the SFT rows
    `{"messages": [...prompt, answer], "meta": {"teacher", "model", "key", "cached", "cost_usd"}}` to `out` as
    they arrive. `progress(n)` is called once per prompt done. Failed prompts are counted, not written."""
    if concurrency < 1:
        raise InvalidRequest("--concurrency must be >= 1", param="concurrency")
    params = params or GenerateParams()
    state.check_callable(teacher)
    cache = AnswerCache(state.settings.home / "distill-cache")
    stats = GenerateStats(prompts=len(prompts))
    present = _present_keys(out)
    todo: list[tuple[str, list[dict[str, Any]]]] = []
    for messages in prompts:
        key = cache_key(teacher, messages, params)
        if key in present:
            stats.present += 1
            if progress:
                progress(1)
        else:
            present.add(key)  # a prompt listed twice is answered once
            todo.append((key, messages))
    out.parent.mkdir(parents=True, exist_ok=True)
    gate = asyncio.Semaphore(concurrency)
    lock = asyncio.Lock()

    async def one(key: str, messages: list[dict[str, Any]]) -> None:
        hit = cache.get(key)
        from_cache = hit is not None
        try:
            if hit is None:
                async with gate:
                    hit = await ask(state, teacher, messages, params)
                cache.put(key, hit)
                stats.called += 1
                stats.cost_usd += hit["cost_usd"]
            else:
                stats.cached += 1
            row = {"messages": [*messages, {"role": "assistant", "content": hit["answer"]}],
                   "meta": {"teacher": teacher, "model": hit["model"], "key": key, "cached": from_cache,
                            "cost_usd": 0.0 if from_cache else hit["cost_usd"]}}
            async with lock:
                write_jsonl(out, [row], append=True)
        except BaimoError as exc:
            stats.failed += 1
            stats.errors.append(" ".join(exc.message.split()))
        finally:
            if progress:
                progress(1)

    await asyncio.gather(*(one(k, m) for k, m in todo))
    return stats
