"""Converters from RouteLLM's public evaluation data (MMLU, GSM8K, MT-Bench) to Baimo outcome files.

Contaminated prompts (RouteLLM's `*_contaminated_prompts.jsonl`) are dropped exactly as RouteLLM's
benchmarks.py does (exact match on `eval_prompt`). The train/test split is fixed and independent of
file order: a prompt is in TEST when the first 8 hex digits of SHA-256(prompt, UTF-8), read as an
integer, are odd — a 50/50 split, the same one the ROUTING-NOTES baselines used in spirit (50/50).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baimo.errors import InvalidRequest
from baimo.routing.outcomes import Price

WEAK, STRONG = "mixtral-8x7b", "gpt-4"
SOURCE_COLUMNS = {WEAK: "mistralai/Mixtral-8x7B-Instruct-v0.1", STRONG: "gpt-4-1106-preview"}
# RouteLLM paper (arXiv 2406.18665, Sec. 5): GPT-4 ≈ $24.7 and Mixtral-8x7B ≈ $0.24 per million tokens,
# one blended price for input and output. Answers are assumed to be 256 tokens long.
ROUTELLM_PRICES = {WEAK: Price(input=0.24, output=0.24, output_tokens=256),
                   STRONG: Price(input=24.7, output=24.7, output_tokens=256)}


def default_source() -> Path:
    """`<repo>/../shared/data/routing/routellm`, the public RouteLLM data next to the checkout."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "routing" / "routellm"


def is_test(prompt: str) -> bool:
    """The fixed split: SHA-256 of the prompt, first 8 hex digits, odd -> test."""
    return int(hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:8], 16) % 2 == 1


def _contaminated(source: Path, name: str) -> set[str]:
    path = source / f"{name}_contaminated_prompts.jsonl"
    if not path.exists():
        return set()
    return {json.loads(line)["eval_prompt"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def _row(prompt: str, scores: dict[str, float]) -> dict[str, Any]:
    return {"prompt": prompt, "scores": scores,
            "costs": {m: round(ROUTELLM_PRICES[m].cost(prompt), 10) for m in scores}}


def _correctness_csv(paths: list[Path], bad: set[str]) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        with path.open(encoding="utf-8", newline="") as f:
            for rec in csv.DictReader(f):
                if rec["prompt"] in bad:
                    continue
                rows.append(_row(rec["prompt"], {m: float(rec[col] == "True") for m, col in SOURCE_COLUMNS.items()}))
    return rows


def convert_mmlu(source: Path) -> list[dict[str, Any]]:
    paths = sorted((source / "mmlu_responses").glob("mmlu_*.csv"))
    if not paths:
        raise InvalidRequest(f"{source}/mmlu_responses: no mmlu_*.csv files")
    return _correctness_csv(paths, _contaminated(source, "mmlu"))


def convert_gsm8k(source: Path) -> list[dict[str, Any]]:
    path = source / "gsm8k_responses.csv"
    if not path.exists():
        raise InvalidRequest(f"{path}: no such file")
    return _correctness_csv([path], _contaminated(source, "gsm8k"))


def convert_mt_bench(source: Path) -> list[dict[str, Any]]:
    """Prompt = the first turn (RouteLLM routes on it); score = mean GPT-4-judge score over both turns / 10."""
    qpath, jpath = source / "mt_bench_question.jsonl", source / "mt_bench_judgements.jsonl"
    for p in (qpath, jpath):
        if not p.exists():
            raise InvalidRequest(f"{p}: no such file")
    bad = _contaminated(source, "mt_bench")
    judged: dict[tuple[int, str], list[float]] = defaultdict(list)
    names = {col: m for m, col in SOURCE_COLUMNS.items()}
    for line in jpath.read_text(encoding="utf-8").splitlines():
        j = json.loads(line)
        if j["model"] in names and j["score"] >= 0:
            judged[(j["question_id"], names[j["model"]])].append(j["score"] / 10)
    rows = []
    for line in qpath.read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if any(t in bad for t in q["turns"]):
            continue
        scores = {m: sum(v) / len(v) for m in SOURCE_COLUMNS if (v := judged.get((q["question_id"], m)))}
        if len(scores) == len(SOURCE_COLUMNS):
            rows.append(_row(q["turns"][0], scores))
    return rows


CONVERTERS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "mmlu": convert_mmlu, "gsm8k": convert_gsm8k, "mt-bench": convert_mt_bench}


def convert(name: str, source: Path | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, test rows) for one RouteLLM benchmark."""
    if name not in CONVERTERS:
        raise InvalidRequest(f"unknown dataset {name!r}: use one of {', '.join(CONVERTERS)}")
    source = Path(source) if source else default_source()
    if not source.is_dir():
        raise InvalidRequest(f"{source}: RouteLLM data folder not found (pass --source)")
    rows = CONVERTERS[name](source)
    return [r for r in rows if not is_test(r["prompt"])], [r for r in rows if is_test(r["prompt"])]
