"""A scripted "strong" remote model for evaluation runs: it answers a suite's questions from the suite's gold
answers, right for a fixed share of them.

Used where a run needs a paid frontier model that this offline machine does not have (docs/evaluation.md's
frontier, bench/eval_frontier.py). It is a behaviour of the scripted upstream (tests/support/upstream.py): the
prompt's question is looked up among the suite's items (the item whose question text the last user message
contains), and the answer is GSM8K-style `#### N`. Which items it gets wrong is fixed by a hash of the question
(sha256), so the same run gives the same answers and `accuracy` is met to within one item per hundred.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support.upstream_app import Behaviour, last_user_text, split_tokens


def gold_answer(answer: Any) -> str:
    """The final number of a gold answer: GSM8K's solution text ending in `#### N`, or a number."""
    text = str(answer)
    return text.rsplit("####", 1)[-1].strip().replace(",", "") if "####" in text else text.strip()


@dataclasses.dataclass(frozen=True)
class OracleBehaviour(Behaviour):
    """Answers the item whose question is in the prompt: the gold number for `accuracy` of the items (by hash),
    the gold number plus one for the rest; "I do not know." for a prompt that holds no known question."""

    answers: dict[str, str] = dataclasses.field(default_factory=dict)  # question -> gold number
    accuracy: float = 0.9

    @classmethod
    def from_jsonl(cls, path: Path, accuracy: float = 0.9, limit: int | None = None) -> OracleBehaviour:
        """From a JSONL of {"question", "answer"} items (GSM8K's test.jsonl; a suite header line is skipped)."""
        answers: dict[str, str] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line) if line.strip() else {}
            if "question" in item:
                answers[item["question"]] = gold_answer(item["answer"])
            if limit is not None and len(answers) >= limit:
                break
        return cls("ok", answers=answers, accuracy=accuracy)

    def right(self, question: str) -> bool:
        """Whether the oracle answers this question right (the first `accuracy` share of the hash range)."""
        h = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big")
        return h / 2 ** 64 < self.accuracy

    def answer_tokens(self, body: Mapping[str, Any]) -> list[str]:
        prompt = last_user_text(body.get("messages") or [])
        question = next((q for q in self.answers if q in prompt), None)
        if question is None:
            return split_tokens("I do not know.")
        gold = self.answers[question]
        number = gold if self.right(question) else _plus_one(gold)
        return split_tokens(f"Working it through step by step, the result is {number}.\n#### {number}")


def _plus_one(number: str) -> str:
    try:
        value = float(number) + 1
    except ValueError:
        return number + "1"
    return str(int(value)) if value.is_integer() else str(value)


__all__ = ["OracleBehaviour", "gold_answer"]
