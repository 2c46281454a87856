"""Prompts of an evaluation: the question in the suite's format, few-shot examples as earlier turns, an optional
chain-of-thought instruction, and the judge prompts (MT-Bench's single-answer and pairwise templates, Zheng et al.
2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", whose verdict formats "[[rating]]" and
"[[A]]"/"[[B]]"/"[[C]]" extract.py reads).
"""

from __future__ import annotations

import json
import re
from typing import Any

from baimo.evaluation.suites import Suite

__all__ = ["answer_messages", "faithfulness_messages", "judge_messages", "multi_turn_judge_messages",
           "pairwise_messages"]

_CJK = re.compile(r"[\u3400-\u9fff]")


def _zh(text: str) -> bool:
    return bool(_CJK.search(text))


def _question(suite: Suite, item: dict[str, Any]) -> str:
    q = str(item["question"])
    if suite.kind == "multiple_choice":
        q += "\n" + "\n".join(f"{k}. {v}" for k, v in item["choices"].items())
    if suite.kind == "json_schema":
        q += "\nThe answer must be JSON valid against this JSON Schema:\n" + json.dumps(item["schema"],
                                                                                     ensure_ascii=False)
    return q


def _instruction(suite: Suite, zh: bool, cot: bool) -> str:
    """What to answer and how the answer is marked (so extraction finds it)."""
    if suite.kind == "multiple_choice":
        if cot:
            return "请逐步思考，最后一行写“答案：X”（X 为选项字母）。" if zh else \
                "Think step by step, then end with a line 'Answer: X' where X is the option letter."
        return "请只回答选项字母。" if zh else "Answer with the option letter only."
    if suite.kind == "numeric":
        if cot:
            return "请逐步思考，最后一行写“#### 数字”。" if zh else \
                "Think step by step, then give the final answer as a line '#### N'."
        return "请直接给出最终数字答案，格式为“#### 数字”。" if zh else "Give only the final answer as '#### N'."
    if suite.kind == "exact":
        return ("请逐步思考，最后一行写“答案：……”。" if zh else "Think step by step, then end with 'Answer: ...'.") \
            if cot else ("请只给出答案。" if zh else "Give only the answer.")
    if suite.kind == "json_schema":
        return "只输出 JSON，不要其他文字。" if zh else "Output only the JSON, nothing else."
    return ""


def _shot_answer(suite: Suite, shot: dict[str, Any], cot: bool) -> str:
    if suite.kind == "multiple_choice":
        return f"答案：{shot['answer']}" if cot else str(shot["answer"])
    if suite.kind == "numeric":
        solution = shot.get("solution")
        if cot and solution:
            return re.sub(r"<<[^>]*>>", "", str(solution))  # GSM8K's calculator annotations
        return f"#### {shot['answer']}"
    if suite.kind == "json_schema" and "answer" in shot:
        return json.dumps(shot["answer"], ensure_ascii=False)
    return str(shot.get("answer", ""))


def answer_messages(suite: Suite, item: dict[str, Any], *, few_shot: int = 0, cot: bool = False,
                    system: str | None = None) -> list[dict[str, str]]:
    """The chat messages asking `item`: an optional system prompt, `few_shot` solved examples (of the item's
    `group` when the suite's examples have groups, e.g. the same CMMLU subject) as user/assistant turns, then the
    question with the answer-format instruction (Chinese when the question is). A `verbatim` suite (header
    `"verbatim": true`: prompts replayed from real traffic or a distillation task, which state their own format)
    sends each question exactly as written, with no instruction and no schema added."""
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    shots = suite.few_shot
    if item.get("group") is not None:
        shots = [s for s in shots if s.get("group") == item["group"]] or shots
    for shot in shots[:max(0, few_shot)]:
        zh = _zh(str(shot["question"]))
        messages.append({"role": "user", "content": f"{_question(suite, shot)}\n\n{_instruction(suite, zh, cot)}"
                         .strip()})
        messages.append({"role": "assistant", "content": _shot_answer(suite, shot, cot)})
    if suite.verbatim:  # the prompt carries its own instruction, as in the traffic the suite stands for
        messages.append({"role": "user", "content": str(item["question"])})
        return messages
    zh = _zh(str(item["question"]))
    messages.append({"role": "user", "content": f"{_question(suite, item)}\n\n{_instruction(suite, zh, cot)}".strip()})
    return messages


_SINGLE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response.{extra} Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    "you must rate the response on a scale of 1 to 10 by strictly following this format: \"[[rating]]\", for "
    "example: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n{reference}[The Start of Assistant's Answer]\n{answer}\n"
    "[The End of Assistant's Answer]")

_PAIR = (
    "[System]\nPlease act as an impartial judge and evaluate the quality of the responses provided by two AI "
    "assistants to the user question displayed below. You should choose the assistant that follows the user's "
    "instructions and answers the user's question better.{extra} Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of the "
    "responses to influence your evaluation. Be as objective as possible. After providing your explanation, output "
    "your final verdict by strictly following this format: \"[[A]]\" if assistant A is better, \"[[B]]\" if "
    "assistant B is better, and \"[[C]]\" for a tie.\n\n[User Question]\n{question}\n\n[The Start of Assistant A's "
    "Answer]\n{a}\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{b}\n"
    "[The End of Assistant B's Answer]")

_FAITHFUL = (
    "[Instruction]\nPlease act as an impartial judge of faithfulness. Below are numbered passages from a knowledge "
    "base and an answer written from them. Rate how well every claim of the answer is supported by the passages "
    "(10: fully supported; 1: contradicted or invented), and whether it answers the question. Begin with a short "
    "explanation, then rate strictly in this format: \"Rating: [[5]]\".\n\n[Question]\n{question}\n\n[Passages]\n"
    "{passages}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]")


def judge_messages(item: dict[str, Any], answer: str) -> list[dict[str, str]]:
    """MT-Bench's single-answer grading prompt, with the item's `rubric` and `reference` answer when it has them."""
    extra = f" Use this rubric: {item['rubric']}" if item.get("rubric") else ""
    reference = (f"[The Start of Reference Answer]\n{item['reference']}\n[The End of Reference Answer]\n\n"
                 if item.get("reference") else "")
    return [{"role": "user", "content": _SINGLE.format(extra=extra, question=item["question"], reference=reference,
                                                       answer=answer)}]


_MULTI = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to the "
    "user question displayed below. Your evaluation should consider factors such as the helpfulness, relevance, "
    "accuracy, depth, creativity, and level of detail of the response.{extra} You evaluation should focus on the "
    "assistant's answer to the last user question. Begin your evaluation by providing a short explanation. Be as "
    "objective as possible. After providing your explanation, you must rate the response on a scale of 1 to 10 by "
    "strictly following this format: \"[[rating]]\", for example: \"Rating: [[5]]\".\n\n"
    "<|The Start of Assistant A's Conversation with User|>\n\n{conversation}\n\n"
    "<|The End of Assistant A's Conversation with User|>")


def multi_turn_judge_messages(item: dict[str, Any], dialogue: list[tuple[str, str]]) -> list[dict[str, str]]:
    """MT-Bench's multi-turn grading prompt ("single-v1-multi-turn"): the whole conversation, rated on its last
    answer. `dialogue` is [(question, answer), ...] in order."""
    extra = f" Use this rubric: {item['rubric']}" if item.get("rubric") else ""
    conversation = "\n\n".join(f"### User:\n{q}\n\n### Assistant A:\n{a}" for q, a in dialogue)
    return [{"role": "user", "content": _MULTI.format(extra=extra, conversation=conversation)}]


def pairwise_messages(item: dict[str, Any], a: str, b: str) -> list[dict[str, str]]:
    """MT-Bench's pairwise prompt: answer `a` shown as assistant A, `b` as assistant B."""
    extra = f" Use this rubric: {item['rubric']}" if item.get("rubric") else ""
    return [{"role": "user", "content": _PAIR.format(extra=extra, question=item["question"], a=a, b=b)}]


def faithfulness_messages(item: dict[str, Any], passages: list[str], answer: str) -> list[dict[str, str]]:
    """A 1-10 faithfulness rating of a knowledge-base answer against the passages it was given (RAG evaluation's
    'faithfulness' / groundedness, judged in MT-Bench's rating format)."""
    numbered = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, 1)) or "(none)"
    return [{"role": "user", "content": _FAITHFUL.format(question=item["question"], passages=numbered,
                                                         answer=answer)}]
