"""Calibrate vsrife.timing.HOLD_THRESHOLD (``dedup``) on real footage.

Two kinds of neighbouring frames must be told apart:

- held frames: each sample clip redrawn "on twos" (every second frame repeats the one before), encoded with
  x264 at several CRFs and decoded again, so a hold is not bit-identical but carries real compression
  noise; the hold metric of every held pair is measured;
- motion: every pair of consecutive frames of the sample clips as they are, except bikes.mp4's own scene
  cuts and the five frames bigbuckbunny.mp4 repeats (a 24 -> 25 fps conversion duplicated frames 6, 31,
  56, 81 and 106: they are holds, not motion).

The metric (vsrife.timing.hold_difference) is the share of half-size luma pixels that changed by more than
6/255. A good threshold lies above the held pairs at the CRFs that anime is released at and below the
least motion.

    python scripts/calibrate_dedup_threshold.py
"""

from __future__ import annotations

import io
import itertools

import av
import torch

from vsrife.catalogue import samples
from vsrife.timing import HOLD_THRESHOLD, hold_difference, hold_luma
from vsrife.video import frames_of
from vsrife.weights import fetch_sample

SKIP = {"bikes": (29, 75, 136, 186, 241), "bigbuckbunny": (6, 31, 56, 81, 106)}  # pair i | i + 1
CRFS = (14, 18, 22, 26)


def decode(data: io.BytesIO) -> list[torch.Tensor]:
    with av.open(data) as c:
        return [torch.from_numpy(f.to_ndarray(format="rgb24")).permute(2, 0, 1).unsqueeze(0).float() / 255
                for f in c.decode(video=0)]  # fmt: skip


def on_twos(frames: list[torch.Tensor], crf: int) -> list[torch.Tensor]:
    """``frames`` with every second one replaced by the one before, through x264 at ``crf`` and back."""
    buf = io.BytesIO()
    h, w = frames[0].shape[-2:]
    with av.open(buf, "w", format="matroska") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt, s.options = w, h, "yuv420p", {"crf": str(crf)}
        for j in range(len(frames)):
            arr = (frames[j - j % 2][0].permute(1, 2, 0) * 255).round().byte().numpy()
            for packet in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    buf.seek(0)
    return decode(buf)


def main() -> None:
    least_motion = {}
    held = {crf: 0.0 for crf in CRFS}
    for name in samples():
        frames = frames_of(fetch_sample(name))
        lumas = [hold_luma(f) for f in frames]
        motion = [hold_difference(a, b) for i, (a, b) in enumerate(itertools.pairwise(lumas)) if i not in SKIP.get(name, ())]
        least_motion[name] = min(motion)
        dups = [hold_difference(lumas[i], lumas[i + 1]) for i in SKIP.get(name, ()) if name == "bigbuckbunny"]
        line = f"motion {name:<13} pairs {len(motion):>4}  least {min(motion):.5f}"
        print(line + (f"  (its duplicated frames: at most {max(dups):.5f})" if dups else ""))
        for crf in CRFS:
            redrawn = [hold_luma(f) for f in on_twos(frames, crf)]
            worst = max(hold_difference(redrawn[j - 1], redrawn[j]) for j in range(1, len(redrawn), 2))
            held[crf] = max(held[crf], worst)
    for crf, worst in held.items():
        print(f"held on twos, x264 CRF {crf:>2}: largest {worst:.5f}")
    print(f"least motion {min(least_motion.values()):.5f}; current threshold {HOLD_THRESHOLD}")


if __name__ == "__main__":
    main()
