"""`baimo distill train | convert | register | prepare`: LoRA fine-tuning of a local model, GGUF conversion and
registration in baimo.yaml (added to `distill_app` of baimo/cli_distill.py).

Progress goes to stderr, one line per step; --json prints one JSON document (what was done, where, how fast) to
stdout. Every error is one line and a non-zero exit. Training needs the `distill` extra (pip install 'baimo[distill]').
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from baimo.cli_distill import distill_app
from baimo.cli_output import JsonOpt, err, print_json
from baimo.errors import ConfigError

OutTypeOpt = Annotated[str, typer.Option("--outtype", help="GGUF weights: q8_0 (8-bit, default), f16, bf16, f32.")]
NO_EXTRA = "training needs the distill extra: pip install 'baimo[distill]' (torch CPU build, transformers, trl, peft)"


def _require_extra() -> None:
    import importlib.util

    missing = [m for m in ("torch", "transformers", "trl", "peft", "datasets") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{NO_EXTRA}; missing: {', '.join(missing)}")


def _base_gguf(base_id: str) -> tuple[Any, Path]:
    """(the base's ModelConfig, its GGUF path); raises when it is not a local model or its file is not here."""
    from baimo.backends import catalogue
    from baimo.config import Settings, load_config
    from baimo.distill.register import local_base

    settings = Settings()
    base = local_base(load_config(settings), base_id)
    path = catalogue.weights_path(base.path, base.catalogue, settings.model_cache)
    if not path.is_file():
        raise ConfigError(f"{base_id}: its GGUF is not here ({path}); run `baimo models pull {base_id}`")
    return base, path


def _say(message: str) -> None:
    err.print(message, highlight=False, soft_wrap=True)


@distill_app.command("train")
def distill_train(
        out: Annotated[str, typer.Option("--out", help="Name of the result: served as local/NAME, files in "
                                         "BAIMO_HOME/distill/NAME.")],
        base: Annotated[str | None, typer.Option("--base", help="Local model id of baimo.yaml to fine-tune "
                                                 "(e.g. local/smollm2-135m); with --resume: the run's.")] = None,
        data: Annotated[Path | None, typer.Option("--data", help="SFT rows (JSONL, chat format: `baimo distill "
                                                  "export`); with --resume: the run's.")] = None,
        steps: Annotated[int | None, typer.Option("--steps", help="Optimizer steps (default: --epochs passes).")]
        = None,
        epochs: Annotated[float | None, typer.Option("--epochs", help="Passes over the data when --steps is "
                                                     "not given. Default: 1.")] = None,
        lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (AdamW, linear decay). "
                                                 "[default: 2e-4]")] = None,
        lora_r: Annotated[int | None, typer.Option("--lora-r", help="LoRA rank (alpha = 2 r). Default: 8.")]
        = None,
        max_seq_len: Annotated[int | None, typer.Option("--max-seq-len", help="Tokens per row (longer rows are "
                                                        "truncated). Default: 512.")] = None,
        batch_size: Annotated[int | None, typer.Option("--batch-size", help="Rows per step. Default: 4.")] = None,
        save_every: Annotated[int | None, typer.Option("--save-every", help="Checkpoint every N steps. "
                                                       "[default: 50]")] = None,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed. Default: 42.")] = None,
        threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch. Default: all "
                                                    "cores.")] = None,
        resume: Annotated[bool, typer.Option("--resume", help="Continue NAME's run from its last checkpoint.")]
        = False,
        dpo: Annotated[Path | None, typer.Option("--dpo", help="Preference pairs (JSONL, `baimo distill export "
                                                 "--pairs`): DPO after SFT.")] = None,
        dpo_steps: Annotated[int | None, typer.Option("--dpo-steps", help="DPO steps (default: one pass).")]
        = None,
        outtype: OutTypeOpt = "q8_0",
        register: Annotated[bool, typer.Option("--register/--no-register", help="Convert to GGUF and add "
                                               "local/NAME to baimo.yaml (default), or only train.")] = True,
        check: Annotated[bool, typer.Option("--check/--no-check", help="Chat once with the GGUF in the real "
                                            "engine before registering.")] = True,
        as_json: JsonOpt = False) -> None:
    """Fine-tune a local model with LoRA on the CPU (TRL SFT, optional DPO), then merge, convert to GGUF
    (llama.cpp's converter, q8_0), check it chats, and register it as local/NAME in baimo.yaml."""
    from dataclasses import asdict

    from baimo.config import Settings
    from baimo.distill import train as training
    from baimo.distill.register import model_id

    model_id(out)  # a bad name fails before a minute of loading
    _require_extra()
    settings = Settings()
    given = {"steps": steps, "epochs": epochs, "lr": lr, "lora_r": lora_r, "max_seq_len": max_seq_len,
             "batch_size": batch_size, "save_every": save_every, "seed": seed, "threads": threads,
             "dpo_steps": dpo_steps, "base": base, "data": str(data) if data else None,
             "dpo": str(dpo) if dpo else None}
    explicit = {k for k, v in given.items() if v is not None}
    stored = training.run_dir(settings.home, out) / training.OPTIONS_FILE
    if resume and stored.exists():
        import json

        previous = json.loads(stored.read_text(encoding="utf-8"))
        base, data = base or previous["base"], data or Path(previous["data"])
    if not base or not data:
        raise ConfigError("--base and --data are required (or --resume of an earlier run)")
    opts = training.TrainOptions(base=base, data=str(data), **{k: v for k, v in given.items() if k in explicit
                                                                and k not in ("base", "data")})
    base_cfg, gguf = _base_gguf(base)
    result = training.train(settings.home, out, gguf, opts, resume=resume, explicit=explicit, progress=_say)
    report: dict[str, Any] = {"name": out, "base": base, "run_dir": str(result.run_dir),
                              "merged_dir": str(result.merged_dir), "global_step": result.global_step,
                              "steps_this_run": result.steps_this_run, "resumed_from": result.resumed_from,
                              "loss": result.loss, "steps_per_second": round(result.steps_per_second, 4),
                              "dpo_steps": result.dpo_steps, "options": asdict(result.options or opts)}
    _say(f"trained {result.steps_this_run} steps (to step {result.global_step}) at "
         f"{result.steps_per_second:.2f} steps/s; loss {result.loss:.3f}" if result.loss is not None else
         f"trained to step {result.global_step}")
    if register:
        report.update(_convert_and_register(settings, out, result.merged_dir, base_cfg.id, outtype, check))
    if as_json:
        print_json(report)


def _convert_and_register(settings: Any, name: str, hf_dir: Path, base_id: str, outtype: str,
                          check: bool) -> dict[str, Any]:
    from baimo.distill.convert import check_chat, convert
    from baimo.distill.register import register
    from baimo.distill.train import run_dir

    started = time.monotonic()
    gguf = convert(hf_dir, run_dir(settings.home, name) / f"{name}.{outtype}.gguf", outtype,  # type: ignore[arg-type]
                   progress=_say)
    seconds = time.monotonic() - started
    _say(f"GGUF: {gguf} ({gguf.stat().st_size / 1e6:.0f} MB, {seconds:.0f} s)")
    out: dict[str, Any] = {"gguf": str(gguf), "gguf_bytes": gguf.stat().st_size, "convert_seconds": round(seconds, 1)}
    if check:
        reply, took = check_chat(gguf)
        _say(f"engine check ({took:.1f} s): {reply!r}")
        out["check_reply"] = reply
    entry = register(settings, name, gguf, base_id)
    _say(f"registered {entry.id} in {settings.config_path}")
    out["model_id"] = entry.id
    return out


@distill_app.command("convert")
def distill_convert(name: Annotated[str, typer.Argument(help="A trained run (BAIMO_HOME/distill/NAME/merged).")],
                    outtype: OutTypeOpt = "q8_0",
                    register: Annotated[bool, typer.Option("--register/--no-register",
                                                           help="Also add local/NAME to baimo.yaml.")] = False,
                    check: Annotated[bool, typer.Option("--check/--no-check", help="Chat once with the GGUF in "
                                                        "the real engine.")] = True,
                    as_json: JsonOpt = False) -> None:
    """Convert a trained run's merged model to GGUF (llama.cpp's convert_hf_to_gguf.py) and check it chats."""
    import json

    from baimo.config import Settings
    from baimo.distill.train import OPTIONS_FILE, run_dir

    settings = Settings()
    directory = run_dir(settings.home, name)
    if not (directory / "merged" / "config.json").exists():
        raise ConfigError(f"no trained model {name!r} in {directory} (baimo distill train --out {name})")
    base = json.loads((directory / OPTIONS_FILE).read_text(encoding="utf-8"))["base"]
    if register:
        report = _convert_and_register(settings, name, directory / "merged", base, outtype, check)
    else:
        from baimo.distill.convert import check_chat, convert

        started = time.monotonic()
        gguf = convert(directory / "merged", directory / f"{name}.{outtype}.gguf", outtype,  # type: ignore[arg-type]
                       progress=_say)
        report = {"gguf": str(gguf), "gguf_bytes": gguf.stat().st_size,
                  "convert_seconds": round(time.monotonic() - started, 1)}
        _say(f"GGUF: {gguf}")
        if check:
            report["check_reply"] = check_chat(gguf)[0]
            _say(f"engine check: {report['check_reply']!r}")
    if as_json:
        print_json(report)


@distill_app.command("register")
def distill_register(name: Annotated[str, typer.Argument(help="Served as local/NAME.")],
                     gguf: Annotated[Path, typer.Option("--gguf", help="The GGUF file (default: the run's "
                                                        "converted file).")] = Path(),
                     base: Annotated[str | None, typer.Option("--base", help="Local model whose context window "
                                                              "and serving settings it takes (default: the "
                                                              "run's base).")] = None,
                     as_json: JsonOpt = False) -> None:
    """Add a fine-tuned GGUF to baimo.yaml as local/NAME (comments in the file are kept)."""
    import json

    from baimo.config import Settings
    from baimo.distill.register import register
    from baimo.distill.train import OPTIONS_FILE, run_dir

    settings = Settings()
    directory = run_dir(settings.home, name)
    if base is None:
        stored = directory / OPTIONS_FILE
        if not stored.exists():
            raise ConfigError(f"no training run {name!r}: give --base MODEL")
        base = json.loads(stored.read_text(encoding="utf-8"))["base"]
    if gguf == Path():
        found = sorted(directory.glob(f"{name}.*.gguf"))
        if not found:
            raise ConfigError(f"no GGUF of {name!r} in {directory} (baimo distill convert {name}), or give --gguf")
        gguf = found[0]
    entry = register(settings, name, gguf, base)
    if as_json:
        print_json(entry.model_dump(exclude_defaults=True))
        return
    _say(f"registered {entry.id} ({entry.path}) in {settings.config_path}")


@distill_app.command("prepare")
def distill_prepare(base: Annotated[str, typer.Argument(help="Local model id to prepare for training.")]) -> None:
    """Dequantize a local model's GGUF into transformers' format once (about a minute for SmolLM2-135M); later
    trainings on it start in seconds. `train` does it itself when needed."""
    _require_extra()
    from baimo.distill.train import base_cache_dir, load_base

    _, gguf = _base_gguf(base)
    if not (base_cache_dir(gguf) / "config.json").exists():
        load_base(gguf, _say)
    _say(f"{base}: ready ({base_cache_dir(gguf)})")
