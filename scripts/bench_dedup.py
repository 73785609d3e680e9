"""Held frames of animation: what ``dedup`` gains on real footage.

    python scripts/bench_dedup.py [--frames 37] [--json bench-results/dedup.json]

Each sample clip is redrawn "on twos" and "on threes" (every 2nd or 3rd real frame is kept and held in
the slots after it, as animation is drawn), encoded with x264 at CRF 18 the way such footage reaches
users, and run back at its own rate through ``vsrife video`` (the real decoder, planner, engine and a
lossless encoder) with ``--dedup``. The frames at the dropped positions are scored against the real
frames that were dropped (PSNR on RGB, as vsrife/evaluation.py does), beside the held frame a player
shows without dedup, which is the floor. Positions whose drawings straddle a scene cut, or that follow
the clip's last drawing, are left out (nothing is interpolated there).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import torch

import vsrife
from vsrife.catalogue import samples
from vsrife.evaluation import psnr
from vsrife.timing import SCENE_THRESHOLD, luma_thumbnail, scene_difference
from vsrife.video import VideoJob, frames_of, interpolate_video
from vsrife.weights import fetch_sample

from benchlib import machine_info, write_results

STEPS = (2, 3)


def write_held(frames: list[torch.Tensor], step: int, path: Path, rate: Fraction) -> None:
    h, w = frames[0].shape[-2:]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=rate)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": "18"}
        for j in range(len(frames)):
            arr = (frames[j - j % step][0].permute(1, 2, 0) * 255).round().byte().numpy()
            for packet in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)


def scored_positions(frames: list[torch.Tensor], step: int) -> list[int]:
    """Dropped positions whose two drawings lie inside one shot, and that have a next drawing."""
    thumbs = [luma_thumbnail(f) for f in frames]
    cut_after = {i for i in range(len(frames) - 1) if scene_difference(thumbs[i], thumbs[i + 1]) > SCENE_THRESHOLD}
    keep = []
    for j in range(len(frames)):
        a = j - j % step
        if j % step and a + step < len(frames) and not any(a <= c < a + step for c in cut_after):
            keep.append(j)
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=37, help="frames of each clip (default 37)")
    parser.add_argument("--model", default="4.0")
    parser.add_argument("--json", type=Path, default=Path("bench-results/dedup.json"))
    args = parser.parse_args()
    it = vsrife.Interpolator(args.model)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in samples():
            path = fetch_sample(name)
            with av.open(str(path)) as c:
                rate = Fraction(c.streams.video[0].average_rate)
            real = frames_of(path, args.frames)
            real = [f[..., : f.shape[-2] // 2 * 2, : f.shape[-1] // 2 * 2] for f in real]  # x264's 4:2:0
            for step in STEPS:
                held_path, out_path = Path(tmp) / f"{name}_{step}.mkv", Path(tmp) / f"{name}_{step}_dedup.mkv"
                write_held(real, step, held_path, rate)
                job = VideoJob(multi=Fraction(1), dedup=True, encoder_options={"qp": "0"}, progress=False)
                interpolate_video(held_path, out_path, it, job)
                held, dedup = frames_of(held_path), frames_of(out_path)
                if len(dedup) != len(held):
                    sys.exit(f"{name} on {step}s: {len(dedup)} frames out for {len(held)} in")
                positions = scored_positions(real, step)
                record = {
                    "clip": name, "step": step, "model": args.model, "positions": len(positions),
                    "held_psnr": statistics.mean(psnr(held[j], real[j]) for j in positions),
                    "dedup_psnr": statistics.mean(psnr(dedup[j], real[j]) for j in positions),
                }  # fmt: skip
                records.append(record)
                print(f"{name:<13} on {step}s: {len(positions):>3} dropped frames  held {record['held_psnr']:.2f} dB"
                      f"  dedup {record['dedup_psnr']:.2f} dB", file=sys.stderr)  # fmt: skip
    result = {"machine": machine_info([it.device]), "device": str(it.device), "records": records}
    rows = ["| clip | drawn on | dropped frames | held frame (no dedup) PSNR | dedup PSNR |", "|---|---|---:|---:|---:|"]
    rows += [f"| {r['clip']} | {r['step']}s | {r['positions']} | {r['held_psnr']:.2f} | {r['dedup_psnr']:.2f} |"
             for r in records]  # fmt: skip
    write_results(result, args.json, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
