"""Native load for throughput benchmarks: nginx as a fixed-answer OpenAI upstream, and wrk as the client.

On a 2-core machine a Python load generator and a Python upstream use as much CPU per request as Baimo itself,
so they, not Baimo, cap what more workers can show. Debian's nginx and wrk cost a small fraction of that:

- `StaticSSEUpstream`: nginx answering every POST with the same streamed chat completion (a role chunk, N
  content chunks "tok0 ", "tok1 ", ..., a finish chunk, a usage chunk and `data: [DONE]`), exactly what the scripted
  upstream streams for the same token count, from a file (nginx's static handler answers a POST with 405;
  `error_page 405 =200` serves the file instead).
- `run_wrk`: wrk (`-t1`, keep-alive, N connections) POSTing one JSON body for a fixed time, with a Lua script
  that counts as an error every non-200 answer and every 200 whose body lacks the expected text or `[DONE]`.
  wrk's latency is request sent -> whole body received (no TTFT).

Both raise RuntimeError when the binary is missing (`apt-get install nginx wrk`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.nginx import NginxDaemon  # noqa: E402


def sse_body(tokens: int, model: str = "ok") -> str:
    """The whole SSE text of one streamed chat completion with `tokens` content chunks and a usage chunk."""
    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": "chatcmpl-static", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""}, None)]
    events += [chunk({"content": f"tok{i} "}, None) for i in range(tokens)]
    events.append(chunk({}, "stop"))
    usage = chunk({}, None)
    usage["choices"] = []
    usage["usage"] = {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens}
    events.append(usage)
    return "".join(f"data: {json.dumps(e, separators=(',', ':'))}\n\n" for e in events) + "data: [DONE]\n\n"


SERVER = """
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:{port};
    location / {
      default_type text/event-stream;
      root {dir};
      rewrite ^ /stream.sse break;
      error_page 405 =200 /stream.sse;
    }
  }
"""


class StaticSSEUpstream(NginxDaemon):
    """nginx (one worker process) answering every request with `sse_body(tokens)`; `base_url` ends in /v1."""

    name = "nginx-upstream"

    def __init__(self, tokens: int) -> None:
        super().__init__(SERVER, connections=4096)
        Path(self.dir, "stream.sse").write_text(sse_body(tokens))
        os.chmod(self.dir, 0o755)  # nginx's worker runs as another user when started by root

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout: float = 15) -> StaticSSEUpstream:
        return super().start(timeout)


LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
local expected = {expected}
local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) bad_status = 0; bad_body = 0 end
function response(status, headers, body)
  if status ~= 200 then bad_status = bad_status + 1
  elseif not string.find(body, "[DONE]", 1, true) or (expected ~= "" and not string.find(body, expected, 1, true))
  then bad_body = bad_body + 1 end
end
function done(summary, latency, requests)
  local s, b = 0, 0
  for _, t in ipairs(threads) do s = s + t:get("bad_status"); b = b + t:get("bad_body") end
  io.write(string.format("BAIMO_WRK requests=%d duration_us=%d bad_status=%d bad_body=%d "
    .. "connect_err=%d read_err=%d write_err=%d timeout_err=%d p50_us=%d p90_us=%d p99_us=%d\\n",
    summary.requests, summary.duration, s, b, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99)))
end
"""


def lua_string(text: str) -> str:
    """A Lua long-bracket string literal holding `text` verbatim."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def run_wrk(url: str, body: dict[str, Any], *, connections: int, duration_s: float, expected: str = "",
            threads: int = 1, timeout_s: float = 30) -> dict[str, Any]:
    """POST `body` to `url` from `connections` keep-alive connections for `duration_s` seconds with wrk.

    Returns requests, req_per_s, errors (non-200 + bad bodies + socket errors) and latency percentiles in ms
    (`total_p50_ms`, `total_p90_ms`, `total_p99_ms`: request sent -> whole response read).
    Raises RuntimeError if wrk is missing or prints no summary."""
    wrk = shutil.which("wrk")
    if not wrk:
        raise RuntimeError("wrk is missing: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA.format(body=lua_string(json.dumps(body)), expected=lua_string(expected)))
        script = f.name
    try:
        r = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s:g}s", f"--timeout={timeout_s:g}s",
                            "-s", script, url], capture_output=True, text=True, timeout=duration_s + timeout_s + 60)
    finally:
        Path(script).unlink(missing_ok=True)
    m = re.search(r"BAIMO_WRK (.*)", r.stdout)
    if not m:
        raise RuntimeError(f"wrk printed no summary (exit {r.returncode}): {(r.stderr or r.stdout)[-500:]}")
    v = {k: int(x) for k, x in (kv.split("=") for kv in m.group(1).split())}
    errors = v["bad_status"] + v["bad_body"] + v["connect_err"] + v["read_err"] + v["write_err"] + v["timeout_err"]
    seconds = v["duration_us"] / 1e6
    return {"requests": v["requests"], "ok": v["requests"] - v["bad_status"] - v["bad_body"], "errors": errors,
            "req_per_s": v["requests"] / seconds if seconds else float("nan"), "elapsed_s": seconds,
            "total_p50_ms": v["p50_us"] / 1000, "total_p90_ms": v["p90_us"] / 1000,
            "total_p99_ms": v["p99_us"] / 1000, "ttft_p50_ms": None, "ttft_p99_ms": None,
            "detail": {k: v[k] for k in ("bad_status", "bad_body", "connect_err", "read_err", "write_err",
                                          "timeout_err")}}
