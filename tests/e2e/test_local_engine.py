"""The local engine: a portable llama-server build (runtime CPU dispatch, no AMX path) that really chats."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from baimo.backends import catalogue
from baimo.engine import build
from tests.support.server import BAIMO, models_dir

pytestmark = pytest.mark.e2e
MODEL = "local/smollm2-135m"
# Instructions only an AMX build contains (tile configuration and the int8/bf16 tile dot products).
AMX_MNEMONICS = ("ldtilecfg", "tdpbssd", "tdpbsud", "tdpbusd", "tdpbuud", "tdpbf16ps", "tileloadd")


@pytest.fixture(scope="module")
def engine() -> build.Engine:
    engine = build.installed()
    if engine is None:
        pytest.fail("the engine is not built: run `baimo engine build` (make install does it)")
    return engine


def test_build_flags_are_portable_and_exclude_amx(engine) -> None:
    flags = engine.manifest["cmake_flags"]
    assert "-DGGML_NATIVE=OFF" in flags, "a native build is tuned to the build machine's CPU"
    assert "-DGGML_BACKEND_DL=ON" in flags and "-DGGML_CPU_ALL_VARIANTS=ON" in flags  # runtime CPU dispatch
    assert not [f for f in flags if f.startswith("-DGGML_AMX") and not f.endswith("=OFF")]
    assert not [f for f in flags if "native" in f.lower() and f != "-DGGML_NATIVE=OFF"]
    on_disk = {p.name for p in engine.root.glob("libggml-cpu-*.so")}
    assert "libggml-cpu-x64.so" in on_disk, "no baseline variant: some x86-64 CPUs could load nothing"
    assert {f"libggml-cpu-{v}.so" for v in build.CPU_VARIANTS} <= on_disk
    assert not [n for n in on_disk if "sapphirerapids" in n], "the AMX variant must not be built"
    assert not (engine.root / "libggml-cpu.so").exists(), "a single CPU backend is a native-style build"


def test_no_engine_library_contains_amx_instructions(engine) -> None:
    for lib in sorted(engine.root.glob("libggml*.so")):
        asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                             check=True).stdout
        found = [m for m in AMX_MNEMONICS if f"\t{m} " in asm or f" {m} " in asm]
        assert not found, f"{lib.name} contains AMX instructions: {found}"


def test_system_info_of_a_real_run(engine) -> None:
    """What llama.cpp itself reports at start: the variant it loaded for this CPU and its instruction sets."""
    path = catalogue.model_path(Path(models_dir()), "smollm2-135m-instruct-q4_1")
    info = build.system_info(path)
    assert "AMX_INT8 = 1" not in info["system_info"] and "AMX" not in info["cpu_backend"]
    assert "CPU :" in info["system_info"] or "SSE3" in info["system_info"]
    loaded = info["cpu_backend"].rsplit("libggml-cpu-", 1)[-1].split(".so")[0]
    assert loaded in build.CPU_VARIANTS, info["cpu_backend"]


def test_engine_info_cli(engine) -> None:
    out = subprocess.run([str(BAIMO), "engine", "info", "--json"], capture_output=True, text=True, check=True)
    import json

    facts = json.loads(out.stdout)
    assert facts["cpu_variants_on_disk"] == sorted(build.CPU_VARIANTS)
    assert "version" in facts["version"] and facts["root"] == str(engine.root)


def test_a_long_prompt_decodes_in_batches(client) -> None:
    """A prompt of well over 64 tokens is decoded as a batch (where the AMX path crashed on Sapphire Rapids)."""
    text = ("The river Loire flows through France, past Orléans, Tours and Nantes, into the Atlantic Ocean. "
            "Its valley is known for castles, vineyards and old towns. ") * 4
    c = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text + "Which ocean?"}],
                                       max_tokens=16, temperature=0)
    assert c.usage.prompt_tokens >= 64
    assert c.choices[0].message.content and c.choices[0].finish_reason in ("stop", "length")
