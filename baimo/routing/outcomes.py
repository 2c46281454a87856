"""Routing outcome files: one JSON object per line with a prompt, per-model scores and per-model costs.

A line is `{"prompt": str, "scores": {model: 0..1}, "costs": {model: USD}}`; `costs` may be left out when
per-token prices are given (USD per million tokens plus an expected answer length). Every problem is
reported as one line naming the file line, so a broken file fails fast and readably.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from baimo.errors import InvalidRequest

CHARS_PER_TOKEN = 4.0  # prompt tokens are estimated as ceil(len(prompt) / 4) when costs come from prices
DEFAULT_OUTPUT_TOKENS = 256  # expected answer length when a price entry does not say


@dataclass(frozen=True)
class Price:
    """USD per million input/output tokens and the expected answer length in tokens."""

    input: float
    output: float
    output_tokens: float = DEFAULT_OUTPUT_TOKENS

    def cost(self, prompt: str) -> float:
        return (estimate_tokens(prompt) * self.input + self.output_tokens * self.output) / 1e6


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass
class OutcomeSet:
    """Prompts with an (n, m) score matrix and an (n, m) cost matrix, columns in `models` order."""

    prompts: list[str]
    models: list[str]
    scores: np.ndarray
    costs: np.ndarray
    source: str = ""
    prices: dict[str, Price] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: np.ndarray | list[int]) -> OutcomeSet:
        idx = np.asarray(index, dtype=int)
        return OutcomeSet([self.prompts[i] for i in idx], self.models, self.scores[idx], self.costs[idx],
                          self.source, self.prices)


def parse_prices(raw: Any, where: str = "prices") -> dict[str, Price]:
    """Validate a mapping model_id -> {input, output, output_tokens?}."""
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where}: expected a mapping of model id -> {{input, output, output_tokens}}")
    prices: dict[str, Price] = {}
    for model, entry in raw.items():
        if not isinstance(entry, dict) or not {"input", "output"} <= set(entry):
            raise InvalidRequest(f"{where}: model {model!r} needs `input` and `output` (USD per million tokens)")
        unknown = set(entry) - {"input", "output", "output_tokens"}
        if unknown:
            raise InvalidRequest(f"{where}: model {model!r}: unknown key(s) {', '.join(sorted(unknown))}")
        values = {k: entry[k] for k in ("input", "output", "output_tokens") if k in entry}
        for k, v in values.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise InvalidRequest(f"{where}: model {model!r}: {k} must be a number >= 0")
        prices[str(model)] = Price(**{k: float(v) for k, v in values.items()})
    return prices


def load_prices(path: Path) -> dict[str, Price]:
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"{path}: cannot read prices: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidRequest(f"{path}: not valid YAML") from exc
    return parse_prices(raw, str(path))


def _number_map(obj: dict, key: str, where: str, lo: float | None, hi: float | None) -> dict[str, float]:
    value = obj.get(key)
    if not isinstance(value, dict) or not value:
        raise InvalidRequest(f"{where}: `{key}` must be a non-empty object of model id -> number")
    out: dict[str, float] = {}
    for model, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidRequest(f"{where}: {key}[{model!r}] must be a number")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise InvalidRequest(f"{where}: {key}[{model!r}] = {v} is outside {lo}..{hi if hi is not None else '∞'}")
        out[model] = float(v)
    return out


def parse_outcome_lines(lines: list[str], source: str = "<data>", prices: dict[str, Price] | None = None,
                        *, need_scores: bool = True, min_models: int = 2) -> OutcomeSet:
    """Parse outcome lines; with need_scores=False only `prompt` is read (for routing decisions).

    min_models: scored models every line needs (1 for the outcomes of a model added to a router)."""
    prices = prices or {}
    prompts: list[str] = []
    score_rows: list[dict[str, float]] = []
    cost_rows: list[dict[str, float]] = []
    models: list[str] | None = None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise InvalidRequest(f"{where}: expected a JSON object")
        prompt = obj.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequest(f"{where}: `prompt` must be a non-empty string")
        prompts.append(prompt)
        if not need_scores:
            continue
        scores = _number_map(obj, "scores", where, 0.0, 1.0)
        if models is None:
            models = list(scores)
        elif set(scores) != set(models):
            raise InvalidRequest(f"{where}: scores are for {sorted(scores)}, earlier lines for {sorted(models)}")
        if "costs" in obj and obj["costs"] is not None:
            costs = _number_map(obj, "costs", where, 0.0, None)
            if set(costs) != set(models):
                raise InvalidRequest(f"{where}: costs are for {sorted(costs)}, scores for {sorted(models)}")
        else:
            missing = [m for m in models if m not in prices]
            if missing:
                raise InvalidRequest(f"{where}: no `costs` and no price for {', '.join(missing)} (pass --prices)")
            costs = {m: prices[m].cost(prompt) for m in models}
        score_rows.append(scores)
        cost_rows.append(costs)
    if not prompts:
        raise InvalidRequest(f"{source}: no outcome lines")
    if not need_scores:
        return OutcomeSet(prompts, [], np.zeros((len(prompts), 0)), np.zeros((len(prompts), 0)), source, prices)
    assert models is not None
    if len(models) < min_models:
        need = {1: "one model", 2: "two models"}.get(min_models, f"{min_models} models")
        raise InvalidRequest(f"{source}: routing needs scores for at least {need}, found {models}")
    s = np.array([[r[m] for m in models] for r in score_rows], dtype=np.float64)
    c = np.array([[r[m] for m in models] for r in cost_rows], dtype=np.float64)
    return OutcomeSet(prompts, models, s, c, source, prices)


def load_outcomes(path: Path, prices: dict[str, Price] | None = None, *, need_scores: bool = True,
                  min_models: int = 2) -> OutcomeSet:
    """Read and validate an outcome JSONL file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidRequest(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"{path}: cannot read: {exc}") from exc
    # split on "\n" only: str.splitlines() would also break inside prompts at U+2028, U+0085, \x1c ...
    return parse_outcome_lines(text.split("\n"), str(path), prices, need_scores=need_scores, min_models=min_models)


def write_outcomes(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write outcome rows as JSONL (atomically: temp file then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
