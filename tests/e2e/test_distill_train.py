"""`baimo distill train` for real: SmolLM2-135M, LoRA SFT on a handful of rows, a checkpoint, a resume that goes on
counting, merge, llama.cpp's converter to q8_0 GGUF, registration in baimo.yaml, and the new model answering
through a real `baimo serve` (the CLI as a subprocess, the official openai client)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.server import BAIMO, SMOLLM_YAML, BaimoServer, models_dir

pytestmark = pytest.mark.e2e

# A narrow task with one fixed output format: the kind of data `baimo distill export` writes (meta is dropped).
ROWS = [{"messages": [{"role": "user", "content": f"Order {n} {item}, please."},
                      {"role": "assistant", "content": json.dumps({"item": item, "qty": n})}],
         "meta": {"source": "test"}}
        for n, item in [(2, "apples"), (5, "pears"), (1, "lemons"), (3, "plums"), (4, "figs"), (6, "limes")]]


def _baimo(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BAIMO_HOME": str(home), "BAIMO_MODELS_DIR": models_dir()}
    return subprocess.run([str(BAIMO), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_train_checkpoint_resume_convert_register_and_serve(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "baimo.yaml").write_text(SMOLLM_YAML, encoding="utf-8")
    data = tmp_path / "orders.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    common = ["--max-seq-len", "64", "--batch-size", "2", "--threads", "1", "--save-every", "3", "--json"]

    first = _baimo(home, "distill", "train", "--base", "local/smollm2-135m", "--data", str(data), "--out", "orders",
                   "--steps", "3", "--no-register", *common)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads(first.stdout)
    assert (report["global_step"], report["steps_this_run"], report["resumed_from"]) == (3, 3, None)
    assert report["loss"] > 0 and "gguf" not in report
    run = home / "distill" / "orders"
    assert (run / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors").is_file()
    assert "sft step 3/3" in first.stderr and "steps/s" in first.stderr and "ETA" in first.stderr

    resumed = _baimo(home, "distill", "train", "--out", "orders", "--resume", "--steps", "5", "--json")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout)
    assert (report["resumed_from"], report["global_step"], report["steps_this_run"]) == (3, 5, 2)
    assert "sft step 4/5" in resumed.stderr and "sft step 1/" not in resumed.stderr
    assert report["options"]["max_seq_len"] == 64 and report["options"]["lora_r"] == 8  # the run's own options
    assert (run / "checkpoints" / "checkpoint-5").is_dir()
    gguf = Path(report["gguf"])
    assert gguf.is_file() and gguf.name == "orders.q8_0.gguf" and gguf.read_bytes()[:4] == b"GGUF"
    assert report["check_reply"].strip()  # the real engine loaded it and chatted (multi-token prompt)
    assert report["model_id"] == "local/orders"

    entry = next(m for m in yaml.safe_load((home / "baimo.yaml").read_text())["models"] if m["id"] == "local/orders")
    assert entry["kind"] == "llamacpp" and entry["path"] == str(gguf) and entry["context_window"] == 2048
    assert entry["threads"] == 1  # serving settings of the base
    listed = _baimo(home, "models", "--json")
    assert listed.returncode == 0, listed.stderr
    row = next(r for r in json.loads(listed.stdout) if r["id"] == "local/orders")
    assert row["weights_present"] is True

    from openai import OpenAI

    with BaimoServer(tmp_path / "server", config_yaml=(home / "baimo.yaml").read_text()) as server:
        client = OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="local/orders", max_tokens=16, temperature=0,
                                               messages=[{"role": "user", "content": "Order 7 cherries, please."}])
    assert reply.model == "local/orders"
    assert reply.choices[0].message.content.strip()
    assert reply.usage.prompt_tokens > 5 and reply.usage.completion_tokens > 0


def test_dpo_after_sft_trains_on_preference_pairs(tmp_path: Path) -> None:
    """`--dpo`: after SFT, DPO with a fresh LoRA on pairs like `baimo distill export --pairs` writes (the prompt,
    the answer a thumbs-up or the verifier kept, the one it turned down); its steps are reported and logged."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "baimo.yaml").write_text(SMOLLM_YAML, encoding="utf-8")
    data = tmp_path / "orders.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:2]), encoding="utf-8")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({
        "prompt": r["messages"][:1], "chosen": r["messages"][1]["content"],
        "rejected": "Sorry, I cannot help with orders."}) + "\n" for r in ROWS[:4]), encoding="utf-8")
    proc = _baimo(home, "distill", "train", "--base", "local/smollm2-135m", "--data", str(data), "--out", "prefs",
                  "--steps", "1", "--dpo", str(pairs), "--dpo-steps", "2", "--max-seq-len", "64", "--batch-size",
                  "2", "--threads", "1", "--no-register", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["global_step"] == 1 and report["dpo_steps"] == 2
    assert "dpo step 2/2" in proc.stderr and "loss" in proc.stderr
    assert (home / "distill" / "prefs" / "dpo-checkpoints").is_dir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "chosen": "same", "rejected": "same"}) + "\n", encoding="utf-8")
    proc = _baimo(home, "distill", "train", "--base", "local/smollm2-135m", "--data", str(data), "--out", "p2",
                  "--dpo", str(bad), "--no-register")
    assert proc.returncode != 0 and "chosen and rejected are the same answer" in proc.stderr.strip().splitlines()[-1]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "baimo.yaml").write_text(SMOLLM_YAML, encoding="utf-8")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n", encoding="utf-8")
    cases = [
        (["--out", "bad name", "--base", "local/smollm2-135m", "--data", str(data)], "invalid name"),
        (["--out", "x", "--resume"], "--base and --data are required"),
        (["--out", "x", "--base", "local/nope", "--data", str(data)], "no model 'local/nope'"),
        (["--out", "x", "--base", "local/smollm2-135m", "--data", str(data)], "last message must be the assistant"),
    ]
    for args, expected in cases:
        proc = _baimo(home, "distill", "train", *args)
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], (args, proc.stderr)
    proc = _baimo(home, "distill", "register", "nothing")
    assert proc.returncode != 0 and "give --base" in proc.stderr
