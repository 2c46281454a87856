"""Training and conversion speed of `baimo distill train` on this CPU (SmolLM2-135M, LoRA SFT).

For each (LoRA rank, sequence length) the real training path (baimo.distill.train.train: dequantized base from the
cache, PEFT LoRA on every linear layer, TRL's SFTTrainer, batch 4) runs `--steps` optimizer steps on rows long
enough to fill the sequence; the steady rate is taken between the first and the last step's progress lines (the
first step, with its warm-up, is left out). Then the merged model of the baseline run is converted to GGUF with
llama.cpp's converter (q8_0 and f16) and checked in llama-server. Ratios are against the baseline measured in the
same run: r=8, seq 128 for training, q8_0 for conversion. Run it under the heavy lock on a shared machine:

    flock /tmp/baimo-heavy.lock .venv/bin/python bench/distill.py                 # threads = all cores
    flock /tmp/baimo-heavy.lock .venv/bin/python bench/distill.py --threads 1 --steps 6
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import dump_json, ensure_local_model, print_table  # noqa: E402

from baimo.distill.convert import check_chat, convert  # noqa: E402
from baimo.distill.train import TrainOptions, load_base, train  # noqa: E402

CONFIGS = [(8, 128), (16, 128), (8, 256), (16, 256)]  # (LoRA rank, max sequence length); the first is the baseline


def write_rows(path: Path, n: int = 64) -> None:
    """Chat rows of ~400 tokens (longer than every benchmarked sequence, so each is filled)."""
    import json

    body = " ".join(f"Item {i}: {w} costs {i * 3} yuan and ships in {i % 5 + 1} days." for i, w in
                    enumerate(["tea", "rice", "silk", "ink", "jade", "fan", "lamp", "bowl"] * 5))
    with path.open("w", encoding="utf-8") as f:
        for k in range(n):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"List the catalogue, page {k}."},
                                             {"role": "assistant", "content": body}]}) + "\n")


def timed_train(home: Path, name: str, gguf: Path, data: Path, r: int, seq: int, args: argparse.Namespace
                ) -> tuple[float, float, Path]:
    """(steady steps/s, whole-loop steps/s, merged model folder) of one run."""
    stamps: list[tuple[int, float]] = []

    def progress(line: str) -> None:
        if m := re.match(r"sft step (\d+)/", line):
            stamps.append((int(m.group(1)), time.perf_counter()))

    opts = TrainOptions(base="bench", data=str(data), steps=args.steps, lora_r=r, max_seq_len=seq, batch_size=4,
                        save_every=10_000, threads=args.threads)
    result = train(home, name, gguf, opts, progress=progress)
    (s0, t0), (s1, t1) = stamps[0], stamps[-1]
    steady = (s1 - s0) / (t1 - t0) if t1 > t0 else float("nan")
    return steady, result.steps_per_second, result.merged_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per configuration")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    gguf = ensure_local_model("smollm2")
    t = time.perf_counter()
    load_base(gguf)  # the dequantized copy, made once (not part of any timing below)
    prepare_s = time.perf_counter() - t
    load = os.getloadavg()[0]
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        home, data = Path(tmp), Path(tmp) / "rows.jsonl"
        write_rows(data)
        merged = None
        for r, seq in CONFIGS:
            steady, whole, out = timed_train(home, f"r{r}-s{seq}", gguf, data, r, seq, args)
            merged = merged or out
            results[f"r{r}_seq{seq}"] = {"steady_steps_per_s": steady, "loop_steps_per_s": whole}
            print(f"  r={r} seq={seq}: {steady:.3f} steps/s steady, {whole:.3f} over the loop", flush=True)
        base = results["r8_seq128"]["steady_steps_per_s"]
        for r, seq in CONFIGS:
            v = results[f"r{r}_seq{seq}"]
            rows.append([f"SFT LoRA r={r}, seq {seq}", f"{v['steady_steps_per_s']:.3f} steps/s",
                         f"{v['steady_steps_per_s'] * 4 * seq:.0f} tok/s", f"{v['steady_steps_per_s'] / base:.2f}x"])
        assert merged is not None
        conv = {}
        for outtype in ("q8_0", "f16"):
            t = time.perf_counter()
            path = convert(merged, home / f"bench.{outtype}.gguf", outtype)  # type: ignore[arg-type]
            conv[outtype] = (time.perf_counter() - t, path.stat().st_size)
        reply, check_s = check_chat(home / "bench.q8_0.gguf")
        for outtype, (secs, size) in conv.items():
            rows.append([f"convert to GGUF {outtype} ({size / 1e6:.0f} MB)", f"{secs:.1f} s", "",
                         f"{secs / conv['q8_0'][0]:.2f}x"])
        rows.append(["load + chat check in llama-server (q8_0)", f"{check_s:.1f} s", "", ""])
    print()
    print_table(f"baimo distill train, SmolLM2-135M, batch 4, {args.steps} steps, {args.threads} torch thread(s)",
                ["what", "speed / time", "tokens", "ratio"], rows,
                notes=["steady rate: between the first and last step (the first step's warm-up left out); "
                       "baseline r=8 seq 128 = 1.00x, conversion q8_0 = 1.00x",
                       f"load average at start {load:.1f} on {os.cpu_count()} cores; the base's dequantized copy "
                       f"took {prepare_s:.1f} s to load (or make)", f"engine check reply: {reply[:60]!r}"])
    dump_json(args.json, {"train": results, "convert_seconds": {k: v[0] for k, v in conv.items()},
                          "check_seconds": check_s, "threads": args.threads, "steps": args.steps, "load": load})


if __name__ == "__main__":
    main()
