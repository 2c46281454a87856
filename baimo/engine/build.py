"""Build llama.cpp's `llama-server` once per install, portably, from the source the llama-cpp-python sdist vendors.

Why a portable build: a `-march=native` binary made on one CPU can hit illegal instructions on another, and
a native build on a Xeon with AMX compiled ggml's AMX matrix-multiply path, which segfaults on the first
multi-token decode there (see ../shared/MODELS.md). So the build uses llama.cpp's own runtime CPU dispatch:
`GGML_BACKEND_DL=ON` + `GGML_CPU_ALL_VARIANTS=ON` compile the CPU backend several times for different
instruction sets, and at start the server loads the best variant the CPU supports
(`ggml_backend_load_best` in ggml/src/ggml-backend-reg.cpp). We build only the variants in `CPU_VARIANTS`;
`sapphirerapids`, the only variant compiled with AMX, is left out, so an AMX CPU loads the AVX-512
`icelake` variant instead. `GGML_NATIVE=OFF` keeps the build machine's CPU out of every flag.

Where it goes: `BAIMO_ENGINE_DIR` (default `~/.cache/baimo/engine`), one folder per build key (a hash of
the source's SHA-256, the flags and the variant list), so a fresh clone or a new venv reuses a finished
build and a change of flags builds anew. A build happens in a temporary folder and is renamed into place
when it is complete, under a file lock, so a killed build never leaves a half engine behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from baimo.errors import ConfigError

# The llama.cpp source: the copy vendored in this llama-cpp-python sdist (PyPI), pinned by hash.
SOURCE_PACKAGE = "llama-cpp-python"
SOURCE_VERSION = "0.3.36"
SOURCE_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
SOURCE_SUBDIR = f"llama_cpp_python-{SOURCE_VERSION}/vendor/llama.cpp"

# CPU backend variants built (names and instruction sets from ggml/src/CMakeLists.txt), picked at run time by
# the CPU's instructions: x64 (SSE2: any x86-64 CPU), haswell (AVX2/FMA: Intel since 2013, every AMD Zen),
# skylakex (AVX-512), icelake (AVX-512 VBMI/VNNI: also what Sapphire Rapids and Zen 4 load). No AMX variant;
# the other variants of the list would each add ~3 minutes of build for a few percent on rare CPUs.
CPU_VARIANTS = ("x64", "haswell", "skylakex", "icelake")
X86_VARIANTS = ("x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell", "skylakex", "cannonlake",
                "cascadelake", "icelake", "cooperlake", "zen4", "alderlake", "sapphirerapids")

CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_NATIVE=OFF",             # nothing tuned to the build machine's CPU
    "-DGGML_BACKEND_DL=ON",          # CPU backends are shared libraries chosen at run time ...
    "-DGGML_CPU_ALL_VARIANTS=ON",    # ... one per instruction-set level (we build CPU_VARIANTS of them)
    "-DGGML_AMX_TILE=OFF", "-DGGML_AMX_INT8=OFF", "-DGGML_AMX_BF16=OFF",
    "-DLLAMA_BUILD_SERVER=ON", "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",  # no web UI, and nothing downloaded at build time
    "-DLLAMA_CURL=OFF", "-DLLAMA_OPENSSL=OFF",               # the worker never fetches models itself
    "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN",  # the folder can move as a whole
)

SERVER_BINARY = "llama-server"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Engine:
    """A finished build: `server` is the llama-server binary; `manifest` says how it was built."""

    root: Path
    manifest: dict

    @property
    def server(self) -> Path:
        return self.root / SERVER_BINARY


def engine_home() -> Path:
    """Where engine builds live: BAIMO_ENGINE_DIR, else $XDG_CACHE_HOME/baimo/engine or ~/.cache/baimo/engine."""
    if os.environ.get("BAIMO_ENGINE_DIR"):
        return Path(os.environ["BAIMO_ENGINE_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "baimo" / "engine"


def build_key() -> str:
    """A short hash of everything that decides the binary: source, flags, variants."""
    spec = json.dumps({"sha256": SOURCE_SHA256, "flags": CMAKE_FLAGS, "variants": CPU_VARIANTS})
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def installed() -> Engine | None:
    """The engine for the current build key, or None when it has not been built on this machine."""
    root = engine_home() / build_key()
    manifest = root / "build.json"
    if not (root / SERVER_BINARY).exists() or not manifest.exists():
        return None
    return Engine(root, json.loads(manifest.read_text(encoding="utf-8")))


def require() -> Engine:
    """The installed engine; raises ConfigError naming the command that builds it."""
    engine = installed()
    if engine is None:
        raise ConfigError("the local model engine (llama-server) is not built on this machine; "
                          "run `baimo engine build` (make install does it)")
    return engine


def fetch_source(work: Path, progress: Progress, parts: tuple[str, ...] = ("",)) -> Path:
    """Download the sdist from PyPI into `work`, check its SHA-256, unpack the llama.cpp paths under `parts`
    (relative to vendor/llama.cpp; "" is all of it). Returns the llama.cpp folder. The converter of
    baimo/distill/convert.py takes its `convert_hf_to_gguf.py` and `gguf-py/` this way.

    Raises ConfigError when the download yields no single archive or its hash does not match."""
    progress(f"downloading {SOURCE_PACKAGE} {SOURCE_VERSION} (source of llama.cpp)")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                    "--dest", str(work), f"{SOURCE_PACKAGE}=={SOURCE_VERSION}"], check=True)
    archives = list(work.glob("*.tar.gz"))
    if len(archives) != 1:
        raise ConfigError(f"expected one source archive, found {[a.name for a in archives]}")
    digest = hashlib.sha256(archives[0].read_bytes()).hexdigest()
    if digest != SOURCE_SHA256:
        raise ConfigError(f"{archives[0].name}: SHA-256 {digest} does not match the pinned {SOURCE_SHA256}")
    progress("unpacking the llama.cpp source")
    prefixes = tuple(f"{SOURCE_SUBDIR}/{part}" for part in parts)
    with tarfile.open(archives[0]) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(prefixes)]
        tar.extractall(work, members=members, filter="data")
    return work / SOURCE_SUBDIR


def _fetch_source(work: Path, progress: Progress) -> Path:
    """The whole llama.cpp source with only the CPU variants we build left in its CMakeLists."""
    source = fetch_source(work, progress)
    keep_variants(source / "ggml" / "src" / "CMakeLists.txt", CPU_VARIANTS)
    return source


def keep_variants(cmake_lists: Path, variants: tuple[str, ...]) -> list[str]:
    """Comment out the x86 CPU variants not in `variants` in ggml/src/CMakeLists.txt (the `ggml` target depends
    on every variant listed there, so ninja cannot skip them by target). Returns the variants left in.

    Raises ConfigError when a wanted variant is not in the file (a new llama.cpp renamed it)."""
    text = cmake_lists.read_text(encoding="utf-8")
    kept: list[str] = []

    def edit(m: re.Match[str]) -> str:
        name = m.group(2)
        if name in variants:
            kept.append(name)
            return m.group(0)
        return f"{m.group(1)}# baimo: not built: {m.group(0).strip()}"

    text = re.sub(r"^(\s+)ggml_add_cpu_backend_variant\((\w+)\b[^)]*\)", lambda m: edit(m) if m.group(2) in
                  X86_VARIANTS else m.group(0), text, flags=re.M)
    missing = set(variants) - set(kept)
    if missing:
        raise ConfigError(f"{cmake_lists}: CPU variants {sorted(missing)} not found; update CPU_VARIANTS")
    cmake_lists.write_text(text, encoding="utf-8")
    return kept


def _run_build(cmd: list[str], progress: Progress) -> None:
    """Run the build, turning ninja's `[n/N]` (or make's `[ NN%]`) lines into progress; the last lines are kept
    for an error."""
    tail: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    last = 0.0
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        m = re.match(r"\[(\d+)/(\d+)\]", line)
        pct = re.match(r"\[\s*(\d+)%\]", line)
        if (m or pct) and time.monotonic() - last > 2:
            last = time.monotonic()
            progress(f"compiling {m.group(1)}/{m.group(2)}" if m else f"compiling {pct.group(1)}%")
    if proc.wait() != 0:
        raise ConfigError("building llama-server failed:\n" + "\n".join(tail))


def build(*, force: bool = False, progress: Progress = lambda _m: None, jobs: int | None = None) -> Engine:
    """Build llama-server with the CPU variants (or return the finished build). Takes minutes on 2 cores.

    Raises ConfigError when the download, the hash check or the compiler fails."""
    home = engine_home()
    home.mkdir(parents=True, exist_ok=True)
    key = build_key()
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second install waits for the first build instead of racing it
        if not force and (engine := installed()) is not None:
            return engine
        for tool in ("cmake", "c++"):
            if shutil.which(tool) is None:
                raise ConfigError(f"building llama-server needs `{tool}` (Debian: apt-get install cmake g++; "
                                  "ninja-build makes it faster)")
        ninja = shutil.which("ninja") is not None
        with tempfile.TemporaryDirectory(prefix=f"build-{key}-", dir=home) as tmp:
            work = Path(tmp)
            source = _fetch_source(work, progress)
            build_dir = work / "build"
            progress("configuring (cmake)")
            subprocess.run(["cmake", "-G", "Ninja" if ninja else "Unix Makefiles", "-S", str(source), "-B",
                            str(build_dir), *CMAKE_FLAGS],
                           check=True, stdout=subprocess.DEVNULL)
            targets = [SERVER_BINARY, *(f"ggml-cpu-{v}" for v in CPU_VARIANTS)]
            started = time.monotonic()
            n_jobs = str(jobs or os.cpu_count() or 2)
            _run_build(["ninja", "-C", str(build_dir), "-j", n_jobs, *targets] if ninja else
                       ["cmake", "--build", str(build_dir), "--parallel", n_jobs, "--target", *targets], progress)
            out = work / key
            out.mkdir()
            for f in (build_dir / "bin").iterdir():
                if f.name == SERVER_BINARY or f.suffix == ".so" or ".so." in f.name:
                    if f.is_symlink():  # libllama.so -> libllama.so.0 -> ...: keep the (relative) links
                        (out / f.name).symlink_to(os.readlink(f))
                    else:
                        shutil.copy2(f, out / f.name)
            manifest = {
                "engine": "llama.cpp llama-server",
                "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION} sdist (vendor/llama.cpp)",
                "source_sha256": SOURCE_SHA256,
                "cmake_flags": list(CMAKE_FLAGS),
                "cpu_variants": list(CPU_VARIANTS),
                "build_seconds": round(time.monotonic() - started),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "key": key,
            }
            (out / "build.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            final = home / key
            if final.exists():
                shutil.rmtree(final)
            os.replace(out, final)
    progress(f"llama-server built in {final}")
    engine = installed()
    assert engine is not None
    return engine


def system_info(model_path: Path, timeout: float = 120.0) -> dict[str, str]:
    """Start llama-server on `model_path` at trace verbosity and read what it says of the CPU: the
    `system_info:` line (the instruction sets the loaded CPU backend was compiled with, e.g. `AVX2 = 1`,
    `AMX_INT8 = 1`) and the `load_backend:` line (which variant library was chosen). Stops the server.

    Returns {"system_info": ..., "cpu_backend": ...}; raises ConfigError if the server exits or times out first."""
    import socket

    engine = require()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # -lv 4 first: both lines are logged at trace level, and arguments apply in order
    argv = [str(engine.server), "-lv", "4", "--model", str(model_path), "--host", "127.0.0.1", "--port", str(port),
            "--ctx-size", "256", "--parallel", "1", "--threads", "1", "--no-webui", "--no-warmup"]
    found: dict[str, str] = {}
    lines: list[str] = []
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            if "system_info:" in line:
                found["system_info"] = line.split("system_info:", 1)[1].strip()
            if "load_backend:" in line and "CPU" in line:
                found["cpu_backend"] = line.split("load_backend:", 1)[1].strip()
            if "system_info" in found and "cpu_backend" in found:
                return found
            if time.monotonic() > deadline:
                break
    finally:
        proc.kill()
        proc.wait()
    raise ConfigError("llama-server did not report its system info:\n" + "\n".join(lines[-15:]))
