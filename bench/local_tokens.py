"""Tokens/s of a local GGUF model: raw llama-cpp-python versus the same model streamed through Baimo.

Both sides use the same file, thread count, prompt, max_tokens and temperature 0 (greedy, so both
should produce the same text). Raw: `Llama.create_chat_completion(stream=True)` in this process.
Baimo: `baimo serve` with the model configured by path, streamed over HTTP with
`stream_options.include_usage` (completion tokens from the server's usage chunk). Runs alternate
raw/Baimo after one warm-up each (the warm-up loads the model in Baimo); the median is reported.

    .venv/bin/python bench/local_tokens.py                       # smollm2, 2 threads, 3 runs
    .venv/bin/python bench/local_tokens.py --model qwen0.5b --runs 5 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    LOCAL_MODELS,
    MODELS_DIR,
    BaimoServer,
    baimo_available,
    dump_json,
    llama_cpp_available,
    local_model_entry,
    median,
    print_table,
)

GOAL_RATIO = 0.95
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


@dataclass
class Run:
    side: str
    completion_tokens: int
    total_s: float  # request start -> last token
    ttft_s: float | None  # request start -> first content
    decode_s: float | None  # first content -> last content
    finish: str | None
    text: str

    @property
    def tok_s(self) -> float:
        return self.completion_tokens / self.total_s if self.total_s > 0 else float("nan")

    @property
    def decode_tok_s(self) -> float:
        if not self.decode_s or self.completion_tokens < 2:
            return float("nan")
        return (self.completion_tokens - 1) / self.decode_s


def run_raw(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> Run:
    t0 = time.perf_counter()
    first = last = None
    parts: list[str] = []
    finish = None
    for chunk in llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True):
        choice = chunk["choices"][0]
        content = (choice.get("delta") or {}).get("content")
        if content:
            last = time.perf_counter()
            first = first or last
            parts.append(content)
        finish = choice.get("finish_reason") or finish
    end = last or time.perf_counter()
    text = "".join(parts)
    # Count completion tokens the way Baimo does: tokenize the produced text.
    n = len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0
    return Run("raw", n, end - t0, (first - t0) if first else None, (last - first) if first else None, finish, text)


def run_baimo(client: httpx.Client, url: str, model_id: str, messages: list[dict[str, str]], max_tokens: int) -> Run:
    body = {
        "model": model_id,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = None
    parts: list[str] = []
    finish = None
    usage: dict[str, Any] | None = None
    chunks = 0
    with client.stream("POST", url, json=body) as r:
        if r.status_code != 200:
            raise RuntimeError(f"Baimo answered HTTP {r.status_code}: {r.read()[:500]!r}")
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            chunk = json.loads(payload)
            if "error" in chunk:
                raise RuntimeError(f"Baimo stream error: {payload[:500]}")
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    last = time.perf_counter()
                    first = first or last
                    parts.append(content)
                    chunks += 1
                finish = choice.get("finish_reason") or finish
    end = last or time.perf_counter()
    n = int((usage or {}).get("completion_tokens") or chunks)
    return Run(
        "baimo", n, end - t0, (first - t0) if first else None, (last - first) if first else None, finish, "".join(parts)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(LOCAL_MODELS), default="smollm2")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--runs", type=int, default=3, help="measured runs per side (median reported)")
    p.add_argument("--prompt", default=PROMPT)
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON ('-' = stdout)")
    p.add_argument("--keep-home", action="store_true")
    args = p.parse_args()

    for reason in (llama_cpp_available(), baimo_available()):
        if reason:
            raise SystemExit(f"cannot run: {reason}")
    spec = LOCAL_MODELS[args.model]
    path = MODELS_DIR / spec["file"]
    if not path.exists():
        raise SystemExit(f"model file missing: {path}")
    messages = [{"role": "user", "content": args.prompt}]

    from llama_cpp import Llama

    print(f"model {path.name}, threads {args.threads}, max_tokens {args.max_tokens}, runs {args.runs}", flush=True)
    t = time.perf_counter()
    llm = Llama(
        model_path=str(path),
        n_ctx=spec["context_window"],
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    print(f"raw model loaded in {time.perf_counter() - t:.2f}s", flush=True)

    entry = local_model_entry(args.model, threads=args.threads)
    config = {"default_model": entry["id"], "models": [entry]}
    env = {"BAIMO_LLAMA_THREADS": str(args.threads)}
    runs: list[Run] = []
    with BaimoServer(config, env=env, keep_home=args.keep_home, extra_args=["--log-level", "warning"]) as server:
        url = server.url + "/v1/chat/completions"
        with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
            run_raw(llm, messages, args.max_tokens)  # warm-up
            t = time.perf_counter()
            run_baimo(client, url, entry["id"], messages, args.max_tokens)  # warm-up, loads the model
            print(f"Baimo warm-up (includes model load) {time.perf_counter() - t:.2f}s", flush=True)
            for i in range(args.runs):
                order = ("raw", "baimo") if i % 2 == 0 else ("baimo", "raw")
                for side in order:
                    if side == "raw":
                        r = run_raw(llm, messages, args.max_tokens)
                    else:
                        r = run_baimo(client, url, entry["id"], messages, args.max_tokens)
                    runs.append(r)
                    print(
                        f"  run {i + 1} {side:<5} {r.completion_tokens} tokens in {r.total_s:.2f}s "
                        f"= {r.tok_s:.1f} tok/s (decode {r.decode_tok_s:.1f})",
                        flush=True,
                    )
                    gc.collect()
    del llm

    sides: dict[str, dict[str, Any]] = {}
    for side in ("raw", "baimo"):
        rs = [r for r in runs if r.side == side]
        sides[side] = {
            "tok_s": median([r.tok_s for r in rs]),
            "decode_tok_s": median([r.decode_tok_s for r in rs]),
            "ttft_ms": median([r.ttft_s * 1000 for r in rs if r.ttft_s is not None]),
            "completion_tokens": median([r.completion_tokens for r in rs]),
            "finish": sorted({str(r.finish) for r in rs}),
        }
    ratio = sides["baimo"]["tok_s"] / sides["raw"]["tok_s"]
    decode_ratio = sides["baimo"]["decode_tok_s"] / sides["raw"]["decode_tok_s"]
    same_text = {r.text for r in runs if r.side == "raw"} == {r.text for r in runs if r.side == "baimo"}
    rows = [
        [
            side,
            sides[side]["tok_s"],
            sides[side]["decode_tok_s"],
            sides[side]["ttft_ms"],
            f"{sides[side]['completion_tokens']:g}",
            "/".join(sides[side]["finish"]),
        ]
        for side in ("raw", "baimo")
    ]
    rows.append(["baimo/raw", ratio, decode_ratio, "", "", "goal met" if ratio >= GOAL_RATIO else "GOAL MISSED"])
    print()
    print_table(
        f"{path.name}: {args.threads} threads, max_tokens {args.max_tokens}, temperature 0, "
        f"median of {args.runs} runs - goal: baimo/raw >= {GOAL_RATIO}",
        ["path", "tok/s (e2e)", "tok/s (decode)", "ttft ms", "tokens", "finish"],
        rows,
        notes=[
            "tok/s (e2e) = completion tokens / (request start -> last token); decode = (tokens-1) / (first -> last).",
            f"same greedy output on both sides: {'yes' if same_text else 'NO'}",
        ],
    )
    dump_json(
        args.json,
        {
            "model": path.name,
            "threads": args.threads,
            "max_tokens": args.max_tokens,
            "runs": [{**asdict(r), "tok_s": r.tok_s, "decode_tok_s": r.decode_tok_s} for r in runs],
            "summary": sides,
            "ratio": ratio,
            "decode_ratio": decode_ratio,
            "same_text": same_text,
        },
    )


if __name__ == "__main__":
    main()
