"""Fixtures of the reliability suite: a scripted upstream that fails in every way a real one does, and a Baimo
gateway in front of it whose models meet each fault with and without a fallback.

Servers are the real ones (`baimo serve` as a child process, the scripted upstream over real HTTP); helpers come
from `tests/support` and the e2e suite's fixtures are imported, not copied.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import api  # noqa: F401  (an httpx client on `server`, re-exported for these tests)
from tests.support.remote import remote
from tests.support.server import BaimoServer, free_port
from tests.support.upstream import Behaviour, ScriptedUpstream

UPSTREAM_TIMEOUT_S = 2  # the `timeout` remote() gives every model: a slow first byte or a stall past it is a fault

# Faults before the first token: name -> (upstream behaviour or None for a refused connection, status without a
# fallback). 529 is the "overloaded" status of Anthropic-style servers: retry elsewhere, like 503.
EARLY_FAULTS: dict[str, tuple[Behaviour | None, int]] = {
    "refused": (None, 503),
    "slow_first_byte": (Behaviour.slow(UPSTREAM_TIMEOUT_S * 5), 504),
    "dies_before_first_token": (Behaviour.midstream_error(-1), 502),
    "malformed_json": (Behaviour.malformed(), 502),
    "http_500": (Behaviour.fail(500, "scripted internal error"), 502),
    "http_529": (Behaviour.fail(529, "scripted overload"), 503),
}
# Faults after the first token: the client has text already, so no fallback; a clean SSE error, then [DONE].
LATE_FAULTS: dict[str, Behaviour] = {
    "dies_mid_stream": Behaviour.midstream_error(3),
    "stalls_mid_stream": Behaviour.midstream_error(3, token_delay=UPSTREAM_TIMEOUT_S * 3),
    "malformed_sse_mid_stream": Behaviour.malformed(after=3),
}
GOOD = Behaviour.ok("The fallback answered.")


def gateway_config(upstream_url: str) -> str:
    """baimo.yaml: `good`, and for every fault `bare/<fault>` (no fallback) and `fb/<fault>` (falls back to good)."""
    dead = f"http://127.0.0.1:{free_port()}/v1"
    models = remote("good", "good", upstream_url)
    for name, (behaviour, _) in EARLY_FAULTS.items():
        url = dead if behaviour is None else upstream_url
        models += remote(f"bare/{name}", name, url, connect_retries=1)
        models += remote(f"fb/{name}", name, url, connect_retries=1, fallbacks="[good]")
    for name in LATE_FAULTS:
        models += remote(f"bare/{name}", name, upstream_url)
        models += remote(f"fb/{name}", name, upstream_url, fallbacks="[good]")
    return "default_model: good\nmodels:\n" + models


@pytest.fixture(scope="package")
def faulty_upstream() -> Iterator[ScriptedUpstream]:
    behaviours: dict[str, Behaviour | str] = {"good": GOOD, **LATE_FAULTS}
    behaviours.update({name: b for name, (b, _) in EARLY_FAULTS.items() if b is not None})
    with ScriptedUpstream(behaviours, record=False) as up:
        yield up


@pytest.fixture(scope="package")
def gateway(faulty_upstream: ScriptedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaimoServer]:
    """`baimo serve` on SQLite in front of the faulty upstream (no local model, so it starts in about a second)."""
    with BaimoServer(tmp_path_factory.mktemp("reliability-gw"), gateway_config(faulty_upstream.base_url)) as s:
        # the first chat request of a fresh server loads lazy parts (privacy recognizers, ...): seconds on a busy
        # machine, which must not count against the tests' bounded timeouts
        httpx.post(s.base_url + "/chat/completions", json={"model": "good", "messages": [
            {"role": "user", "content": "warm up"}]}, timeout=120).raise_for_status()
        yield s
