"""Grounded answers end to end: right facts, citation faithfulness, declines and instruction echoes, per model,
with the old prompt ("before") and Baimo's grounded pipeline ("after").

    flock /tmp/baimo-heavy.lock .venv/bin/python bench/grounded_answers.py [--models smollm,qwen05,qwen15,strong,hybrid]
        [--variants before,after] [--limit N] [--json out.json]

Corpus and questions: `tests/fixtures/grounded` (six invented news articles in fr, pt, ar, ja, zh, en; 24
questions, each in a language other than its article's; the right fact is a number or a name). A real `baimo serve`
indexes the articles into a knowledge base (USE encoder, hybrid retrieval), then every question goes to every model:

- after: `POST /v1/chat/completions` with `knowledge: {bases, grounded: true}`: retrieval, the prompt, the model,
  and the sentence-by-sentence answer check, exactly as a grounded persona runs;
- before: the same passages (`/api/knowledge/news/search`, same k and relevance threshold) put into the prompt
  Baimo used before (instructions with the example "The pump runs at 40 bar [2].", sources in the system message,
  a reminder after the question), sent to the same model without the check.

Models: the local SmolLM2-135M, Qwen2.5-Coder-0.5B and 1.5B (when their GGUF files are in the model cache;
`baimo models pull`), and `strong`, the scripted upstream's `extract` behaviour (it answers the sentence of the
prompt's passages holding the question's key term, with its number: a model that always understands the
question, so what it gets wrong is retrieval's or the pipeline's). Greedy decoding (temperature 0), 96 tokens.

Measures, per answer (`score`):
- right: one of the question's accepted spellings is in the answer (numbers compared after removing thousands
  separators and spaces, Arabic-Indic and fullwidth digits mapped to ASCII);
- cited / faithful: (sentence, [n]) pairs; a pair is faithful when every number (two or more digits) of the sentence
  is in passage n and passage n is from the question's article or holds half the sentence's character 3-grams;
- declines: the answer says it does not know (Baimo's decline messages, "do not know", "don't know");
- echoes: answer sentences that copy the old or the new prompt's instruction text (4-gram containment >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.backends import catalogue  # noqa: E402
from baimo.config import KnowledgeConfig  # noqa: E402
from baimo.knowledge.answer_stream import split_sentences  # noqa: E402
from baimo.knowledge.citations import AnswerCheck, containment, normalise, numbers, strip_markers  # noqa: E402
from baimo.knowledge.grounding import (  # noqa: E402
    DECLINES,
    allowed_repeats,
    detect_language,
    prompt_instructions,
)
from tests.support.server import BaimoServer  # noqa: E402
from tests.support.upstream import Behaviour, ScriptedUpstream  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "grounded"
KB = "news"
MAX_TOKENS = 96

# The prompt Baimo used before this bench (baimo/knowledge/grounding.py at commit de72d95), kept as the baseline.
OLD_INSTRUCTIONS = ("Answer the user's question using the numbered sources below. After each sentence that uses a "
                    "source, write the source's number in square brackets, for example: The pump runs at 40 bar [2].")
OLD_CITE_REMINDER = "(Answer from the sources above and cite them like [1].)"
OLD_GROUNDED = " Use only these sources: if they do not contain the answer, say that you do not know."

LOCAL = {  # bench name -> (model id, catalogue name, context window)
    "smollm": ("local/smollm2-135m", "smollm2-135m-instruct-q4_1", 2048),
    "qwen05": ("local/qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m", 4096),
    "qwen15": ("local/qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m", 4096),
}
STRONG = ("remote/strong", "strong")


def model_cache() -> Path:
    return Path(os.environ.get("BAIMO_MODELS_DIR") or Path.home() / ".baimo" / "models")


HYBRID = "baimo/auto"  # bench name `hybrid`: the default router over the local models and `strong`


def config_yaml(locals_: list[str], upstream_url: str) -> str:
    lines = ["default_model: remote/strong", "routers:", f"  - {{id: {HYBRID}, strategy: auto, retrain_every: null}}",
             "models:"]
    for name in locals_:
        mid, cat, window = LOCAL[name]
        lines += [f"  - id: {mid}", "    kind: llamacpp", f"    catalogue: {cat}", f"    context_window: {window}",
                  "    threads: 2"]
    lines += [f"  - id: {STRONG[0]}", "    kind: openai", f"    base_url: {upstream_url}",
              f"    upstream_model: {STRONG[1]}", "    price_input: 1.0", "    price_output: 2.0",
              "    strength: 0.9",  # a GPT-4-class model, as a preset would declare it
              "    on_premises: true"]  # the articles name people: privacy routing keeps them off remote models
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ scoring

_SEPARATORS = re.compile(r"(?<=\d)[,.'\u00a0\u202f\u2009](?=\d{3}(?!\d))")


def fact_text(text: str) -> str:
    """Normalised for fact matching: `normalise`, thousands separators out, all spaces out."""
    return re.sub(r"\s+", "", _SEPARATORS.sub("", normalise(text)))


def has_fact(answer: str, spellings: list[str]) -> bool:
    """Is one of the accepted spellings in the answer (not inside a longer number)?"""
    text = fact_text(answer)
    for s in spellings:
        s = fact_text(s)
        for m in re.finditer(re.escape(s), text):
            before = text[m.start() - 1] if m.start() else ""
            after = text[m.end()] if m.end() < len(text) else ""
            if not (s[0].isdigit() and before.isdigit()) and not (s[-1].isdigit() and after.isdigit()):
                return True
    return False


DECLINE_WORDS = ("do not know", "don't know", "not mentioned", "no information", *DECLINES.values())


def is_decline(answer: str) -> bool:
    a = normalise(answer)
    return any(normalise(d)[:12] in a for d in DECLINE_WORDS)


@dataclass
class Score:
    right: int = 0
    cited: int = 0
    faithful: int = 0
    declines: int = 0
    echoes: int = 0
    seconds: float = 0.0
    answers: list[dict[str, Any]] = field(default_factory=list)
    served: dict[str, int] = field(default_factory=dict)  # model that answered -> count (a router's split)


def score(q: dict[str, Any], answer: str, passages: list[dict[str, Any]], old_rules: list[str],
          new_rules: list[str], s: Score) -> dict[str, Any]:
    right = has_fact(answer, q["answers"])
    decline = is_decline(answer)
    echo_check = AnswerCheck([p["text"] for p in passages], old_rules + new_rules,
                             allowed=allowed_repeats(q["question"]))
    sentences, rest = split_sentences(answer)
    echoes, cited, faithful = 0, 0, 0
    for sentence in [*sentences, rest]:
        body, marks = strip_markers(sentence.strip())
        if not body.strip():
            continue
        echoes += echo_check.is_echo(body)
        for n in dict.fromkeys(marks):
            if not 1 <= n <= len(passages):
                cited += 1
                continue
            p = passages[n - 1]
            cited += 1
            faithful += numbers(body) <= numbers(p["text"]) and (p["source"] == q["source"]
                                                                  or containment(body, p["text"]) >= 0.5)
    s.right += right
    s.declines += decline
    s.echoes += echoes > 0
    s.cited += cited
    s.faithful += faithful
    row = {"id": q["id"], "answer": answer, "right": right, "decline": decline, "echo": echoes > 0,
           "cited": cited, "faithful": faithful, "sources": [p["source"] for p in passages]}
    s.answers.append(row)
    return row


# ------------------------------------------------------------------------------------------------ running

def old_messages(question: str, passages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = []
    for i, p in enumerate(passages, start=1):
        where = f"{p['source']}, {p['location']}" if p["location"] else p["source"]
        lines.append(f"[{i}] ({where}) {p['text']}")
    system = OLD_INSTRUCTIONS + OLD_GROUNDED + "\n\nSources:\n" + "\n\n".join(lines)
    return [{"role": "system", "content": system}, {"role": "user", "content": question + "\n\n" + OLD_CITE_REMINDER}]


def ask(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json={"temperature": 0, "max_tokens": MAX_TOKENS, **body})
    if r.status_code != 200:
        raise SystemExit(f"{body['model']}: HTTP {r.status_code}: {r.text[:300]}")
    return r.json()


def run_variant(client: httpx.Client, model: str, variant: str, questions: list[dict[str, Any]],
                upstream: ScriptedUpstream, k: int, min_relevance: float) -> Score:
    s = Score()
    for q in questions:
        upstream.set_behaviour(STRONG[1], Behaviour.extract(q["key"]))
        old_rules = [OLD_INSTRUCTIONS + OLD_GROUNDED, OLD_CITE_REMINDER]
        new_rules = prompt_instructions([], True, q["question"])
        started = time.perf_counter()
        if variant == "after":
            resp = ask(client, {"model": model, "messages": [{"role": "user", "content": q["question"]}],
                                "knowledge": {"bases": [KB], "k": k, "grounded": True}})
            answer = resp["choices"][0]["message"]["content"] or ""
            passages = resp.get("citations") or []
            s.served[resp["model"]] = s.served.get(resp["model"], 0) + 1
        else:
            hits = client.post(f"/api/knowledge/{KB}/search", json={"query": q["question"], "k": k}).json()["data"]
            passages = [h for h in hits if h["similarity"] >= min_relevance]
            if not passages:
                answer = DECLINES.get(detect_language(q["question"]), DECLINES["en"])
            else:
                resp = ask(client, {"model": model, "messages": old_messages(q["question"], passages)})
                answer = resp["choices"][0]["message"]["content"] or ""
        s.seconds += time.perf_counter() - started
        row = score(q, answer, passages, old_rules, new_rules, s)
        print(f"  {model:28} {variant:6} {q['id']:11} {'R' if row['right'] else '-'}"
              f"{'D' if row['decline'] else '-'}{'E' if row['echo'] else '-'} "
              f"{row['faithful']}/{row['cited']}  {answer[:110]!r}", file=sys.stderr, flush=True)
    return s


def ingest(client: httpx.Client) -> None:
    assert client.post("/api/knowledge", json={"name": KB}).status_code == 201
    files = [("files", (p.name, p.read_bytes(), "text/markdown")) for p in sorted(FIXTURES.glob("*.md"))]
    job = client.post(f"/api/knowledge/{KB}/documents", files=files).json()
    for _ in range(1200):
        job = client.get(f"/api/knowledge-jobs/{job['id']}").json()
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done" and not job["report"]["failed"], job


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="smollm,qwen05,qwen15,strong,hybrid")
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions")
    ap.add_argument("--json", type=Path, help="write every answer and score here")
    args = ap.parse_args()
    wanted = args.models.split(",")
    cache = model_cache()
    locals_ = [m for m in wanted if m in LOCAL and catalogue.is_present(cache, LOCAL[m][1])]
    for m in wanted:
        if m in LOCAL and m not in locals_:
            print(f"skipping {m}: {LOCAL[m][1]} is not in {cache} (baimo models pull)", file=sys.stderr)
    questions = json.loads((FIXTURES / "questions.json").read_text(encoding="utf-8"))["questions"]
    questions = questions[:args.limit] if args.limit else questions
    defaults = KnowledgeConfig()
    results: dict[tuple[str, str], Score] = {}
    with ScriptedUpstream({}) as upstream, tempfile.TemporaryDirectory(prefix="baimo-grounded-") as tmp, \
            BaimoServer(Path(tmp), config_yaml(locals_, upstream.base_url),
                        env={"BAIMO_MODELS_DIR": str(cache)}) as server, \
            httpx.Client(base_url=server.url, timeout=600) as client:
        ingest(client)
        models = [LOCAL[m][0] for m in locals_] + ([STRONG[0]] if "strong" in wanted else []) \
            + ([HYBRID] if "hybrid" in wanted else [])
        for model in models:
            for variant in args.variants.split(","):
                results[(model, variant)] = run_variant(client, model, variant, questions, upstream, defaults.top_k,
                                                        defaults.min_relevance)
    n = len(questions)
    print(f"\nGrounded answers: {n} questions (tests/fixtures/grounded), k={defaults.top_k}, "
          f"min_relevance={defaults.min_relevance}, greedy, {MAX_TOKENS} tokens\n")
    print("| model | prompt | right facts | faithful citations | declines | echoed instructions | s/question | "
          "served by |")
    print("|---|---|---|---|---|---|---|---|")
    for (model, variant), s in results.items():
        faith = f"{s.faithful}/{s.cited} ({s.faithful / s.cited:.0%})" if s.cited else "0/0"
        served = ", ".join(f"{m} {c}" for m, c in sorted(s.served.items(), key=lambda kv: -kv[1])) or "–"
        print(f"| {model} | {variant} | {s.right}/{n} | {faith} | {s.declines} | {s.echoes} | {s.seconds / n:.1f} | "
              f"{served} |")
    if args.json:
        args.json.write_text(json.dumps({f"{m} {v}": s.answers for (m, v), s in results.items()}, ensure_ascii=False,
                                        indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
