"""Concurrent streams of a local GGUF model: llama.cpp's llama-server used raw versus the same engine behind Baimo.

RAW starts the engine Baimo built (`baimo engine build`) directly, with the exact command line Baimo's worker
supervisor uses (`WorkerSpec.argv`, same threads, parallel slots and context), and the clients stream to it.
BAIMO starts `baimo serve` with the same GGUF configured by `path:` (same threads and parallel) and the clients
stream through its /v1/chat/completions (which runs that same command line in a worker process).

For each concurrency level (default 1, 4, 8 streams) and side: one unmeasured warm-up batch, then `--rounds`
batches alternating RAW/BAIMO. Every stream is a chat completion of the same prompt, temperature 0,
`max_tokens` N, `stream_options.include_usage`, each on its own keep-alive httpx client; the batch starts all
streams at once. Per batch: aggregate completion tokens/s (usage completion tokens of all streams / wall time of
the batch), p50/p99 time to the first content token, and the wall time; medians over the rounds are reported.

Then the short-request test, per side and round: `--long-streams` (4) streams of `--long-max-tokens` (256)
start; once every one of them has produced its first token, one short request (`--short-max-tokens` 8) is sent
and its time to first token recorded.

Goals: (a) 4 concurrent streams through Baimo finish within 1.6x the wall time of one stream; (b) the short
request's TTFT during 4 long streams is <= 1 s through Baimo; (c) tokens/s through Baimo >= 0.95x raw at 1 stream.

    .venv/bin/python bench/local_concurrency.py                       # Qwen2.5-Coder-0.5B (pulled if missing)
    BAIMO_MODELS_DIR=.cache/models .venv/bin/python bench/local_concurrency.py --model smollm2 \\
        --rounds 1 --max-tokens 16                                     # quick smoke run
    .venv/bin/python bench/local_concurrency.py --concurrency 1,2,4 --parallel 4 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from baimo.config import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    LOCAL_MODELS,
    MODELS_DIR,
    BaimoServer,
    SSEError,
    baimo_available,
    descendants,
    dump_json,
    ensure_local_model,
    free_port,
    local_model_entry,
    median,
    parse_int_list,
    percentile,
    print_table,
    proc_cpu_seconds,
    sse_chunks,
    terminate,
)

GOAL_SCALING = 1.6  # (a) wall(4 streams) / wall(1 stream), through Baimo
GOAL_SHORT_TTFT_S = 1.0  # (b) short request's TTFT during 4 long streams, through Baimo
GOAL_RATIO = 0.95  # (c) Baimo tok/s / raw tok/s at 1 stream
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
SHORT_PROMPT = "What is the capital of France? Answer in one word."
SIDES = ("raw", "baimo")


# --- one stream ------------------------------------------------------------------------------------


@dataclass
class Stream:
    start: float  # perf_counter at the request
    first: float | None = None  # perf_counter at the first non-empty content delta
    end: float | None = None  # perf_counter at [DONE] (or the end of the body)
    tokens: int = 0  # usage.completion_tokens (content deltas counted when no usage came)
    usage: bool = False
    finish: str | None = None
    text: str = ""
    error: str | None = None

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.start

    @property
    def total(self) -> float | None:
        return None if self.end is None else self.end - self.start


PROMPT_CACHE = True  # --no-prompt-cache sends llama.cpp's `cache_prompt: false` (both sides)


def request_body(model: str, prompt: str, max_tokens: int) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if not PROMPT_CACHE:
        body["cache_prompt"] = False
    return json.dumps(body).encode()


async def stream(client: httpx.AsyncClient, url: str, body: bytes, first_token: asyncio.Event | None = None) -> Stream:
    """One streamed chat completion; `first_token` is set at its first content token (or when it ends)."""
    s = Stream(time.perf_counter())
    parts: list[str] = []
    done = False
    try:
        async with client.stream("POST", url, content=body, headers={"content-type": "application/json"}) as r:
            if r.status_code != 200:
                s.error = f"HTTP {r.status_code}: {(await r.aread())[:300].decode('utf-8', 'replace')}"
                return s
            async for chunk in sse_chunks(r):
                if chunk is None:
                    done = True
                    continue
                if chunk.get("usage"):
                    s.tokens = int(chunk["usage"].get("completion_tokens") or 0)
                    s.usage = True
                for choice in chunk.get("choices") or ():
                    content = (choice.get("delta") or {}).get("content")
                    if content:
                        if s.first is None:
                            s.first = time.perf_counter()
                            if first_token is not None:
                                first_token.set()
                        parts.append(content)
                    s.finish = choice.get("finish_reason") or s.finish
        s.end = time.perf_counter()
        if not done:
            s.error = "stream ended without [DONE]"
        if not s.usage:
            s.tokens = len(parts)
            s.error = s.error or "no usage chunk"
    except SSEError as exc:
        s.error = str(exc)
        return s
    except (httpx.HTTPError, ValueError) as exc:
        s.error = f"{type(exc).__name__}: {exc}"
    finally:
        s.text = "".join(parts)
        if first_token is not None:
            first_token.set()  # never leave a waiter hanging on a failed stream
    return s


# --- batches ---------------------------------------------------------------------------------------


@dataclass
class Batch:
    side: str
    concurrency: int
    round: int  # 0 = warm-up
    wall_s: float
    tokens: int
    tok_s: float
    ttft_p50_ms: float
    ttft_p99_ms: float
    errors: list[str] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)
    baimo_cpu_s: float | None = None  # CPU time of the `baimo serve` process during the batch (baimo side)
    texts: list[str] = field(default_factory=list)


class Side:
    """One path under test: its chat URL, the model name to send, and the pid whose CPU we watch."""

    def __init__(self, name: str, base_url: str, model: str, cpu_pid: int | None, timeout: float) -> None:
        self.name = name
        self.url = base_url + "/v1/chat/completions"
        self.model = model
        self.cpu_pid = cpu_pid
        self.timeout = timeout
        self._clients: list[httpx.AsyncClient] = []

    def clients(self, n: int) -> list[httpx.AsyncClient]:
        """n keep-alive clients, one connection each (created once, reused across rounds)."""
        # llama-server closes keep-alive connections idle for 5 s: drop ours after 2 s so a raw request never
        # goes out on a connection the server has closed (Baimo's own pool does the same)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2.0)
        while len(self._clients) < n:
            self._clients.append(httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(self.timeout)))
        return self._clients[:n]

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self._clients))

    async def batch(self, concurrency: int, max_tokens: int, rnd: int) -> Batch:
        body = request_body(self.model, PROMPT, max_tokens)
        clients = self.clients(concurrency)
        cpu0 = proc_cpu_seconds(self.cpu_pid)
        t0 = time.perf_counter()
        streams = await asyncio.gather(*(stream(c, self.url, body) for c in clients))
        ends = [s.end for s in streams if s.end is not None]
        wall = (max(ends) if ends else time.perf_counter()) - t0
        cpu1 = proc_cpu_seconds(self.cpu_pid)
        tokens = sum(s.tokens for s in streams)
        ttfts = [s.ttft * 1000 for s in streams if s.ttft is not None]
        return Batch(
            side=self.name, concurrency=concurrency, round=rnd, wall_s=wall, tokens=tokens,
            tok_s=tokens / wall if wall > 0 else float("nan"),
            ttft_p50_ms=percentile(ttfts, 50), ttft_p99_ms=percentile(ttfts, 99),
            errors=[s.error for s in streams if s.error], finish=sorted({str(s.finish) for s in streams}),
            baimo_cpu_s=(cpu1 - cpu0) if cpu0 is not None and cpu1 is not None else None,
            texts=[s.text for s in streams],
        )

    async def short_during_long(self, n_long: int, long_tokens: int, short_tokens: int, rnd: int,
                                wait_s: float) -> dict[str, Any]:
        """n_long long streams; once all have their first token, one short request. Its TTFT is the number."""
        clients = self.clients(n_long + 1)
        long_body = request_body(self.model, PROMPT, long_tokens)
        events = [asyncio.Event() for _ in range(n_long)]
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(stream(c, self.url, long_body, e)) for c, e in zip(clients, events, strict=False)]
        try:
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in events)), wait_s)
        except TimeoutError:
            pass
        all_first = time.perf_counter()
        running = sum(1 for t in tasks if not t.done())  # still streaming when the short request goes out
        short = await stream(clients[n_long], self.url, request_body(self.model, SHORT_PROMPT, short_tokens))
        longs = await asyncio.gather(*tasks)
        first_long_end = min((s.end for s in longs if s.end is not None), default=None)
        return {
            "side": self.name,
            "round": rnd,
            "long_first_token_s": all_first - t0,  # until every long stream had its first token
            "long_running_at_send": running,
            "short_ttft_ms": None if short.ttft is None else short.ttft * 1000,
            "short_total_ms": None if short.total is None else short.total * 1000,
            "short_tokens": short.tokens,
            # True when the short request's first token came before any long stream ended: it was served
            # alongside them, not after a slot freed
            "short_first_before_long_end": (short.first is not None and first_long_end is not None
                                            and short.first < first_long_end),
            "long_tokens": sum(s.tokens for s in longs),
            "errors": [s.error for s in [*longs, short] if s.error],
        }


# --- the raw llama-server --------------------------------------------------------------------------


def _die_with_parent() -> None:  # in the child between fork and exec: no orphan if the bench is killed
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class RawServer:
    """llama-server started directly with the argv Baimo's worker would use."""

    def __init__(self, spec: Any, keep_log: bool = False) -> None:
        self.spec = spec
        self.port = free_port()
        self.argv: list[str] = spec.argv(self.port)
        self.dir = Path(tempfile.mkdtemp(prefix="baimo-bench-raw-"))
        self.keep_log = keep_log
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float) -> float:
        self._log = open(self.dir / "llama-server.log", "wb")  # noqa: SIM115 - closed in stop()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        with httpx.Client(timeout=2.0) as c:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if c.get(self.url + "/health").status_code == 200:
                        return time.perf_counter() - t0
                time.sleep(0.05)
        raise TimeoutError(f"llama-server not ready after {timeout:g}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 30) -> str:
        path = self.dir / "llama-server.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else ""

    def stop(self) -> None:
        terminate(self.proc)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if not self.keep_log:
            for f in self.dir.iterdir():
                f.unlink()
            self.dir.rmdir()


def worker_argv(baimo_pid: int, server_binary: Path) -> list[str] | None:
    """The command line of the llama-server worker `baimo serve` started (from /proc), or None."""
    for pid in descendants(baimo_pid):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode() == str(server_binary):
            return [a.decode() for a in argv]
    return None


def without_port(argv: list[str]) -> list[str]:
    out = list(argv)
    if "--port" in out:
        i = out.index("--port")
        out[i + 1] = "PORT"
    return out


# --- the run ---------------------------------------------------------------------------------------


async def measure(args: argparse.Namespace, sides: dict[str, Side]) -> dict[str, Any]:
    batches: list[Batch] = []
    shorts: list[dict[str, Any]] = []

    def show(b: Batch) -> None:
        tag = "warm-up" if b.round == 0 else f"round {b.round}"
        err = f"  ERRORS {len(b.errors)}: {b.errors[0]}" if b.errors else ""
        print(f"  c={b.concurrency:<2} {tag:<8} {b.side:<5} {b.tokens:>5} tokens in {b.wall_s:6.2f}s = "
              f"{b.tok_s:6.1f} tok/s, ttft p50 {b.ttft_p50_ms:7.0f} ms p99 {b.ttft_p99_ms:7.0f} ms{err}", flush=True)

    try:
        for conc in args.concurrency:
            for name in SIDES:
                b = await sides[name].batch(conc, args.max_tokens, 0)
                show(b)
                if b.errors and len(b.errors) == conc:
                    raise SystemExit(f"{name}: every warm-up stream failed, e.g. {b.errors[0]}")
            for rnd in range(1, args.rounds + 1):  # alternate the order so drift hits both alike
                for name in SIDES if rnd % 2 else SIDES[::-1]:
                    b = await sides[name].batch(conc, args.max_tokens, rnd)
                    batches.append(b)
                    show(b)
        if args.long_streams > 0:
            for rnd in range(1, args.rounds + 1):
                for name in SIDES if rnd % 2 else SIDES[::-1]:
                    r = await sides[name].short_during_long(args.long_streams, args.long_max_tokens,
                                                            args.short_max_tokens, rnd, args.timeout)
                    shorts.append(r)
                    err = f"  ERRORS: {r['errors'][0]}" if r["errors"] else ""
                    nan = float("nan")
                    served = "alongside" if r["short_first_before_long_end"] else "AFTER a long stream ended"
                    print(f"  short during {args.long_streams} long, round {rnd} {name:<5} ttft "
                          f"{r['short_ttft_ms'] or nan:7.0f} ms (total {r['short_total_ms'] or nan:.0f} ms; "
                          f"served {served}){err}", flush=True)
    finally:
        for s in sides.values():
            await s.aclose()
    return {"batches": batches, "shorts": shorts}


def summarise(args: argparse.Namespace, batches: list[Batch], shorts: list[dict[str, Any]]) -> dict[str, Any]:
    levels: dict[str, dict[int, dict[str, Any]]] = {s: {} for s in SIDES}
    for side in SIDES:
        for conc in args.concurrency:
            bs = [b for b in batches if b.side == side and b.concurrency == conc]
            levels[side][conc] = {
                "tok_s": median([b.tok_s for b in bs]),
                "wall_s": median([b.wall_s for b in bs]),
                "ttft_p50_ms": median([b.ttft_p50_ms for b in bs]),
                "ttft_p99_ms": median([b.ttft_p99_ms for b in bs]),
                "tokens": median([b.tokens for b in bs]),
                "errors": sum(len(b.errors) for b in bs),
                "finish": sorted({f for b in bs for f in b.finish}),
                "baimo_cpu_s": median([b.baimo_cpu_s for b in bs if b.baimo_cpu_s is not None]),
            }
    short: dict[str, dict[str, Any]] = {}
    for side in SIDES:
        rs = [r for r in shorts if r["side"] == side]
        ttfts = [r["short_ttft_ms"] for r in rs if r["short_ttft_ms"] is not None]
        short[side] = {
            "ttft_ms": median(ttfts),
            "ttft_max_ms": max(ttfts) if ttfts else float("nan"),
            "total_ms": median([r["short_total_ms"] for r in rs if r["short_total_ms"] is not None]),
            "alongside": sum(1 for r in rs if r["short_first_before_long_end"]),
            "rounds": len(rs),
            "errors": sum(len(r["errors"]) for r in rs),
        }
    return {"levels": levels, "short": short}


def goals(args: argparse.Namespace, summary: dict[str, Any]) -> list[dict[str, Any]]:
    b, r = summary["levels"]["baimo"], summary["levels"]["raw"]
    out = []

    def goal(name: str, measured: float | None, limit: str, ok: bool | None, raw: float | None) -> None:
        out.append({"goal": name, "measured": measured, "raw": raw, "target": limit,
                    "met": ok, "verdict": "n/a" if ok is None else ("met" if ok else "MISSED")})

    if 1 in b and 4 in b:
        scale = b[4]["wall_s"] / b[1]["wall_s"]
        goal("(a) wall, 4 streams / 1 stream (baimo)", scale, f"<= {GOAL_SCALING:g}", scale <= GOAL_SCALING,
             r[4]["wall_s"] / r[1]["wall_s"])
    else:
        goal("(a) wall, 4 streams / 1 stream (baimo)", None, f"<= {GOAL_SCALING:g}", None, None)
    s = summary["short"]
    if args.long_streams > 0 and s["baimo"]["rounds"]:
        ttft = s["baimo"]["ttft_ms"] / 1000
        goal(f"(b) short request TTFT during {args.long_streams} long streams, s (baimo)", ttft,
             f"<= {GOAL_SHORT_TTFT_S:g}", ttft <= GOAL_SHORT_TTFT_S, s["raw"]["ttft_ms"] / 1000)
    else:
        goal("(b) short request TTFT during long streams, s (baimo)", None, f"<= {GOAL_SHORT_TTFT_S:g}", None, None)
    if 1 in b:
        ratio = b[1]["tok_s"] / r[1]["tok_s"]
        goal("(c) tok/s baimo / raw, 1 stream", ratio, f">= {GOAL_RATIO:g}", ratio >= GOAL_RATIO, 1.0)
    else:
        goal("(c) tok/s baimo / raw, 1 stream", None, f">= {GOAL_RATIO:g}", None, None)
    return out


def report(args: argparse.Namespace, title: str, summary: dict[str, Any], goal_rows: list[dict[str, Any]],
           notes: list[str]) -> None:
    lv = summary["levels"]
    rows = []
    for conc in args.concurrency:
        for side in SIDES:
            x = lv[side][conc]
            base1 = lv[side].get(1, {}).get("wall_s")
            rows.append([
                str(conc), side, x["tok_s"], x["tok_s"] / lv["raw"][conc]["tok_s"], x["wall_s"],
                x["wall_s"] / base1 if base1 else None, x["ttft_p50_ms"], x["ttft_p99_ms"], f"{x['tokens']:g}",
                "-" if side == "raw" else f"{x['baimo_cpu_s']:.2f}", str(x["errors"]), "/".join(x["finish"]),
            ])
    print()
    print_table(
        title,
        ["streams", "path", "tok/s", "÷ raw", "wall s", "wall ÷ 1 stream", "ttft p50 ms", "ttft p99 ms",
         "tokens", "baimo cpu s", "errors", "finish"],
        rows,
        notes=notes,
    )
    s = summary["short"]
    if args.long_streams > 0:
        print()
        print_table(
            f"Short request (max_tokens {args.short_max_tokens}) sent once {args.long_streams} long streams "
            f"(max_tokens {args.long_max_tokens}) all streamed their first token - median of {args.rounds}",
            ["path", "ttft ms", "ttft max ms", "÷ raw", "total ms", "served alongside", "errors"],
            [[side, s[side]["ttft_ms"], s[side]["ttft_max_ms"], s[side]["ttft_ms"] / s["raw"]["ttft_ms"],
              s[side]["total_ms"], f"{s[side]['alongside']}/{s[side]['rounds']}", str(s[side]["errors"])]
             for side in SIDES],
            notes=["served alongside = its first token came before any long stream ended (else it waited for a "
                   "slot to free)."],
        )
    print()
    print_table(
        "Goals (Baimo side; raw = the same measure without Baimo, same run)",
        ["goal", "measured", "raw", "target", "verdict"],
        [[g["goal"], g["measured"], g["raw"], g["target"], g["verdict"]] for g in goal_rows],
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(LOCAL_MODELS), default="qwen0.5b",
                   help="qwen0.5b = Qwen2.5-Coder-0.5B Q4_K_M (default); smollm2 = SmolLM2-135M, the test model")
    p.add_argument("--concurrency", type=parse_int_list, default=[1, 4, 8], help="streams per batch, e.g. 1,4,8")
    p.add_argument("--max-tokens", type=int, default=128, help="max_tokens of every stream of the batches")
    p.add_argument("--rounds", type=int, default=3, help="measured batches per side and level (median reported)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads, both sides")
    p.add_argument("--parallel", type=int, default=ModelConfig.model_fields["parallel"].default,
                   help="llama-server slots, both sides (default: Baimo's default)")
    p.add_argument("--long-streams", type=int, default=4, help="long streams of the short-request test (0: skip)")
    p.add_argument("--long-max-tokens", type=int, default=256)
    p.add_argument("--short-max-tokens", type=int, default=8)
    p.add_argument("--no-prompt-cache", action="store_true", help="send `cache_prompt: false`: every request "
                   "processes its whole prompt (by default a slot reuses the KV cache of the same earlier prompt)")
    p.add_argument("--no-pull", action="store_true", help="fail instead of pulling a missing model file")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per request and per server start")
    p.add_argument("--json", default=None, metavar="PATH", help="also write results as JSON ('-' = stdout)")
    p.add_argument("--keep-home", action="store_true", help="keep Baimo's BAIMO_HOME and the raw server's log")
    args = p.parse_args()
    global PROMPT_CACHE
    PROMPT_CACHE = not args.no_prompt_cache

    from baimo.engine import build
    from baimo.engine.worker import WorkerSpec

    engine = build.installed()
    if engine is None:
        raise SystemExit("cannot run: llama-server is not built on this machine; run `.venv/bin/baimo engine build`")
    reason = baimo_available()
    if reason:
        raise SystemExit(f"cannot run Baimo: {reason}")
    path = ensure_local_model(args.model, pull=not args.no_pull)
    info = LOCAL_MODELS[args.model]

    entry = local_model_entry(args.model, threads=args.threads)
    entry.update({"parallel": args.parallel, "keep_alive": 0})  # never unloaded while the raw side runs
    spec = WorkerSpec(model_id=entry["id"], server=engine.server, model_path=path,
                      context_window=entry["context_window"], parallel=args.parallel, threads=args.threads)
    config = {"default_model": entry["id"], "models": [entry]}
    env = {"BAIMO_LLAMA_THREADS": str(args.threads)}
    print(f"model {path} ({MODELS_DIR}); engine {engine.root}; {args.threads} threads, {args.parallel} slots, "
          f"{os.cpu_count()} CPUs; levels {args.concurrency}, max_tokens {args.max_tokens}, {args.rounds} rounds",
          flush=True)

    load_start = os.getloadavg()[0]
    raw = RawServer(spec, keep_log=args.keep_home)
    server = BaimoServer(config, env=env, keep_home=args.keep_home, extra_args=["--log-level", "warning"])
    try:
        print(f"raw llama-server ready in {raw.start(args.timeout):.2f}s: {' '.join(raw.argv)}", flush=True)
        server.start(timeout=args.timeout)
        print(f"baimo serve ready in {server.startup_seconds:.2f}s at {server.url} (home {server.home})", flush=True)
        # load the model in Baimo's worker before anything is timed, then check it runs the same command line
        t = time.perf_counter()
        httpx.post(server.url + "/v1/chat/completions", timeout=args.timeout, json={
            "model": entry["id"], "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}).raise_for_status()
        print(f"Baimo's worker loaded in {time.perf_counter() - t:.2f}s", flush=True)
        baimo_argv = worker_argv(server.pid, engine.server)
        same_argv = baimo_argv is not None and without_port(baimo_argv) == without_port(raw.argv)
        if not same_argv:
            print(f"WARNING: Baimo's worker runs {baimo_argv}\n     raw llama-server runs {raw.argv}", flush=True)
        sides = {
            "raw": Side("raw", raw.url, entry["id"], None, args.timeout),
            "baimo": Side("baimo", server.url, entry["id"], server.pid, args.timeout),
        }
        data = asyncio.run(measure(args, sides))
        load_end = os.getloadavg()[0]
    finally:
        server.stop()
        raw.stop()

    batches: list[Batch] = data["batches"]
    summary = summarise(args, batches, data["shorts"])
    goal_rows = goals(args, summary)
    texts = {side: {t for b in batches if b.side == side and b.concurrency == 1 for t in b.texts} for side in SIDES}
    same_text = bool(texts["raw"]) and texts["raw"] == texts["baimo"]
    notes = [
        "tok/s = completion tokens of all streams (usage) / wall time of the batch (all streams start at once, the "
        "batch ends with its last stream); ttft = request -> first content token, per stream.",
        "÷ raw = Baimo / raw at the same level; wall ÷ 1 stream = the level's wall time / that side's 1-stream wall.",
        f"baimo cpu s = CPU time of the `baimo serve` process per batch; {os.cpu_count()} CPUs are shared by the "
        f"client, Baimo and llama-server ({args.threads} threads); 1-minute load average {load_start:.2f} before "
        f"the servers started (near 0 when idle), {load_end:.2f} at the end (this benchmark alone adds about "
        f"{args.threads + 1}).",
        "prompt cache off (--no-prompt-cache): every request processes its whole prompt." if args.no_prompt_cache
        else "every stream sends the same prompt: after the warm-up each slot holds its KV cache, so ttft is mostly "
        "one decode step (--no-prompt-cache measures full prompt processing).",
        f"same llama-server command line on both sides: {'yes' if same_argv else 'NO (see the warning above)'}; "
        f"same greedy text at 1 stream: {'yes' if same_text else 'NO'}.",
    ]
    over = [c for c in args.concurrency if c > args.parallel]
    if over:
        queued = ", ".join(f"{c - args.parallel} of {c}" for c in over)
        notes.append(f"{args.parallel} slots: at {'/'.join(map(str, over))} streams, {queued} requests wait for a "
                     "slot (raw: inside llama-server; Baimo: in its own admission queue), so their ttft includes a "
                     "whole earlier answer (p99).")
    if args.long_streams >= args.parallel:
        notes.append(f"the short-request test's {args.long_streams} long streams fill all {args.parallel} slots: the "
                     "short request waits for one to free (raise --parallel to leave it a slot).")
    report(args, f"{path.name}: {args.threads} threads, {args.parallel} slots, max_tokens {args.max_tokens}, "
           f"temperature 0, median of {args.rounds} rounds", summary, goal_rows, notes)
    dump_json(args.json, {
        "model": path.name,
        "catalogue": info["catalogue"],
        "engine": engine.manifest,
        "config": {"concurrency": args.concurrency, "max_tokens": args.max_tokens, "rounds": args.rounds,
                   "prompt_cache": not args.no_prompt_cache,
                   "threads": args.threads, "parallel": args.parallel, "long_streams": args.long_streams,
                   "long_max_tokens": args.long_max_tokens, "short_max_tokens": args.short_max_tokens,
                   "cpus": os.cpu_count(), "load_average_start": load_start, "load_average_end": load_end},
        "argv": raw.argv,
        "baimo_worker_argv": baimo_argv,
        "same_argv": same_argv,
        "same_text_1_stream": same_text,
        "batches": [{k: v for k, v in asdict(b).items() if k != "texts"} for b in batches],
        "short_requests": data["shorts"],
        "summary": summary,
        "goals": goal_rows,
    })


if __name__ == "__main__":
    main()
