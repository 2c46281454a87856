"""Latency of one learned routing decision (embed one prompt tail + score + decide) on this CPU.

    .venv/bin/python bench/routing_latency.py [--router NAME | --embedder use|e5 --train-on gsm8k|mmlu]
                                              [--n 300] [--tail-chars N]

Uses BAIMO_HOME/routers/NAME (and the embedder it was trained with) if given, else trains a router on
GSM8K's (or MMLU's: 7k prompts of kNN memory) train split first with --embedder (default use). Prompts
are random samples (seed 0) of RouteLLM's MMLU and GSM8K test prompts, half each, embedded fresh (no
cache), after a warm-up; the embedder runs on one thread, as in the server.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import Settings  # noqa: E402
from baimo.routing import learned  # noqa: E402
from baimo.routing.converters import convert  # noqa: E402
from baimo.routing.outcomes import parse_outcome_lines  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def sample(prompts: list[str], n: int) -> list[str]:
    """A fixed random sample (seed 0): the files are ordered by subject, so their heads are not typical."""
    rng = random.Random(0)
    return rng.sample(prompts, min(n, len(prompts)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", help="name of a trained router in BAIMO_HOME/routers")
    ap.add_argument("--embedder", default=learned.DEFAULT_EMBEDDER, choices=["use", "e5"],
                    help="embedder of the router trained here when --router is not given")
    ap.add_argument("--train-on", default="gsm8k", choices=["gsm8k", "mmlu"],
                    help="data of the router trained here when --router is not given")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--tail-chars", type=int, default=None, help="override the router's prompt tail length")
    args = ap.parse_args()
    home = Settings().home
    if args.router:
        router = learned.LearnedRouter.load(home / "routers" / args.router)
    else:
        rows = convert(args.train_on)[0]
        o = parse_outcome_lines([json.dumps(r) for r in rows])
        model_id, tail = learned.embedder_id(args.embedder), learned.default_tail_chars(args.embedder)
        E = learned.embed_prompts(o.prompts, learned.make_embedder(args.embedder), model_id=model_id,
                                  tail_chars=tail, cache_dir=home / "cache" / "embeddings")
        router, _ = learned.train(o.prompts, o.models, o.scores, o.costs, E, model_id=model_id, tail_chars=tail)
    if args.tail_chars is not None:
        router.tail_chars = args.tail_chars
    prompts = sample([r["prompt"] for r in convert("mmlu")[1]], args.n // 2) + \
        sample([r["prompt"] for r in convert("gsm8k")[1]], args.n - args.n // 2)
    for p in prompts[:5]:
        router.choose(p)  # warm-up: load the embedder, fault pages in
    embed_ms, score_ms, total_ms = [], [], []
    for p in prompts:
        t0 = time.perf_counter()
        E = router.embed([p])
        t1 = time.perf_counter()
        P = router.probabilities(E)
        router.choose_index(P, router.predicted_costs([p]))
        t2 = time.perf_counter()
        embed_ms.append((t1 - t0) * 1e3)
        score_ms.append((t2 - t1) * 1e3)
        total_ms.append((t2 - t0) * 1e3)
    t0 = time.perf_counter()
    for p in prompts[:50]:
        router.choose(p)
    choose_ms = (time.perf_counter() - t0) / 50 * 1e3
    lengths = sorted(len(p) for p in prompts)
    print(f"router: {len(router.models)} models, embedder {router.embedder}, kNN memory {len(router.knn_E)} "
          f"prompts, blend {router.hyper.blend}, tail {router.tail_chars} chars; {len(prompts)} prompts of "
          f"{lengths[len(lengths) // 2]} chars at p50, {pct(lengths, 0.99)} at p99")
    print("| step | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|")
    for name, v in (("embed prompt tail", embed_ms), ("score + decide", score_ms), ("total", total_ms)):
        print(f"| {name} | {statistics.median(v):.2f} | {pct(v, 0.99):.2f} | {statistics.fmean(v):.2f} |")
    print(f"| router.choose() (mean of 50) | | | {choose_ms:.2f} |")


if __name__ == "__main__":
    main()
