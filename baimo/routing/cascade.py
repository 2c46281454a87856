"""Cascade helpers: run a model to completion off the wire, and judge how confident its answer is.

Confidence is the geometric-mean probability of the answer's tokens (exp of the mean token
log-probability), or a verifier model's yes/no judgement weighted by its own token probability.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from baimo.backends.base import Backend, Finish, GenerationParams, TextDelta
from baimo.context import Fitted, start_fitted

VERIFIER_PROMPT = ("You are a strict grader. Question:\n{question}\n\nProposed answer:\n{answer}\n\n"
                   "Is the proposed answer correct and complete? Reply with exactly one word: yes or no.")


@dataclass
class Attempt:
    backend: Backend
    fitted: Fitted
    text: str
    finish: Finish
    ttft_ms: float | None = None


async def run_to_end(backend: Backend, params: GenerationParams) -> Attempt:
    """Generate a whole answer (not shown to the client yet)."""
    fitted, events = await start_fitted(backend, params)
    parts: list[str] = []
    finish: Finish | None = None
    async for ev in events:
        if isinstance(ev, TextDelta):
            parts.append(ev.text)
        elif isinstance(ev, Finish):
            finish = ev
    assert finish is not None
    return Attempt(backend, fitted, "".join(parts), finish)


def logprob_confidence(finish: Finish) -> float | None:
    if finish.logprob_sum is None or not finish.logprob_tokens:
        return None
    return math.exp(finish.logprob_sum / finish.logprob_tokens)


async def verifier_confidence(verifier: Backend, question: str, answer: str) -> float:
    """P(the answer is right) as judged by another model."""
    prompt = VERIFIER_PROMPT.format(question=question, answer=answer)
    params = GenerationParams(messages=[{"role": "user", "content": prompt}], max_tokens=3, temperature=0,
                              logprobs=True)
    judged = await run_to_end(verifier, params)
    p = logprob_confidence(judged.finish)
    p = 1.0 if p is None else p
    said = judged.text.strip().lower()
    if said.startswith("yes"):
        return p
    if said.startswith("no"):
        return 1.0 - p
    return 0.0
