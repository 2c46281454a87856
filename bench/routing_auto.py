"""How well `baimo/auto` routes with NO training on the data it is judged on: its shipped prior only.

For each outcome set, every model gets its prior ability exactly as the server would give it: the catalogue's
measured ability for the local models, the prior's measured ability for Mixtral and GPT-4 (RouteLLM sets), and for
RouterBench's 11 models (never seen by the prior) an ability from their price alone (the mean cost per answer in the
data, scaled to Mixtral's). The prompt's difficulty comes from the shipped prior. The table gives, per set: APGR on
the cost axis, the cost at 95 % of the best single model's quality (from the λ curve), and the operating point of
the default knob λ = 0.25. Baselines measured in the same run: the best single model, the cheapest, random mix.

    .venv/bin/python bench/routing_auto.py [--routerbench FILE] [--latency-only]

Then the latency of one decision (embedding + deciding) with 3, 11, 100 and 1,000 candidates, each on 300 prompts
of its own (100 GSM8K, 200 MMLU test prompts, fixed random sample), against the package's embedding pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baimo.routing import converters, learned  # noqa: E402
from baimo.routing.auto import DEFAULT_LAM, REFERENCE_PRICES, ability_from_price, shipped_prior  # noqa: E402
from baimo.routing.difficulty import sigmoid  # noqa: E402
from baimo.routing.learned import utility_choice  # noqa: E402
from baimo.routing.metrics import Reference, evaluate, lambda_grid, summarize  # noqa: E402

CATALOGUE = {"local/smollm2-135m": "catalogue:smollm2-135m-instruct-q4_1",
             "local/qwen2.5-coder-0.5b": "catalogue:qwen2.5-coder-0.5b-instruct-q4_k_m",
             "local/qwen2.5-coder-1.5b": "catalogue:qwen2.5-coder-1.5b-instruct-q4_k_m"}


def rows_of(name: str, shared: Path, routerbench: Path) -> list[dict]:
    if name == "gsm8k5 (test)":
        return [json.loads(line) for line in (ROOT / "bench/outcomes/gsm8k5.test.jsonl").open()]
    if name == "routerbench (all)":
        return [json.loads(line) for line in routerbench.open()]
    _, test = converters.convert(name.split()[0], shared / "data/routing/routellm")
    prices = {"mixtral-8x7b": 0.24, "gpt-4": 24.7}
    for r in test:  # RouteLLM cost model: blended price, prompt chars/4 + 256 answer tokens
        r["costs"] = {m: (len(r["prompt"]) / 4 + 256) * p / 1e6 for m, p in prices.items()}
    return test


def abilities_for(models: list[str], C: np.ndarray) -> np.ndarray:
    prior = shipped_prior()
    out = []
    mean_cost = C.mean(0)
    for j, m in enumerate(models):
        key = CATALOGUE.get(m, m)
        if key in prior.abilities:
            out.append(prior.abilities[key])
            continue
        # by price alone, as the server does: this model's mean cost relative to the data's cheapest, taken as a
        # price relative to the cheaper reference model's
        rel = mean_cost[j] / max(mean_cost.min(), 1e-12)
        out.append(ability_from_price(REFERENCE_PRICES["mixtral-8x7b"] * rel, prior))
    return np.array(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--routerbench", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=Path.home() / ".baimo" / "cache" / "embeddings")
    ap.add_argument("--latency-only", action="store_true", help="only time decisions (3 to 1,000 candidates)")
    args = ap.parse_args()
    gsm = [r["prompt"] for r in converters.convert("gsm8k", args.shared / "data/routing/routellm")[1]]
    mmlu = [r["prompt"] for r in converters.convert("mmlu", args.shared / "data/routing/routellm")[1]]
    if args.latency_only:
        latency(gsm, mmlu)
        return
    rb = args.routerbench or args.shared / "data/routing/routerbench/train.jsonl"
    prior = shipped_prior()
    embedder = learned.make_embedder(prior.embedder)
    print("| data (never trained on) | models | APGR (cost axis) | cost cut at 95 % of best | default λ=0.25: "
          "quality / best, cost / best | random mix APGR |")
    print("|---|---|---|---|---|---|")
    for name in ("gsm8k5 (test)", "gsm8k (test)", "mmlu (test)", "routerbench (all)"):
        if name.startswith("routerbench") and not rb.exists():
            continue
        rows = rows_of(name, args.shared, rb)
        models = list(rows[0]["scores"])
        prompts = [r["prompt"] for r in rows]
        Y = np.array([[r["scores"][m] for m in models] for r in rows], dtype=float)
        C = np.array([[r["costs"][m] for m in models] for r in rows], dtype=float)
        E = learned.embed_prompts(prompts, embedder, tail_chars=prior.tail_chars, cache_dir=args.cache)
        b = prior.difficulty(E, prompts)
        theta = abilities_for(models, C)
        P = sigmoid(theta[None, :] - b[:, None])
        # the router sees predicted costs only: the mean cost per model scaled by prompt length, like the server
        C_pred = C.mean(0)[None, :] * np.ones_like(C)
        C_norm = C_pred / C_pred.max(1, keepdims=True)
        ref = Reference.of(Y, C)
        points = [evaluate(utility_choice(P, C_norm, lam), Y, C, ref.strong, lam)
                  for lam in lambda_grid(P, C_norm)]
        s = summarize(points, ref)
        default = evaluate(utility_choice(P, C_norm, DEFAULT_LAM), Y, C, ref.strong, DEFAULT_LAM)
        cut = s["cost_reduction_at_target"]
        print(f"| {name}, {len(rows)} prompts | {len(models)} | {s['apgr_cost']:.3f} | "
              f"{'not reached' if cut is None else f'{cut:.0%}'} | "
              f"{default.quality / ref.strong_quality:.1%}, {default.cost / ref.strong_cost:.1%} | 0.500 |",
              flush=True)
    latency(gsm, mmlu)


def latency(gsm: list[str], mmlu: list[str], sizes: tuple[int, ...] = (3, 11, 100, 1000), n: int = 300,
            warm: int = 400) -> None:
    """p50/p99 ms of one `baimo/auto` decision (embed the prompt + decide) with N candidate models, against the
    embedding alone by the package's own pass measured in the same run (the baseline: what every decision paid
    before the USE query path, baimo/use_fast.py). Each size gets its own prompts (a third GSM8K, two thirds
    MMLU), none embedded before in the run; the query cache first sees `warm` other prompts, as a server's has
    seen its earlier ones."""
    import tempfile
    import time

    import yaml

    from baimo.config import BaimoConfig, Settings, default_config_text
    from baimo.routing.request import RouteRequest
    from baimo.routing.strategies import RouterSet

    rng = np.random.default_rng(0)
    gsm_order, mmlu_order = rng.permutation(len(gsm)), rng.permutation(len(mmlu))
    k = n // 3
    sets = [[gsm[i] for i in gsm_order[j * k:(j + 1) * k]]
            + [mmlu[i] for i in mmlu_order[j * (n - k):(j + 1) * (n - k)]] for j in range(len(sizes))]
    rest = [mmlu[i] for i in mmlu_order[len(sizes) * (n - k):][:warm]]
    home = Path(tempfile.mkdtemp(prefix="baimo-auto-lat-"))
    with open("/proc/loadavg") as f:
        print(f"\nload average at start: {' '.join(f.read().split()[:3])}")
    print("| candidates | embed, package pass p50 / p99 ms | decision p50 / p99 ms | decision / package embed (p50) "
          "| pieces cached |")
    print("|---|---|---|---|---|")
    for size, prompts in zip(sizes, sets, strict=True):
        raw = yaml.safe_load(default_config_text())
        raw["models"] = [{"id": f"r/m{i}", "kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                          "price_input": 0.05 * (i + 1), "price_output": 0.15 * (i + 1)} for i in range(size)]
        strategy = RouterSet(BaimoConfig.model_validate(raw), Settings(home=home, models_dir=home)).strategy(
            "baimo/auto")
        strategy.decide(RouteRequest([{"role": "user", "content": "warm up"}]))
        embedder = strategy._embedder
        for p in rest:
            strategy._embed(p)
        cache = getattr(getattr(embedder, "_queries", None), "cache", None)
        before = (cache.hits, cache.misses) if cache is not None else (0, 0)
        tail = shipped_prior().tail
        embed, decide = [], []
        for p in prompts:
            t0 = time.perf_counter()
            strategy.decide(RouteRequest([{"role": "user", "content": p}]))
            t1 = time.perf_counter()
            embedder.embed([tail(p)])  # the package's own pass (is_query=False), not the query cache
            t2 = time.perf_counter()
            decide.append((t1 - t0) * 1000)
            embed.append((t2 - t1) * 1000)
        rate = "-"
        if cache is not None:
            h, m = cache.hits - before[0], cache.misses - before[1]
            rate = f"{h / max(1, h + m):.0%}"
        e50, e99, d50, d99 = (float(np.percentile(x, q)) for x in (embed, decide) for q in (50, 99))
        print(f"| {size} | {e50:.1f} / {e99:.1f} | {d50:.1f} / {d99:.1f} | {d50 / e50:.2f} | {rate} |", flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average at the end: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    main()
