"""LoRA fine-tuning of a local GGUF model on the CPU: TRL's SFTTrainer (then, optionally, DPOTrainer) with PEFT.

The base is a local model of baimo.yaml: its GGUF file is loaded into transformers and dequantized to float32
(`from_pretrained(folder, gguf_file=...)`, transformers' GGUF support: llama, qwen2, ... architectures; the tokenizer
and its chat template come from the same file). A LoRA adapter (Hu et al. 2021, arXiv:2106.09685) of rank `r`
on every linear layer (PEFT's "all-linear"), alpha = 2 r, is trained; the base weights stay frozen.

A run lives in BAIMO_HOME/distill/NAME/: `options.json` (what it was started with), `checkpoints/checkpoint-N/`
(adapter, optimizer, scheduler and RNG state every `save_every` steps, the last two kept), `adapter/` (the final
LoRA), `merged/` (base + LoRA merged, Hugging Face format: the converter's input) and `train.json` (a summary).
`--resume` continues from the newest checkpoint with the options the run was started with: the step counter,
optimizer and data order go on where they stopped.

Optional DPO (Rafailov et al. 2023, arXiv:2305.18290) on preference pairs after SFT: the SFT adapter is merged
first, a fresh adapter is trained with DPO, and the merged SFT model (the adapter switched off) is the reference.

Needs the `distill` extra (torch CPU build, transformers, trl, peft, accelerate); imports happen on first use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from baimo.distill.train_data import load_dpo, load_sft
from baimo.errors import ConfigError, InvalidRequest

Progress = Callable[[str], None]
OPTIONS_FILE = "options.json"
SUMMARY_FILE = "train.json"


@dataclass
class TrainOptions:
    """What one training run does. Steps are optimizer steps (`batch_size * grad_accum` rows each); `lr` is
    AdamW's peak learning rate (linear decay to 0); `max_seq_len` is in tokens (longer rows are truncated)."""

    base: str
    data: str
    steps: int | None = None          # None: `epochs` passes over the data
    epochs: float = 1.0
    lr: float = 2e-4
    lora_r: int = 8
    lora_dropout: float = 0.05
    max_seq_len: int = 512
    batch_size: int = 4
    grad_accum: int = 1
    save_every: int = 50
    seed: int = 42
    dpo: str | None = None
    dpo_steps: int | None = None      # None: one pass over the pairs
    dpo_beta: float = 0.1
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)

    def check(self) -> None:
        """Raises InvalidRequest (with the option as `param`) on an out-of-range value."""
        for name, value, low in (("steps", self.steps, 1), ("lora_r", self.lora_r, 1), ("batch_size",
                                 self.batch_size, 1), ("grad_accum", self.grad_accum, 1), ("save_every",
                                 self.save_every, 1), ("max_seq_len", self.max_seq_len, 16),
                                 ("dpo_steps", self.dpo_steps, 1), ("threads", self.threads, 1)):
            if value is not None and value < low:
                raise InvalidRequest(f"--{name.replace('_', '-')} must be at least {low}", param=name)
        if not 0 < self.lr < 1:
            raise InvalidRequest("--lr must be between 0 and 1", param="lr")
        if self.epochs <= 0:
            raise InvalidRequest("--epochs must be positive", param="epochs")


@dataclass
class TrainResult:
    """A finished run: where the merged model is, how many optimizer steps were done in total and in this call,
    the last logged training loss, and the speed of this call in steps per second."""

    run_dir: Path
    merged_dir: Path
    global_step: int
    steps_this_run: int
    loss: float | None
    steps_per_second: float
    seconds: float
    dpo_steps: int = 0
    resumed_from: int | None = None
    options: TrainOptions | None = None  # what the run used (on --resume: the stored options, updated)


def run_dir(home: Path, name: str) -> Path:
    """BAIMO_HOME/distill/NAME: everything one training run writes."""
    return home / "distill" / name


def last_checkpoint(directory: Path) -> Path | None:
    """The `checkpoint-N` folder with the largest N in `directory`, or None."""
    found = [(int(m.group(1)), p) for p in directory.glob("checkpoint-*")
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def passive_omp() -> None:
    """Make torch's OpenMP threads sleep instead of spinning while they wait (OMP_WAIT_POLICY=PASSIVE, unless
    set). Must run before torch is first imported. Measured here with 2 threads while other jobs loaded both cores
    (load ~4, 60 forward+backward passes of a 576x1536 MLP stack): spinning 32-35 s, passive 9.6-18 s, 1 thread
    9.7 s; spinning threads wait on a colleague that the scheduler has taken off its core."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def base_cache_dir(gguf_path: Path) -> Path:
    """Where the dequantized copy of a GGUF base is kept: `hf/<file stem>-<size in bytes>` beside the GGUF in the
    model cache (transformers' GGUF reader parses the whole file in Python: ~1 minute for SmolLM2-135M on this
    CPU, against ~2 s for the saved safetensors copy)."""
    return gguf_path.parent / "hf" / f"{gguf_path.stem}-{gguf_path.stat().st_size}"


def load_base(gguf_path: Path, progress: Progress = lambda _m: None) -> tuple[Any, Any]:
    """(model, tokenizer) of a GGUF base, dequantized to float32 by transformers on first use and kept in
    Hugging Face format at `base_cache_dir(gguf_path)` (written to a temporary folder and renamed).

    Raises ConfigError when the file is missing or its architecture is one transformers cannot read from GGUF."""
    passive_omp()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not gguf_path.is_file():
        raise ConfigError(f"{gguf_path}: the base model's GGUF is not here (baimo models pull)")
    hf_logging.disable_progress_bar()
    cache = base_cache_dir(gguf_path)
    if (cache / "config.json").exists():
        return (AutoModelForCausalLM.from_pretrained(cache, dtype=torch.float32),
                AutoTokenizer.from_pretrained(cache))
    progress(f"reading {gguf_path.name} into transformers (dequantized to float32; once per base)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                     dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(f"{gguf_path.name}: transformers cannot load it from GGUF: {exc}") from exc
    # The weights are plain float32 tensors now: drop the GGUF "quantization" marker so the Trainer trains it and
    # save_pretrained writes an ordinary checkpoint.
    model.hf_quantizer = None
    model.is_quantized = False
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tmp = cache.with_name(f"{cache.name}.partial-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if cache.exists():
        shutil.rmtree(tmp)  # another run finished first
    else:
        os.replace(tmp, cache)
    return model, tokenizer


def _progress_callback(progress: Progress, phase: str) -> Any:
    from transformers import TrainerCallback

    class ProgressLine(TrainerCallback):  # type: ignore[misc]
        """One line per logged step: `sft step 3/5 · loss 2.314 · 0.81 steps/s · ETA 0:00:03`."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.started, self.first = time.monotonic(), state.global_step

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return
            done = state.global_step - self.first
            rate = done / max(time.monotonic() - self.started, 1e-9)
            left = (state.max_steps - state.global_step) / rate if rate > 0 else 0.0
            progress(f"{phase} step {state.global_step}/{state.max_steps} · loss {logs['loss']:.3f} · "
                     f"{rate:.2f} steps/s · ETA {time.strftime('%H:%M:%S', time.gmtime(left))}")

    return ProgressLine()


def _quiet(trainer: Any) -> None:
    """Our progress line replaces the Trainer's own log printing (PrinterCallback writes dicts to stdout, which
    must stay free for --json)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _common_args(opts: TrainOptions, out: Path, max_steps: int | None, epochs: float) -> dict[str, Any]:
    return dict(output_dir=str(out), max_steps=max_steps or -1, num_train_epochs=epochs,
                per_device_train_batch_size=opts.batch_size, gradient_accumulation_steps=opts.grad_accum,
                learning_rate=opts.lr, lr_scheduler_type="linear", logging_steps=1, save_strategy="steps",
                save_steps=opts.save_every, save_total_limit=2, seed=opts.seed, data_seed=opts.seed,
                use_cpu=True, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
                max_length=opts.max_seq_len, bf16=False, fp16=False)


def _lora(opts: TrainOptions) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=opts.lora_r, lora_alpha=2 * opts.lora_r, lora_dropout=opts.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")


def _resolve_options(directory: Path, opts: TrainOptions, resume: bool,
                     explicit: set[str]) -> tuple[TrainOptions, Path | None]:
    """On --resume: the stored options, with those given explicitly now (`explicit`) winning; else refuse to
    start over a run that has checkpoints."""
    ckpt = last_checkpoint(directory / "checkpoints")
    stored = directory / OPTIONS_FILE
    if resume:
        if ckpt is None or not stored.exists():
            raise InvalidRequest(f"nothing to resume: no checkpoint in {directory / 'checkpoints'}", param="resume")
        merged = {**json.loads(stored.read_text(encoding="utf-8")),
                  **{k: v for k, v in asdict(opts).items() if k in explicit}}
        return TrainOptions(**merged), ckpt
    if ckpt is not None:
        raise InvalidRequest(f"{directory} holds checkpoints of an earlier run: --resume continues it, or choose "
                             "another --out", param="out")
    return opts, None


def train(home: Path, name: str, gguf_path: Path, opts: TrainOptions, *, resume: bool = False,
          explicit: set[str] | None = None, progress: Progress = lambda _m: None) -> TrainResult:
    """Train a LoRA on `opts.data` (SFT; then DPO on `opts.dpo` if set) over the GGUF base `gguf_path`, merge it
    and save the merged model in Hugging Face format under run_dir(home, name)/merged. `explicit` names options
    the user gave on this call (they win over a resumed run's stored ones).

    Raises InvalidRequest on bad data or options, ConfigError when the base cannot be loaded."""
    directory = run_dir(home, name)
    opts, ckpt = _resolve_options(directory, opts, resume, explicit or set())
    opts.check()
    examples = load_sft(Path(opts.data))
    pairs = load_dpo(Path(opts.dpo)) if opts.dpo else None

    passive_omp()
    import datasets
    import torch
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import set_seed
    from transformers.utils import logging as hf_logging
    from trl import SFTConfig, SFTTrainer

    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()  # our progress line is the one to read
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|trl|peft)\.")
    torch.set_num_threads(opts.threads)
    set_seed(opts.seed)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / OPTIONS_FILE).write_text(json.dumps(asdict(opts), indent=2), encoding="utf-8")
    model, tokenizer = load_base(gguf_path, progress)
    model = get_peft_model(model, _lora(opts))
    args = SFTConfig(**_common_args(opts, directory / "checkpoints", opts.steps, opts.epochs),
                     completion_only_loss=True, packing=False, dataset_num_proc=None)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer, callbacks=[_progress_callback(progress, "sft")])
    _quiet(trainer)
    started = time.monotonic()
    first = int(ckpt.name.split("-")[1]) if ckpt else 0
    out = trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    sft_seconds = time.monotonic() - started
    steps_now = trainer.state.global_step - first
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainer.model.save_pretrained(directory / "adapter")
    merged = trainer.model.merge_and_unload()
    dpo_done = 0
    if pairs:
        merged, dpo_done = _dpo(merged, tokenizer, pairs, opts, directory, progress)
    merged_dir = directory / "merged"
    progress(f"merging the adapter into the base: {merged_dir}")
    merged.save_pretrained(merged_dir, safe_serialization=True)
    tokenizer.save_pretrained(merged_dir)
    result = TrainResult(run_dir=directory, merged_dir=merged_dir, global_step=trainer.state.global_step,
                         steps_this_run=steps_now, loss=losses[-1] if losses else out.training_loss,
                         steps_per_second=steps_now / max(sft_seconds, 1e-9), seconds=sft_seconds,
                         dpo_steps=dpo_done, resumed_from=first if ckpt else None, options=opts)
    summary = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}
    (directory / SUMMARY_FILE).write_text(json.dumps({**summary, "base_gguf": str(gguf_path)}, indent=2),
                                          encoding="utf-8")
    return result


def _dpo(model: Any, tokenizer: Any, pairs: list[dict], opts: TrainOptions, directory: Path,
         progress: Progress) -> tuple[Any, int]:
    """DPO with a fresh LoRA over the merged SFT model (its own reference with the adapter off); returns the
    merged result and the steps done."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(**_common_args(opts, directory / "dpo-checkpoints", opts.dpo_steps, 1.0), beta=opts.dpo_beta)
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=Dataset.from_list(pairs),
                         processing_class=tokenizer, peft_config=_lora(opts),
                         callbacks=[_progress_callback(progress, "dpo")])
    _quiet(trainer)
    trainer.train()
    return trainer.model.merge_and_unload(), trainer.state.global_step
