"""Training rows (chat -> prompt/completion, preference pairs), run options and folders, and registration of a
fine-tuned model in baimo.yaml (real files, the default config with its comments)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from baimo.config import Settings, load_config
from baimo.distill.register import model_entry, register
from baimo.distill.train import TrainOptions, _resolve_options, last_checkpoint
from baimo.distill.train_data import dpo_example, load_dpo, load_sft, sft_example
from baimo.errors import ConfigError, Conflict, InvalidRequest, NotFound


def test_chat_row_becomes_prompt_and_final_answer() -> None:
    row = {"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"},
                        {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"},
                        {"role": "assistant", "content": "6", "name": "ignored"}], "meta": {"rating": 5}}
    ex = sft_example(row)
    assert ex["completion"] == [{"role": "assistant", "content": "6"}]  # the loss is on this only
    assert [m["role"] for m in ex["prompt"]] == ["system", "user", "assistant", "user"]  # earlier turns: context
    assert set(ex) == {"prompt", "completion"}  # meta dropped


@pytest.mark.parametrize(("row", "message"), [
    ({"text": "hi"}, "needs `messages`"),
    ({"messages": []}, "non-empty list"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "last message must be the assistant"),
    ({"messages": [{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}]}, "no user message"),
    ({"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "a"}]}, "role"),
    ({"messages": [{"role": "user", "content": ["parts"]}, {"role": "assistant", "content": "a"}]}, "text content"),
])
def test_bad_chat_rows_are_refused(row: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message) as info:
        sft_example(row, "f.jsonl row 3")
    assert info.value.param == "data" and "row 3" in str(info.value)


def test_preference_pairs() -> None:
    ex = dpo_example({"prompt": "Capital of France?", "chosen": "Paris.",
                      "rejected": [{"role": "assistant", "content": "Lyon."}], "meta": {}})
    assert ex == {"prompt": [{"role": "user", "content": "Capital of France?"}],
                  "chosen": [{"role": "assistant", "content": "Paris."}],
                  "rejected": [{"role": "assistant", "content": "Lyon."}]}
    with pytest.raises(InvalidRequest, match="same answer"):
        dpo_example({"prompt": "q", "chosen": "a", "rejected": "a"})
    with pytest.raises(InvalidRequest, match="needs `rejected`"):
        dpo_example({"prompt": "q", "chosen": "a"})
    with pytest.raises(InvalidRequest, match="one assistant message"):
        dpo_example({"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"})


def test_files_name_the_bad_row(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n")
    with pytest.raises(InvalidRequest, match=r"d.jsonl row 2: the last message"):
        load_sft(path)
    path.write_text(json.dumps(good) + "\n")
    assert len(load_sft(path)) == 1
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n")
    with pytest.raises(InvalidRequest, match="no rows"):
        load_dpo(empty)
    with pytest.raises(InvalidRequest, match="no such file"):
        load_sft(tmp_path / "missing.jsonl")


def test_options_are_checked() -> None:
    TrainOptions(base="b", data="d").check()
    for bad, param in [({"lora_r": 0}, "lora_r"), ({"steps": 0}, "steps"), ({"lr": 2.0}, "lr"),
                       ({"max_seq_len": 8}, "max_seq_len"), ({"epochs": 0}, "epochs")]:
        with pytest.raises(InvalidRequest) as info:
            TrainOptions(base="b", data="d", **bad).check()
        assert info.value.param == param


def test_resume_takes_the_stored_options_and_the_newest_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(InvalidRequest, match="nothing to resume"):
        _resolve_options(run, TrainOptions(base="b", data="d"), True, set())
    for n in (5, 40, 100):
        (run / "checkpoints" / f"checkpoint-{n}").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-x").mkdir()
    assert last_checkpoint(run / "checkpoints").name == "checkpoint-100"  # numeric, not lexical
    (run / "options.json").write_text(json.dumps({"base": "b", "data": "d", "lora_r": 16, "max_seq_len": 128,
                                                  "steps": 100}))
    opts, ckpt = _resolve_options(run, TrainOptions(base="b", data="d", steps=200), True, {"steps"})
    assert (opts.lora_r, opts.max_seq_len, opts.steps, ckpt.name) == (16, 128, 200, "checkpoint-100")
    with pytest.raises(InvalidRequest, match="--resume continues it"):
        _resolve_options(run, TrainOptions(base="b", data="d"), False, set())


def _gguf(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.q8_0.gguf"
    path.write_bytes(b"GGUF")
    return path


def test_register_adds_a_local_model_and_keeps_comments(baimo_home: Path, tmp_path: Path) -> None:
    settings = Settings()
    load_config(settings)  # the default baimo.yaml, with its comments
    before = settings.config_path.read_text()
    entry = register(settings, "tiny", _gguf(tmp_path), "local/smollm2-135m")
    assert (entry.id, entry.kind, entry.path, entry.context_window) == ("local/tiny", "llamacpp",
                                                                        str(_gguf(tmp_path)), 2048)
    assert entry.price_input == entry.price_output == 0
    text = settings.config_path.read_text()
    assert "# A remote OpenAI-compatible model, for example vLLM" in text
    assert "autopull: false          # 1.1 GB" in text
    assert text.count("\n") > before.count("\n")
    config = load_config(settings)
    assert [m.id for m in config.models][-1] == "local/tiny"
    assert config.models[-1].description.startswith("fine-tuned from local/smollm2-135m")
    # again: the entry is updated in place, not duplicated
    register(settings, "tiny", _gguf(tmp_path), "local/qwen2.5-coder-0.5b")
    config = load_config(settings)
    assert [m.id for m in config.models].count("local/tiny") == 1
    assert next(m for m in config.models if m.id == "local/tiny").context_window == 4096


def test_register_refusals(baimo_home: Path, tmp_path: Path) -> None:
    settings = Settings()
    with pytest.raises(NotFound, match="no such GGUF"):
        register(settings, "tiny", tmp_path / "none.gguf", "local/smollm2-135m")
    with pytest.raises(NotFound, match="no model 'local/nope'"):
        register(settings, "tiny", _gguf(tmp_path), "local/nope")
    with pytest.raises(InvalidRequest, match="invalid name"):
        register(settings, "a/b", _gguf(tmp_path), "local/smollm2-135m")
    with pytest.raises(Conflict, match="already in baimo.yaml"):  # a catalogue model is not overwritten
        register(settings, "smollm2-135m", _gguf(tmp_path), "local/smollm2-135m")
    register(settings, "tiny", _gguf(tmp_path), "local/smollm2-135m")
    with pytest.raises(Conflict):  # replace=False: an existing fine-tuned entry is not overwritten either
        register(settings, "tiny", _gguf(tmp_path), "local/smollm2-135m", replace=False)


def test_register_refuses_an_edit_that_breaks_the_config(baimo_home: Path, tmp_path: Path) -> None:
    settings = Settings()
    load_config(settings)
    raw = yaml.safe_load(settings.config_path.read_text())
    raw["models"].append({"id": "remote/x", "kind": "openai", "base_url": "http://127.0.0.1:9/v1"})
    settings.config_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(InvalidRequest, match="remote model"):
        register(settings, "tiny", _gguf(tmp_path), "remote/x")
    # a router pointing at local/tiny would now be satisfied; an id clash with a router is caught by validation
    raw["routers"].append({"id": "local/clash", "strategy": "rules", "default": "local/smollm2-135m"})
    settings.config_path.write_text(yaml.safe_dump(raw))
    before = settings.config_path.read_text()
    with pytest.raises(ConfigError, match="router ids must be unique"):
        register(settings, "clash", _gguf(tmp_path), "local/smollm2-135m")
    assert settings.config_path.read_text() == before  # nothing written


def test_entry_inherits_only_what_the_base_sets(baimo_home: Path, tmp_path: Path) -> None:
    from baimo.config import ModelConfig

    base = ModelConfig(id="local/b", kind="llamacpp", catalogue="c", context_window=1024, threads=1,
                       max_output_tokens=64)
    entry = model_entry("n", tmp_path / "n.gguf", base)
    assert {k: entry[k] for k in ("context_window", "threads", "max_output_tokens")} == {
        "context_window": 1024, "threads": 1, "max_output_tokens": 64}
    assert "parallel" not in entry and "catalogue" not in entry  # defaults stay defaults; the file is its own
