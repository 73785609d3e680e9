"""Frame timing and scene changes: pure functions shared by the VapourSynth filter and the command line.

All arithmetic is on integers and :class:`~fractions.Fraction`, so output frame 10**6 is placed exactly as
frame 1 is: no float drift over hours of footage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

__all__ = [
    "SCENE_THRESHOLD",
    "FramePlan",
    "as_fraction",
    "frame_position",
    "luma_thumbnail",
    "output_count",
    "plan_frame",
    "rate_factor",
    "scene_difference",
]

# Mean absolute difference of 1/8-size luma in [0, 1] above which two frames are taken to be a cut.
# Calibrated on real footage (scripts/calibrate_scene_threshold.py): inside continuous shots of the three
# sample clips the largest frame-to-frame difference is 0.082 (fast pans in bikes.mp4); the five real
# cuts of bikes.mp4 measure 0.195 to 0.327, and joins of two different clips at least 0.20.
# 0.13 sits between the two, about 1.5x from either side.
SCENE_THRESHOLD = 0.13


def as_fraction(value: int | float | str | Fraction, what: str = "value") -> Fraction:
    """``value`` as an exact Fraction: ints and Fractions as they are, strings like ``"60000/1001"`` or
    ``"2.5"``, floats by their shortest decimal form (``59.94`` means 5994/100, not the binary double)."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, not {value!r}")
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, not {value!r}")
        return Fraction(repr(value))
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError) as e:
            raise ValueError(f"{what} {value!r} is not a number or a ratio such as 60000/1001") from e
    raise ValueError(f"{what} must be a number or a ratio, not {type(value).__name__}")


def rate_factor(source_fps: Fraction, target_fps: Fraction) -> Fraction:
    """The multiplier that turns ``source_fps`` into ``target_fps``; ValueError unless it is above 1."""
    if source_fps <= 0:
        raise ValueError("the source frame rate is unknown (variable frame rate); give a multiplier instead")
    if target_fps <= source_fps:
        raise ValueError(f"target rate {target_fps} fps must be above the source rate {source_fps} fps")
    return target_fps / source_fps


def output_count(source_frames: int, multi: Fraction) -> int:
    """Frames in the output: ``ceil(N * multi)``, which keeps the duration (and so audio sync)."""
    return math.ceil(source_frames * multi)


def frame_position(k: int, multi: Fraction) -> tuple[int, Fraction]:
    """Output frame ``k`` sits at source position ``k / multi``: returns (left source index i, time t in [0, 1))."""
    i, rem = divmod(k * multi.denominator, multi.numerator)
    return i, Fraction(rem, multi.numerator)


@dataclass(frozen=True)
class FramePlan:
    """What output frame ``k`` is made of.

    ``source`` set: pass that source frame through untouched. Otherwise interpolate between ``left`` and
    ``left + 1`` at ``timestep``.
    """

    left: int
    timestep: Fraction
    source: int | None

    @property
    def interpolated(self) -> bool:
        return self.source is None


def plan_frame(k: int, multi: Fraction, source_frames: int, cut_after: bool = False) -> FramePlan:
    """The plan for output frame ``k``.

    Slots after the last source frame repeat it; across a scene cut (``cut_after``: a cut between the left
    frame and the next) nothing is blended: the nearer source frame is shown (t < 1/2: left, else right).
    """
    i, t = frame_position(k, multi)
    if i >= source_frames - 1:
        return FramePlan(source_frames - 1, Fraction(0), source_frames - 1)
    if t == 0:
        return FramePlan(i, t, i)
    if cut_after:
        return FramePlan(i, t, i if t < Fraction(1, 2) else i + 1)
    return FramePlan(i, t, None)


def luma_thumbnail(rgb: torch.Tensor) -> torch.Tensor:
    """A 1/8-size BT.709 luma image (N x 1 x h x w, float32) of N x 3 x H x W RGB in [0, 1]."""
    weights = torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float32, device=rgb.device).view(1, 3, 1, 1)
    luma = (rgb.float() * weights).sum(1, keepdim=True)
    h, w = luma.shape[-2:]
    return F.adaptive_avg_pool2d(luma, (max(1, h // 8), max(1, w // 8)))


def scene_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two luma thumbnails, in [0, 1]; compare with :data:`SCENE_THRESHOLD`."""
    return float((a - b).abs().mean())
