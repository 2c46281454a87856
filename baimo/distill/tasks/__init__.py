"""Synthetic narrow tasks for the distillation flywheel: a generator of a small domain that a base model such as
SmolLM2-135M fails and a LoRA learns in a few hundred steps, with an exact-match checker.

`make_task(name, train, test, seed)` gives SFT rows (chat format) and a held-out evaluation suite in the format of
baimo/evaluation/suites.py (kind `json_schema`, each item's schema pinning every field with `const`, so the suite
checks exact field values while accepting any JSON whitespace). The suite is `verbatim`: each question is sent
exactly as in training, with no schema shown (it holds the answer). Train and test never share a prompt.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from baimo.errors import InvalidRequest, NotFound


@dataclass(frozen=True)
class Task:
    """A task: `sample(rng)` draws one (prompt, expected JSON object); `fields` are the answer's keys in order."""

    name: str
    description: str
    fields: tuple[str, ...]
    sample: Callable[[random.Random], tuple[str, dict[str, str]]]


def _registry() -> dict[str, Task]:
    from baimo.distill.tasks import travel

    return {t.name: t for t in travel.TASKS}


def tasks() -> dict[str, Task]:
    """The known tasks by name."""
    return _registry()


def get_task(name: str) -> Task:
    """The task called `name`; NotFound (param "name") listing the known ones otherwise."""
    known = _registry()
    if name not in known:
        raise NotFound(f"unknown task {name!r}; known: {', '.join(known)}", param="name")
    return known[name]


def answer_text(expected: dict[str, str]) -> str:
    """The canonical answer: the JSON object on one line, keys in the task's order."""
    return json.dumps(expected, ensure_ascii=False)


def check(answer: str, expected: dict[str, str]) -> bool:
    """Exact match: the answer holds a JSON object (alone, fenced, or the first balanced {...}) equal to
    `expected` (same keys, same values)."""
    from baimo.evaluation.extract import extract_json

    try:
        return extract_json(answer) == expected
    except ValueError:
        return False


def _schema(expected: dict[str, str]) -> dict[str, Any]:
    return {"type": "object", "properties": {k: {"const": v} for k, v in expected.items()},
            "required": list(expected), "additionalProperties": False}


def make_task(name: str, train: int, test: int, seed: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, suite lines): `train` SFT rows `{"messages": [user, assistant], "meta": {"task", "expected"}}`
    and the suite's header plus `test` items `{"id", "question", "schema", "answer"}`. Deterministic in `seed`;
    raises InvalidRequest when the task cannot produce that many distinct prompts."""
    task = get_task(name)
    if train < 0 or test < 0:
        raise InvalidRequest("--train and --test must be >= 0", param="train")
    rng = random.Random(f"{name}:{seed}")
    seen: set[str] = set()
    drawn: list[tuple[str, dict[str, str]]] = []
    tries = 0
    while len(drawn) < train + test:
        tries += 1
        if tries > 50 * (train + test) + 1000:
            raise InvalidRequest(f"task {name} has too few distinct prompts for {train + test} items", param="train")
        prompt, expected = task.sample(rng)
        if prompt not in seen:
            seen.add(prompt)
            drawn.append((prompt, expected))
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": answer_text(e)}],
             "meta": {"task": name, "expected": e}} for p, e in drawn[:train]]
    # verbatim: the held-out prompts are asked exactly as the training prompts were (the schemas pin the answers
    # with `const`, so showing them would give the answer away)
    header = {"suite": {"name": name, "kind": "json_schema", "license": "Apache-2.0", "verbatim": True,
                        "description": task.description, "generator": f"baimo distill task make {name} --seed {seed}"}}
    items = [{"id": f"{name}-{i}", "question": p, "schema": _schema(e), "answer": answer_text(e)}
             for i, (p, e) in enumerate(drawn[train:], 1)]
    return rows, [header, *items]
