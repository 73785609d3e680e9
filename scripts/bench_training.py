"""Measured fine-tune: the real 4.0 weights on triplets mined from the three sample clips.

Run from the repository root::

    python scripts/bench_training.py                    # 300 steps, 128-pixel crops, batch 4, seed 1234
    python scripts/bench_training.py --steps 20         # the smallest useful run (checks the script)
    python scripts/bench_training.py --device cuda --crop 224 --batch-size 16

It calls the trainer that ``vsrife train`` calls (no second pipeline): triplets are mined from bikes,
bigbuckbunny and carphone into the run folder, a tenth of each clip (its end) is held out, and the held-out
PSNR (the protocol of ``vsrife/evaluation.py``: 8-bit rounding, mean of per-triplet PSNR; each triplet's
central ``--eval-crop`` square, so that the CPU can afford it) is measured for the starting weights and
every ``--eval-every`` steps. Steps per second count the training steps only (not evaluation or
checkpoints). The run folder (default ``bench-results/training``, not committed) keeps ``metrics.jsonl``,
``run.json`` and ``curves.png``; the script prints a summary for README.md. A run folder that holds this
run already resumes (or, finished, just reports): pass a new ``--out`` to measure again.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from pathlib import Path

import torch

from vsrife.training import TrainSettings, train
from vsrife.weights import fetch_sample

SAMPLES = ("bikes", "bigbuckbunny", "carphone")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="4.0")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, help="peak learning rate (default: the trainer's fine-tune default)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--eval-limit", type=int, default=64)
    p.add_argument("--eval-crop", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="bench-results/training")
    p.add_argument("-q", "--quiet", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="bench: %(message)s")

    clips = [str(fetch_sample(name, progress=not args.quiet)) for name in SAMPLES]
    result = train(TrainSettings(
        model=args.model, data=tuple(clips), run_dir=args.out, steps=args.steps, batch_size=args.batch_size,
        crop=args.crop, lr=args.lr, seed=args.seed, eval_every=args.eval_every, eval_limit=args.eval_limit,
        eval_crop=args.eval_crop, device=args.device, progress=not args.quiet,
    ))  # fmt: skip
    info = json.loads((Path(args.out) / "run.json").read_text())
    rates = [m["steps_per_s"] for m in result.metrics]
    device = info["device"]
    machine = torch.cuda.get_device_name() if device.startswith("cuda") else f"{cpu_name()}, {torch.get_num_threads()} threads"
    summary = {
        "model": args.model, "steps": args.steps, "batch_size": args.batch_size, "crop": args.crop,
        "lr": info["lr"], "warmup": info["warmup"], "seed": args.seed, "train_triplets": info["train_triplets"],
        "held_out_triplets": info["held_out_triplets"], "evaluated": min(args.eval_limit, info["held_out_triplets"]),
        "eval_crop": args.eval_crop, "psnr_start": result.psnr_start, "psnr_end": result.psnr_end,
        "psnr_curve": [(m["step"], m["psnr"]) for m in result.metrics if m.get("psnr") is not None],
        "steps_per_s": rates[-1] if rates else None, "device": device, "machine": machine,
        "torch": torch.__version__, "plot": str(result.plot) if result.plot else None,
    }  # fmt: skip
    print(json.dumps(summary, indent=1))
    if result.psnr_start is not None and result.psnr_end is not None:
        print(f"\n| {args.model} | {args.steps} x {args.batch_size} x {args.crop}px | {result.psnr_start:.2f} dB | "
              f"{result.psnr_end:.2f} dB | {result.psnr_end - result.psnr_start:+.2f} dB | "
              f"{summary['steps_per_s']:.2f} | {machine} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
