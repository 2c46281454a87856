"""Evaluation suites: JSONL files with a declared kind, the built-in ones, and loaders for the shared datasets.

A suite file's first line declares it, every further line is one item::

    {"suite": {"name": "arith-bilingual", "kind": "numeric", "license": "Apache-2.0", "few_shot": [...]}}
    {"id": "a1", "question": "17 + 25 = ?", "answer": 42}

Kinds and their item fields (`id` is optional everywhere; the line number is used without it):

- `multiple_choice`: question, choices (a list, lettered A, B, ... or a {letter: text} mapping), answer (a letter)
- `exact`: question, answer (a string; compared after case folding and trimming)
- `numeric`: question, answer (a number, or GSM8K's solution text ending in "#### N")
- `judged`: question, optional rubric, reference and turns (the question and its follow-ups, asked in one
  conversation); a judge model rates each answer 1-10 (MT-Bench single and multi-turn), the score is their mean
- `pairwise`: question; a judge compares two targets' answers (MT-Bench pairwise, both orders)
- `kb_qa`: question, knowledge (a base name), expected_source (a document source; a substring is enough), optional
  expected_passage (text the retrieved passage holds); scores retrieval hit@k and judges the answer's faithfulness
- `json_schema`: question, schema (JSON Schema); the answer must be JSON that validates

The SUITE argument of `baimo eval run` is a built-in name (`baimo eval suites`), a path, or one of the shared
datasets read from `BAIMO_EVAL_DATA` (default `../shared/data/eval` next to the repository): `gsm8k` (MIT), `cmmlu`
or `cmmlu:<subject>` (CC BY-NC-SA 4.0: evaluation only, never shipped in the package), `mt-bench` (Apache-2.0;
both turns of each question).
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from baimo.errors import InvalidRequest, NotFound

__all__ = ["KINDS", "Suite", "builtin_suites", "eval_data_dir", "load_suite", "parse_suite"]

KINDS = ("multiple_choice", "exact", "numeric", "judged", "pairwise", "kb_qa", "json_schema")
JUDGED_KINDS = ("judged", "pairwise", "kb_qa")
REQUIRED = {"multiple_choice": ("question", "choices", "answer"), "exact": ("question", "answer"),
            "numeric": ("question", "answer"), "judged": ("question",), "pairwise": ("question",),
            "kb_qa": ("question", "knowledge", "expected_source"), "json_schema": ("question", "schema")}
LETTERS = "ABCDEFGHIJ"


@dataclass
class Suite:
    """A loaded suite: `items` and `few_shot` are dicts with the kind's fields and a string `id`; `group` (an item
    field, e.g. a CMMLU subject) picks the few-shot examples of the same group. `pass_score` is the judged
    rating (1-10) counted as correct."""

    name: str
    kind: str
    source: str
    license: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    few_shot: list[dict[str, Any]] = field(default_factory=list)
    pass_score: float = 7.0
    k: int = 5  # kb_qa: passages retrieved for hit@k
    verbatim: bool = False  # send each question exactly as written: no answer-format instruction, no schema shown

    def describe(self) -> dict[str, Any]:
        """The run JSON's "suite" entry."""
        return {"name": self.name, "kind": self.kind, "items": len(self.items), "source": self.source,
                "license": self.license}


def eval_data_dir() -> Path:
    """Where the shared datasets are: $BAIMO_EVAL_DATA, else ../shared/data/eval beside the repository."""
    env = os.environ.get("BAIMO_EVAL_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "eval"


def _normalize_item(raw: dict[str, Any], kind: str, index: int, where: str) -> dict[str, Any]:
    item = dict(raw)
    if "question" not in item and "prompt" in item:
        item["question"] = item.pop("prompt")
    missing = [f for f in REQUIRED[kind] if f not in item]
    if missing:
        raise InvalidRequest(f"{where}: item {index} of a {kind} suite lacks {', '.join(missing)}", param="suite")
    item["id"] = str(item.get("id", index))
    if kind == "multiple_choice":
        choices = item["choices"]
        if isinstance(choices, list):
            item["choices"] = {LETTERS[i]: str(c) for i, c in enumerate(choices)}
        item["answer"] = str(item["answer"]).strip().upper()
        if item["answer"] not in item["choices"]:
            raise InvalidRequest(f"{where}: item {index}: answer {item['answer']!r} is not one of its choices",
                                 param="suite")
    elif kind == "numeric" and isinstance(item["answer"], str) and "####" in item["answer"]:
        item["solution"] = item["answer"]
        item["answer"] = item["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    return item


def parse_suite(lines: list[str], source: str, name: str | None = None) -> Suite:
    """A suite from its JSONL lines (the header first). Raises InvalidRequest (param "suite") for a missing header,
    an unknown kind, a line that is not JSON or an item without its kind's fields."""
    rows = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InvalidRequest(f"{source}: line {number} is not JSON ({exc.msg})", param="suite") from None
    if not rows or not isinstance(rows[0], dict) or not isinstance(rows[0].get("suite"), dict):
        raise InvalidRequest(f'{source}: the first line must declare the suite: {{"suite": {{"name", "kind"}}}}',
                             param="suite")
    head = rows[0]["suite"]
    kind = head.get("kind")
    if kind not in KINDS:
        raise InvalidRequest(f"{source}: unknown suite kind {kind!r}; expected one of {', '.join(KINDS)}",
                             param="suite")
    items = [_normalize_item(r, kind, i, source) for i, r in enumerate(rows[1:], 1)]
    shots = [_normalize_item(r, kind, i, source) for i, r in enumerate(head.get("few_shot") or [], 1)]
    return Suite(name=str(head.get("name") or name or Path(source).stem), kind=kind, source=source,
                 license=head.get("license"), items=items, few_shot=shots,
                 pass_score=float(head.get("pass_score", 7.0)), k=int(head.get("k", 5)),
                 verbatim=bool(head.get("verbatim", False)))


def builtin_suites() -> list[Suite]:
    """The suites shipped in the package (baimo/evaluation/data/*.jsonl), by name."""
    out = []
    for entry in sorted(resources.files("baimo.evaluation").joinpath("data").iterdir(), key=lambda p: p.name):
        if entry.name.endswith(".jsonl"):
            out.append(parse_suite(entry.read_text(encoding="utf-8").splitlines(), f"builtin:{entry.name[:-6]}",
                                   entry.name[:-6]))
    return out


def _gsm8k(data: Path) -> Suite:
    test, train = data / "gsm8k" / "test.jsonl", data / "gsm8k" / "train.jsonl"
    _require(test, "gsm8k")
    items = [_normalize_item(json.loads(line), "numeric", i, str(test))
             for i, line in enumerate(test.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
    shots = []
    if train.exists():
        with train.open(encoding="utf-8") as f:
            for i, line in zip(range(1, 9), f, strict=False):
                shots.append(_normalize_item(json.loads(line), "numeric", i, str(train)))
    return Suite(name="gsm8k", kind="numeric", source=str(test), license="MIT", items=items, few_shot=shots)


def _cmmlu_rows(path: Path, subject: str) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as f:
        return [{"id": f"{subject}/{row['']}", "question": row["Question"], "group": subject,
                 "choices": {k: row[k] for k in "ABCD"}, "answer": row["Answer"].strip().upper()}
                for row in csv.DictReader(f)]


def _cmmlu(data: Path, subject: str | None) -> Suite:
    root = data / "cmmlu"
    _require(root / "test", "cmmlu")
    subjects = sorted(p.stem for p in (root / "test").glob("*.csv"))
    if subject is not None and subject not in subjects:
        raise NotFound(f"no CMMLU subject {subject!r}; there are: {', '.join(subjects)}", param="suite")
    chosen = [subject] if subject else subjects
    items = [r for s in chosen for r in _cmmlu_rows(root / "test" / f"{s}.csv", s)]
    shots = [r for s in chosen if (root / "dev" / f"{s}.csv").exists()
             for r in _cmmlu_rows(root / "dev" / f"{s}.csv", s)]
    return Suite(name=f"cmmlu:{subject}" if subject else "cmmlu", kind="multiple_choice", source=str(root / "test"),
                 license="CC BY-NC-SA 4.0 (evaluation only; CMMLU, Li et al. 2023)", items=items, few_shot=shots)


def _mt_bench(data: Path) -> Suite:
    path = next((p for p in (data / "mt_bench_question.jsonl",
                             data.parent / "routing" / "routellm" / "mt_bench_question.jsonl") if p.exists()), None)
    if path is None:
        raise NotFound(f"mt-bench: no mt_bench_question.jsonl under {data} or ../routing/routellm", param="suite")
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            q = json.loads(line)
            item = {"id": str(q["question_id"]), "question": q["turns"][0], "turns": q["turns"],
                     "category": q.get("category")}
            if q.get("reference"):
                item["reference"] = q["reference"][0]
            items.append(item)
    return Suite(name="mt-bench", kind="judged", source=str(path), license="Apache-2.0 (MT-Bench, LMSYS)",
                 items=items)


def _require(path: Path, name: str) -> None:
    if not path.exists():
        raise NotFound(f"{name}: {path} does not exist (set BAIMO_EVAL_DATA to the folder holding {name}/)",
                       param="suite")


def load_suite(spec: str) -> Suite:
    """Resolve a SUITE argument: a built-in name, a JSONL path, `gsm8k`, `cmmlu[:subject]` or `mt-bench`.
    Raises NotFound (param "suite") for anything else, InvalidRequest for a malformed file."""
    for suite in builtin_suites():
        if spec in (suite.name, suite.source):
            return suite
    path = Path(spec).expanduser()
    if path.is_file():
        return parse_suite(path.read_text(encoding="utf-8").splitlines(), str(path))
    data = eval_data_dir()
    if spec == "gsm8k":
        return _gsm8k(data)
    m = re.fullmatch(r"cmmlu(?::(\w+))?", spec)
    if m:
        return _cmmlu(data, m.group(1))
    if spec in ("mt-bench", "mt_bench"):
        return _mt_bench(data)
    names = ", ".join(s.name for s in builtin_suites())
    raise NotFound(f"no suite {spec!r}: give a built-in ({names}), a .jsonl path, gsm8k, cmmlu[:subject] or "
                   "mt-bench", param="suite")
