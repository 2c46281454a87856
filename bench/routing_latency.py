"""Latency of one learned routing decision (embed one prompt tail + score + decide) on this CPU.

    .venv/bin/python bench/routing_latency.py [--router NAME | --embedder use|e5 --train-on gsm8k|mmlu]
                                              [--n 300] [--tail-chars N]
    .venv/bin/python bench/routing_latency.py --candidates 10 100 1000 [--n 300] [--warm 400]   # many candidates

--candidates: one decision among N models on RouterBench prompts (../shared/data/routing/routerbench, long
few-shot prompts: the worst case for embedding). First the prompt embedding alone, the package's own pass
against the USE query path (baimo/use_fast.py) prompt by prompt, with the query cache empty and then warmed on
--warm other prompts. Then the real router trained on RouterBench's 11 models, and synthetic routers of N
models over the same 2,205-prompt kNN memory (random outcomes, costs and logistic weights: timing only), all
with the default hyper-parameters' shape (blend of logistic regression and kNN, distance-weighted, kNN costs),
so every step of a real decision runs. Every timed set is prompts not embedded before in the run.

Uses BAIMO_HOME/routers/NAME (and the embedder it was trained with) if given, else trains a router on
GSM8K's (or MMLU's: 7k prompts of kNN memory) train split first with --embedder (default use). Prompts
are random samples (seed 0) of RouteLLM's MMLU and GSM8K test prompts, half each, embedded fresh (no
cache), after a warm-up; the embedder runs on one thread, as in the server.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.blas_threads import limit_blas_threads  # noqa: E402
from baimo.config import Settings  # noqa: E402
from baimo.routing import learned  # noqa: E402
from baimo.routing.converters import convert  # noqa: E402
from baimo.routing.outcomes import load_outcomes, parse_outcome_lines  # noqa: E402


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def sample(prompts: list[str], n: int) -> list[str]:
    """A fixed random sample (seed 0): the files are ordered by subject, so their heads are not typical."""
    rng = random.Random(0)
    return rng.sample(prompts, min(n, len(prompts)))


ROUTERBENCH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "routing" / "routerbench" / "train.jsonl"


def synthetic(real: learned.LearnedRouter, m: int, seed: int = 0) -> learned.LearnedRouter:
    """A router of m models over `real`'s kNN memory and input width: random outcomes, costs and weights."""
    rng = np.random.default_rng(seed)
    n, width = len(real.knn_E), len(real.mu)
    return dataclasses.replace(
        real, models=[f"model-{j}" for j in range(m)], W=rng.normal(0, 0.05, (m, width + 1)),
        knn_Y=(rng.random((n, m)) < 0.6).astype(np.float64), knn_C=rng.lognormal(-8, 1, (n, m)),
        cost_a=rng.lognormal(-8, 1, m), cost_b=np.zeros(m),
        hyper=learned.Hyper(l2=30, k=200, blend=0.25, tau=0.1, cost_k=learned.COST_K))


class PackagePath:
    """The embedder with queries through the package's own pass (`is_query=False`): the baseline of the query
    path (baimo.use_fast) measured in the same run."""

    def __init__(self, embedder: object) -> None:
        self.embedder = embedder
        self.config = getattr(embedder, "config", None)

    def embed(self, texts: list[str], *, is_query: bool = False) -> np.ndarray:
        return self.embedder.embed(texts)


def time_decisions(router: learned.LearnedRouter, prompts: list[str]) -> dict[str, list[float]]:
    """ms per prompt of: embedding the tail (fresh, no disk cache), scoring (P and costs) + deciding, and both."""
    for p in prompts[:5]:
        router.choose(p)  # warm-up: load the embedder, fault pages in
    out: dict[str, list[float]] = {"embed prompt tail": [], "score + decide": [], "total": []}
    for p in prompts:
        t0 = time.perf_counter()
        X = router.embed([p])
        t1 = time.perf_counter()
        router.choose_index(router.probabilities(X), router.predicted_costs([p], X))
        t2 = time.perf_counter()
        out["embed prompt tail"].append((t1 - t0) * 1e3)
        out["score + decide"].append((t2 - t1) * 1e3)
        out["total"].append((t2 - t0) * 1e3)
    return out


def p50_p99(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} / {pct(values, 0.99):.2f}"


def query_cache(embedder: object) -> object | None:
    """The USE query path's piece cache (baimo.use_fast.PieceCache), if this embedder has one."""
    queries = getattr(embedder, "_queries", None)
    return getattr(queries, "cache", None)


def many_candidates(counts: list[int], n: int, warm: int) -> None:
    o = load_outcomes(ROUTERBENCH)
    home = Settings().home
    kind = learned.DEFAULT_EMBEDDER
    model_id, tail = learned.embedder_id(kind), learned.default_tail_chars(kind)
    E = learned.embed_prompts(o.prompts, PackagePath(learned.make_embedder(kind)), model_id=model_id,
                              tail_chars=tail, cache_dir=home / "cache" / "embeddings")
    embedder = learned.make_embedder(kind)  # its query cache sees only this run's warm-up and timed prompts
    real, _ = learned.train(o.prompts, o.models, o.scores, o.costs, E, model_id=model_id, tail_chars=tail)
    real.embedder_obj = embedder
    routers = [("11 (RouterBench, real)", real)] + [(f"{m} (synthetic)", synthetic(real, m)) for m in counts]
    # disjoint prompt sets, so no timed prompt was embedded before in this run: the cold pass, the interleaved
    # comparison, one set per router; what is left warms the query cache first (a server's has seen its earlier
    # prompts)
    shuffled = sample(o.prompts, len(o.prompts))
    sets = [shuffled[i * n:(i + 1) * n] for i in range(2 + len(routers))]
    rest = shuffled[(2 + len(routers)) * n:][:warm]
    if any(len(x) < n for x in sets):
        raise SystemExit(f"--n {n}: RouterBench has {len(o.prompts)} prompts, {(2 + len(routers)) * n} needed")
    lengths = sorted(len(p) for p in sets[1])
    print(f"RouterBench prompts: {n} per set of {lengths[len(lengths) // 2]} chars at p50, {pct(lengths, 0.99)} "
          f"at p99 (tail {tail} embedded); kNN memory {len(real.knn_E)} prompts; real router hyper {real.hyper}")
    with open("/proc/loadavg") as f:
        print(f"load average at start: {' '.join(f.read().split()[:3])}")
    package = PackagePath(embedder)
    embedder.embed(["warm up"], is_query=True)
    cache = query_cache(embedder)

    def interleaved(prompts: list[str], label: str) -> dict[str, list[float]]:
        """The package's pass and the query path on the same prompts, alternating (same load)."""
        out: dict[str, list[float]] = {"package": [], label: []}
        for p in prompts:
            text = learned.prompt_tail(p, tail)
            for name, e in (("package", package), (label, embedder)):
                t0 = time.perf_counter()
                e.embed([text], is_query=True)
                out[name].append((time.perf_counter() - t0) * 1e3)
        return out

    def hit_rate(before: tuple[int, int]) -> str:
        if cache is None:
            return "-"
        h, m = cache.hits - before[0], cache.misses - before[1]
        return f"{h / max(1, h + m):.0%}"

    def counters() -> tuple[int, int]:
        return (cache.hits, cache.misses) if cache is not None else (0, 0)

    before = counters()
    runs = [(interleaved(sets[0], "query path, empty cache"), hit_rate(before))]
    for p in rest:
        embedder.embed([learned.prompt_tail(p, tail)], is_query=True)
    before = counters()
    runs.append((interleaved(sets[1], f"query path, cache warmed on {len(rest) + n} other prompts"),
                 hit_rate(before)))
    print("\n| prompt embedding (the two alternate prompt by prompt) | p50 / p99 ms | p50 vs package | pieces cached |")
    print("|---|---|---|---|")
    for times, rate in runs:
        base = statistics.median(times["package"])
        for label, v in times.items():
            print(f"| {label} | {p50_p99(v)} | ×{statistics.median(v) / base:.2f} | "
                  f"{'' if label == 'package' else rate} |")

    print("\n| candidates | embed p50 / p99 ms | score + decide p50 / p99 ms | total p50 / p99 ms | pieces cached |")
    print("|---|---|---|---|---|")
    base = None
    for (label, router), prompts in zip(routers, sets[2:], strict=True):
        before = counters()
        t = time_decisions(router, prompts)
        base = base or statistics.median(t["score + decide"])
        cells = [p50_p99(v) for v in t.values()]
        ratio = statistics.median(t["score + decide"]) / base
        print(f"| {label} | {cells[0]} | {cells[1]} (×{ratio:.1f} of 11) | {cells[2]} | {hit_rate(before)} |",
              flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {' '.join(f.read().split()[:3])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router", help="name of a trained router in BAIMO_HOME/routers")
    ap.add_argument("--embedder", default=learned.DEFAULT_EMBEDDER, choices=["use", "e5"],
                    help="embedder of the router trained here when --router is not given")
    ap.add_argument("--train-on", default="gsm8k", choices=["gsm8k", "mmlu"],
                    help="data of the router trained here when --router is not given")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--tail-chars", type=int, default=None, help="override the router's prompt tail length")
    ap.add_argument("--warm", type=int, default=400, help="with --candidates: other RouterBench prompts the USE "
                    "query cache sees before the timed runs (a server's has seen its earlier prompts)")
    ap.add_argument("--candidates", type=int, nargs="+", help="time one decision among this many models "
                    "(synthetic, after the real 11-model RouterBench router)")
    ap.add_argument("--blas-threads", type=int, default=1, help="cap NumPy's BLAS threads as the server does "
                    "(baimo/blas_threads.py; default 1, the server's default)")
    args = ap.parse_args()
    print(f"BLAS threads: {limit_blas_threads(args.blas_threads)}")
    if args.candidates:
        many_candidates(args.candidates, args.n, args.warm)
        return
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
    times = time_decisions(router, prompts)
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
    for name, v in times.items():
        print(f"| {name} | {statistics.median(v):.2f} | {pct(v, 0.99):.2f} | {statistics.fmean(v):.2f} |")
    print(f"| router.choose() (mean of 50) | | | {choose_ms:.2f} |")


if __name__ == "__main__":
    main()
