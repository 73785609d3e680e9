"""Video in, video out, without VapourSynth: decode (PyAV/FFmpeg), interpolate, encode, keep the rest.

A job is a few named steps: open the input; plan (rates, formats, encoder options, checked); open the
output (streams, tags, chapters; the header is written, which opens the encoder, so bad settings fail
before any frame is decoded: :func:`check_job` does the same into memory); run the pipeline, where
decoding, the placement loop (:func:`_place_frames`, with inference) and encoding run in three threads
joined by bounded queues, so the engine is never idle waiting for I/O and memory stays bounded; close.
The output is written to a temporary file beside the target and renamed only when complete.
"""

from __future__ import annotations

import heapq
import io
import itertools
import logging
import math
import os
import queue
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .engine import Batcher, Interpolator
from .files import temporary_beside
from .timing import (
    HOLD_THRESHOLD,
    SCENE_THRESHOLD,
    FramePlan,
    SlotPlanner,
    chunk_feed,
    frame_time,
    hold_difference,
    hold_luma,
    luma_thumbnail,
    rate_factor,
    scene_difference,
)

__all__ = [
    "CRF_RANGE",
    "Chunk",
    "SourceIndex",
    "VideoError",
    "VideoJob",
    "VideoResult",
    "check_job",
    "check_paths",
    "frames_of",
    "index_source",
    "interpolate_chunk",
    "interpolate_video",
    "iter_frames",
    "join_chunks",
    "montage",
    "montage_size",
    "probe",
]

log = logging.getLogger("vsrife")

_QUEUE = 8  # frames in flight between the stages
_POLL = 0.1  # seconds a stage waits on a queue before it looks whether another stage failed

# The encoders vsrife gives a constant-quality setting (--crf), and the range each takes.
CRF_RANGE = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libsvtav1": (0, 63)}
_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")  # fmt: skip


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
    """What to do: one of ``multi`` or ``fps``; encoder settings; scene-change and held-frame handling.

    ``multi`` multiplies the source's average rate (1 is allowed with ``dedup``); ``fps`` names the output
    rate. Either way the output has a constant rate and every frame is placed by its time, so a
    variable-frame-rate source keeps its timing and its audio sync.
    """

    multi: Fraction | None = Fraction(2)
    fps: Fraction | None = None
    codec: str = "libx264"
    crf: int | None = 18  # for the encoders in CRF_RANGE; others take their own options
    preset: str | None = None  # None: medium for x264/x265, else the encoder's own default
    pix_fmt: str | None = None  # default: the source's, where the encoder takes it
    scene_detection: bool = True
    scene_threshold: float = SCENE_THRESHOLD
    dedup: bool = False  # held drawings of animation: place slots on the motion between distinct drawings
    dedup_threshold: float = HOLD_THRESHOLD
    montage: bool = False  # each output frame beside the source frame of its time (see montage_size)
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
    """The requested format, else the source's where the encoder takes it, else the encoder's format most
    like it: the same kind (RGB or YUV), chroma subsampling, depth (8 bits or more) and components, in that
    order of importance."""
    if requested:
        return requested
    formats = [f.name for f in (av.codec.Codec(codec, "w").video_formats or [])]
    if not formats or source in formats:
        return source

    def traits(name: str) -> tuple:
        f = av.VideoFormat(name)
        return (f.is_rgb, f.chroma_width(64), f.chroma_height(64), f.components[0].bits > 8, len(f.components))

    wanted = traits(source)
    for significant in (5, 4, 3):  # drop the least important trait until one matches
        for f in formats:
            if traits(f)[:significant] == wanted[:significant]:
                return f
    return formats[0]


class _Stop(Exception):
    """Another stage of the pipeline failed: this one gives up."""


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL)
            return
        except queue.Full:
            continue
    raise _Stop


def _get(q: queue.Queue, stop: threading.Event):
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            continue
    raise _Stop


def check_paths(source: Path, output: Path, *, overwrite: bool) -> None:
    """VideoError unless ``source`` is a file and ``output`` may be written (a callers' early check too)."""
    if not source.is_file():
        raise VideoError(f"input {source} does not exist")
    if output.exists() and os.path.samefile(source, output):  # any spelling, a symlink or a hard link
        raise VideoError(f"output {output} is the input {source}; write to another name (--overwrite cannot "
                         "replace a file while it is read)")  # fmt: skip
    if output.exists() and not overwrite:
        raise VideoError(f"output {output} exists; pass --overwrite to replace it")
    if not output.parent.is_dir():
        raise VideoError(f"output folder {output.parent} does not exist")
    if not os.access(output.parent, os.W_OK):
        raise VideoError(f"output folder {output.parent} is not writable")


def check_job(source: str | os.PathLike[str], output: str | os.PathLike[str], job: VideoJob) -> None:
    """VideoError unless ``job`` can start on ``source``: the paths (as :func:`check_paths`), a video stream
    with a usable rate, and the encoder and container opened with the job's settings at the source's size
    and pixel format in a dry run that writes into memory. Nothing is decoded and no file is written."""
    av = _av()
    source, output = Path(source), Path(output)
    check_paths(source, output, overwrite=job.overwrite)
    with _open_input(av, source) as inp:
        plan = _plan(av, inp, job)
        out = _open_output(av, _MemoryFile(output.name), inp, plan, job)
        _close_quietly(out.container)


class _MemoryFile(io.BytesIO):
    """A file in memory whose name tells FFmpeg the container, as the output's would."""

    def __init__(self, name: str):
        super().__init__()
        self.name = name


def _close_quietly(container) -> None:
    try:
        container.close()
    except Exception as e:  # noqa: BLE001 - a discarded output: the failure that led here is what matters
        log.debug("closing a discarded output: %s", e)


def interpolate_video(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    interpolator: Interpolator,
    job: VideoJob,
    on_frame: Callable[[int], None] | None = None,
) -> VideoResult:
    """Interpolate the first video stream of ``source`` into ``output``.

    Audio and subtitle packets are copied as they are; stream tags and dispositions, rotation, chapters,
    the container's tags and Matroska attachments are kept where the output's container holds them (a
    warning names what it cannot). ``on_frame(1)`` is called for every output frame. VideoError says what
    went wrong; the output appears, complete, only on success.
    """
    av = _av()
    source, output = Path(source), Path(output)
    check_paths(source, output, overwrite=job.overwrite)
    with temporary_beside(output, f".partial{output.suffix}") as (placeholder, tmp):
        placeholder.close()  # ours, made exclusively: the muxer reopens this file, never a planted one
        return _interpolate_into(av, source, output, tmp, interpolator, job, on_frame)


def _interpolate_into(av, source: Path, output: Path, tmp: Path, interpolator: Interpolator, job: VideoJob,
                      on_frame: Callable[[int], None] | None) -> VideoResult:  # fmt: skip
    try:
        with _open_input(av, source) as inp:
            plan = _plan(av, inp, job)
            out = _open_output(av, tmp, inp, plan, job)
            for reason in out.dropped:
                log.warning("%s", reason)
            pipeline = _Pipeline(inp, out, plan, on_frame)
            placed = pipeline.run(lambda frames, emit: _place_frames(frames, emit, interpolator, job, plan,
                                                                      _RGB.of(av, plan)))  # fmt: skip
        os.replace(tmp, output)
        return VideoResult(output, placed.source_frames, pipeline.emitted, placed.interpolated, placed.cuts, plan.rate)
    except OSError as e:
        raise VideoError(f"writing {output} failed ({e}); nothing was written under that name") from e


# --- chunks: one video cut in parts that together make what interpolate_video makes (vsrife.cluster) ----


@dataclass(frozen=True)
class SourceIndex:
    """Every source frame's timestamp and time, where decoding can start, and where the scenes change:
    what is needed to cut a video into chunks. ``regular`` is False where some frame has no timestamp or
    one that does not increase; such a video is interpolated in one piece."""

    time_base: Fraction
    pts: tuple[int, ...]  # presentation order
    times: tuple[Fraction, ...]  # as _place_frames places them (timing.frame_time)
    keyframes: tuple[int, ...]  # frames decoding can start from
    cuts: tuple[int, ...]  # frames with a scene change before them
    end: Fraction  # when the last frame ends
    rate: Fraction  # the output's
    regular: bool

    @property
    def count(self) -> int:
        return len(self.pts)

    def slot(self, j: int) -> int:
        """The first output frame at or after source frame ``j`` (``count``: the number of output frames)."""
        time = self.times[j] if j < self.count else max(self.end, self.times[-1])
        return math.ceil((time - self.times[0]) * self.rate)


@dataclass(frozen=True)
class Chunk:
    """Source frames [first, stop) of a video of ``count``, interpolated as in the whole video: it is fed
    frames ``feed`` (:func:`vsrife.timing.chunk_feed`), decoded from the keyframe at ``seek_pts``, and
    makes output frames ``slots``, numbered as in the whole video. ``origin`` is source frame 0's time."""

    index: int
    first: int
    stop: int
    count: int
    feed: tuple[int, int]
    feed_pts: int
    seek_pts: int
    origin: Fraction
    slots: tuple[int, int]

    def describe(self) -> str:
        return f"chunk {self.index} (source frames {self.first}-{self.stop - 1})"


def index_source(source: str | os.PathLike[str], job: VideoJob) -> SourceIndex:
    """Decode ``source`` once for its :class:`SourceIndex`. Scene changes are measured as the placement
    loop measures them, on a quarter-size picture (they only guide where chunks are cut; the chunks decide
    their own cuts at full size)."""
    av = _av()
    with _open_input(av, Path(source)) as inp:
        plan = _plan(av, inp, job)
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        tb = Fraction(vin.time_base)
        cc = vin.codec_context  # the source's size (the plan's is the output's, a montage's twice as large)
        size = {"width": max(8, cc.width // 4), "height": max(8, cc.height // 4)}
        pts, times, keys, cuts = [], [], [], []
        regular, first, previous, last = True, None, None, None
        try:
            for frame in inp.decode(vin):
                if first is None:
                    first = frame.pts * tb if frame.pts is not None else Fraction(0)
                time = frame_time(frame.pts, tb, len(times), first, plan.source_rate)
                if times and time <= times[-1]:  # left out by the placement loop: a chunk cannot tell
                    regular = False
                    continue
                if frame.pts is None or (pts and frame.pts <= pts[-1]):  # no seeking to such a frame
                    regular = False
                keys += [len(times)] if frame.key_frame else []
                if job.scene_detection:
                    arr = frame.reformat(format="rgb24", src_colorspace=plan.matrix, src_color_range=plan.colour_range,
                                         **size).to_ndarray()  # fmt: skip
                    thumb = luma_thumbnail(torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0).float().div_(255))
                    if previous is not None and scene_difference(previous, thumb) > job.scene_threshold:
                        cuts.append(len(times))
                    previous = thumb
                pts.append(frame.pts)
                times.append(time)
                last = frame
        except av.error.FFmpegError as e:
            raise VideoError(f"decoding {source} failed: {e}") from e
    if last is None:
        raise VideoError(f"{source}: the video stream has no frames")
    end = _end_time(last, times[-1], first, len(times), plan.source_rate)
    return SourceIndex(tb, tuple(pts), tuple(times), tuple(keys) or (0,), tuple(cuts), end, plan.rate, regular)


def plan_chunks(index: SourceIndex, starts: list[int], job: VideoJob) -> list[Chunk]:
    """The chunks that start at source frames ``starts`` (0 first, increasing)."""
    if not index.regular:
        raise ValueError("a video with frames that have no timestamp or a repeated one is not cut in chunks")
    if not starts or starts[0] != 0 or any(b <= a for a, b in itertools.pairwise(starts)) or starts[-1] >= index.count:
        raise ValueError(f"chunk starts {starts} do not divide {index.count} frames")
    chunks = []
    for n, (a, b) in enumerate(itertools.pairwise([*starts, index.count])):
        feed = chunk_feed(a, b, index.count, holds=job.dedup)
        key = max((k for k in index.keyframes if k <= feed[0]), default=0)
        chunks.append(Chunk(n, a, b, index.count, feed, index.pts[feed[0]], index.pts[key], index.times[0],
                            (index.slot(a), index.slot(b))))  # fmt: skip
    return chunks


def interpolate_chunk(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    interpolator: Interpolator,
    job: VideoJob,
    chunk: Chunk,
    on_frame: Callable[[int], None] | None = None,
) -> VideoResult:
    """Interpolate one :class:`Chunk` of ``source`` into ``output``: the video stream alone, its frames
    made and encoded exactly as :func:`interpolate_video` makes them, with their timestamps in the whole
    video. The file appears complete or not at all; :func:`join_chunks` puts the chunks together."""
    av = _av()
    source, output = Path(source), Path(output)
    with temporary_beside(output, f".partial{output.suffix}") as (placeholder, tmp):
        placeholder.close()
        try:
            with _open_input(av, source) as inp:
                plan = _plan(av, inp, job)
                out = _open_output(av, tmp, inp, plan, job, video_only=True)
                pipeline = _Pipeline(inp, out, plan, on_frame, chunk=chunk)
                placed = pipeline.run(lambda frames, emit: _place_frames(frames, emit, interpolator, job, plan,
                                                                          _RGB.of(av, plan), chunk))  # fmt: skip
            made, wanted = pipeline.emitted, chunk.slots[1] - chunk.slots[0]
            if made != wanted:
                raise VideoError(f"{chunk.describe()} made {made} frames, not {wanted}")
            os.replace(tmp, output)
        except OSError as e:
            raise VideoError(f"writing {chunk.describe()} to {output} failed: {e}") from e
    return VideoResult(output, placed.source_frames, made, placed.interpolated, placed.cuts, plan.rate)


def _chunk_packets(av, path: Path, chunk: Chunk, rate: Fraction) -> list[tuple[int, int]]:
    """(output frame, decoding position in the chunk) of each video packet of a chunk file; VideoError
    unless it holds exactly the chunk's frames."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        tb = Fraction(stream.time_base)
        stamps = [p.pts for p in c.demux(stream) if p.size]
    if None in stamps or len(stamps) != chunk.slots[1] - chunk.slots[0]:
        raise VideoError(f"{chunk.describe()} in {path} does not hold its {chunk.slots[1] - chunk.slots[0]} "
                         "frames; delete it to make it again")  # fmt: skip
    low = min(stamps)
    slots = [chunk.slots[0] + round((p - low) * tb * rate) for p in stamps]  # containers may round (1 ms)
    if sorted(slots) != list(range(*chunk.slots)):
        raise VideoError(f"{chunk.describe()} in {path} has frames out of place; delete it to make it again")
    return slots


def join_chunks(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parts: list[tuple[Chunk, Path]],
    job: VideoJob,
) -> int:
    """The chunk files of ``source`` (all of them, in order) as one video in ``output``, with the source's
    audio and subtitles copied once and its tags, chapters and attachments kept as interpolate_video keeps
    them. The packets are copied, not encoded again; each keeps its output frame's timestamp. Returns the
    number of video frames. The output appears complete or not at all."""
    av = _av()
    source, output = Path(source), Path(output)
    check_paths(source, output, overwrite=job.overwrite)
    if not parts or parts[0][0].slots[0] != 0 or any(a.slots[1] != b.slots[0] for (a, _), (b, _) in
                                                     itertools.pairwise(parts)):  # fmt: skip
        raise VideoError(f"the chunks of {source} do not cover it")
    with temporary_beside(output, f".partial{output.suffix}") as (placeholder, tmp):
        placeholder.close()
        try:
            with _open_input(av, source) as inp:
                plan = _plan(av, inp, job)
                slots = [_chunk_packets(av, path, chunk, plan.rate) for chunk, path in parts]
                order = list(itertools.chain.from_iterable(slots))
                delay = max(0, max(i - k for i, k in enumerate(order)))  # decoding runs ahead by this much
                with av.open(str(parts[0][1])) as first:
                    out = _open_output(av, tmp, inp, plan, job, template=first.streams.video[0])
                for reason in out.dropped:
                    log.warning("%s", reason)
                try:
                    video = _joined_video(av, parts, slots, plan, out.video, delay)
                    copied = _copied_packets(inp, out.copied)
                    for _, packet in heapq.merge(video, copied, key=lambda item: item[0]):
                        out.container.mux(packet)
                except BaseException:
                    _close_quietly(out.container)
                    raise
                out.container.close()
            os.replace(tmp, output)
        except av.error.FFmpegError as e:
            raise VideoError(f"joining the chunks of {source} failed: {e}") from e
        except OSError as e:
            raise VideoError(f"writing {output} failed ({e}); nothing was written under that name") from e
    return len(order)


def _joined_video(av, parts, slots, plan: _Plan, vout, delay: int):
    """(decoding time, packet) of every chunk's video packets, in order, retimed into the whole video."""
    tb = Fraction(1) / plan.rate
    position = 0
    for (chunk, path), frames in zip(parts, slots):
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            for packet, k in zip((p for p in c.demux(stream) if p.size), frames):
                packet.stream = vout
                packet.time_base = tb
                packet.pts, packet.dts = plan.start + k, plan.start + position - delay
                packet.duration = 1  # one output frame, as the encoder gives it in interpolate_video
                position += 1
                yield packet.dts * tb, packet


def _copied_packets(inp, copied: dict):
    """(decoding time, packet) of the source's audio and subtitle packets, as the pipeline copies them."""
    if not copied:
        return
    for packet in inp.demux(*(inp.streams[i] for i in copied)):
        if packet.dts is None:
            continue
        time = packet.dts * Fraction(packet.time_base)
        packet.stream = copied[packet.stream.index]
        yield time, packet


def _open_input(av, source: Path):
    """The source, opened for decoding; VideoError unless it has a video stream."""
    try:
        inp = av.open(str(source))
    except (av.error.FFmpegError, OSError) as e:
        raise VideoError(f"cannot read {source}: {e}") from e
    if not inp.streams.video:
        inp.close()
        raise VideoError(f"{source} has no video stream")
    return inp


@dataclass(frozen=True)
class _Plan:
    """What a job does to its input, decided before any frame is decoded."""

    multi: Fraction  # output rate / the source's average rate
    source_rate: Fraction  # the source's average rate: the grid its timestamps are snapped to
    rate: Fraction  # output frame rate
    start: int  # timestamp of output frame 0, in 1 / rate
    width: int  # the output's (a montage is larger than the source)
    height: int
    pix_fmt: str  # what the encoder is given
    options: dict[str, str]  # the encoder's
    colour: dict[str, int]  # the source's primaries, transfer, matrix and range, as FFmpeg numbers
    matrix: str  # YUV <-> RGB matrix, swscale's name
    colour_range: str  # swscale's name of the source's range
    deep: bool  # more than 8 bits per sample: the network sees 16-bit RGB
    display_matrix: tuple[int, ...] | None  # the source's rotation and flips, FFmpeg's 3 x 3 layout


def _encoder_options(av, job: VideoJob) -> dict[str, str]:
    """The options the encoder is opened with; VideoError for a codec, quality, preset or pixel format that
    cannot work, before anything is opened."""
    try:
        codec = av.codec.Codec(job.codec, "w")
    except ValueError as e:  # UnknownCodecError
        known = [c for c in (*CRF_RANGE, "ffv1", "libaom-av1", "mpeg4") if c in av.codecs_available]
        raise VideoError(f"unknown encoder {job.codec!r}; video encoders include {', '.join(known)}") from e
    if codec.type != "video":
        raise VideoError(f"{job.codec} is an {codec.type} encoder; --codec takes a video encoder such as libx264")
    options = dict(job.encoder_options)
    rate_control = {"qp", "crf", "b", "lossless"} & set(options)
    if job.crf is not None and not rate_control and job.codec in CRF_RANGE:
        options["crf"] = str(job.crf)
    if job.preset is not None:
        options.setdefault("preset", job.preset)
    elif job.codec in ("libx264", "libx265"):
        options.setdefault("preset", "medium")
    if "crf" in options and job.codec in CRF_RANGE:
        low, high = CRF_RANGE[job.codec]
        try:
            crf = float(options["crf"])
        except ValueError:
            raise VideoError(f"crf must be a number, not {options['crf']!r}") from None
        if not low <= crf <= high:
            raise VideoError(f"crf {options['crf']} is outside {job.codec}'s range {low}-{high}")
    if job.codec in ("libx264", "libx265") and options.get("preset") not in _X26X_PRESETS:
        raise VideoError(f"{job.codec} has no preset {options.get('preset')!r}; presets: {', '.join(_X26X_PRESETS)}")
    if job.pix_fmt is not None:
        try:
            av.VideoFormat(job.pix_fmt)
        except ValueError:
            raise VideoError(f"unknown pixel format {job.pix_fmt!r}, e.g. yuv420p, yuv420p10le, yuv444p") from None
        formats = [f.name for f in codec.video_formats or ()]
        if formats and job.pix_fmt not in formats:
            raise VideoError(f"{job.codec} does not take {job.pix_fmt}; it takes {', '.join(formats)}")
    return options


def _plan(av, inp, job: VideoJob) -> _Plan:
    """Rates, formats, colour and encoder options; VideoError for what cannot work, before any output exists."""
    options = _encoder_options(av, job)
    vin = inp.streams.video[0]
    src_rate = _source_rate(vin)
    if src_rate <= 0:
        raise VideoError("the input's video stream has no frame rate (not even an average); it cannot be timed")
    if job.fps is not None:
        try:
            multi = rate_factor(src_rate, job.fps, same_rate=job.dedup)
        except ValueError as e:
            raise VideoError(str(e)) from e
    else:
        multi = job.multi or Fraction(2)
    rate = src_rate * multi
    colour = _colour(vin)
    cc = vin.codec_context
    width, height = montage_size(cc.width, cc.height)[:2] if job.montage else (cc.width, cc.height)
    return _Plan(
        multi=multi,
        source_rate=src_rate,
        rate=rate,
        start=round(vin.start_time * vin.time_base * rate) if vin.start_time else 0,
        width=width,
        height=height,
        pix_fmt=_out_pix_fmt(av, job.codec, cc.pix_fmt, job.pix_fmt),
        options=options,
        colour=colour,
        matrix=_matrix(colour, cc.width, cc.height),
        colour_range=_RANGE.get(colour["color_range"], "MPEG"),
        deep=av.VideoFormat(cc.pix_fmt).components[0].bits > 8,
        display_matrix=_display_matrix(av, inp.name),
    )


def _source_rate(stream) -> Fraction:
    """The stream's average frame rate (frames / duration: the mean rate of a variable-rate stream), else
    FFmpeg's guess, else 0."""
    for rate in (stream.average_rate, getattr(stream, "guessed_rate", None)):
        if rate:
            return Fraction(rate)
    return Fraction(0)


def _display_matrix(av, source: str) -> tuple[int, ...] | None:
    """The display matrix (rotation, flips) of the first video frame, where the source has one: FFmpeg
    hands the stream's matrix to every decoded frame, and PyAV reads it back only from frames."""
    try:
        with av.open(source) as c:
            for frame in c.decode(video=0):
                for side_data in frame.side_data:
                    if side_data.type.name == "DISPLAYMATRIX":
                        return struct.unpack("=9i", bytes(side_data))
                return None
    except (av.error.FFmpegError, OSError, ValueError):  # the decoder says so later, with the whole story
        return None
    return None


# Matroska's statistics tags describe the old encoding; its muxer writes fresh ones.
_STATISTICS_TAGS = ("BPS", "DURATION", "NUMBER_OF_FRAMES", "NUMBER_OF_BYTES", "_STATISTICS_WRITING_APP",
                    "_STATISTICS_WRITING_DATE_UTC", "_STATISTICS_TAGS")  # fmt: skip


def _tags(metadata: dict[str, str], *drop: str) -> dict[str, str]:
    """Stream or container tags to carry over: all but Matroska's statistics and those named."""
    return {k: v for k, v in metadata.items()
            if k.split("-")[0].upper() not in _STATISTICS_TAGS and k.lower() not in drop}  # fmt: skip


@dataclass
class _Output:
    """The output container with its video stream and the input streams copied into it."""

    container: object
    video: object
    copied: dict  # input stream index -> output stream, for packets copied as they are
    dropped: list[str]  # the input streams the container cannot hold, and why


def _open_output(av, target, inp, plan: _Plan, job: VideoJob, *, video_only: bool = False,
                 template=None) -> _Output:  # fmt: skip
    """The output container with every stream set up and its header written (which opens the encoder), so
    that settings the encoder or the container refuse fail here, before any frame is decoded. ``target``
    is a path, or a :class:`_MemoryFile` for a dry run.

    ``video_only``: the video stream alone, nothing copied from the source (a chunk of a cluster run).
    ``template``: a video stream whose encoded packets are copied rather than frames encoded (the join of
    the chunks); nothing is opened until the first packet is written."""
    name = getattr(target, "name", target)
    try:
        out = av.open(target if isinstance(target, io.IOBase) else str(target), "w")
    except ValueError as e:
        raise VideoError(f"cannot tell the container from the name {Path(name).name}; end it in .mkv, .mp4, "
                         ".mov or another container's extension") from e  # fmt: skip
    try:
        vin = inp.streams.video[0]
        if template is not None:
            vout = out.add_stream_from_template(template)  # its codec parameters: size, format, colour
        else:
            try:
                vout = out.add_stream(job.codec, rate=plan.rate)
            except ValueError as e:  # the container cannot hold this codec
                raise VideoError(f"{e}; choose another container (e.g. .mkv) or --codec") from e
            vout.width, vout.height = plan.width, plan.height
            vout.pix_fmt = plan.pix_fmt
            vout.options = dict(plan.options)
            for prop, value in plan.colour.items():
                if value and hasattr(vout.codec_context, prop):
                    setattr(vout.codec_context, prop, value)
            if vin.sample_aspect_ratio:
                vout.codec_context.sample_aspect_ratio = vin.sample_aspect_ratio
        vout.time_base = Fraction(1) / plan.rate  # the muxer may change the stream's time base later
        copied, dropped = {}, []
        if not video_only:
            vout.metadata.update(_tags(vin.metadata, "encoder"))  # language, title, handler_name ...
            vout.disposition = vin.disposition
            if plan.display_matrix is not None:
                vout.set_display_matrix(plan.display_matrix)
            copied, dropped = _copy_streams(av, inp, out)
            out.metadata.update(_tags(inp.metadata, "encoder"))
            out.set_chapters(inp.chapters())
        if template is None:
            _start_encoding(av, out, vout, plan, job)
    except BaseException:
        _close_quietly(out)
        raise
    return _Output(out, vout, copied, dropped)


def _copy_streams(av, inp, out) -> tuple[dict, list[str]]:
    """Audio, subtitle and attachment streams set up in ``out`` as they are in ``inp``, with their tags and
    dispositions; returns the audio and subtitle streams (whose packets are copied), and what was left out."""
    copied, dropped = {}, []
    video = inp.streams.video[0].index
    for s in inp.streams:
        if s.index == video:
            continue
        what = f"stream {s.index} ({s.type}{f' {s.codec_context.name}' if s.codec_context else ''})"
        if s.type == "attachment":
            name = s.metadata.get("filename", "?")
            if out.format.name != "matroska":  # Matroska's are the attachments FFmpeg writes
                dropped.append(f"stream {s.index} (attachment {name}) is not copied: {out.format.name} files "
                               "hold no attachments; write .mkv to keep it")  # fmt: skip
                continue
            out.add_stream_from_template(s)  # its tags (filename, mimetype) and data come with it
        elif s.type in ("audio", "subtitle"):
            try:
                stream = out.add_stream_from_template(s)
            except (ValueError, av.error.FFmpegError) as e:
                dropped.append(f"{what} cannot be copied into this container: {e}")
                continue
            stream.metadata.update(_tags(s.metadata))
            stream.disposition = s.disposition
            copied[s.index] = stream
        else:
            dropped.append(f"{what} is not copied: vsrife video carries one video stream and the audio, "
                           "subtitle and attachment streams")  # fmt: skip
    return copied, dropped


def _start_encoding(av, out, vout, plan: _Plan, job: VideoJob) -> None:
    """Open the encoder and write the header; VideoError with FFmpeg's own words where it refuses."""
    level = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)  # FFmpeg's messages say why; captured, not printed
    try:
        with av.logging.Capture() as logs:
            try:
                out.start_encoding()
            except OSError:
                raise  # writing the header failed: the caller says so
            except (av.error.FFmpegError, ValueError) as e:
                raise VideoError(_refusal(av, job, plan, [m for _, _, m in logs], e)) from e
    finally:
        av.logging.set_level(level)
    unknown = sorted(vout.codec_context.options)  # what the encoder did not take stays behind
    if unknown:
        raise VideoError(f"{job.codec} has no option {', '.join(unknown)} (see `ffmpeg -h encoder={job.codec}`)")


def _refusal(av, job: VideoJob, plan: _Plan, messages: list[str], error: Exception) -> str:
    said = [m.strip() for m in messages if m.strip() and not m.startswith(" ")]
    settings = ", ".join(f"{k}={v}" for k, v in plan.options.items())
    text = (f"{job.codec} refuses {plan.width}x{plan.height} {plan.pix_fmt}"
            f"{f' with {settings}' if settings else ''}: {'; '.join(said[:2]) or error}")  # fmt: skip
    return text + _odd_size_hint(av, plan)


def _odd_size_hint(av, plan: _Plan) -> str:
    """What to do where the encoder refused an odd size in a format with subsampled chroma."""
    f = av.VideoFormat(plan.pix_fmt)
    odd_width = plan.width % 2 and f.chroma_width(plan.width) < plan.width
    odd_height = plan.height % 2 and f.chroma_height(plan.height) < plan.height
    if not (odd_width or odd_height):
        return ""
    side = "width" if odd_width and not odd_height else "height" if odd_height and not odd_width else "size"
    return (
        f". The odd {side} does not fit {plan.pix_fmt}'s subsampled chroma: pass --pix-fmt yuv444p (or "
        f"yuv444p10le), or use an encoder that takes it, such as --codec ffv1 with a .mkv output"
    )


class _RGB:
    """Conversions between the stream's frames, in any pixel format swscale reads and writes, and the
    network's RGB tensors (1 x 3 x H x W float32 in [0, 1]); 16-bit RGB in between where ``deep``."""

    def __init__(self, av, matrix: str, colour_range: str, deep: bool, pix_fmt: str):
        self._av, self._matrix, self._range, self._pix_fmt = av, matrix, colour_range, pix_fmt
        self._format = "rgb48le" if deep else "rgb24"
        self._dtype = np.uint16 if deep else np.uint8
        self._scale = 65535.0 if deep else 255.0

    @classmethod
    def of(cls, av, plan: _Plan) -> _RGB:
        return cls(av, plan.matrix, plan.colour_range, plan.deep, plan.pix_fmt)

    def to_tensor(self, frame) -> torch.Tensor:
        arr = frame.reformat(format=self._format, src_colorspace=self._matrix,
                             src_color_range=self._range).to_ndarray()  # fmt: skip
        # numpy, not torch: this runs beside the device worker, and a second OpenMP team would compete
        # with the network's for the same cores (the same IEEE float32 division either way)
        return torch.from_numpy(np.divide(arr, np.float32(self._scale), dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)

    def to_frame(self, rgb: torch.Tensor):
        """A frame in the output's pixel format."""
        arr = rgb[0].permute(1, 2, 0).cpu().numpy() * np.float32(self._scale)  # numpy: see to_tensor
        arr = np.clip(np.rint(arr, out=arr), 0, self._scale, out=arr)
        frame = self._av.VideoFrame.from_ndarray(arr.astype(self._dtype), format=self._format)
        return frame.reformat(format=self._pix_fmt, dst_colorspace=self._matrix, dst_color_range=self._range)


def montage_size(width: int, height: int) -> tuple[int, int, bool]:
    """The size of a ``--montage`` frame for a ``width`` x ``height`` source, and whether the two pictures
    sit side by side: they do, in twice the width, unless the video is tall (height above width), where
    they are stacked in twice the height. An odd side is made even (one edge row or column repeated), so
    that every encoder takes it, subsampled chroma included."""
    beside = height <= width
    w, h = (2 * width, height) if beside else (width, 2 * height)
    return w + w % 2, h + h % 2, beside


def montage(source: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """The source picture (left, or top for tall video) and the result (right, or bottom), both 1 x 3 x H x
    W, as one picture of :func:`montage_size`."""
    height, width = source.shape[-2:]
    w, h, beside = montage_size(width, height)
    joined = torch.cat((source, result.to(source.device, source.dtype)), 3 if beside else 2)
    extra_w, extra_h = w - joined.shape[3], h - joined.shape[2]
    return F.pad(joined, (0, extra_w, 0, extra_h), mode="replicate") if extra_w or extra_h else joined


@dataclass(frozen=True)
class _Placed:
    source_frames: int
    interpolated: int
    cuts: int


IN_FLIGHT = 8  # output frames queued on the device worker ahead of the encoder


def _place_frames(frames, emit, it: Interpolator, job: VideoJob, plan: _Plan, rgb: _RGB,
                  chunk: Chunk | None = None) -> _Placed:  # fmt: skip
    """Decide and make every output frame through :class:`vsrife.timing.SlotPlanner`: slot k of the
    constant-rate output sits at the first frame's time + k / rate; a source frame at that time passes
    through untouched, a slot between two frames is interpolated at its place in time (across a scene
    cut: the nearer frame; between identical frames: that frame; with ``dedup``: between the drawings
    around held frames), and the slots up to the source's end repeat its last frame.

    ``frames`` yields the decoded source frames in order; ``emit(frame, k)`` hands output frame ``k`` to
    the encoder. Only the frames the planner may still need are kept.

    With a ``chunk``, ``frames`` yields the frames it is fed (from ``chunk.feed[0]`` on) and only its
    output frames are made, numbered as in the whole video; the counts are of its own source frames.

    With ``job.montage`` every output frame goes out beside the source frame at or before its slot's time
    (:func:`montage`), passed-through frames too.
    """
    lo, hi = chunk.feed if chunk else (0, None)
    planner = SlotPlanner(plan.rate, cuts=job.scene_detection, holds=job.dedup, first_index=lo,
                          start=chunk.origin if chunk else None,
                          keep=(chunk.first, chunk.stop) if chunk else None)  # fmt: skip
    batcher = Batcher.for_device(it.device)
    kept: dict[int, list] = {}  # index -> [decoded frame, future prepared Frame, time, RGB for a montage]
    # output frames in order: (k, decoded frame or (future tensor, row), RGB of the source beside it or None)
    pending: deque[tuple[int, Any, torch.Tensor | None]] = deque()
    counts = {"interp": 0, "cuts": 0, "src": 0}
    first = chunk.origin if chunk else None
    last_time = None
    fed = 0
    previous = None  # (RGB tensor, scene thumbnail, hold luma) of the previous frame
    off_grid = skipped = 0

    def drain(keep: int) -> None:
        """Hand the encoder every output frame that is ready, in order, waiting while more than ``keep``
        are in flight (so that decoding runs ahead of the device, but not without bound)."""
        while pending and (len(pending) > keep or not isinstance(pending[0][1], tuple) or pending[0][1][0].done()):
            k, item, beside = pending.popleft()
            if isinstance(item, tuple):
                item = item[0].result()[item[1] : item[1] + 1]
            if beside is not None:
                item = montage(beside, item)
            emit(rgb.to_frame(item) if isinstance(item, torch.Tensor) else item, k)

    def source_at(k: int) -> torch.Tensor | None:
        """For a montage, the RGB of the source frame at or before slot k's time, else None."""
        if not job.montage:
            return None
        time = planner.slot_time(k)
        return kept[max(j for j, entry in kept.items() if entry[2] <= time)][3]

    def make(slots: list[tuple[int, FramePlan]]) -> None:
        """Queue the slots that became known together; the slots of one pair share one network call."""
        times: dict[tuple[int, int], list[float]] = {}
        for _, slot in slots:
            if slot.source is None:
                times.setdefault((slot.left, slot.right), []).append(float(slot.timestep))
        calls = {pair: batcher.interpolate(it, kept[pair[0]][1], kept[pair[1]][1], tuple(t)) for pair, t in times.items()}
        rows = dict.fromkeys(times, 0)
        for k, slot in slots:
            if slot.source is not None:
                shown = kept[slot.source]
                pending.append((k, shown[3] if job.montage else shown[0], source_at(k)))
                continue
            pair = (slot.left, slot.right)
            pending.append((k, (calls[pair], rows[pair]), source_at(k)))
            rows[pair] += 1
            counts["interp"] += 1
        drain(IN_FLIGHT)

    try:
        for frame in frames:
            j = lo + fed
            tb = Fraction(frame.time_base) if frame.time_base else Fraction(0)
            if first is None:
                first = frame.pts * tb if frame.pts is not None else Fraction(0)
            time = frame_time(frame.pts, tb, j, first, plan.source_rate)
            if last_time is not None and time <= last_time:
                if chunk is not None:  # index_source finds these first: such a source is never cut in chunks
                    raise VideoError(f"source frame {j} has a repeated or backward timestamp")
                skipped += 1  # a repeated or backward timestamp: the frame cannot be placed in time
                continue
            off_grid += frame.pts is not None and time != first + j / plan.source_rate
            image = rgb.to_tensor(frame)
            current = (image, luma_thumbnail(image) if job.scene_detection else None,
                       hold_luma(image) if job.dedup else None)  # fmt: skip
            cut = hold = same = False
            if previous is not None:
                cut = job.scene_detection and scene_difference(previous[1], current[1]) > job.scene_threshold
                same = torch.equal(previous[0], image)
                hold = job.dedup and not cut and hold_difference(previous[2], current[2]) < job.dedup_threshold
            mine = chunk is None or chunk.first <= j < chunk.stop
            counts["cuts"] += cut and mine
            kept[j] = [frame, batcher.prepare(it, image), time, image if job.montage else None]
            make(list(planner.push(time, cut=cut, hold=hold, same=same)))
            for old in [i for i in kept if i < planner.oldest_needed]:
                del kept[old]
            previous, last_time = current, time
            counts["src"] += mine
            fed += 1
            last_frame = frame
        if last_time is None:
            raise VideoError("the input's video stream has no frames")
        if chunk is None or lo + fed >= chunk.count:  # else the end is not in this chunk: its slots are all made
            if skipped:
                log.warning("%d frame(s) with a repeated or backward timestamp were left out", skipped)
            if off_grid:
                log.info("variable frame rate: %d frame(s) off the average-rate grid were placed by their "
                         "timestamps", off_grid)  # fmt: skip
            make(list(planner.finish(_end_time(last_frame, last_time, first, lo + fed, plan.source_rate))))
        drain(0)
    finally:  # a job that stops early leaves nothing queued on the device
        for item in [f[0] for _, f, _ in pending if isinstance(f, tuple)] + [entry[1] for entry in kept.values()]:
            item.cancel()
    return _Placed(counts["src"], counts["interp"], counts["cuts"])


def _end_time(frame, time: Fraction, first: Fraction, count: int, rate: Fraction) -> Fraction:
    """When the source ends: its last frame's time plus that frame's duration (else one average frame),
    on the average-rate grid where it lies within a tick of it, as the frames' own times are."""
    tb = Fraction(frame.time_base) if frame.time_base else Fraction(0)
    duration = getattr(frame, "duration", None)
    end = time + (duration * tb if duration and tb else 1 / rate)
    grid = first + count / rate
    return grid if abs(end - grid) <= tb else end


class _Pipeline:
    """Decoding and encoding in two threads around the caller's placement loop, joined by bounded queues.

    The decoder feeds source frames to the placement loop and copied packets to the encoder; the encoder
    muxes both. No thread ever waits without looking at ``stop``: a failure in any of the three sets it,
    and the others give up within one queue poll (or, for the placement loop, one frame).
    """

    def __init__(self, inp, out: _Output, plan: _Plan, on_frame: Callable[[int], None] | None,
                 chunk: Chunk | None = None):  # fmt: skip
        self._inp, self._out, self._plan, self._on_frame, self._chunk = inp, out, plan, on_frame, chunk
        self._frame_tb = Fraction(1) / plan.rate
        self._stop = threading.Event()
        self._decoded: queue.Queue = queue.Queue(_QUEUE)
        self._encoded: queue.Queue = queue.Queue(_QUEUE)
        self._errors: list[tuple[str, BaseException]] = []  # (stage, error), first failure first
        self.emitted = 0

    def run(self, place: Callable) -> _Placed:
        """``place(frames, emit)`` on the decoded frames; encode what it emits; close the output.

        Raises the first failure of any thread: the placement loop's own exception as it is, a worker's as
        VideoError (or OSError where writing the output failed).
        """
        workers = [threading.Thread(target=self._decode, name="vsrife-decode", daemon=True),
                   threading.Thread(target=self._encode, name="vsrife-encode", daemon=True)]  # fmt: skip
        for w in workers:
            w.start()
        finished = False
        try:
            placed = place(self._frames(), self._emit)
            _put(self._encoded, None, self._stop)  # end of stream: the encoder flushes
            finished = True
        except _Stop:  # a worker failed: its error is raised below
            pass
        finally:
            if not finished:
                self._stop.set()
            for w in workers:
                w.join()
            self._close(clean=finished and not self._errors)
        if self._errors:
            raise self._failure()
        return placed

    def _failure(self) -> BaseException:
        stage, e = self._errors[0]
        if stage == "encoding" and isinstance(e, OSError):
            return e  # the output could not be written (disk full, ...): interpolate_video says so
        return VideoError(f"{stage} failed: {e}")

    def _close(self, clean: bool) -> None:
        if clean:
            self._out.container.close()  # writes the trailer: its failure is the job's
            return
        try:
            self._out.container.close()
        except Exception as e:  # noqa: BLE001 - the file is discarded; the first failure is what matters
            log.debug("closing the discarded output: %s", e)

    def _fail(self, stage: str, error: BaseException) -> None:
        self._errors.append((stage, error))
        self._stop.set()

    def _frames(self):
        while True:
            item = _get(self._decoded, self._stop)
            if item is None:
                return
            yield item

    def _emit(self, frame, k: int) -> None:
        _put(self._encoded, ("frame", frame, self._plan.start + k), self._stop)
        self.emitted += 1
        if self._on_frame:
            self._on_frame(1)

    def _decode(self) -> None:
        inp, copied, stop = self._inp, self._out.copied, self._stop
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        try:
            if self._chunk is not None:
                self._decode_chunk(vin, self._chunk)
                _put(self._decoded, None, stop)
                return
            for packet in inp.demux(vin, *(inp.streams[i] for i in copied)):
                if packet.stream.index in copied:
                    if packet.dts is not None:
                        _put(self._encoded, ("packet", packet, None), stop)
                    continue
                for frame in packet.decode():
                    _put(self._decoded, frame, stop)
            _put(self._decoded, None, stop)  # end of stream
        except _Stop:
            return
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            self._fail("decoding", e)

    def _decode_chunk(self, vin, chunk: Chunk) -> None:
        """The frames the chunk is fed: decoding starts at the keyframe at or before the first of them."""
        wanted, fed = chunk.feed[1] - chunk.feed[0], 0
        self._inp.seek(chunk.seek_pts, stream=vin, backward=True, any_frame=False)
        for packet in self._inp.demux(vin):
            for frame in packet.decode():
                if frame.pts is None or frame.pts < chunk.feed_pts:
                    continue
                if fed == 0 and frame.pts != chunk.feed_pts:
                    raise VideoError(f"seeking to source frame {chunk.feed[0]} landed on a later frame")
                _put(self._decoded, frame, self._stop)
                fed += 1
                if fed == wanted:
                    return
        raise VideoError(f"the source ended after {chunk.feed[0] + fed} frames, not {chunk.feed[1]}")

    def _encode(self) -> None:
        out, vout, copied = self._out.container, self._out.video, self._out.copied
        try:
            while True:
                item = _get(self._encoded, self._stop)
                if item is None:
                    break
                kind, obj, pts = item
                if kind == "packet":
                    obj.stream = copied[obj.stream.index]
                    out.mux(obj)
                else:
                    # A source frame shown in several slots is the same object each time: its timestamp is
                    # set here, just before the encoder takes its own reference, never while it is queued.
                    obj.pts, obj.time_base, obj.duration = pts, self._frame_tb, 1
                    obj.pict_type = 0  # the source's I/P/B would force the encoder's frame types
                    out.mux(vout.encode(obj))
            out.mux(vout.encode(None))
        except _Stop:  # another thread failed: no flush, the file is discarded
            return
        except BaseException as e:  # noqa: BLE001
            self._fail("encoding", e)


def iter_frames(path: str | os.PathLike[str], start: int = 0) -> Iterator[torch.Tensor]:
    """The frames of a video one at a time, from frame ``start`` (counted from 0; the ones before it are
    decoded and dropped), as 1 x 3 x H x W float32 RGB in [0, 1]."""
    av = _av()
    with av.open(str(path)) as c:
        for index, frame in enumerate(c.decode(video=0)):
            if index < start:
                continue
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
            yield rgb.permute(2, 0, 1).unsqueeze(0).float().div_(255)


def frames_of(path: str | os.PathLike[str], limit: int | None = None, start: int = 0) -> list[torch.Tensor]:
    """The frames of a video (``limit`` of them from frame ``start``, counted from 0) as 1 x 3 x H x W
    float32 RGB in [0, 1]."""
    frames: list[torch.Tensor] = []
    if limit == 0:
        return frames
    with closing(iter_frames(path, start)) as decoded:  # closes the file when the limit stops the loop early
        for frame in decoded:
            frames.append(frame)
            if limit is not None and len(frames) == limit:
                break
    return frames
