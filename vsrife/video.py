"""Video in, video out, without VapourSynth: decode (PyAV/FFmpeg), interpolate, encode, keep audio.

Decoding, inference and encoding run in three threads joined by bounded queues, so the engine is never
idle waiting for I/O and memory stays bounded. The output is written to a temporary file beside the
target and renamed only when complete.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from .engine import Interpolator
from .timing import SCENE_THRESHOLD, luma_thumbnail, output_count, plan_frame, rate_factor, scene_difference

__all__ = ["VideoError", "VideoJob", "VideoResult", "check_paths", "frames_of", "interpolate_video", "probe"]

log = logging.getLogger("vsrife")

_QUEUE = 8  # frames in flight between the stages
_HIGH_DEPTH = ("10", "12", "16")


class VideoError(RuntimeError):
    """A video job failed for a reason the user can act on; the message says what and what to do."""


def _av():
    try:
        import av
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise VideoError('video needs PyAV: pip install "vsrife[cli]"') from e
    return av


@dataclass
class VideoJob:
    """What to do: one of ``multi`` or ``fps``; encoder settings; scene-change handling."""

    multi: Fraction | None = Fraction(2)
    fps: Fraction | None = None
    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str | None = None  # default: the source's, where the encoder takes it
    scene_detection: bool = True
    scene_threshold: float = SCENE_THRESHOLD
    overwrite: bool = False
    progress: bool = True
    encoder_options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoResult:
    output: Path
    source_frames: int
    output_frames: int
    interpolated: int
    cuts: int
    fps: Fraction


def probe(path: str | os.PathLike[str], *, count: bool = True) -> dict:
    """Frame count, rate, duration and streams of a media file, as PyAV (FFmpeg) reports them.

    With ``count`` the video packets are counted (exact, but reads the whole file); without it the
    count is the container's own figure, or duration x rate where it has none (0 when unknown).
    """
    av = _av()
    with av.open(str(path)) as c:
        v = c.streams.video[0] if c.streams.video else None
        if v is None:
            frames = 0
        elif count:
            frames = sum(1 for packet in c.demux(v) if packet.size)
        else:
            frames = v.frames or (round(c.duration / 1e6 * v.average_rate) if c.duration and v.average_rate else 0)
        return {
            "frames": frames,
            "fps": Fraction(v.average_rate) if v is not None and v.average_rate else None,
            "duration": c.duration / 1e6 if c.duration else None,
            "width": v.codec_context.width if v is not None else None,
            "height": v.codec_context.height if v is not None else None,
            "pix_fmt": v.codec_context.pix_fmt if v is not None else None,
            "streams": [s.type for s in c.streams],
            "color": _colour(v) if v is not None else {},
        }


def _colour(stream) -> dict:
    cc = stream.codec_context
    return {name: int(getattr(cc, name, 0) or 0) for name in ("color_primaries", "color_trc", "colorspace", "color_range")}


# FFmpeg's AVColorSpace numbers -> swscale's matrix names in PyAV
_MATRIX = {1: "ITU709", 5: "ITU601", 6: "ITU601", 7: "SMPTE240M", 9: "ITU709"}  # 9 (BT.2020) has no sws entry
_RANGE = {1: "MPEG", 2: "JPEG"}


def _matrix(colour: dict, width: int, height: int) -> str:
    """The YUV<->RGB matrix: the stream's own, else BT.709 for HD sizes and BT.601 below, as players do
    (the same rule as the VapourSynth filter's)."""
    return _MATRIX.get(colour.get("colorspace", 2), "ITU709" if width >= 1280 or height >= 720 else "ITU601")


def _out_pix_fmt(av, codec: str, source: str, requested: str | None) -> str:
    if requested:
        return requested
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if not formats or source in formats:
        return source
    family = source.split("p")[0]  # yuv420 / yuv422 / yuv444 / gbr ...
    deep = any(d in source for d in _HIGH_DEPTH)
    for f in formats:
        if f.startswith(family) and any(d in f for d in _HIGH_DEPTH) == deep:
            return f
    return formats[0]


def _temp_path(output: Path) -> Path:
    return output.with_name(f".{output.stem}.{secrets.token_hex(4)}.partial{output.suffix}")


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue
    raise _Stop


def check_paths(source: Path, output: Path, *, overwrite: bool) -> None:
    """VideoError unless ``source`` is a file and ``output`` may be written (a callers' early check too)."""
    if not source.is_file():
        raise VideoError(f"input {source} does not exist")
    if output.exists() and not overwrite:
        raise VideoError(f"output {output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise VideoError(f"output folder {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise VideoError(f"output folder {output.parent} is not writable")


def interpolate_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    interpolator: Interpolator,
    job: VideoJob,
    on_frame: Callable[[int], None] | None = None,
) -> VideoResult:
    """Interpolate the first video stream of ``source`` into ``output``; copy audio and subtitles as they are."""
    av = _av()
    source, output = Path(source), Path(output)
    check_paths(source, output, overwrite=job.overwrite)
    try:
        inp = av.open(str(source))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot read {source}: {e}") from e
    tmp = _temp_path(output)
    try:
        with inp:
            if not inp.streams.video:
                raise VideoError(f"{source} has no video stream")
            result = _run(av, inp, tmp, interpolator, job, on_frame)
        os.replace(tmp, output)
        return VideoResult(output, *result)
    except OSError as e:
        raise VideoError(f"writing {output} failed ({e}); nothing was written under that name") from e
    finally:
        tmp.unlink(missing_ok=True)


def _run(av, inp, tmp: Path, it: Interpolator, job: VideoJob, on_frame) -> tuple:
    vin = inp.streams.video[0]
    vin.thread_type = "AUTO"
    src_rate = Fraction(vin.average_rate) if vin.average_rate else Fraction(0)
    if job.fps is not None:
        try:
            multi = rate_factor(src_rate, job.fps)
        except ValueError as e:
            raise VideoError(str(e)) from e
    else:
        multi = job.multi or Fraction(2)
        if src_rate <= 0:
            raise VideoError("the input has no constant frame rate; vsrife video needs one")
    out_rate = src_rate * multi
    colour = _colour(vin)
    cc = vin.codec_context
    matrix = _matrix(colour, cc.width, cc.height)
    src_range = _RANGE.get(colour["color_range"], "MPEG")
    deep = any(d in (cc.pix_fmt or "") for d in _HIGH_DEPTH)
    rgb_fmt = "rgb48le" if deep else "rgb24"

    out = av.open(str(tmp), "w", format=None)
    vout = out.add_stream(job.codec, rate=out_rate)
    vout.width, vout.height = cc.width, cc.height
    vout.pix_fmt = _out_pix_fmt(av, job.codec, cc.pix_fmt, job.pix_fmt)
    frame_tb = Fraction(1) / out_rate  # the muxer may change the stream's time base later; frames keep this
    vout.time_base = frame_tb
    options = dict(job.encoder_options)
    rate_control = {"qp", "crf", "b", "lossless"} & set(options)
    if job.crf is not None and not rate_control and job.codec in ("libx264", "libx265", "libvpx-vp9", "libsvtav1"):
        options.setdefault("crf", str(job.crf))
    if job.preset and job.codec in ("libx264", "libx265"):
        options.setdefault("preset", job.preset)
    vout.options = options
    for name, value in colour.items():
        if value and hasattr(vout.codec_context, name):
            setattr(vout.codec_context, name, value)
    if vin.sample_aspect_ratio:
        vout.codec_context.sample_aspect_ratio = vin.sample_aspect_ratio
    copied = {}
    for s in inp.streams:
        if s.type in ("audio", "subtitle"):
            try:
                copied[s.index] = out.add_stream_from_template(s)
            except (ValueError, av.error.FFmpegError) as e:
                log.warning("stream %d (%s) cannot be copied into this container: %s", s.index, s.type, e)
    start = round(vin.start_time * vin.time_base * out_rate) if vin.start_time else 0

    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(_QUEUE)
    encoded: queue.Queue = queue.Queue(_QUEUE)
    errors: list[BaseException] = []

    def decode() -> None:
        try:
            for packet in inp.demux(vin, *(inp.streams[i] for i in copied)):
                if packet.stream.index in copied:
                    if packet.dts is not None:
                        _put(encoded, ("packet", packet), stop)
                    continue
                for frame in packet.decode():
                    _put(decoded, frame, stop)
        except _Stop:
            return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            errors.append(e)
        finally:
            try:
                _put(decoded, None, stop)
            except _Stop:
                pass

    def encode() -> None:
        try:
            while True:
                try:
                    item = encoded.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():  # the main thread gave up: no flush, the file is discarded
                        return
                    continue
                if item is None:
                    break
                kind, obj = item
                if kind == "packet":
                    obj.stream = copied[obj.stream.index]
                    out.mux(obj)
                else:
                    for packet in vout.encode(obj):
                        out.mux(packet)
            for packet in vout.encode(None):
                out.mux(packet)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
            stop.set()

    def to_tensor(frame) -> torch.Tensor:
        arr = frame.reformat(format=rgb_fmt, src_colorspace=matrix, src_color_range=src_range).to_ndarray()
        scale = 65535.0 if deep else 255.0
        return torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1).unsqueeze(0).div_(scale)

    def to_frame(rgb: torch.Tensor):
        scale = 65535.0 if deep else 255.0
        arr = rgb[0].permute(1, 2, 0).mul(scale).round_().clamp_(0, scale).cpu().numpy()
        arr = arr.astype(np.uint16 if deep else np.uint8)
        frame = av.VideoFrame.from_ndarray(arr, format=rgb_fmt)
        return frame.reformat(format=vout.pix_fmt, dst_colorspace=matrix, dst_color_range=src_range)

    workers = [threading.Thread(target=decode, daemon=True), threading.Thread(target=encode, daemon=True)]
    for w in workers:
        w.start()
    counts = {"out": 0, "interp": 0, "cuts": 0, "src": 0}

    def emit(frame, k: int) -> None:
        frame.pts = start + k
        frame.time_base = frame_tb
        _put(encoded, ("frame", frame), stop)
        counts["out"] += 1
        if on_frame:
            on_frame(1)

    try:
        prev = None  # (index, decoded frame, prepared Frame, thumbnail)
        k = 0
        while True:
            item = decoded.get()
            if item is None:
                break
            i = counts["src"]
            counts["src"] += 1
            rgb = to_tensor(item)
            cur = (i, item, it.prepare(rgb), luma_thumbnail(rgb) if job.scene_detection else None)
            if prev is not None:
                cut = job.scene_detection and scene_difference(prev[3], cur[3]) > job.scene_threshold
                counts["cuts"] += cut
                # every output slot that lies in [prev, cur)
                while (k * multi.denominator) < i * multi.numerator:
                    plan = plan_frame(k, multi, i + 1, cut_after=cut)
                    if plan.source is not None:
                        emit(_copy(av, prev[1] if plan.source == prev[0] else item), k)
                    else:
                        out_rgb = it.interpolate(prev[2], cur[2], float(plan.timestep))
                        emit(to_frame(out_rgb), k)
                        counts["interp"] += 1
                    k += 1
            prev = cur
        if errors:
            raise errors[0]
        if prev is None:
            raise VideoError("the input's video stream has no frames")
        n = counts["src"]
        while k < output_count(n, multi):  # slots at and after the last source frame repeat it
            emit(_copy(av, prev[1]), k)
            k += 1
    except _Stop:  # a worker failed: its error is raised below
        pass
    except BaseException:
        stop.set()
        raise
    finally:
        try:
            _put(encoded, None, stop)
        except _Stop:
            pass
        for w in workers:
            w.join()
        out.close()
    if errors:
        e = errors[0]
        if isinstance(e, OSError):
            raise e
        raise VideoError(f"encoding failed: {e}") from e
    return counts["src"], counts["out"], counts["interp"], counts["cuts"], out_rate


def _copy(av, frame):
    """A source frame's pixels exactly as decoded, in a new frame that can take its own timestamp."""
    clone = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    for name in ("color_range", "colorspace"):
        try:
            setattr(clone, name, getattr(frame, name))
        except (AttributeError, TypeError, ValueError):
            pass
    return clone


def frames_of(path: str | os.PathLike[str], limit: int | None = None) -> list[torch.Tensor]:
    """The frames of a video (the first ``limit`` of them) as 1 x 3 x H x W float32 RGB in [0, 1]."""
    av = _av()
    frames = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            if limit is not None and len(frames) == limit:
                break
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
            frames.append(rgb.permute(2, 0, 1).unsqueeze(0).float().div_(255))
    return frames
