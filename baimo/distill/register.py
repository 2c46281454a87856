"""Register a fine-tuned GGUF as a local model in baimo.yaml, so `baimo models` lists it and the server serves it.

The new entry is `local/NAME`, kind llamacpp, `path:` the GGUF file, with the base model's context window, output
cap, threads and parallel slots (the chat template travels inside the GGUF: the converter copies the base
tokenizer's). It is free like every local model. baimo.yaml is edited by baimo.config_edit (ruamel.yaml's
round-trip mode keeps the operator's comments; the result is validated before it replaces the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from baimo.config import NAME_PATTERN, BaimoConfig, ModelConfig, Settings, load_config
from baimo.config_edit import edit_config
from baimo.errors import Conflict, InvalidRequest, NotFound

# The base model's keys a fine-tuned copy inherits (it has the same architecture, tokenizer and size).
INHERITED = ("context_window", "max_output_tokens", "threads", "parallel", "queue_timeout", "max_n", "keep_alive",
             "load_timeout", "repack", "inputs")


def model_id(name: str) -> str:
    """The id a fine-tuned model NAME is served as: `local/NAME`. Raises InvalidRequest on an unsafe NAME."""
    if not NAME_PATTERN.match(name):
        raise InvalidRequest(f"invalid name {name!r}: letters, digits, '.', '_' or '-', at most 64",
                             param="out")
    return f"local/{name}"


def local_base(config: BaimoConfig, base_id: str) -> ModelConfig:
    """The base model's entry; raises NotFound when it is not configured, InvalidRequest when it is not local."""
    for m in config.models:
        if m.id == base_id:
            if m.kind != "llamacpp":
                raise InvalidRequest(f"{base_id} is a remote model; the base must be a local (llamacpp) model",
                                     param="base")
            return m
    local = [m.id for m in config.models if m.kind == "llamacpp"]
    raise NotFound(f"no model {base_id!r} in baimo.yaml (local models: {', '.join(local) or 'none'})",
                   param="base")


def model_entry(name: str, gguf_path: Path, base: ModelConfig, description: str | None = None) -> dict[str, Any]:
    """The baimo.yaml mapping of the fine-tuned model: id, kind, path, the inherited keys the base sets."""
    entry: dict[str, Any] = {"id": model_id(name), "kind": "llamacpp", "path": str(gguf_path)}
    for key in INHERITED:
        if key in base.model_fields_set or key == "context_window":
            entry[key] = getattr(base, key)
    entry["description"] = description or f"fine-tuned from {base.id} (baimo distill train)"
    return entry


def register(settings: Settings, name: str, gguf_path: Path, base_id: str, *, description: str | None = None,
             replace: bool = True) -> ModelConfig:
    """Add (or, with `replace`, update) `local/NAME` in BAIMO_HOME/baimo.yaml (baimo.config_edit: comments kept,
    validated, atomic). Returns the validated entry.

    Raises NotFound when the GGUF or the base is missing, Conflict when the id is taken by another kind of model
    (or by any model when `replace` is false), ConfigError when the edited file would not validate."""
    if not gguf_path.is_file():
        raise NotFound(f"{gguf_path}: no such GGUF file", param="gguf")
    base = local_base(load_config(settings), base_id)  # load_config writes the default baimo.yaml when missing
    entry = model_entry(name, gguf_path.resolve(), base, description)

    def add(doc: dict[str, Any]) -> None:
        models = doc.setdefault("models", [])
        existing = [m for m in models if isinstance(m, dict) and m.get("id") == entry["id"]]
        if not existing:
            models.append(entry)
            return
        old = existing[0]
        if not replace or old.get("kind") != "llamacpp" or not old.get("path"):
            raise Conflict(f"{entry['id']} is already in baimo.yaml; choose another name", param="out")
        old.clear()
        old.update(entry)

    checked = edit_config(settings, add, f"registering {entry['id']}")
    return next(m for m in checked.models if m.id == entry["id"])
