"""Calibrate vsrife.timing.SCENE_THRESHOLD on real footage.

Decodes the sample clips of models/samples.json, measures the scene difference (mean absolute difference
of 1/8-size luma) between consecutive frames inside each clip, and across joins of two different clips
(every fifth frame of one against every fifth of the other, at a common size), and at the cuts that
bikes.mp4 has of its own. A good threshold lies
between the largest difference inside a clip and the smallest across a join.

    python scripts/calibrate_scene_threshold.py
"""

from __future__ import annotations

import itertools
import statistics

import av
import torch
import torch.nn.functional as F

from vsrife.catalogue import samples
from vsrife.timing import SCENE_THRESHOLD, luma_thumbnail, scene_difference
from vsrife.weights import fetch_sample

# bikes.mp4 is itself edited: these are its cuts (frame i | i + 1), each checked by eye.
BIKES_CUTS = (29, 75, 136, 186, 241)
SIZE = (72, 128)  # joins compare clips of different sizes: bring every frame to 16:9 at this size first


def thumbnails(name: str) -> list[torch.Tensor]:
    out = []
    with av.open(str(fetch_sample(name))) as container:
        for frame in container.decode(video=0):
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).unsqueeze(0).float() / 255
            out.append(luma_thumbnail(F.interpolate(rgb, size=(SIZE[0] * 8, SIZE[1] * 8), mode="area")))
    return out


def main() -> None:
    clips = {name: thumbnails(name) for name in samples()}
    inside, across = [], []
    for name, thumbs in clips.items():
        cuts = BIKES_CUTS if name == "bikes" else ()
        diffs = [scene_difference(a, b) for a, b in itertools.pairwise(thumbs)]
        across += [diffs[i] for i in cuts]
        diffs = [d for i, d in enumerate(diffs) if i not in cuts]
        inside += diffs
        print(f"inside {name:<13} frames {len(thumbs):>4}  median {statistics.median(diffs):.4f}  max {max(diffs):.4f}")
    print("cuts in bikes: " + ", ".join(f"{i}|{i + 1} {across[k]:.4f}" for k, i in enumerate(BIKES_CUTS)))
    for (na, ta), (nb, tb) in itertools.permutations(clips.items(), 2):
        diffs = [scene_difference(a, b) for a in ta[::5] for b in tb[::5]]
        across += diffs
        print(f"across {na} -> {nb}: min {min(diffs):.4f}  median {statistics.median(diffs):.4f}")
    print(f"largest inside a clip {max(inside):.4f}; smallest across a join {min(across):.4f}; "
          f"current threshold {SCENE_THRESHOLD}")


if __name__ == "__main__":
    main()
