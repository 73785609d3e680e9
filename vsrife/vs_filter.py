"""The VapourSynth filter ``vsrife.RIFE``: thin glue over the engine and the timing code.

The output is built from plain VapourSynth nodes so that a frame is only computed when asked for:

- ``left``/``right``: the input mapped so that output frame k shows source frames i = floor(k / m) and
  i + 1 (``Interleave`` m's numerator times, then keep every denominator-th frame);
- ``interpolated``: ``ModifyFrame`` over the RGB versions of ``left``/``right`` runs the network;
- the result: ``FrameEval`` picks, per output frame, the untouched ``left`` frame (t = 0), the nearer
  source frame across a scene cut, or the interpolated frame. Source frames are never converted.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .catalogue import get_release
from .engine import SCALES, Frame, Interpolator, parse_device
from .timing import SCENE_THRESHOLD, as_fraction, frame_position, luma_thumbnail, rate_factor, scene_difference
from .weights import WeightsError

if TYPE_CHECKING:
    import vapoursynth as vs

__all__ = ["RIFE"]

_NAME = "vsrife.RIFE"
_CACHE = 8  # prepared source frames kept per filter instance (a window around the frames asked for)


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


def _multiplier(clip: "vs.VideoNode", multi: Any, fps_num: int | None, fps_den: int | None) -> Fraction:
    if (fps_num is None) != (fps_den is None):
        raise _error("give both fps_num and fps_den, or neither")
    if fps_num is not None:
        if not (isinstance(fps_num, int) and isinstance(fps_den, int)) or fps_num <= 0 or fps_den <= 0:
            raise _error("fps_num and fps_den must be positive integers")
        if clip.fps == 0:
            raise _error("the clip has no constant frame rate (fps 0/1), so a target fps cannot be met; "
                         "use multi to split each frame's own duration, or AssumeFPS first")  # fmt: skip
        try:
            return rate_factor(Fraction(clip.fps.numerator, clip.fps.denominator), Fraction(fps_num, fps_den))
        except ValueError as e:
            raise _error(str(e)) from e
    if isinstance(multi, bool) or not isinstance(multi, (int, Fraction)):
        raise _error(f"multi must be an int or a fractions.Fraction, not {type(multi).__name__}")
    m = as_fraction(multi)
    if m <= 1 or (isinstance(multi, int) and multi < 2):
        raise _error(f"multi must be at least 2 (or a Fraction above 1), not {multi}")
    return m


def _matrix(clip: "vs.VideoNode") -> int:
    """The YUV matrix: the first frame's ``_Matrix`` where it names one, else BT.709 for HD sizes and
    BT.601 (470BG) below, as players assume."""
    value = clip.get_frame(0).props.get("_Matrix", 2)
    if value not in (0, 2, 3):  # RGB, unspecified, reserved
        return int(value)
    return 1 if clip.height >= 720 or clip.width >= 1280 else 5


def _map(clip: "vs.VideoNode", m: Fraction, shift: int) -> "vs.VideoNode":
    """Frame k of the result is source frame floor(k / m) + shift (the last frame where that runs out)."""
    import vapoursynth as vs

    core = vs.core
    if shift:
        clip = clip[shift:] + clip[-1] * shift
    if m.numerator > 1:
        clip = core.std.Interleave([clip] * m.numerator)
    return clip[:: m.denominator] if m.denominator > 1 else clip


def _to_tensor(frame: "vs.VideoFrame") -> torch.Tensor:
    planes = [np.asarray(frame[p]) for p in range(3)]
    return torch.from_numpy(np.stack(planes).astype(np.float32, copy=False)).unsqueeze(0)


def _write(tensor: torch.Tensor, frame: "vs.VideoFrame") -> None:
    data = tensor[0].to("cpu", torch.float32).numpy()
    for p in range(3):
        np.copyto(np.asarray(frame[p]), data[p], casting="unsafe")


class _Source:
    """Prepared source frames and their scene thumbnails, bounded, safe across VapourSynth's threads."""

    def __init__(self, interpolator: Interpolator) -> None:
        self.interpolator = interpolator
        self.frames: OrderedDict[int, tuple[Frame, torch.Tensor]] = OrderedDict()
        self.lock = threading.Lock()  # one network call at a time; VapourSynth threads queue here

    def get(self, index: int, frame: "vs.VideoFrame") -> tuple[Frame, torch.Tensor]:
        hit = self.frames.get(index)
        if hit is not None:
            self.frames.move_to_end(index)
            return hit
        rgb = _to_tensor(frame)
        entry = (self.interpolator.prepare(rgb), luma_thumbnail(rgb))
        self.frames[index] = entry
        while len(self.frames) > _CACHE:
            self.frames.popitem(last=False)
        return entry


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
    device: str | torch.device | None = None,
    auto_download: bool = True,
) -> "vs.VideoNode":
    """Frame interpolation with RIFE.

    Args:
        clip: RGBS or RGBH natively; any other constant RGB or YUV format (8-16 bit integer or float) is
            converted to RGBS for the network (matrix from the first frame's ``_Matrix``, else BT.709 for HD
            sizes and BT.601 below; Bicubic chroma) and interpolated frames back to the input format; source
            frames pass through unconverted. Gray, variable format or size: refused.
        multi: frame-rate multiplier: an int >= 2 or a ``fractions.Fraction`` > 1 (``Fraction(5, 2)``
            turns 24 fps into 60). Output frame k sits at source position k / multi.
        scale: flow resolution factor, 0.25, 0.5, 1, 2 or 4 (0.5 suits 4K). Default 1.
        fp16: reduced precision: half on GPU, bfloat16 on CPU. Implied by RGBH input. Default False
            (float32).
        tta: test-time augmentation, about twice the work; not available for 4.21-4.23, 4.22.lite, 4.25+.
        model: release name, e.g. "4.25", "4.22.lite", "ifnet_m" (``vsrife.release_names()``).
        weights: a weights file (.pkl/.pth/.safetensors) instead of the cached catalogue weights.
        fps_num, fps_den: a target frame rate instead of ``multi`` (both or neither; needs a known rate).
        sc: scene-change handling: across a cut each new slot shows the nearer source frame instead of a
            blend. Cuts are detected (mean absolute difference of 1/8-size luma above ``sc_threshold``)
            and taken from ``_SceneChangeNext``/``_SceneChangePrev`` set earlier in the script.
        sc_threshold: the cut threshold in [0, 1]; default 0.13 (see README, Timing).
        device: torch device, default CUDA, else another accelerator, else CPU.
        auto_download: fetch missing catalogue weights into the cache.

    Returns:
        The clip at fps x multi with ceil(N x multi) frames (same duration). Interpolated frames carry the
        left source frame's properties plus ``RIFE_Timestep``; source frames pass through untouched apart
        from their duration properties.
    """
    import vapoursynth as vs

    core = vs.core
    _check_clip(clip)
    m = _multiplier(clip, multi, fps_num, fps_den)
    try:
        release = get_release(model)
    except ValueError as e:
        raise _error(str(e)) from e
    if scale not in SCALES:
        raise _error(f"scale must be one of {', '.join(map(str, SCALES))}, not {scale}")
    if tta and not release.tta:
        raise _error(f"model {release.name} has no tta path; use tta=False or a model up to 4.20")
    if not 0 <= sc_threshold <= 1:
        raise _error("sc_threshold must lie between 0 and 1")
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
        rgb, interpolated_format = clip, None
    elif fmt.color_family == vs.RGB:
        rgb, interpolated_format = core.resize.Point(clip, format=vs.RGBS), {"format": fmt.id}
    else:
        matrix = _matrix(clip)
        rgb = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in=matrix)
        interpolated_format = {"format": fmt.id, "matrix": matrix}
    source = _Source(interpolator)
    left, right = _map(clip, m, 0), _map(clip, m, 1)
    rgb_left, rgb_right = _map(rgb, m, 0), _map(rgb, m, 1)
    n_src = clip.num_frames

    def is_cut(i: int, fl: "vs.VideoFrame", fr: "vs.VideoFrame") -> bool:
        if not sc:
            return False
        if fl.props.get("_SceneChangeNext") or fr.props.get("_SceneChangePrev"):
            return True
        with source.lock:
            a = source.get(i, fl)[1]
            b = source.get(i + 1, fr)[1]
        return scene_difference(a, b) > sc_threshold

    def interpolate(n: int, f: list["vs.VideoFrame"]) -> "vs.VideoFrame":
        i, t = frame_position(n, m)
        out = f[0].copy()
        if t == 0 or i >= n_src - 1:
            return out
        try:
            with source.lock:
                a = source.get(i, f[0])[0]
                b = source.get(i + 1, f[1])[0]
                result = interpolator.interpolate(a, b, float(t))
        except torch.OutOfMemoryError as e:
            raise _error(f"out of memory at frame {n}; try scale=0.5, fp16=True or a smaller model") from e
        _write(result, out)
        props = out.props
        props["RIFE_Timestep"] = float(t)
        props["RIFE_Model"] = release.name
        for stale in ("_SceneChangeNext", "_SceneChangePrev", "_PictType"):
            props.pop(stale, None)
        return out

    interpolated = core.std.ModifyFrame(rgb_left, [rgb_left, rgb_right], interpolate)
    if interpolated_format is not None:
        interpolated = core.resize.Bicubic(interpolated, **interpolated_format)

    def choose(n: int, f: list["vs.VideoFrame"]) -> "vs.VideoNode":
        i, t = frame_position(n, m)
        if t == 0 or i >= n_src - 1:
            return left
        if is_cut(i, f[0], f[1]):
            return left if t < Fraction(1, 2) else right
        return interpolated

    out = core.std.FrameEval(left, choose, prop_src=[rgb_left, rgb_right])
    if clip.fps == 0:
        # Variable frame rate: Interleave divides each frame's _Duration by m's numerator and taking every
        # denominator-th frame multiplies it back, so every output frame already lasts its source's / m.
        return out
    rate = Fraction(clip.fps.numerator, clip.fps.denominator) * m
    return core.std.SetFrameProps(out, _DurationNum=rate.denominator, _DurationDen=rate.numerator)
