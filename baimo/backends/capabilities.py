"""What a model can read and honour, checked before a request goes to it (400s that name the field).

A remote OpenAI-compatible model is assumed to read every content kind unless its config narrows
`inputs`; a local GGUF model reads text only (no multimodal projector is loaded). Routing and fallbacks
skip models whose check fails, so an image goes only to a model that reads images.
"""

from __future__ import annotations

from typing import Any

from baimo.config import ModelConfig
from baimo.errors import InvalidRequest

# OpenAI content-part types and the input kind each one needs.
PART_INPUT = {"text": "text", "refusal": "text", "image_url": "image", "input_audio": "audio", "file": "file"}
INPUT_WORDS = {"image": "images", "audio": "audio", "file": "files"}


def model_inputs(config: ModelConfig) -> set[str]:
    """The input kinds a model reads: its `inputs` setting, else text only for local models, all for remote."""
    if config.inputs is not None:
        return set(config.inputs) | {"text"}
    return {"text"} if config.kind == "llamacpp" else {"text", "image", "audio", "file"}


def check_content_parts(config: ModelConfig, messages: list[dict[str, Any]]) -> None:
    """Raise 400 naming `messages[i].content` when a part needs an input kind this model cannot read."""
    inputs = model_inputs(config)
    for i, m in enumerate(messages):
        content = m.get("content")
        if not isinstance(content, list):
            continue
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            needs = PART_INPUT.get(kind or "", "unknown")
            if needs == "unknown" and kind is not None and config.kind != "llamacpp":
                continue  # a part type Baimo does not know goes to a remote server as it is
            if needs not in inputs:
                what = INPUT_WORDS.get(needs, f"content parts of type {kind!r}")
                raise InvalidRequest(f"{config.id} cannot read {what}: messages[{i}].content has a {kind!r} part. "
                                     f"Send text, or choose a model that reads {what}.",
                                     param=f"messages[{i}].content", code="unsupported_content")
