"""Frame timing and scene changes: pure functions shared by the VapourSynth filter and the command line.

All arithmetic is on integers and :class:`~fractions.Fraction`, so output frame 10**6 is placed exactly as
frame 1 is: no float drift over hours of footage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

__all__ = [
    "HOLD_PIXEL_STEP",
    "HOLD_THRESHOLD",
    "MAX_HOLD",
    "SCENE_THRESHOLD",
    "FramePlan",
    "SlotPlanner",
    "as_fraction",
    "chunk_feed",
    "frame_position",
    "frame_time",
    "hold_difference",
    "hold_luma",
    "luma_thumbnail",
    "output_count",
    "plan_frame",
    "plan_slot",
    "rate_factor",
    "scene_difference",
    "slot_duration",
]

# Mean absolute difference of 1/8-size luma in [0, 1] above which two frames are taken to be a cut.
# Calibrated on real footage (scripts/calibrate_scene_threshold.py): inside continuous shots of the three
# sample clips the largest frame-to-frame difference is 0.082 (fast pans in bikes.mp4); the five real
# cuts of bikes.mp4 measure 0.195 to 0.327, and joins of two different clips at least 0.20.
# 0.13 sits between the two, about 1.5x from either side.
SCENE_THRESHOLD = 0.13

# Held frames of animation (``dedup``): the fraction of half-size BT.709 luma pixels that changed by more
# than HOLD_PIXEL_STEP between two frames. Measured by scripts/calibrate_dedup_threshold.py on the sample
# clips: held frames re-encoded with x264 at CRF 18 change at most 0.0016 of their pixels, the least
# motion between two distinct frames (a small object on a still 720p background) 0.0062; the threshold
# sits between, about 2x from either side. Heavier compression can hide a hold (it is then interpolated as
# motion, as without dedup); motion is not taken for a hold.
HOLD_PIXEL_STEP = 6 / 255
HOLD_THRESHOLD = 0.003
# A drawing held for more frames than this is a still, not animation on twos or threes: left as it is.
MAX_HOLD = 4


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


def rate_factor(source_fps: Fraction, target_fps: Fraction, *, same_rate: bool = False) -> Fraction:
    """The multiplier that turns ``source_fps`` into ``target_fps``; ValueError unless it is above 1, or
    exactly 1 where ``same_rate`` allows it (dedup: held drawings replaced by motion at the source rate)."""
    if source_fps <= 0:
        raise ValueError("the source frame rate is unknown (variable frame rate); give a multiplier instead")
    if same_rate and target_fps == source_fps:
        return Fraction(1)
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
    """What one output frame is made of.

    ``source`` set: pass that source frame through untouched. Otherwise interpolate between source frames
    ``left`` (t = 0) and ``right`` (t = 1) at ``timestep``. ``right`` is ``left + 1`` except across the
    held frames of a drawing (``dedup``), where it is the first frame of the next drawing.
    """

    left: int
    right: int
    timestep: Fraction
    source: int | None

    @property
    def interpolated(self) -> bool:
        return self.source is None


def _drawing(i: int, count: int, hold: Callable[[int], bool], max_hold: int) -> tuple[int, int] | None:
    """The run of held frames around source frame ``i``: (a, b) with a the first frame of its drawing and b
    the first of the next (``count`` when the clip ends first). None when frame i is held by no other frame,
    or the run is longer than ``max_hold`` frames (a still, not a drawing on twos or threes).

    Asks ``hold`` about at most ``max_hold`` frames on either side of ``i``, so look-ahead stays bounded.
    """
    a = i
    while a > 0 and hold(a):
        a -= 1
        if i - a + 1 > max_hold:
            return None
    b = i + 1
    while b < count and hold(b):
        b += 1
        if b - a > max_hold:
            return None
    return (a, b) if b - a > 1 else None


def plan_slot(
    position: Fraction,
    i: int,
    count: int,
    at: Callable[[int], Fraction],
    *,
    cut: Callable[[int], bool] | None = None,
    hold: Callable[[int], bool] | None = None,
    same: Callable[[int], bool] | None = None,
    max_hold: int = MAX_HOLD,
) -> FramePlan:
    """The plan for an output slot at ``position`` on the source's time axis.

    Args:
        position: where the slot sits, in the units of ``at``.
        i: the source frame at or before it: ``at(i) <= position < at(i + 1)`` (or ``i >= count - 1``).
        count: source frames in the clip.
        at: source frame j's position: ``j`` itself for index-based placement (the filter), its
            presentation time for time-based placement (``vsrife video``).
        cut: ``cut(j)``: a scene cut lies between frames j - 1 and j. Nothing is blended across a cut:
            the slot shows the nearer source frame.
        hold: ``hold(j)``: frame j shows the same drawing as frame j - 1 (``dedup``). A slot between the
            first frames a and b of two drawings is the interpolation at (position - at(a)) / (at(b) -
            at(a)); runs of more than ``max_hold`` frames are stills and are left as they are.
        same: ``same(j)``: frame j is identical to frame j - 1. A slot between two identical frames is that
            frame, untouched: nothing can move between them, and a network's output would only differ
            from both by its rounding.

    Slots after the last source frame repeat it.
    """
    if i >= count - 1:
        return FramePlan(count - 1, count - 1, Fraction(0), count - 1)
    if hold is not None:
        run = _drawing(i, count, hold, max_hold)
        if run is not None:
            a, b = run
            if b < count and not (cut is not None and cut(b)):
                t = (position - at(a)) / (at(b) - at(a))
                return FramePlan(a, b, t, a if t == 0 else None)
            if i + 1 < b:  # inside a drawing that a cut or the clip's end closes: it stays as drawn
                return FramePlan(i, i + 1, Fraction(0), i)
    t = (position - at(i)) / (at(i + 1) - at(i))
    if t == 0:
        return FramePlan(i, i + 1, t, i)
    if cut is not None and cut(i + 1):
        return FramePlan(i, i + 1, t, i if t < Fraction(1, 2) else i + 1)
    if same is not None and same(i + 1):
        return FramePlan(i, i + 1, t, i)
    return FramePlan(i, i + 1, t, None)


def plan_frame(
    k: int,
    multi: Fraction,
    source_frames: int,
    *,
    cut: Callable[[int], bool] | None = None,
    hold: Callable[[int], bool] | None = None,
    same: Callable[[int], bool] | None = None,
    max_hold: int = MAX_HOLD,
) -> FramePlan:
    """The plan for output frame ``k`` of a clip placed by frame index: the slot at source position k / m
    (see :func:`plan_slot` for ``cut``, ``hold`` and ``same``). Exact at any k and any rate pair."""
    i, _ = frame_position(k, multi)
    return plan_slot(Fraction(k) / multi, i, source_frames, Fraction, cut=cut, hold=hold, same=same,
                     max_hold=max_hold)  # fmt: skip


def slot_duration(k: int, multi: Fraction, source_frames: int, duration: Callable[[int], Fraction]) -> Fraction:
    """How long output frame ``k`` lasts when source frame j lasts ``duration(j)`` (variable frame rate).

    The slot covers source positions [k / m, (k + 1) / m), capped at the clip's end, and lasts the source
    time that span covers, so the output's durations add up exactly to the source's whatever m, cuts or
    held frames: each source frame's duration is split in m parts.
    """
    begin, end = Fraction(k) / multi, min(Fraction(k + 1) / multi, Fraction(source_frames))
    total = Fraction(0)
    j = math.floor(begin)
    while j < end:
        total += (min(end, j + 1) - max(begin, j)) * duration(j)
        j += 1
    return total


def frame_time(pts: int | None, time_base: Fraction, index: int, first: Fraction, rate: Fraction | None) -> Fraction:
    """The presentation time of decoded frame ``index`` in seconds.

    Timestamps are rounded to the stream's time base (1 ms in Matroska): a frame whose timestamp lies
    within one tick of the nominal grid ``first + index / rate`` is placed on the grid, so constant-rate
    input is placed exactly; any other timestamp is taken as it is (variable frame rate). A frame without
    a timestamp is placed on the grid.
    """
    grid = first + Fraction(index) / rate if rate else None
    if pts is None:
        if grid is None:
            raise ValueError("a frame has no timestamp and the stream no frame rate")
        return grid
    time = pts * time_base
    return grid if grid is not None and abs(time - grid) <= time_base else time


def chunk_feed(first: int, stop: int, count: int, *, holds: bool, max_hold: int = MAX_HOLD) -> tuple[int, int]:
    """The source frames [from, to) a :class:`SlotPlanner` must be fed to plan the slots of the chunk of
    source frames [first, stop) of a clip of ``count`` frames exactly as in the whole clip.

    A slot between frames i and i + 1 needs both and whether a cut lies before i + 1 or it is identical
    to i, which the frame before it tells: so the chunk's frames and the next one (chunks overlap by one
    source frame), and the one before, which tells whether the chunk's first frame starts a scene (for
    the count of cuts; no slot of the chunk depends on it). With ``holds`` a slot also looks up to
    ``max_hold`` frames back and ahead for the drawing it lies in, and each of those frames needs the one
    before it for its own hold test.
    """
    if not 0 <= first < stop <= count:
        raise ValueError(f"chunk [{first}, {stop}) is not a part of a clip of {count} frames")
    back, ahead = (max_hold + 1, max_hold) if holds else (1, 0)
    return max(0, first - back), min(count, stop + 1 + ahead)


class SlotPlanner:
    """Places the slots of a constant-rate output over source frames that arrive one by one with their
    presentation times (``vsrife video``): slot k sits at ``start + k / rate`` and is planned as
    :func:`plan_slot` does, by time.

    Feed it with :meth:`push` in decoding order, then :meth:`finish`. Both return the (k, plan) pairs
    that became decidable. It keeps only what the slots still to come can need: frames from
    :attr:`oldest_needed` on.

    A part of a clip (a chunk of a cluster run) is planned as the whole clip would be: pass ``start``, the
    whole clip's first time, ``first_index``, the index of the first frame pushed, and ``keep``, the
    chunk's source frames [a, b); push the frames :func:`chunk_feed` names, and call :meth:`finish` only
    where they reach the clip's end. Slots are numbered as in the whole clip, and exactly those from frame
    a's time up to frame b's are returned, each planned as in the whole clip, so the chunks of a clip
    together return the whole clip's slots, each once.
    """

    def __init__(self, rate: Fraction, *, cuts: bool = True, holds: bool = False, max_hold: int = MAX_HOLD,
                 start: Fraction | None = None, first_index: int = 0, keep: tuple[int, int] | None = None
                 ) -> None:  # fmt: skip
        if rate <= 0:
            raise ValueError("the output rate must be positive")
        self.rate = rate
        self.holds, self.cuts, self.max_hold = holds, cuts, max_hold
        self.start: Fraction | None = start
        self.times: dict[int, Fraction] = {}
        self.cut_before: dict[int, bool] = {}
        self.held: dict[int, bool] = {}
        self.identical: dict[int, bool] = {}
        self.first_index = first_index
        self.count = first_index  # index of the next frame: frames pushed, counting from the whole clip's 0
        self.k: int | None = None  # next slot to plan, once the first frame is known
        self.i = first_index  # source frame at or before slot k
        self.total: int | None = None  # slots in the output, once the end is known
        self.keep = keep  # source frames [a, b): only the slots that lie from frame a's time to frame b's

    def slot_time(self, k: int) -> Fraction:
        assert self.start is not None
        return self.start + Fraction(k) / self.rate

    @property
    def oldest_needed(self) -> int:
        """The first source frame a slot still to come may show or interpolate from."""
        return max(0, self.i - self.max_hold) if self.holds else self.i

    def push(self, time: Fraction, *, cut: bool = False, hold: bool = False, same: bool = False
             ) -> list[tuple[int, FramePlan]]:  # fmt: skip
        """Add the next source frame: its presentation time (after the previous frame's), whether a scene
        cut lies before it, whether it holds the previous frame's drawing, and whether it is identical to
        the previous frame."""
        j = self.count
        if j > self.first_index and time <= self.times[j - 1]:
            raise ValueError(f"source frame {j} is not later than the one before it ({time} <= {self.times[j - 1]})")
        if self.start is None:
            self.start = time
        if self.k is None:
            if time < self.start:
                raise ValueError(f"source frame {j} lies before the clip's start ({time} < {self.start})")
            self.k = math.ceil((time - self.start) * self.rate)  # the first slot this frame can hold
        self.times[j], self.cut_before[j], self.held[j], self.identical[j] = time, cut, hold, same
        self.count += 1
        return self._ready()

    def finish(self, end: Fraction) -> list[tuple[int, FramePlan]]:
        """The source ended at ``end`` (the last frame's time plus its duration): plan every slot left.
        The output has ceil((end - start) x rate) slots, so it lasts as long as the source."""
        if self.k is None:
            raise ValueError("no source frames")
        self.total = math.ceil((max(end, self.times[self.count - 1]) - self.start) * self.rate)
        return self._ready()

    def _ready(self) -> list[tuple[int, FramePlan]]:
        ready = []
        lookahead = 1 + (self.max_hold if self.holds else 0)
        while self.total is None or self.k < self.total:
            time = self.slot_time(self.k)
            while self.i + 1 < self.count and self.times[self.i + 1] <= time:
                self.i += 1
            if self.total is None and self.i + lookahead >= self.count:
                break  # the frames this slot may need have not arrived yet
            count = self.count if self.total is not None else self.count + 1  # +1: more frames may follow
            plan = plan_slot(time, self.i, count, self.times.__getitem__,
                             cut=self.cut_before.__getitem__ if self.cuts else None,
                             hold=self.held.__getitem__ if self.holds else None, same=self.identical.__getitem__,
                             max_hold=self.max_hold)  # fmt: skip
            if self.keep is None or self.keep[0] <= self.i < self.keep[1]:
                ready.append((self.k, plan))
            self.k += 1
        for table in (self.times, self.cut_before, self.held, self.identical):
            for j in [j for j in table if j < self.oldest_needed - 1]:
                del table[j]
        return ready


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """BT.709 luma (N x 1 x H x W, float32) of N x 3 x H x W RGB in [0, 1]."""
    weights = torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float32, device=rgb.device).view(1, 3, 1, 1)
    return (rgb.float() * weights).sum(1, keepdim=True)


def luma_thumbnail(rgb: torch.Tensor) -> torch.Tensor:
    """A 1/8-size BT.709 luma image (N x 1 x h x w, float32) of N x 3 x H x W RGB in [0, 1]."""
    luma = _luma(rgb)
    h, w = luma.shape[-2:]
    return F.adaptive_avg_pool2d(luma, (max(1, h // 8), max(1, w // 8)))


def hold_luma(rgb: torch.Tensor) -> torch.Tensor:
    """Half-size BT.709 luma (N x 1 x h x w, float32) of N x 3 x H x W RGB in [0, 1], for :func:`hold_difference`."""
    luma = _luma(rgb)
    return F.avg_pool2d(luma, 2) if min(luma.shape[-2:]) >= 2 else luma


def hold_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """The fraction of pixels of two :func:`hold_luma` images that differ by more than 6/255; below
    :data:`HOLD_THRESHOLD` the second frame holds the first one's drawing."""
    return float(((a - b).abs() > HOLD_PIXEL_STEP).float().mean())


def scene_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean absolute difference of two luma thumbnails, in [0, 1]; compare with :data:`SCENE_THRESHOLD`."""
    return float((a - b).abs().mean())
