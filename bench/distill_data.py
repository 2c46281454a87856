"""Distillation data preparation: how fast rows are de-duplicated, scrubbed and mixed, against a baseline.

    .venv/bin/python bench/distill_data.py [--rows 4000]

Rows: the synthetic travel-json task's training rows (distinct prompts), plus a quarter of them again with their
case and spacing changed (exact duplicates after normalisation) and a quarter with one word of the prompt changed
(near-duplicates). Stages, each timed once in this process after the libraries are loaded:
- baseline: exact de-duplication only (SHA-256 of the normalised text);
- exact + near de-duplication (MinHash LSH, 128 permutations, character 5-grams, Jaccard >= 0.85);
- PII scrubbing (Presidio-based detector) of the labelled zh/en texts of tests/fixtures/pii_cases.jsonl as chats;
- a 70/30 mix of the rows with a second source.
The ratio column is each stage's seconds per row over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.distill.dedup import dedupe  # noqa: E402
from baimo.distill.mix import mix, parse_mix  # noqa: E402
from baimo.distill.scrub import scrub_messages, scrub_text  # noqa: E402
from baimo.distill.tasks import make_task  # noqa: E402

CASES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pii_cases.jsonl"


def rows(n: int) -> list[dict]:
    base, _ = make_task("travel-json", n // 2, 0, seed=11)
    exact = [{"messages": [{**m, "content": "  " + m["content"].upper() + " "} for m in r["messages"]]}
             for r in base[: n // 4]]
    near = [{"messages": [{**r["messages"][0], "content": r["messages"][0]["content"].replace("Request:", "Query:")},
                          r["messages"][1]]} for r in base[n // 4: n // 2]]
    return base + exact + near


def timed(fn):  # noqa: ANN001, ANN201
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=4000)
    args = ap.parse_args()
    data = rows(args.rows)
    dedupe(data[:50])  # load datasketch and scipy
    scrub_text("张伟 13812345678 John Smith zw@example.com")  # build the analyzer (Presidio, jieba)
    (kept_exact, dropped_exact, _), t_exact = timed(lambda: dedupe(data, near=False))
    (kept_near, d_exact, d_near), t_near = timed(lambda: dedupe(data))
    chats = [[{"role": "user", "content": json.loads(line)["text"]}] for line in CASES.read_text().splitlines()] * 4
    _, t_scrub = timed(lambda: [scrub_messages(c) for c in chats])
    other = [{"messages": [], "meta": {"i": i}} for i in range(len(data))]
    (mixed, _), t_mix = timed(lambda: mix({"domain": data, "general": other}, parse_mix("general=0.7,domain=0.3"),
                                          size=len(data), seed=1))
    base = t_exact / len(data)
    table = [("exact dedup (baseline)", len(data), t_exact, f"dropped {dropped_exact}"),
             ("exact + near dedup", len(data), t_near, f"dropped {d_exact} exact, {d_near} near"),
             ("PII scrub (zh/en cases)", len(chats), t_scrub, "one message per row"),
             ("mix 70/30", len(mixed), t_mix, "")]
    print(f"{'stage':28} {'rows':>6} {'s':>8} {'rows/s':>10} {'ratio':>8}  note")
    for name, n, t, note in table:
        print(f"{name:28} {n:6d} {t:8.3f} {n / t:10.0f} {t / n / base:8.1f}  {note}")


if __name__ == "__main__":
    main()
