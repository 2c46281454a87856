"""The `baimo` CLI run as a subprocess, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import SMOLLM_YAML

pytestmark = pytest.mark.e2e
BAIMO = str(Path(sys.executable).parent / "baimo")
MODEL = "local/smollm2-135m"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BAIMO, *args], capture_output=True, text=True, input=stdin, timeout=120)


@pytest.fixture
def home(baimo_home: Path) -> Path:
    baimo_home.mkdir(parents=True, exist_ok=True)
    (baimo_home / "baimo.yaml").write_text(SMOLLM_YAML)
    return baimo_home


def test_help_documents_every_command() -> None:
    out = run("--help").stdout
    for command in ("serve", "chat", "models", "conversations", "keys", "router", "kb", "persona"):
        assert command in out
    kb = run("kb", "--help").stdout
    for command in ("create", "add", "list", "docs", "remove", "search", "delete"):
        assert command in kb
    persona = run("persona", "--help").stdout
    for command in ("create", "update", "list", "show", "delete", "usage"):
        assert command in persona
    assert "--json" in run("conversations", "list", "--help").stdout
    assert "pull" in run("models", "--help").stdout


def test_default_config_is_written_on_first_use(baimo_home: Path) -> None:
    out = run("models", "--json")
    assert out.returncode == 0, out.stderr
    ids = [m["id"] for m in json.loads(out.stdout)]
    assert ids[0] == "local/qwen2.5-coder-0.5b" and (baimo_home / "baimo.yaml").exists()


def test_models_json(home: Path) -> None:
    models = json.loads(run("models", "--json").stdout)
    assert models == [{"id": MODEL, "kind": "llamacpp", "context_window": 2048, "price_input": 0.02,
                       "price_output": 0.05, "default": True, "weights_present": True, "fallbacks": [],
                       "description": "SmolLM2-135M-Instruct for tests"}]
    assert MODEL in run("models").stdout


def test_chat_once_then_list_show_export(home: Path, tmp_path: Path) -> None:
    out = run("chat", "-m", MODEL, "--max-tokens", "8", "--temperature", "0", "Say hello.")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()
    assert MODEL in out.stderr and "tokens" in out.stderr
    convs = json.loads(run("conversations", "list", "--json").stdout)
    assert len(convs) == 1 and convs[0]["title"] == "Say hello."
    shown = json.loads(run("conversations", "show", convs[0]["id"], "--json").stdout)
    assert [m["role"] for m in shown["messages"]] == ["user", "assistant"]
    assert shown["messages"][1]["content"].strip() == out.stdout.strip()
    target = tmp_path / "conv.md"
    assert run("conversations", "export", convs[0]["id"], "--format", "markdown", "-o", str(target)).returncode == 0
    assert target.read_text().startswith("# Say hello.")
    assert json.loads(run("conversations", "export", convs[0]["id"]).stdout)["id"] == convs[0]["id"]
    assert run("conversations", "list", "-q", "hello").stdout.count("\n") == 1


def test_interactive_chat_keeps_history(home: Path) -> None:
    out = run("chat", "--max-tokens", "6", stdin="My name is Ada.\nWhat is my name?\n\n")
    assert out.returncode == 0, out.stderr
    conv = json.loads(run("conversations", "list", "--json").stdout)[0]
    messages = json.loads(run("conversations", "show", conv["id"], "--json").stdout)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[3]["tokens_in"] > messages[1]["tokens_in"]


@pytest.mark.parametrize("args,needle", [
    (("chat", "-m", "no/such-model", "hi"), "does not exist"),
    (("conversations", "show", "deadbeef"), "does not exist"),
    (("conversations", "export", "x", "--format", "pdf"), "unknown format"),
    (("keys", "revoke", "nobody"), "no API key"),
    (("models", "pull", "no/such"), "unknown model"),
])
def test_errors_are_one_line_and_nonzero(home: Path, args, needle) -> None:
    out = run(*args)
    assert out.returncode == 1
    assert needle in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_broken_config_is_one_line(home: Path) -> None:
    (home / "baimo.yaml").write_text("models:\n  - id: x\n    kind: llamacpp\n")
    out = run("models")
    assert out.returncode == 1 and "needs `catalogue` or `path`" in out.stderr and "Traceback" not in out.stderr
    (home / "baimo.yaml").write_text("models: [unclosed\n")
    out = run("serve", "--port", "1")
    assert out.returncode == 1 and "not valid YAML" in out.stderr
