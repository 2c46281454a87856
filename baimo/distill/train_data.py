"""Training rows for `baimo distill train`: chat rows (SFT) and preference pairs (DPO), read and checked.

Input formats are those `baimo distill export` writes (TRL's conversational formats, one JSON object a line):
- SFT: `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...], "meta": {...}}`
- DPO: `{"prompt": [messages], "chosen": [{"role": "assistant", ...}], "rejected": [...], "meta": {...}}`
  (`prompt` may also be a plain string, taken as one user message).

For SFT each chat becomes a prompt-completion pair: the completion is the final assistant message, the prompt every
message before it. TRL's SFTTrainer then computes the loss on the completion tokens only (its `completion_only_loss`
for prompt-completion data), which is what "assistant-only loss" means for single-answer distillation data, without
needing a chat template with `{% generation %}` markers (SmolLM2's and Qwen2.5's have none). Earlier assistant
turns of a multi-turn chat are context, not targets. `meta` is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from baimo.errors import InvalidRequest

ROLES = ("system", "user", "assistant")


def _message(obj: Any, where: str) -> dict[str, str]:
    if not isinstance(obj, dict) or obj.get("role") not in ROLES or not isinstance(obj.get("content"), str):
        raise InvalidRequest(f"{where}: each message needs a role ({'/'.join(ROLES)}) and text content",
                             param="data")
    return {"role": obj["role"], "content": obj["content"]}


def _messages(obj: Any, where: str) -> list[dict[str, str]]:
    if isinstance(obj, str):
        return [{"role": "user", "content": obj}]
    if not isinstance(obj, list) or not obj:
        raise InvalidRequest(f"{where}: expected a non-empty list of messages", param="data")
    return [_message(m, where) for m in obj]


def _rows(path: Path, param: str) -> list[tuple[str, dict[str, Any]]]:
    """The objects of a JSONL file (baimo.distill.dedup.read_jsonl), each with `FILE row N` for messages.

    Raises InvalidRequest when the file is missing, a line is not a JSON object, or there is no row."""
    from baimo.distill.dedup import read_jsonl

    if not path.is_file():
        raise InvalidRequest(f"{path}: no such file", param=param)
    rows = [(f"{path} row {n}", row) for n, row in enumerate(read_jsonl(path), 1)]
    if not rows:
        raise InvalidRequest(f"{path}: no rows", param=param)
    return rows


def sft_example(row: dict[str, Any], where: str = "row") -> dict[str, list[dict[str, str]]]:
    """One chat row -> `{"prompt": [messages before the last], "completion": [the last, an assistant message]}`.

    Raises InvalidRequest when the row has no `messages`, a malformed message, no user message before the answer,
    or does not end with an assistant message."""
    if "messages" not in row:
        raise InvalidRequest(f"{where}: an SFT row needs `messages` (chat format)", param="data")
    messages = _messages(row["messages"], where)
    if messages[-1]["role"] != "assistant":
        raise InvalidRequest(f"{where}: the last message must be the assistant's answer", param="data")
    prompt = messages[:-1]
    if not any(m["role"] == "user" for m in prompt):
        raise InvalidRequest(f"{where}: no user message before the answer", param="data")
    return {"prompt": prompt, "completion": [messages[-1]]}


def dpo_example(row: dict[str, Any], where: str = "row") -> dict[str, list[dict[str, str]]]:
    """One preference row -> `{"prompt": [messages], "chosen": [assistant message], "rejected": [...]}`.

    Raises InvalidRequest when a field is missing, chosen/rejected are not one assistant message each, or they
    are the same text (no preference to learn)."""
    for key in ("prompt", "chosen", "rejected"):
        if key not in row:
            raise InvalidRequest(f"{where}: a preference row needs `{key}`", param="dpo")
    out = {"prompt": _messages(row["prompt"], where)}
    for key in ("chosen", "rejected"):
        answer = row[key]
        if isinstance(answer, str):
            answer = [{"role": "assistant", "content": answer}]
        msgs = _messages(answer, where)
        if len(msgs) != 1 or msgs[0]["role"] != "assistant":
            raise InvalidRequest(f"{where}: `{key}` must be one assistant message", param="dpo")
        out[key] = msgs
    if out["chosen"][0]["content"] == out["rejected"][0]["content"]:
        raise InvalidRequest(f"{where}: chosen and rejected are the same answer", param="dpo")
    return out


def load_sft(path: Path) -> list[dict[str, list[dict[str, str]]]]:
    """Every row of an SFT JSONL file as prompt-completion examples (see `sft_example`)."""
    return [sft_example(row, where) for where, row in _rows(path, "data")]


def load_dpo(path: Path) -> list[dict[str, list[dict[str, str]]]]:
    """Every row of a preference-pair JSONL file as DPO examples (see `dpo_example`)."""
    return [dpo_example(row, where) for where, row in _rows(path, "dpo")]
