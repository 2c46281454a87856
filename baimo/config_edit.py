"""Edit baimo.yaml from code (registering a fine-tuned model, promoting it into a router) without losing what the
operator wrote: ruamel.yaml's round-trip mode keeps comments, key order and quoting; the edited text is validated
as a whole (`BaimoConfig`) before it atomically replaces the file."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from baimo.config import BaimoConfig, Settings, load_config
from baimo.errors import ConfigError


def round_trip_yaml() -> Any:
    """A ruamel.yaml YAML object in round-trip mode, with the indentation of Baimo's default baimo.yaml."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    return yaml


def edit_config(settings: Settings, mutate: Callable[[dict[str, Any]], None], what: str) -> BaimoConfig:
    """Apply `mutate(doc)` to BAIMO_HOME/baimo.yaml (created with the defaults first when missing), where `doc` is
    the round-trip mapping; returns the validated new configuration. `what` names the change in errors.

    Raises ConfigError when the edited file would not validate; the file is then left as it was."""
    import yaml as pyyaml

    load_config(settings)  # writes the default baimo.yaml first when there is none
    path = settings.config_path
    rt = round_trip_yaml()
    doc = rt.load(path.read_text(encoding="utf-8")) or {}
    mutate(doc)
    buf = io.StringIO()
    rt.dump(doc, buf)
    text = buf.getvalue()
    try:
        checked = BaimoConfig.model_validate(pyyaml.safe_load(text))
    except ValueError as exc:
        raise ConfigError(f"{what} would break baimo.yaml: {exc}") from exc
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return checked
