"""The scripted upstream's ``oracle`` behaviour: a "strong" remote model for evaluation runs, without a model.

It recognises a GSM8K test question or a CMMLU question in the prompt (read from the evaluation data,
``BAIMO_EVAL_DATA`` or ``../shared/data/eval``) and answers it right for a fixed share of the questions, chosen by
a hash of the question (so runs are repeatable), wrong otherwise: ``#### N`` (or N + 1) for GSM8K, ``Answer: X``
(or the next letter) for CMMLU. The shares default to published GPT-4 scores: 92.0 % on GSM8K (5-shot, OpenAI's
GPT-4 technical report, arXiv 2303.08774, Table 2) and 70.95 % on CMMLU (five-shot average, Li et al. 2023,
arXiv 2306.09212, Table 1). A question it does not know gets ``I do not know.``
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
from pathlib import Path

ACCURACY = {"gsm8k": 0.92, "cmmlu": 0.7095}


def _data_dir() -> Path:
    env = os.environ.get("BAIMO_EVAL_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data" / "eval"


@functools.cache
def _answers() -> dict[str, tuple[str, str]]:
    """question text -> (dataset, right answer)."""
    out: dict[str, tuple[str, str]] = {}
    data = _data_dir()
    gsm = data / "gsm8k" / "test.jsonl"
    if gsm.exists():
        for line in gsm.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            out[row["question"].strip()] = ("gsm8k", row["answer"].rsplit("####", 1)[1].strip().replace(",", ""))
    for path in sorted((data / "cmmlu").glob("*/*.csv")):
        with path.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                out[row["Question"].strip()] = ("cmmlu", row["Answer"].strip())
    return out


def _right(question: str, share: float) -> bool:
    h = int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < share


def oracle_answer(prompt: str) -> str:
    """The scripted answer to the last user message `prompt` (see the module docstring)."""
    answers = _answers()
    for question, (dataset, answer) in answers.items():
        if question and question in prompt:
            right = _right(question, ACCURACY[dataset])
            if dataset == "gsm8k":
                return f"#### {answer if right else int(float(answer)) + 1}"
            letter = answer if right else "ABCD"[("ABCD".index(answer) + 1) % 4]
            return f"Answer: {letter}"
    return "I do not know."
