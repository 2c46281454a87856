"""Personal-data detection: quality on the labelled cases and cost per routed request, against a baseline.

    .venv/bin/python bench/privacy.py [--repeat 20]

Quality: precision and recall per kind and for "any personal data" (the routing decision) on
tests/fixtures/pii_cases.jsonl (zh + en, positives and hard negatives). Speed: p50/p99 of one detection per
request over the same texts as one-message requests, and over long requests (the cases joined into ~2k- and
~8k-character conversations), each after a warm-up, in this process. The baseline, measured in the same run, is
Presidio's pattern recognizers alone (e-mail, phone, card, IBAN, SSN, no names or addresses, no Chinese ID);
the ratio column is Baimo's detector over the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baimo.config import PrivacyConfig  # noqa: E402
from baimo.privacy import PersonalDataDetector, score_cases  # noqa: E402

CASES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pii_cases.jsonl"
BASELINE_KINDS = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN"]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def timings(find, texts: list[str], repeat: int) -> list[float]:
    for t in texts:
        find(t)  # warm-up
    out = []
    for _ in range(repeat):
        for t in texts:
            started = time.perf_counter()
            find(t)
            out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    cases = [json.loads(line) for line in CASES.open(encoding="utf-8")]
    min_score = PrivacyConfig().min_score
    detector = PersonalDataDetector()
    started = time.perf_counter()
    detector.find("张伟 13812345678")
    build_s = time.perf_counter() - started

    def baimo(text: str) -> list:
        return detector.find(text, min_score=min_score)

    def baseline(text: str) -> list:
        return detector.find(text, kinds=BASELINE_KINDS, min_score=min_score)

    q_b, q_0 = score_cases(cases, baimo), score_cases(cases, baseline)
    print(f"cases: {len(cases)} ({sum(1 for c in cases if c['kinds'])} with personal data, "
          f"{sum(1 for c in cases if not c['kinds'])} hard negatives); detector built in {build_s:.1f} s\n")
    print(f"{'kind':<16}{'baimo P':>9}{'baimo R':>9}{'base P':>9}{'base R':>9}")
    for kind in ["any", *sorted(k for k in q_b if k != "any")]:
        b, z = q_b[kind], q_0.get(kind, {"precision": float("nan"), "recall": 0.0})
        print(f"{kind:<16}{b['precision']:>9.2f}{b['recall']:>9.2f}{z['precision']:>9.2f}{z['recall']:>9.2f}")

    texts = [c["text"] for c in cases]
    long2k = ["\n".join(texts[i:i + 60] * 1) for i in range(0, len(texts), 60)]
    long8k = ["\n".join(texts * 4)]
    print(f"\n{'request':<28}{'baimo p50':>11}{'baimo p99':>11}{'base p50':>10}{'base p99':>10}{'ratio p50':>11}")
    for name, group, repeat in (("one message (~30 chars)", texts, args.repeat),
                                (f"~{statistics.mean(len(t) for t in long2k):.0f} chars", long2k, args.repeat * 5),
                                (f"~{len(long8k[0])} chars", long8k, args.repeat)):
        tb, t0 = timings(baimo, group, repeat), timings(baseline, group, repeat)
        print(f"{name:<28}{pct(tb, .5):>9.2f}ms{pct(tb, .99):>9.2f}ms{pct(t0, .5):>8.2f}ms{pct(t0, .99):>8.2f}ms"
              f"{pct(tb, .5) / pct(t0, .5):>10.1f}x")


if __name__ == "__main__":
    main()
