"""Requests-per-minute and tokens-per-minute limits per key and team, with the `limits` library.

Counters live in memory (one process) or in Redis when `redis_url` / BAIMO_REDIS_URL is set, so every replica and
worker counts against the same windows (the library's Redis strategies are Lua scripts: one atomic step each).
The window is the library's sliding-window counter by default (limits.strategy in baimo.yaml): O(1) per check,
weighting the previous minute's count by how much of it still overlaps the last 60 s.

Tokens are counted at admission, as OpenAI does: the prompt's estimated tokens plus the reply cap (max_tokens, else
the model's max_output_tokens, else limits.reserve_tokens), times `n`.

Responses of a limited key carry OpenAI's headers: x-ratelimit-limit-requests, x-ratelimit-remaining-requests,
x-ratelimit-reset-requests (a duration such as "1.5s" or "6m0s") and the same three for -tokens; a refusal is 429
`rate_limit_exceeded` with Retry-After (whole seconds) and retry-after-ms, which the official SDKs read.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    RateLimiter,
    SlidingWindowCounterRateLimiter,
)

from baimo.errors import BaimoError
from baimo.metering.budgets import Limits, subject_label

log = logging.getLogger("baimo.ratelimit")

STRATEGIES: dict[str, type[RateLimiter]] = {
    "sliding-window": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}


class RateLimited(BaimoError):
    """429: a key or team is over its requests or tokens per minute (OpenAI's `rate_limit_exceeded`)."""

    status_code = 429
    error_type = "requests"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, headers: dict[str, str]) -> None:
        super().__init__(message, headers=headers)
        self.error_type = kind  # "requests" or "tokens", as OpenAI types these errors


def duration(seconds: float) -> str:
    """OpenAI's reset format: "20ms", "1.5s", "6m0s"."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    if minutes:
        return f"{int(minutes)}m{rest:.0f}s"
    return f"{rest:.3f}".rstrip("0").rstrip(".") + "s"


Counted = list[tuple[tuple[str, str], RateLimitItem]]  # ((subject, "requests"|"tokens"), its per-minute item)


@dataclass
class _Window:
    limit: int
    remaining: int
    reset_s: float  # seconds until the window has room again


class RateLimits:
    """Checks and counts RPM/TPM for subjects ("key:<id>", "team:<id>") in memory or Redis."""

    def __init__(self, strategy: str = "sliding-window", redis_url: str | None = None) -> None:
        self.uri = redis_url or "memory://"
        self.storage = storage_from_string(self.uri)
        self.limiter = STRATEGIES[strategy](self.storage)

    def _window(self, item: RateLimitItem, subject: tuple[str, str]) -> _Window:
        stats = self.limiter.get_window_stats(item, *subject)
        return _Window(item.amount, max(0, stats.remaining), max(0.0, stats.reset_time - time.time()))

    def admit(self, limits: list[Limits], tokens: int) -> dict[str, str]:
        """Count one request of `tokens` against every RPM/TPM among `limits`; returns the x-ratelimit-* headers
        (the tightest subject's) or raises RateLimited (429, with those headers and Retry-After).

        A Redis that cannot be reached lets requests through (logged): availability over limits; budgets, in the
        database, still hold."""
        limited = [lim for lim in limits if lim.rpm or lim.tpm]
        if not limited:
            return {}
        try:
            return self._admit(limited, tokens)
        except RateLimited:
            raise
        except Exception as exc:  # redis down: limits cannot be counted
            log.warning("rate limits not checked (%s unreachable: %s)", self.uri.split("@")[-1], exc)
            return {}

    def _admit(self, limited: list[Limits], tokens: int) -> dict[str, str]:
        # identifiers (subject, kind): an RPM and a TPM of the same amount must not share a counter
        rpm = [((lim.subject, "requests"), RateLimitItemPerMinute(lim.rpm)) for lim in limited if lim.rpm]
        tpm = [((lim.subject, "tokens"), RateLimitItemPerMinute(lim.tpm)) for lim in limited if lim.tpm]
        for subject, item in tpm:  # test tokens first so that a refused request does not use up a request
            if tokens > item.amount or not self.limiter.test(item, *subject, cost=tokens):
                self._refuse("tokens", subject, item, rpm, tpm, tokens)
        for subject, item in rpm:
            if not self.limiter.hit(item, *subject):
                self._refuse("requests", subject, item, rpm, tpm, tokens)
        for subject, item in tpm:
            if not self.limiter.hit(item, *subject, cost=tokens):
                self._refuse("tokens", subject, item, rpm, tpm, tokens)
        return self._headers(rpm, tpm)

    def _headers(self, rpm: Counted, tpm: Counted) -> dict[str, str]:
        """OpenAI's x-ratelimit-* headers, for each kind from the subject with the least room left."""
        headers: dict[str, str] = {}
        for kind, items in (("requests", rpm), ("tokens", tpm)):
            if not items:
                continue
            w = min((self._window(item, subject) for subject, item in items), key=lambda w: (w.remaining, -w.reset_s))
            headers[f"x-ratelimit-limit-{kind}"] = str(w.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(w.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = duration(w.reset_s)
        return headers

    def _refuse(self, kind: str, subject: tuple[str, str], item: RateLimitItem, rpm: Counted,
                tpm: Counted, tokens: int) -> None:
        headers = self._headers(rpm, tpm)
        wait = self._window(item, subject).reset_s
        if kind == "tokens" and tokens > item.amount:
            message = (f"Request too large for {subject_label(subject[0])} on tokens per min (TPM): "
                       f"Limit {item.amount}, Requested {tokens}. Lower max_tokens or the prompt.")
        else:
            unit = "requests per min (RPM)" if kind == "requests" else "tokens per min (TPM)"
            message = (f"Rate limit reached for {subject_label(subject[0])} on {unit}: Limit {item.amount}, "
                       f"Requested {1 if kind == 'requests' else tokens}. Please try again in {duration(wait)}.")
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        raise RateLimited(message, kind=kind, headers=headers)

    def reset(self) -> None:
        """Forget every counter (a changed limit needs no reset: each RPM/TPM value has its own window)."""
        self.storage.reset()
