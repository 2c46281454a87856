"""A short version of `bench/load.py` (50 streaming clients for 10 s through Baimo to the scripted upstream),
asserting what holds whatever the machine's speed: no error, every stream complete with the right text, the
server's sockets back to their baseline, its memory not running away."""

from __future__ import annotations

import asyncio

import pytest

from bench.load import run_load
from tests.reliability.conftest import GOOD
from tests.support.resources import split_sockets

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def test_fifty_clients_for_ten_seconds_complete_every_stream(gateway, faulty_upstream) -> None:
    _, pooled_before = split_sockets(gateway.proc.pid, gateway.port, faulty_upstream.port)  # other tests' pools
    result = asyncio.run(run_load(gateway.base_url, "good", clients=50, seconds=10, expected=GOOD.text,
                                  pid=gateway.proc.pid))
    assert len(result.samples) >= 50  # each client finished at least one stream
    assert result.errors == {}  # HTTP errors, SSE error events, streams without [DONE] or with other text
    assert result.sockets_end is not None and result.sockets_start is not None
    # every client connection closed; to the upstream at most the idle keep-alive connections of 50 streams
    from_clients, to_upstream = split_sockets(gateway.proc.pid, gateway.port, faulty_upstream.port)
    assert from_clients == 0 and to_upstream <= pooled_before + 50, (from_clients, pooled_before, to_upstream)
    assert result.sockets_end <= result.sockets_start + 50, (result.sockets_start, result.sockets_end)
    assert result.rss_end_mib - result.rss_start_mib < 150, (result.rss_start_mib, result.rss_end_mib)
