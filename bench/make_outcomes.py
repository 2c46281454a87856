"""Generate a 5-model GSM8K routing benchmark with real per-prompt costs (Baimo outcome JSONL).

Candidates: three local GGUF models run here (llama-cpp-python, one thread, temperature 0) and two API
models whose per-question correctness and full answers come from RouteLLM's released GSM8K evaluation
(`gsm8k_responses.csv`). Output lines: `{"prompt", "scores": {model: 0|1}, "costs": {model: USD}, "meta"}`.

    .venv/bin/python bench/make_outcomes.py --n 300          # resumable; re-run to continue
    .venv/bin/python bench/make_outcomes.py --n 300 --finalize-only   # rewrite outputs from what is done

Subset: the GSM8K test questions sorted by SHA-256 of the question text (UTF-8), first N. Each finished
question is appended (flushed and fsync'ed) to `gsm8k5.partial.jsonl`, so a kill loses at most the question
in progress. Outputs (in --out): `gsm8k5.jsonl` (all done questions in subset order), `gsm8k5.train.jsonl`
(first 60 % of that order) and `gsm8k5.test.jsonl` (last 40 %). See docs/outcomes.md.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

# --- prices (one table; docs/outcomes.md repeats it) --------------------------------------------------
# API models: USD per million tokens (input, output).
#   gpt-4-1106-preview: OpenAI list price at release (DevDay, Nov 2023): $10 / $30.
#   Mixtral-8x7B-Instruct: $0.60 / $0.60, a typical hosted price (the price commonly quoted for Together AI's
#     serverless Mixtral-8x7B-Instruct-v0.1 in 2024; not re-checked offline). Other hosts list $0.42-0.70 per M
#     (e.g. AWS Bedrock $0.45 in / $0.70 out, Mistral's own API $0.70 / $0.70 for open-mixtral-8x7b).
# Local models: CPU time priced at a 2-vCPU cloud machine for ~$0.10/hour, i.e. $0.05 per vCPU-hour.
#   Generation uses ONE llama thread, so a prompt costs  cpu_seconds x 0.05 / 3600  USD, where cpu_seconds
#   is the process CPU time (user+sys) measured around that prompt's create_chat_completion call.
API_PRICES: dict[str, tuple[float, float]] = {  # model id -> (USD/M input tokens, USD/M output tokens)
    "mixtral-8x7b": (0.60, 0.60),
    "gpt-4": (10.00, 30.00),
}
MACHINE_USD_PER_HOUR = 0.10  # a 2-vCPU cloud VM
MACHINE_VCPUS = 2
LOCAL_USD_PER_CPU_SECOND = MACHINE_USD_PER_HOUR / MACHINE_VCPUS / 3600.0

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # ../shared beside the checkout
sys.path.insert(0, str(REPO / "bench"))
from _common import LOCAL_MODELS as BENCH_MODELS  # noqa: E402
from _common import MODELS_DIR  # noqa: E402  (BAIMO_MODELS_DIR, else BAIMO_HOME/models, as Baimo itself)

CSV_PATH = SHARED / "data/routing/routellm/gsm8k_responses.csv"
GOLD_PATH = SHARED / "data/eval/gsm8k/test.jsonl"
OUT_DIR = REPO / "bench" / "outcomes"

# model id -> GGUF file in MODELS_DIR (run in this order per question): bench/_common's table
LOCAL_MODELS: dict[str, str] = {m["id"]: m["file"] for m in BENCH_MODELS.values()}
API_COLUMNS: dict[str, str] = {  # model id -> CSV column prefix
    "mixtral-8x7b": "mistralai/Mixtral-8x7B-Instruct-v0.1",
    "gpt-4": "gpt-4-1106-preview",
}
MODEL_ORDER = list(LOCAL_MODELS) + list(API_COLUMNS)
TOKENIZER_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"  # counts API tokens (vocab_only)
TRAIN_PATH = SHARED / "data/eval/gsm8k/train.jsonl"
# RouteLLM produced the API answers with an 8-shot prompt (routellm/evals/gsm8k/generate_responses.py): the first
# 8 GSM8K train examples as "Question: ...\nAnswer: <solution>\n\n", then "Question: <q>\nAnswer:", sent as one
# user message (max_tokens 1024, stop "Question", temperature 0). API prompt tokens are counted on that text,
# because that is the prompt those recorded answers (and their correctness) were paid for.
API_FEWSHOT_K = 8

PROMPT_TEMPLATE = (
    "Solve the following math problem. Think step by step, then give the final answer on the last line "
    'in the form "#### <number>".\n\nProblem: {question}'
)
MAX_TOKENS = 320
N_CTX = 2048
N_THREADS = 1
SEED = 0
TRAIN_FRACTION = 0.6

BOXED_RE = re.compile(r"\\boxed\{([^{}]*)\}")
NUM_RE = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?|-?\$?\.\d+")


# --- data -------------------------------------------------------------------------------------------


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_number(token: str) -> float | None:
    t = token.replace(",", "").replace("$", "")
    try:
        v = float(t)
    except ValueError:
        return None
    return v if math.isfinite(v) else None  # e.g. a runaway "#### 1000000...0" overflows to inf


def parse_answer(text: str) -> tuple[float | None, str]:
    """The number after the last '####'; else the number in the last \\boxed{}; else the last number."""
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        m = NUM_RE.search(tail)
        if m and (v := to_number(m.group())) is not None:
            return v, "####"
    boxes = BOXED_RE.findall(text)
    if boxes:
        nums = [to_number(m.group()) for m in NUM_RE.finditer(boxes[-1])]
        if nums and nums[-1] is not None:
            return nums[-1], "boxed"
    nums = [v for v in (to_number(m.group()) for m in NUM_RE.finditer(text)) if v is not None]
    if nums:
        return nums[-1], "last-number"
    return None, "none"


def equal(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=0, abs_tol=1e-6)


def load_questions() -> list[dict[str, Any]]:
    """All 1,319 GSM8K test questions joined with RouteLLM's rows, sorted by SHA-256 of the question."""
    gold: dict[str, float] = {}
    with GOLD_PATH.open(encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            value = to_number(obj["answer"].rsplit("####", 1)[1].strip())
            assert value is not None, obj
            gold[obj["question"]] = value
    rows = []
    with CSV_PATH.open(encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            q = r["prompt"]
            if q not in gold:
                raise SystemExit(f"{CSV_PATH}: prompt not in {GOLD_PATH}: {q[:60]!r}")
            rows.append(
                {
                    "question": q,
                    "gold": gold[q],
                    "sha": sha(q),
                    "api": {
                        m: {"correct": r[col] == "True", "response": r[f"{col}_response"]}
                        for m, col in API_COLUMNS.items()
                    },
                }
            )
    rows.sort(key=lambda x: x["sha"])
    return rows


def api_prompt_prefix() -> str:
    with TRAIN_PATH.open(encoding="utf-8") as f:
        train = [json.loads(next(f)) for _ in range(API_FEWSHOT_K)]
    return "".join(f"Question: {t['question']}\nAnswer: {t['answer']}\n\n" for t in train)


def require_llama_cpp() -> None:
    """This generator measures each local answer's CPU time in-process, with the llama-cpp-python binding, which
    Baimo itself no longer depends on (its local models run in llama-server workers)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        raise SystemExit("bench/make_outcomes.py needs llama-cpp-python in the venv: "
                         ".venv/bin/pip install llama-cpp-python==0.3.36 (compiles for ~10 minutes)") from None


def load_tokenizer():
    """Token counter from the Qwen2.5 GGUF's tokenizer (vocab only): used for the API models' tokens."""
    require_llama_cpp()
    from llama_cpp import Llama

    tok = Llama(model_path=str(MODELS_DIR / TOKENIZER_FILE), vocab_only=True, verbose=False)

    def count(text: str) -> int:
        return len(tok.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return count


def api_outcomes(q: dict[str, Any], count, prefix: str) -> tuple[dict, dict, dict]:
    """Scores, costs and details of the API models for one question, from RouteLLM's recorded answers."""
    p_tok = count(prefix + f"Question: {q['question']}\nAnswer:")
    p_zero = count(PROMPT_TEMPLATE.format(question=q["question"]))
    scores, costs, details = {}, {}, {}
    for m, api in q["api"].items():
        c_tok = count(api["response"])
        pin, pout = API_PRICES[m]
        scores[m] = int(api["correct"])
        costs[m] = (p_tok * pin + c_tok * pout) / 1e6
        details[m] = {
            "prompt_tokens": p_tok,
            "completion_tokens": c_tok,
            "prompt_tokens_zero_shot": p_zero,
            "source": "RouteLLM gsm8k_responses.csv (8-shot)",
            "tokenizer": "qwen2.5 (approx.)",
        }
    return scores, costs, details


def config_fingerprint() -> str:
    cfg = {
        "template": PROMPT_TEMPLATE,
        "max_tokens": MAX_TOKENS,
        "n_ctx": N_CTX,
        "threads": N_THREADS,
        "models": LOCAL_MODELS,
        "api_prices": API_PRICES,
        "local_usd_per_cpu_s": LOCAL_USD_PER_CPU_SECOND,
        "tokenizer": TOKENIZER_FILE,
        "seed": SEED,
    }
    return sha(json.dumps(cfg, sort_keys=True))[:12]


# --- partial file -----------------------------------------------------------------------------------


def read_partial(path: Path, fingerprint: str) -> list[dict[str, Any]]:
    """Complete lines of the partial file; a torn last line (killed mid-write) is dropped and truncated."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows, good_bytes = [], 0
    *complete, _torn = raw.split(b"\n")  # the element after the last newline is empty unless a write was cut
    for chunk in complete:
        if chunk.strip():
            try:
                rows.append(json.loads(chunk))
            except json.JSONDecodeError:
                break
        good_bytes += len(chunk) + 1
    if good_bytes < len(raw):
        print(f"partial file: dropping {len(raw) - good_bytes} bytes of an unfinished line", file=sys.stderr)
        with path.open("r+b") as f:
            f.truncate(good_bytes)
    stale = {r["meta"].get("config") for r in rows} - {fingerprint}
    if stale:
        raise SystemExit(
            f"{path}: written with another configuration ({', '.join(sorted(map(str, stale)))}); "
            f"current is {fingerprint}. Move the file away to start over."
        )
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    tmp.replace(path)


def finalize(out: Path, subset: list[dict[str, Any]], done: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Write all/train/test files from the done questions, in subset (SHA-256) order."""
    rows = [done[q["question"]] for q in subset if q["question"] in done]
    if rows:  # API columns are derived data: recompute them so that they always follow the current rules
        count, prefix = load_tokenizer(), api_prompt_prefix()
        by_q = {q["question"]: q for q in subset}
        for r in rows:
            sc, co, de = api_outcomes(by_q[r["prompt"]], count, prefix)
            r["scores"].update(sc)
            r["costs"].update(co)
            r["meta"]["models"].update(de)
    k = round(len(rows) * TRAIN_FRACTION)
    write_jsonl(out / "gsm8k5.jsonl", rows)
    write_jsonl(out / "gsm8k5.train.jsonl", rows[:k])
    write_jsonl(out / "gsm8k5.test.jsonl", rows[k:])
    return rows


def summarize(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: per model accuracy, mean cost, tokens, time, truncations, answer parsing; then the oracle."""
    if not rows:
        return "no rows"
    n = len(rows)
    lines = [
        f"{n} questions",
        "",
        "| model | accuracy | mean USD/prompt | total USD | mean prompt tok | mean completion tok | mean CPU s "
        "| mean wall s | hit max_tokens | answer from ####/boxed/last number/none |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in MODEL_ORDER:
        d = [r["meta"]["models"][m] for r in rows]
        acc = sum(r["scores"][m] for r in rows) / n
        total = sum(r["costs"][m] for r in rows)
        ptok = sum(x["prompt_tokens"] for x in d) / n
        ctok = sum(x["completion_tokens"] for x in d) / n
        if "parse" in d[0]:
            cpu = f"{sum(x['cpu_s'] for x in d) / n:.2f}"
            wall = f"{sum(x['wall_s'] for x in d) / n:.2f}"
            trunc = str(sum(x["finish_reason"] == "length" for x in d))
            how = "/".join(str(sum(x["parse"] == h for x in d)) for h in ("####", "boxed", "last-number", "none"))
        else:
            cpu = wall = trunc = how = "-"
        lines.append(
            f"| {m} | {acc:.3f} | {total / n:.2e} | {total:.4f} | {ptok:.0f} | {ctok:.0f} | {cpu} | {wall} "
            f"| {trunc} | {how} |"
        )
    cheapest = [
        min((r["costs"][m], m) for m in MODEL_ORDER if r["scores"][m]) if any(r["scores"].values()) else None
        for r in rows
    ]
    acc = sum(o is not None for o in cheapest) / n
    # when no model is right the oracle pays for the cheapest model (its answer is wrong anyway)
    total = sum(o[0] if o else min(r["costs"].values()) for o, r in zip(cheapest, rows, strict=True))
    lines.append(f"| oracle (cheapest correct model) | {acc:.3f} | {total / n:.2e} | {total:.4f} | | | | | | |")
    picks = {m: sum(1 for o in cheapest if o and o[1] == m) for m in MODEL_ORDER}
    lines += [
        "",
        "oracle picks: "
        + ", ".join(f"{m} {k}" for m, k in picks.items())
        + f", none correct {sum(o is None for o in cheapest)}",
    ]
    return "\n".join(lines)


# --- generation -------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="number of questions (first N by SHA-256), default 300")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help=f"output folder (default {OUT_DIR})")
    ap.add_argument("--finalize-only", action="store_true", help="only write the outputs from the partial file")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "gsm8k5.partial.jsonl"
    fingerprint = config_fingerprint()
    questions = load_questions()
    subset = questions[: args.n]
    done = {r["prompt"]: r for r in read_partial(partial, fingerprint)}
    todo = [q for q in subset if q["question"] not in done]
    print(
        f"{len(subset)} questions in the subset, {len(subset) - len(todo)} done, {len(todo)} to run "
        f"(config {fingerprint})",
        file=sys.stderr,
    )

    if todo and not args.finalize_only:
        run(todo, partial, done, fingerprint, len(subset))

    rows = finalize(args.out, subset, done)
    print(summarize(rows), file=sys.stderr)


def run(
    todo: list[dict[str, Any]], partial: Path, done: dict[str, dict[str, Any]], fingerprint: str, total: int
) -> None:
    require_llama_cpp()
    from llama_cpp import Llama

    count, prefix = load_tokenizer(), api_prompt_prefix()

    llms = {}
    for m, fname in LOCAL_MODELS.items():
        path = MODELS_DIR / fname
        if not path.exists():
            raise SystemExit(f"missing model file {path}")
        llms[m] = Llama(
            model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS, n_threads_batch=N_THREADS, seed=SEED, verbose=False
        )

    start = time.monotonic()
    already = total - len(todo)
    for i, q in enumerate(todo, start=1):
        user = PROMPT_TEMPLATE.format(question=q["question"])
        scores: dict[str, int] = {}
        costs: dict[str, float] = {}
        details: dict[str, dict[str, Any]] = {}
        for m, llm in llms.items():  # one model at a time
            llm.reset()  # no KV-cache reuse across prompts/models: each prompt pays its full prefill
            c0, w0 = time.process_time(), time.perf_counter()
            out = llm.create_chat_completion(
                messages=[{"role": "user", "content": user}], temperature=0.0, max_tokens=MAX_TOKENS, seed=SEED
            )
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            text = out["choices"][0]["message"]["content"] or ""
            parsed, how = parse_answer(text)
            ok = int(equal(parsed, q["gold"]))
            scores[m] = ok
            costs[m] = cpu * LOCAL_USD_PER_CPU_SECOND
            details[m] = {
                "prompt_tokens": out["usage"]["prompt_tokens"],
                "completion_tokens": out["usage"]["completion_tokens"],
                "cpu_s": round(cpu, 3),
                "wall_s": round(wall, 3),
                "finish_reason": out["choices"][0].get("finish_reason"),
                "parsed": parsed,
                "parse": how,
                "response": text,
            }
        sc, co, de = api_outcomes(q, count, prefix)
        scores.update(sc)
        costs.update(co)
        details.update(de)
        row = {
            "prompt": q["question"],
            "scores": scores,
            "costs": costs,
            "meta": {
                "dataset": "gsm8k-test",
                "sha256": q["sha"],
                "gold": q["gold"],
                "config": fingerprint,
                "models": details,
            },
        }
        append_row(partial, row)
        done[q["question"]] = row
        n_done = already + i
        elapsed = time.monotonic() - start
        eta = elapsed / i * (len(todo) - i)
        local = " ".join(f"{m.split('/')[1]}={scores[m]}({details[m]['wall_s']:.0f}s)" for m in LOCAL_MODELS)
        print(
            f"[{n_done}/{total}] {elapsed / 60:5.1f} min, ETA {eta / 60:5.1f} min  {local}", file=sys.stderr, flush=True
        )
        if n_done % 10 == 0:
            rows = list(done.values())
            accs = " ".join(f"{m}={sum(r['scores'][m] for r in rows) / len(rows):.2f}" for m in MODEL_ORDER)
            print(f"  accuracy so far: {accs}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
