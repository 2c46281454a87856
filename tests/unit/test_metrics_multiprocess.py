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

WORKER = """
import sys
from baimo.metering.usage import Usage
from baimo.observability import metrics
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
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counts_of_all_worker_processes_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    _run(WORKER, "3", "2", "0", env=env)   # a worker still running, 2 jobs running
    _run(WORKER, "4", "5", "1", env=env)   # a worker that shut down (its live gauges leave the sum)
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
