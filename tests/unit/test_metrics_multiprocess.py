"""/metrics with several worker processes: prometheus_client's multiprocess mode sums what each process counted.

Real processes (python subprocesses importing Baimo's metrics with PROMETHEUS_MULTIPROC_DIR set, as the workers of
`baimo serve --workers N` do) count usage records; a third process renders the exposition.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]

# A usage record's fields that the metrics read (baimo.metering.usage.Usage; importing it would cost each process
# seconds of SQLAlchemy import, and the end-to-end test counts real records).
WORKER = """
import sys
from types import SimpleNamespace
from baimo.observability import metrics

def Usage(**fields):
    record = dict(endpoint=None, model_requested=None, model=None, route=None, persona=None, prompt_tokens=0,
                  completion_tokens=0, cached_tokens=0, reasoning_tokens=0, cost=0.0, latency_ms=None, ttft_ms=None,
                  status_code=200)
    return SimpleNamespace(**{**record, **fields})

metrics.configure(["remote/a", "local/b"])
n, gauge, dies = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
for _ in range(n):
    metrics.observe_usage(Usage(endpoint="chat.completions", model_requested="remote/a", model="remote/a",
                                route="direct -> remote/a", prompt_tokens=10, completion_tokens=5, cached_tokens=2,
                                cost=0.001, latency_ms=120.0, ttft_ms=30.0))
metrics.observe_usage(Usage(endpoint="chat.completions", model_requested="free text", model="not configured",
                            status_code=502))
metrics.INGEST_JOBS.labels("running").set(gauge)
if dies:
    metrics.process_exit()
"""

RENDER = """
from baimo.observability import metrics
assert metrics.MULTIPROCESS
print(metrics.render().decode())
"""


def _run(code: str, *args: str, env: dict[str, str]) -> str:
    return _wait(_start(code, *args, env=env))


def _start(code: str, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counts_of_all_worker_processes_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [_start(WORKER, "3", "2", "0", env=env),  # a worker still running: it saw 2 jobs running
               _start(WORKER, "4", "5", "1", env=env)]  # a worker that shut down (its live gauges leave)
    for worker in workers:
        _wait(worker)
    samples = _samples(_run(RENDER, env=env))
    direct = (("endpoint", "chat.completions"), ("model", "remote/a"), ("route_kind", "direct"), ("status", "200"))
    assert samples[("baimo_requests_total", direct)] == 7
    assert samples[("baimo_tokens_total", (("kind", "prompt"), ("model", "remote/a")))] == 70
    assert samples[("baimo_tokens_total", (("kind", "cached"), ("model", "remote/a")))] == 14
    assert abs(samples[("baimo_cost_usd_total", (("model", "remote/a"),))] - 0.007) < 1e-12
    assert samples[("baimo_request_duration_seconds_count", (("model", "remote/a"), ("route_kind", "direct")))] == 7
    assert samples[("baimo_time_to_first_token_seconds_bucket",
                    (("le", "0.05"), ("model", "remote/a"), ("route_kind", "direct")))] == 7
    # a model id that is not in the configuration never becomes a label value
    failed = (("endpoint", "chat.completions"), ("model", "other"), ("route_kind", "routed"), ("status", "502"))
    assert samples[("baimo_requests_total", failed)] == 2
    assert not any("not configured" in str(labels) or "free text" in str(labels) for _, labels in samples)
    assert samples[("baimo_ingest_jobs", (("status", "running"),))] == 2
