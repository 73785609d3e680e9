"""Throughput of vsrife.RIFE through VapourSynth against the bare engine, on the same real clip.

    python scripts/bench_filter.py [--frames 24] [--model 4.0] [--multi 2] [--rounds 3]

Both paths produce the same output frames from the first ``--frames`` frames of bikes.mp4 (640x272):

* engine: a plain loop over the source frames, each prepared once, every in-between slot interpolated;
* filter: an RGBS clip of the same frames through ``vsrife.RIFE`` (scene detection on, default threads),
  every output frame requested in order with ``get_frame``, as vspipe does.

The two alternate for ``--rounds`` rounds; the medians give the filter's throughput as a fraction of the
engine's (the design asks for at least 0.9). Nothing is asserted. Needs a VapourSynth core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import vsrife
from vsrife.timing import frame_position, output_count
from vsrife.video import frames_of
from vsrife.weights import fetch_sample


def engine_pass(it: vsrife.Interpolator, frames: list[torch.Tensor], m: Fraction) -> int:
    prepared = [it.prepare(f) for f in frames]
    done = 0
    for k in range(output_count(len(frames), m)):
        i, t = frame_position(k, m)
        if t and i < len(frames) - 1:
            it.interpolate(prepared[i], prepared[i + 1], float(t)).cpu()
            done += 1
    return done


def filter_pass(clip, model: str, m: Fraction) -> int:
    out = vsrife.RIFE(clip, multi=m if m.denominator > 1 else int(m), model=model)
    for k in range(out.num_frames):
        out.get_frame(k)
    return out.num_frames


def rgbs_clip(frames: list[torch.Tensor]):
    import vapoursynth as vs

    core = vs.core
    h, w = frames[0].shape[-2:]
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=len(frames), fpsnum=25, fpsden=1)

    def fill(n: int, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n][0, p].numpy())
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--model", default="4.0")
    ap.add_argument("--multi", default="2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default="bench-results/filter.json")
    args = ap.parse_args()
    m = Fraction(args.multi)
    frames = frames_of(fetch_sample("bikes"), args.frames)
    it = vsrife.Interpolator(args.model, dtype=torch.float32)  # the filter's precision with fp16=False
    engine_pass(it, frames[:3], m)  # warm-up
    filter_pass(rgbs_clip(frames[:3]), args.model, m)
    times: dict[str, list[float]] = {"engine": [], "filter": []}
    for r in range(args.rounds):
        for name in ("engine", "filter"):
            start = time.perf_counter()
            if name == "engine":
                engine_pass(it, frames, m)
            else:
                filter_pass(rgbs_clip(frames), args.model, m)  # a fresh clip: nothing cached from before
            times[name].append(time.perf_counter() - start)
            print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    engine, filt = statistics.median(times["engine"]), statistics.median(times["filter"])
    ratio = engine / filt
    result = {
        "clip": f"bikes.mp4, first {args.frames} frames, 640x272", "model": args.model, "multi": str(m),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "seconds": times,
        "filter_throughput_vs_engine": ratio, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"| path | median s ({args.rounds} rounds) |\n|---|---:|\n| engine | {engine:.2f} |\n| filter | {filt:.2f} |")
    print(f"\nfilter throughput = {ratio:.3f} x engine (goal >= 0.9)")


if __name__ == "__main__":
    main()
