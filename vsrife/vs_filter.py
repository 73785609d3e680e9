"""The VapourSynth filter ``vsrife.RIFE``: thin glue over the engine and the frame planner.

Every output frame is decided by :func:`vsrife.timing.plan_frame`, the planner ``vsrife video`` shares:
``FrameEval`` over a template of the output's length returns, per frame, either the untouched source
frame or the node that interpolates. The graph has the same few nodes at any pair of rates (no
``Interleave`` by the ratio's numerator), and frame 10**6 costs what frame 1 does.

Source frames, their RGB versions and their scene/hold signatures are fetched on demand with
``get_frame`` from inside the callbacks (the core lends the pool another thread while one waits). No lock
is ever held while a frame is fetched, so waiting threads cannot starve the pool. The network runs on
the device's one :class:`vsrife.engine.Batcher` thread: requests that VapourSynth's threads make at the
same time share one batched call, and a GPU is fed while frames are converted and copied.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import torch

from .catalogue import get_release
from .engine import SCALES, Batcher, Frame, Interpolator, parse_device
from .timing import (
    HOLD_THRESHOLD,
    SCENE_THRESHOLD,
    FramePlan,
    as_fraction,
    hold_difference,
    hold_luma,
    luma_thumbnail,
    output_count,
    plan_frame,
    rate_factor,
    scene_difference,
    slot_duration,
)
from .weights import WeightsError

if TYPE_CHECKING:
    import vapoursynth as vs

__all__ = ["RIFE"]

_NAME = "vsrife.RIFE"
_CACHE = 8  # prepared source frames kept per filter instance (a window around the frames asked for)
_SIGNATURES = 32  # scene/hold signatures kept: enough for the planner's look-around at any rate
_PLANS = 64  # decided output frames kept (the chooser and the interpolator both ask for each)

K = TypeVar("K")
V = TypeVar("V")


def _error(message: str) -> Exception:
    import vapoursynth as vs

    return vs.Error(f"{_NAME}: {message}")


def _check_clip(clip: Any) -> None:
    import vapoursynth as vs

    if not isinstance(clip, vs.VideoNode):
        raise _error("clip must be a video clip (vs.VideoNode)")
    fmt = clip.format
    if fmt is None or fmt.id == vs.PresetVideoFormat.NONE:
        raise _error("variable-format clips are not supported; convert to a constant format first")
    if clip.width == 0 or clip.height == 0:
        raise _error("variable-size clips are not supported; resize to a constant size first")
    if fmt.color_family == vs.GRAY:
        raise _error("gray clips are not supported; convert to RGB or YUV first")
    if fmt.color_family not in (vs.RGB, vs.YUV):
        raise _error(f"unsupported color family {fmt.color_family.name}; use RGB or YUV")
    if clip.num_frames < 2:
        raise _error("the clip needs at least 2 frames")


def _multiplier(clip: "vs.VideoNode", multi: Any, fps_num: int | None, fps_den: int | None, dedup: bool) -> Fraction:
    if (fps_num is None) != (fps_den is None):
        raise _error("give both fps_num and fps_den, or neither")
    if fps_num is not None:
        if not (isinstance(fps_num, int) and isinstance(fps_den, int)) or fps_num <= 0 or fps_den <= 0:
            raise _error("fps_num and fps_den must be positive integers")
        if clip.fps == 0:
            raise _error("the clip has no constant frame rate (fps 0/1), so a target fps cannot be met; "
                         "use multi to split each frame's own duration, or AssumeFPS first")  # fmt: skip
        try:
            return rate_factor(Fraction(clip.fps.numerator, clip.fps.denominator), Fraction(fps_num, fps_den),
                               same_rate=dedup)  # fmt: skip
        except ValueError as e:
            raise _error(str(e)) from e
    if isinstance(multi, bool) or not isinstance(multi, (int, Fraction)):
        raise _error(f"multi must be an int or a fractions.Fraction, not {type(multi).__name__}")
    m = as_fraction(multi)
    if dedup and m == 1:
        return m  # the source rate, with held drawings replaced by motion
    if m <= 1:
        raise _error(f"multi must be at least 2 (or a Fraction above 1; 1 with dedup=True), not {multi}")
    return m


def _colour(clip: "vs.VideoNode") -> tuple[dict[str, int], dict[str, int]]:
    """Keyword arguments of ``resize`` into RGB and back to the clip's format, from its first frame.

    The matrix is the frame's ``_Matrix`` where it names one, else BT.709 for HD sizes and BT.601 below, as
    players assume. Range, chroma siting, transfer and primaries are kept as tagged, so interpolated
    frames come back in exactly the colour the source frames around them have.
    """
    import vapoursynth as vs

    props = clip.get_frame(0).props
    fmt = clip.format
    to_rgb: dict[str, int] = {"format": vs.RGBS}
    back: dict[str, int] = {"format": fmt.id}
    if fmt.color_family == vs.YUV:
        matrix = int(props.get("_Matrix", 2))
        if matrix in (0, 2, 3):  # RGB, unspecified, reserved
            matrix = 1 if clip.height >= 720 or clip.width >= 1280 else 5
        to_rgb["matrix_in"] = back["matrix"] = matrix
        if "_ChromaLocation" in props:
            to_rgb["chromaloc_in"] = back["chromaloc"] = int(props["_ChromaLocation"])
    if "_ColorRange" in props:  # the property says 0 = full, resize's argument 0 = limited
        to_rgb["range_in"] = back["range"] = 1 - int(props["_ColorRange"])
    for name, prop in (("transfer", "_Transfer"), ("primaries", "_Primaries")):
        value = int(props.get(prop, 2))
        if value not in (0, 2, 3):  # tagged: converted to itself, so only the tag travels
            to_rgb[f"{name}_in"] = to_rgb[name] = back[f"{name}_in"] = back[name] = value
    return to_rgb, back


def _to_tensor(frame: "vs.VideoFrame") -> torch.Tensor:
    """The frame's three planes as a 1 x 3 x H x W tensor in their own sample type (float16 for RGBH,
    float32 for RGBS): the engine converts it to float32 where it runs, on the device for a GPU."""
    return torch.from_numpy(np.stack([np.asarray(frame[p]) for p in range(3)])).unsqueeze(0)


def _write(tensor: torch.Tensor, frame: "vs.VideoFrame") -> None:
    data = tensor[0].to("cpu", torch.float32).numpy()
    for p in range(3):
        np.copyto(np.asarray(frame[p]), data[p], casting="unsafe")


class _Bounded(Generic[K, V]):
    """A small thread-safe LRU map. ``get`` computes a missing value outside the lock, so a computation
    that fetches frames never blocks other threads; two threads may then compute the same value once each.

    The computation comes with each ``get``, never stored with the map: an owner whose computation refers
    back to it would otherwise form a reference cycle that keeps its nodes alive after the graph is freed.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[K, V] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: K, compute: Callable[[K], V]) -> V:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        value = compute(key)
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return value


class _Source:
    """What the planner and the network need of each source frame, fetched on demand and kept bounded:
    prepared frames for the network, scene thumbnails and hold signatures, cut and hold decisions."""

    def __init__(self, interpolator: Interpolator, clip: "vs.VideoNode", rgb: "vs.VideoNode", *,
                 sc_threshold: float, hold_threshold: float) -> None:  # fmt: skip
        self.interpolator = interpolator
        self.clip, self.rgb = clip, rgb
        self.sc_threshold, self.hold_threshold = sc_threshold, hold_threshold
        self.batcher = Batcher.for_device(interpolator.device)  # VapourSynth's threads share its worker
        self.lock = threading.Lock()
        self.results: OrderedDict[tuple, Future] = OrderedDict()  # pairs made or in the making
        self.frames: _Bounded[int, Frame] = _Bounded(_CACHE)
        self.signatures: _Bounded[int, tuple[torch.Tensor, torch.Tensor]] = _Bounded(_SIGNATURES)

    def tensor(self, index: int) -> torch.Tensor:
        return _to_tensor(self.rgb.get_frame(index))

    def _prepare(self, index: int) -> Frame:
        return self.batcher.prepare(self.interpolator, self.tensor(index)).result()

    def _signature(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.tensor(index)
        return luma_thumbnail(image), hold_luma(image)

    def cut(self, j: int) -> bool:
        """A scene cut between source frames j - 1 and j: marked upstream, or measured."""
        if self.clip.get_frame(j - 1).props.get("_SceneChangeNext") or self.clip.get_frame(j).props.get(
            "_SceneChangePrev"
        ):
            return True
        a, b = self.signatures.get(j - 1, self._signature)[0], self.signatures.get(j, self._signature)[0]
        return scene_difference(a, b) > self.sc_threshold

    def same(self, j: int) -> bool:
        """Source frames j - 1 and j are identical, pixel for pixel."""
        a, b = self.clip.get_frame(j - 1), self.clip.get_frame(j)
        return all(np.array_equal(np.asarray(a[p]), np.asarray(b[p])) for p in range(a.format.num_planes))

    def hold(self, j: int) -> bool:
        """Source frame j shows the drawing of frame j - 1."""
        a, b = self.signatures.get(j - 1, self._signature)[1], self.signatures.get(j, self._signature)[1]
        return hold_difference(a, b) < self.hold_threshold

    def between(self, left: int, right: int, times: tuple[float, ...]) -> Future:
        """The frames at ``times`` between source frames ``left`` and ``right``, made in one call. Asked
        for again (another slot of the pair, from another thread) while in the making, the same future
        comes back: a pair is computed once, and always with all its slots, so no frame depends on
        which thread asked first."""
        key = (left, right, times)
        with self.lock:
            future = self.results.get(key)
            if future is not None:
                self.results.move_to_end(key)
                return future
            future = self.results[key] = Future()
            while len(self.results) > _CACHE:
                self.results.popitem(last=False)
        try:
            a, b = self.frames.get(left, self._prepare), self.frames.get(right, self._prepare)
            self.batcher.interpolate(self.interpolator, a, b, times).add_done_callback(
                lambda done: future.set_exception(done.exception()) if done.exception() else future.set_result(done.result())
            )  # fmt: skip
        except BaseException as e:  # noqa: BLE001 - the error of every slot of this pair
            future.set_exception(e)
        return future


def RIFE(  # noqa: N802 - the name users already type
    clip: "vs.VideoNode",
    multi: int | Fraction = 2,
    scale: float = 1.0,
    fp16: bool = False,
    tta: bool = False,
    *,
    model: str = "4.25",
    weights: str | os.PathLike[str] | None = None,
    fps_num: int | None = None,
    fps_den: int | None = None,
    sc: bool = True,
    sc_threshold: float = SCENE_THRESHOLD,
    dedup: bool = False,
    dedup_threshold: float = HOLD_THRESHOLD,
    device: str | torch.device | None = None,
    auto_download: bool = True,
) -> "vs.VideoNode":
    """Frame interpolation with RIFE.

    Args:
        clip: RGBS or RGBH natively; any other constant RGB or YUV format (8-16 bit integer or float) is
            converted to RGBS for the network (matrix from the first frame's ``_Matrix``, else BT.709 for HD
            sizes and BT.601 below; range, chroma siting, transfer and primaries as the first frame is
            tagged; Bicubic chroma) and interpolated frames back to the input format with the same tags;
            source frames pass through unconverted. Gray, variable format or size: refused.
        multi: frame-rate multiplier: an int >= 2 or a ``fractions.Fraction`` > 1 (``Fraction(5, 2)``
            turns 24 fps into 60); 1 with ``dedup``. Output frame k sits at source position k / multi.
        scale: flow resolution factor, 0.25, 0.5, 1, 2 or 4 (0.5 suits 4K). Default 1. RIFE only (IFRNet: 1).
        fp16: reduced precision: half on GPU, bfloat16 on CPU. Implied by RGBH input. Default False
            (float32).
        tta: test-time augmentation, about twice the work; not available for 4.21-4.23, 4.22.lite, 4.25+ and
            IFRNet.
        model: release name, e.g. "4.25", "4.22.lite", "ifnet_m", "ifrnet" (``vsrife.release_names()``).
        weights: a weights file (.pkl/.pth/.safetensors) instead of the cached catalogue weights.
        fps_num, fps_den: a target frame rate instead of ``multi`` (both or neither; needs a known rate).
        sc: scene-change handling: across a cut each new slot shows the nearer source frame instead of a
            blend. Cuts are detected (mean absolute difference of 1/8-size luma above ``sc_threshold``)
            and taken from ``_SceneChangeNext``/``_SceneChangePrev`` set earlier in the script.
        sc_threshold: the cut threshold in [0, 1]; default 0.13 (see README, Timing).
        dedup: animation drawn on twos or threes: a frame that repeats the one before (fewer than
            ``dedup_threshold`` of its half-size luma pixels changed by more than 6/255) is a held
            drawing, and slots are placed on the motion between distinct drawings; runs of more than 4
            frames are stills and stay still. Looks at most 5 source frames ahead.
        dedup_threshold: the hold threshold in [0, 1]; default 0.003 (see README, Timing).
        device: torch device, default CUDA, else another accelerator, else CPU.
        auto_download: fetch missing catalogue weights into the cache.

    Returns:
        The clip at fps x multi with ceil(N x multi) frames (same duration). Interpolated frames carry the
        left source frame's properties plus ``RIFE_Timestep`` and ``RIFE_Model``; source frames pass
        through untouched apart from their duration properties. Variable-frame-rate clips (fps 0): every
        source frame's duration is split among the output frames that cover it, so the durations add up
        to the source's.
    """
    import vapoursynth as vs

    core = vs.core
    _check_clip(clip)
    m = _multiplier(clip, multi, fps_num, fps_den, dedup)
    try:
        release = get_release(model)
    except ValueError as e:
        raise _error(str(e)) from e
    if scale not in SCALES:
        raise _error(f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}")
    try:
        release.check_options(scale, tta)
    except ValueError as e:
        raise _error(str(e)) from e
    if not 0 <= sc_threshold <= 1:
        raise _error("sc_threshold must lie between 0 and 1")
    if not 0 <= dedup_threshold <= 1:
        raise _error("dedup_threshold must lie between 0 and 1")
    try:
        dev = parse_device(device)
    except ValueError as e:
        raise _error(str(e)) from e
    fmt = clip.format
    half = fp16 or (fmt.sample_type == vs.FLOAT and fmt.bits_per_sample == 16)
    dtype = (torch.float16 if dev.type != "cpu" else torch.bfloat16) if half else torch.float32
    try:
        interpolator = Interpolator(release.name, weights=weights, device=dev, dtype=dtype, scale=scale, tta=tta,
                                    auto_download=auto_download)  # fmt: skip
    except (ValueError, WeightsError) as e:
        raise _error(str(e)) from e

    if fmt.color_family == vs.RGB and fmt.sample_type == vs.FLOAT:
        rgb, back = clip, None
    else:
        to_rgb, back = _colour(clip)
        rgb = (core.resize.Point if fmt.color_family == vs.RGB else core.resize.Bicubic)(clip, **to_rgb)
    n_src = clip.num_frames
    count = output_count(n_src, m)
    source = _Source(interpolator, clip, rgb, sc_threshold=sc_threshold, hold_threshold=dedup_threshold)
    cut = source.cut if sc else None
    hold = source.hold if dedup else None
    plans: _Bounded[int, FramePlan] = _Bounded(_PLANS)

    def plan(n: int) -> FramePlan:
        return plans.get(n, lambda k: plan_frame(k, m, n_src, cut=cut, hold=hold, same=source.same))

    def of_pair(p: FramePlan, slot: FramePlan) -> bool:
        return p.source is None and (p.left, p.right) == (slot.left, slot.right)

    def interpolate(n: int, f: "vs.VideoFrame") -> "vs.VideoFrame":
        slot = plan(n)
        first = last = n  # the pair's slots are neighbours in the output
        while first > 0 and of_pair(plan(first - 1), slot):
            first -= 1
        while last + 1 < count and of_pair(plan(last + 1), slot):
            last += 1
        times = tuple(float(plan(k).timestep) for k in range(first, last + 1))
        try:
            result = source.between(slot.left, slot.right, times).result()[n - first : n - first + 1]
        except torch.OutOfMemoryError as e:
            raise _error(f"out of memory at frame {n}; try scale=0.5, fp16=True or a smaller model") from e
        out = rgb.get_frame(slot.left).copy()  # the left source frame's properties
        _write(result, out)
        props = out.props
        props["RIFE_Timestep"] = float(slot.timestep)
        props["RIFE_Model"] = release.name
        for stale in ("_SceneChangeNext", "_SceneChangePrev", "_PictType"):
            props.pop(stale, None)
        return out

    template_rgb = core.std.BlankClip(rgb, length=count, keep=True)
    interpolated = core.std.ModifyFrame(template_rgb, template_rgb, interpolate)
    if back is not None:
        interpolated = (core.resize.Point if fmt.color_family == vs.RGB else core.resize.Bicubic)(interpolated, **back)
    passthrough: _Bounded[int, vs.VideoNode] = _Bounded(_CACHE)

    def choose(n: int) -> "vs.VideoNode":
        slot = plan(n)
        if slot.source is None:
            return interpolated
        return passthrough.get(slot.source, clip.__getitem__)  # FrameEval asks it for frame n: clamped to its one

    if clip.fps == 0:
        out = core.std.FrameEval(core.std.BlankClip(clip, length=count, keep=True), choose)
        return core.std.ModifyFrame(out, out, lambda n, f: _vfr_duration(n, f, m, clip))
    rate = Fraction(clip.fps.numerator, clip.fps.denominator) * m
    template = core.std.BlankClip(clip, length=count, fpsnum=rate.numerator, fpsden=rate.denominator, keep=True)
    out = core.std.FrameEval(template, choose)
    return core.std.SetFrameProps(out, _DurationNum=rate.denominator, _DurationDen=rate.numerator)


def _vfr_duration(n: int, f: "vs.VideoFrame", m: Fraction, clip: "vs.VideoNode") -> "vs.VideoFrame":
    """Output frame n of a variable-frame-rate clip lasts the source time its slot covers."""

    def duration(j: int) -> Fraction:
        props = clip.get_frame(j).props
        try:
            return Fraction(int(props["_DurationNum"]), int(props["_DurationDen"]))
        except (KeyError, ZeroDivisionError) as e:
            raise _error(f"source frame {j} of a variable-frame-rate clip has no _DurationNum/_DurationDen; "
                         "set them, or AssumeFPS first") from e  # fmt: skip

    d = slot_duration(n, m, clip.num_frames, duration)
    out = f.copy()
    out.props["_DurationNum"], out.props["_DurationDen"] = d.numerator, d.denominator
    return out
