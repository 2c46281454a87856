"""`baimo serve --workers 2` with a local model (replica `a` of the topology): two server processes on one port,
one llama-server, owned by the main process (the engine host), that both workers' requests reach."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.scaleout.conftest import Topology, pids_of_tree

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_workers_share_one_llama_server_owned_by_the_main_process(topology: Topology) -> None:
    server = topology.a
    assert server.proc is not None
    tree = pids_of_tree(server.proc.pid)
    workers = [p for p in tree if parent(p) == server.proc.pid and "spawn_main" in cmdline(p)]
    assert len(workers) == 2, [cmdline(p) for p in tree]
    client = openai.OpenAI(base_url=server.base_url, api_key=topology.key, max_retries=0, timeout=120)
    for i in range(6):  # a new connection each time: the kernel spreads them over both workers' accepts
        if i % 2:
            reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                                   max_tokens=4)
            assert reply.usage.completion_tokens > 0
        else:
            chunks = list(client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True))
            assert chunks[-1].choices[0].finish_reason in ("length", "stop")
    # /metrics sums every worker's counts (prometheus_client's multiprocess mode), whichever worker answers it
    for _ in range(4):  # new connections: both workers answer some of these scrapes
        families = text_string_to_metric_families(httpx.get(server.url + "/metrics", timeout=30).text)
        served = sum(sample.value for f in families if f.name == "baimo_requests" for sample in f.samples
                     if sample.name == "baimo_requests_total" and sample.labels.get("model") == MODEL
                     and sample.labels.get("status") == "200")
        assert served == 6
    engines = [p for p in pids_of_tree(server.proc.pid) if "llama-server" in cmdline(p)]
    assert len(engines) == 1 and parent(engines[0]) == server.proc.pid  # once, by the main process
    with pytest.raises(openai.BadRequestError) as exc:  # the workers' own checks still apply
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                       max_tokens=4, logit_bias={"x": 5})
    assert exc.value.status_code == 400 and exc.value.param == "logit_bias"
