"""Long conversations, summarised versus dropped: does the model still know a fact from the first turn, and what
does the summary cost in time?

Each conversation states two facts in its first user turn (a locker code and a pet's name), then runs filler turns
until the whole no longer fits the model's window, then asks for the code. Baimo serves a local GGUF model twice,
with `context.overflow: drop` (the baseline, measured in the same run) and `summarize`; with `summarize` the same
request is sent twice, the second time served from the summary cache. Recall = the code is in the answer.

    .venv/bin/python bench/context_summary.py [--model qwen0.5b|smollm2] [--conversations 6] [--window 2048]
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

import httpx
from _common import BaimoServer, dump_json, ensure_local_model, fmt, local_model_entry, median, print_table

TOPICS = ["tea", "bicycles", "rain", "maps", "bread", "clocks", "rivers", "chess", "kites", "glass", "salt", "owls"]


def conversation(rng: random.Random, pairs: int) -> tuple[list[dict[str, str]], str]:
    code = str(rng.randint(1000, 9999))
    pet = rng.choice(["Biscuit", "Pepper", "Mochi", "Juniper", "Tofu", "Rascal"])
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"Please remember two things: my locker code is {code} and my cat is "
                                        f"called {pet}."},
            {"role": "assistant", "content": f"Noted: your locker code is {code} and your cat is called {pet}."}]
    for i in range(pairs):
        topic = TOPICS[i % len(TOPICS)]
        msgs += [{"role": "user", "content": f"Tell me a few plain facts about {topic}, in general terms. " * 3},
                 {"role": "assistant", "content": f"{topic.capitalize()} has a long history and many everyday "
                                                  f"uses, and people enjoy learning about {topic}. " * 4}]
    msgs.append({"role": "user", "content": "What is my locker code? Answer with the number only."})
    return msgs, code


def ask(client: httpx.Client, model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    started = time.perf_counter()
    r = client.post("/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": 16,
                                                  "temperature": 0})
    r.raise_for_status()
    body = r.json()
    return {"seconds": time.perf_counter() - started, "text": body["choices"][0]["message"]["content"] or "",
            "prompt_tokens": body["usage"]["prompt_tokens"], "context": r.headers.get("x-baimo-context", "")}


def run_mode(mode: str, model: dict[str, Any], convs: list[tuple[list[dict[str, str]], str]]) -> dict[str, Any]:
    config = {"default_model": model["id"], "models": [model], "context": {"overflow": mode}}
    out: dict[str, Any] = {"mode": mode, "first": [], "again": []}
    with BaimoServer(config) as server, httpx.Client(base_url=server.url, timeout=600) as client:
        ask(client, model["id"], [{"role": "user", "content": "Hi"}])  # load the model before timing
        for messages, code in convs:
            first = ask(client, model["id"], messages)
            first["recalled"] = code in first["text"]
            out["first"].append(first)
            if mode == "summarize":
                again = ask(client, model["id"], messages)
                again["recalled"] = code in again["text"]
                out["again"].append(again)
            print(f"{mode}: {first['context']!r} -> {first['text'][:40]!r} ({code})", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="qwen0.5b", choices=["qwen0.5b", "smollm2"])
    ap.add_argument("--conversations", type=int, default=6)
    ap.add_argument("--window", type=int, default=2048, help="the model's context_window in the benchmark")
    ap.add_argument("--pairs", type=int, default=14, help="filler question/answer pairs per conversation")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", default=None, help="write results as JSON to this path ('-' for stdout)")
    args = ap.parse_args()
    ensure_local_model(args.model)
    model = {**local_model_entry(args.model), "context_window": args.window}
    rng = random.Random(args.seed)
    convs = [conversation(rng, args.pairs) for _ in range(args.conversations)]
    results = [run_mode("drop", model, convs), run_mode("summarize", model, convs)]
    base = results[0]
    base_s = median([r["seconds"] for r in base["first"]])
    rows = []
    for res in results:
        for label, runs in (("", res["first"]), (" (repeat, cached)", res["again"])):
            if not runs:
                continue
            secs = median([r["seconds"] for r in runs])
            rows.append([res["mode"] + label, f"{sum(r['recalled'] for r in runs)}/{len(runs)}", fmt(secs),
                         fmt(secs / base_s) + "x", fmt(median([r["prompt_tokens"] for r in runs]), 0)])
    print_table(f"Long conversations on {model['id']} (window {args.window}, {args.conversations} conversations, "
                f"{args.pairs} filler pairs)", ["overflow", "code recalled", "p50 s", "vs drop", "p50 prompt tok"],
                rows, notes=["recall: the locker code from the first turn appears in the answer (max_tokens 16)",
                             "summarize: the first request writes the summary with the same model (auto)"])
    dump_json(args.json, {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
