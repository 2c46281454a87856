"""Hugging Face checkpoint -> GGUF with llama.cpp's own converter, and a chat check in the real engine.

The converter is `convert_hf_to_gguf.py` with its `conversion/` package and its `gguf-py/` library, taken from the
llama.cpp source vendored in the llama-cpp-python sdist that baimo/engine/build.py already downloads and
hash-checks (`build.fetch_source`), so the GGUF matches the llama-server that will run it. It is fetched once into
a folder beside the engine builds (`engine_home()/convert-<sha256 prefix>`), under the same file lock, and run with
this interpreter (it needs torch, numpy and transformers' tokenizers: the `distill` extra).

Output types (`--outtype` of the converter): `q8_0` (default: 8-bit blocks of 32 weights with one f16 scale,
~8.5 bits per weight, quantized by the converter itself, so llama-quantize is not needed), `f16`, `bf16`, `f32`.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from baimo.engine import build
from baimo.errors import ConfigError

OutType = Literal["q8_0", "f16", "bf16", "f32"]
OUT_TYPES: tuple[str, ...] = ("q8_0", "f16", "bf16", "f32")
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
CONVERTER_SCRIPT = "convert_hf_to_gguf.py"
Progress = Callable[[str], None]


def converter_home() -> Path:
    """The converter's folder beside the engine builds, named by the pinned source's hash (a new source, a new
    folder)."""
    return build.engine_home() / f"convert-{build.SOURCE_SHA256[:16]}"


def ensure_converter(progress: Progress = lambda _m: None) -> Path:
    """The converter script, fetched from the hash-checked sdist on first use (a few seconds, ~2 MB unpacked).

    Raises ConfigError when the download or the hash check fails."""
    home = converter_home()
    script = home / CONVERTER_SCRIPT
    if script.exists():
        return script
    build.engine_home().mkdir(parents=True, exist_ok=True)
    with open(build.engine_home() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the same lock as the engine build: one fetch at a time
        if script.exists():
            return script
        with tempfile.TemporaryDirectory(prefix="convert-", dir=build.engine_home()) as tmp:
            source = build.fetch_source(Path(tmp), progress, CONVERTER_PARTS)
            staged = Path(tmp) / "converter"
            staged.mkdir()
            for part in CONVERTER_PARTS:
                name = part.rstrip("/")
                os.replace(source / name, staged / name)
            if home.exists():
                shutil.rmtree(home)
            os.replace(staged, home)
    return script


def convert(hf_dir: Path, out_path: Path, outtype: OutType = "q8_0",
            progress: Progress = lambda _m: None) -> Path:
    """Convert the Hugging Face model folder `hf_dir` (config.json, safetensors, tokenizer files) to the GGUF
    file `out_path` with weights of `outtype`; the tokenizer and its chat template go into the GGUF's metadata.
    Written to a temporary name and renamed when complete. Returns `out_path`.

    Raises ConfigError (with the converter's last lines) when it fails or `outtype` is unknown."""
    if outtype not in OUT_TYPES:
        raise ConfigError(f"unknown GGUF type {outtype!r}; choose one of {', '.join(OUT_TYPES)}")
    script = ensure_converter(progress)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(script.parent / "gguf-py"), str(script.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    progress(f"converting to GGUF ({outtype})")
    proc = subprocess.run([sys.executable, str(script), str(hf_dir), "--outfile", str(partial),
                           "--outtype", outtype], capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not partial.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        partial.unlink(missing_ok=True)
        raise ConfigError(f"convert_hf_to_gguf.py failed on {hf_dir}:\n{tail}")
    os.replace(partial, out_path)
    return out_path


async def _chat_once(model_path: Path, prompt: str, max_tokens: int, context_window: int) -> str:
    import aiohttp

    from baimo.engine.worker import Worker, WorkerSpec

    engine = build.require()
    worker = Worker(WorkerSpec(model_id="check", server=engine.server, model_path=model_path,
                               context_window=context_window, parallel=1, threads=1, keep_alive=None))
    try:
        url = await worker.url()
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
        async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/chat/completions", json=body) as resp:
            data = await resp.json()
            if resp.status != 200:
                raise ConfigError(f"{model_path.name}: llama-server answered {resp.status}: {data}")
        return data["choices"][0]["message"]["content"] or ""
    finally:
        await worker.close()


def check_chat(model_path: Path, prompt: str = "Name three colours of the rainbow.", max_tokens: int = 24,
               context_window: int = 512) -> tuple[str, float]:
    """Load the GGUF in the real engine (a llama-server worker, 1 thread) and ask a multi-token chat prompt
    through its chat template. Returns (reply text, seconds for load + reply).

    Raises ConfigError when the engine is not built, the file does not load or the reply is empty."""
    started = time.monotonic()
    reply = asyncio.run(_chat_once(model_path, prompt, max_tokens, context_window))
    if not reply.strip():
        raise ConfigError(f"{model_path.name}: the engine loaded it but its chat reply was empty")
    return reply, time.monotonic() - started
