"""Data mixing: named sources combined by ratio (e.g. general=0.7,domain=0.3, the general/proprietary split JD
reported for its Yanxi models), deterministic by seed, with exact counts.

Counts use the largest remainder method (Hamilton's apportionment): each source gets floor(ratio * size) rows, and
the rows left over go to the sources with the largest fractional parts (ties: the order the mix names them). A
source is sampled without replacement; when it has fewer rows than its count, that is an error unless repeats are
allowed (then whole shuffled passes over it, and a sample of the rest). The result is shuffled with the same seed.
"""

from __future__ import annotations

import math
import random
from typing import Any

from baimo.errors import InvalidRequest


def parse_mix(spec: str) -> dict[str, float]:
    """`general=0.7,domain=0.3` -> {"general": 0.7, "domain": 0.3}, normalised to sum to 1. Raises
    InvalidRequest (param "mix") for a malformed entry, a repeated name, a negative or all-zero weight."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",")):
        name, eq, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value) if eq and name else math.nan
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight < 0:
            raise InvalidRequest(f"--mix: {part!r} is not NAME=RATIO with a ratio >= 0 (e.g. general=0.7,domain=0.3)",
                                 param="mix")
        if name in out:
            raise InvalidRequest(f"--mix: {name!r} is named twice", param="mix")
        out[name] = weight
    total = sum(out.values())
    if total <= 0:
        raise InvalidRequest("--mix: the ratios add up to 0", param="mix")
    return {k: v / total for k, v in out.items()}


def apportion(ratios: dict[str, float], size: int) -> dict[str, int]:
    """Exact counts summing to `size` by the largest remainder method (ratios already sum to 1)."""
    quotas = {k: r * size for k, r in ratios.items()}
    counts = {k: math.floor(q) for k, q in quotas.items()}
    order = sorted(ratios, key=lambda k: -(quotas[k] - counts[k]))  # stable: ties keep the mix's order
    for k in order[: size - sum(counts.values())]:
        counts[k] += 1
    return counts


def largest_size(ratios: dict[str, float], available: dict[str, int]) -> int:
    """The largest mix size whose counts every source can fill without repeating a row."""
    size = min((math.floor(available[k] / r) for k, r in ratios.items() if r > 0), default=0)
    while size > 0 and any(n > available[k] for k, n in apportion(ratios, size).items()):
        size -= 1
    return size


def mix(sources: dict[str, list[dict[str, Any]]], ratios: dict[str, float], *, size: int | None = None,
        seed: int = 0, allow_repeat: bool = False) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Mix `sources` (name -> rows) by `ratios` into `size` rows (default: the largest size that needs no repeat);
    each row's `meta.source` names its source. Returns (rows, counts per source). Raises InvalidRequest when a
    ratio names no source, or a source is too small for its count and `allow_repeat` is off."""
    missing = [k for k in ratios if k not in sources]
    if missing:
        raise InvalidRequest(f"--mix names {', '.join(missing)} but the sources are {', '.join(sources)}",
                             param="mix")
    available = {k: len(sources[k]) for k in ratios}
    if size is None:
        size = largest_size(ratios, available)
    if size < 0:
        raise InvalidRequest("--size must be >= 0", param="size")
    counts = apportion(ratios, size)
    short = {k: (n, available[k]) for k, n in counts.items() if n > available[k]}
    if short and (not allow_repeat or any(have == 0 for _, have in short.values())):
        raise InvalidRequest("source too small for the mix: " + "; ".join(
            f"{k} needs {n} rows and has {have}" for k, (n, have) in short.items()) + " (pass --allow-repeat "
            "to reuse rows)", param="size")
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for name, n in counts.items():
        rows = sources[name]
        picked: list[dict[str, Any]] = []
        while n - len(picked) >= len(rows) > 0 and len(picked) < n:
            picked += rng.sample(rows, len(rows))
        picked += rng.sample(rows, n - len(picked))
        out += [{**r, "meta": {**(r.get("meta") or {}), "source": name}} for r in picked]
    rng.shuffle(out)
    return out, counts
