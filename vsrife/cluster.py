"""Many videos on many GPUs: chunks of each video run as Ray tasks, one per GPU (or per CPU share).

A thin layer over :mod:`vsrife.video`: the driver indexes each source once (:func:`video.index_source`),
cuts it into chunks of bounded length (:func:`chunk_starts`: at scene cuts where it can, else at
keyframes), and submits one task per chunk; each task runs the same pipeline and placement loop as
``vsrife video``, restricted to its chunk (:func:`video.interpolate_chunk`), and the driver joins the
chunk files into the output with the source's audio, subtitles and tags (:func:`video.join_chunks`).

Where chunks live: in a work folder (``--work-dir``, default ``.vsrife-work`` beside the outputs). A task
that can see the driver's work folder (a shared filesystem, or one machine) writes its chunk there
itself; any other task sends the chunk's bytes back through Ray's object store and the driver writes it.
Chunks are written whole or not at all, under a name keyed by the source (path, size, mtime), the
options and the chunk, so running the same command again after a failure or an interrupt makes only the
chunks that are missing. Sources must be readable under the same path on every machine.

Faults: a task whose worker dies is run again elsewhere (Ray's ``max_retries``); a chunk that fails for
good fails its file with a message naming the chunk, and the other files go on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_write, temporary_beside
from .timing import output_count
from .video import (
    Chunk,
    VideoError,
    VideoJob,
    check_paths,
    index_source,
    interpolate_chunk,
    interpolate_video,
    join_chunks,
    plan_chunks,
    probe,
)

__all__ = [
    "CHUNK_SECONDS",
    "ClusterError",
    "EngineOptions",
    "FileResult",
    "chunk_starts",
    "connect",
    "run_batch",
]

log = logging.getLogger("vsrife")

CHUNK_SECONDS = 60.0  # of source per chunk: a few minutes of work for one GPU, little lost to a failure
RETRIES = 3  # times a chunk runs again after its worker died
WORK_FOLDER = ".vsrife-work"
_REPORT_EVERY = 0.5  # seconds between a task's progress reports


class ClusterError(RuntimeError):
    """The cluster cannot be used (Ray missing, no cluster at the address); the message says what to do."""


def _ray():
    try:
        import ray
    except ImportError as e:
        raise ClusterError('--cluster needs Ray: pip install "vsrife[cluster]"') from e
    return ray


@dataclass(frozen=True)
class EngineOptions:
    """How each task builds its :class:`vsrife.Interpolator`; ``precision`` is None (the device's
    default), ``"fp16"`` or ``"fp32"``; ``int8`` as the Interpolator takes it (None: where measured);
    ``threads`` is the torch threads (and CPUs asked of Ray) of a task that runs on the CPU."""

    model: str = "4.25"
    weights: str | None = None
    scale: float = 1.0
    tta: bool = False
    precision: str | None = None
    auto_download: bool = True
    threads: int = 1
    int8: bool | None = None


@dataclass
class FileResult:
    """What became of one input: ``error`` is None where its output was written."""

    source: Path
    output: Path
    frames: int = 0
    interpolated: int = 0
    cuts: int = 0
    chunks: int = 0
    reused: int = 0  # chunks found finished in the work folder
    error: str | None = None


def chunk_starts(count: int, keyframes: tuple[int, ...], cuts: tuple[int, ...], length: int) -> list[int]:
    """Where the chunks of a video of ``count`` frames start: every chunk but the last is between half and
    one and a half times ``length`` long (the last at most that), and each starts at the scene cut nearest
    ``length`` frames after the one before it, else at the nearest keyframe (where decoding starts), else
    at exactly ``length``."""
    if count < 1 or length < 1:
        raise ValueError("a video to cut has frames, and chunks a length of at least 1")
    longest = length + length // 2
    starts = [0]
    while count - starts[-1] > longest:
        here = starts[-1]
        low, high, target = here + max(1, length // 2), here + longest, here + length
        for candidates in (cuts, keyframes):
            near = [j for j in candidates if low <= j <= high]
            if near:
                starts.append(min(near, key=lambda j: (abs(j - target), j)))
                break
        else:
            starts.append(target)
    return starts


def connect(address: str = "auto") -> dict[str, float]:
    """Join the Ray cluster at ``address`` (``auto``: the one started on this machine, else a new local
    one) unless this process already has; returns its resources (``GPU``, ``CPU``)."""
    ray = _ray()
    if not ray.is_initialized():
        try:
            ray.init(address=None if address == "auto" else address, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)  # fmt: skip
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ClusterError(f"cannot join the Ray cluster at {address}: {e} (start one with `ray start --head`)"
                               ) from e  # fmt: skip
    return ray.cluster_resources()


# --- on the workers -------------------------------------------------------------------------------------

_INTERPOLATORS: dict[tuple, object] = {}


def _interpolator(engine: EngineOptions):
    """One Interpolator per worker process and options: the network loads once, however many chunks run
    (a weights file rewritten since, e.g. by vsrife train, is loaded again: workers outlive a batch)."""
    stat = os.stat(engine.weights) if engine.weights else None
    key = (engine, stat and (stat.st_size, stat.st_mtime_ns))
    if key not in _INTERPOLATORS:
        import torch

        from .engine import Interpolator, default_device

        device = default_device()  # Ray shows a GPU task its own GPU only
        if device.type == "cpu":
            torch.set_num_threads(engine.threads)  # the CPUs Ray gave this task; results depend on it
        dtype = None
        if engine.precision == "fp32":
            dtype = torch.float32
        elif engine.precision == "fp16":
            dtype = torch.float16 if device.type != "cpu" else torch.bfloat16
        _INTERPOLATORS[key] = Interpolator(engine.model, weights=engine.weights, device=device, dtype=dtype,
                                           scale=engine.scale, tta=engine.tta, auto_download=engine.auto_download,
                                           int8=engine.int8)  # fmt: skip
    return _INTERPOLATORS[key]


def _run_chunk(source: str, dest: str, marker: tuple[str, str], job: VideoJob, engine: EngineOptions,
               chunk: Chunk | None, key: str, progress) -> tuple[dict, bytes | None]:  # fmt: skip
    """A task: make one chunk (``chunk`` None: the whole video) into ``dest`` where this machine sees the
    driver's work folder (its ``marker`` file holds the token), else into a local file whose bytes are
    returned. Reports frames made to ``progress`` as it goes."""
    pid = os.getpid()
    progress.report.remote(key, 0, pid)  # started (loading the network may take a while)
    it = _interpolator(engine)
    made, last = 0, 0.0

    def on_frame(n: int) -> None:
        nonlocal made, last
        made += n
        now = time.monotonic()
        if now - last >= _REPORT_EVERY:
            last = now
            progress.report.remote(key, made, pid)

    shared = _reads(Path(marker[0])) == marker[1]
    with tempfile.TemporaryDirectory(prefix="vsrife-chunk-") as local:
        target = Path(dest) if shared else Path(local) / Path(dest).name
        if chunk is None:
            result = interpolate_video(source, target, it, dataclasses.replace(job, overwrite=True), on_frame)
        else:
            result = interpolate_chunk(source, target, it, job, chunk, on_frame)
        stats = {"frames": result.output_frames, "interpolated": result.interpolated, "cuts": result.cuts}
        return stats, (None if shared else target.read_bytes())


def _reads(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _progress_actor(ray):
    @ray.remote(num_cpus=0)
    class Progress:
        """Frames made so far by each running chunk, and the process making it (the latest attempt's)."""

        def __init__(self):
            self.frames: dict[str, int] = {}
            self.pids: dict[str, int] = {}

        def report(self, key: str, frames: int, pid: int) -> None:
            self.frames[key], self.pids[key] = frames, pid

        def state(self) -> tuple[dict[str, int], dict[str, int]]:
            return dict(self.frames), dict(self.pids)

    return Progress.remote()


# --- on the driver --------------------------------------------------------------------------------------


@dataclass
class _File:
    result: FileResult
    folder: Path  # its chunks in the work folder
    parts: list[tuple[Chunk | None, Path]]
    total: int  # output frames
    waiting: set = field(default_factory=set)  # task refs not finished
    stats: list[dict] = field(default_factory=list)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vsrife")
    except PackageNotFoundError:
        return "unknown"


def _folder_key(source: Path, job: VideoJob, engine: EngineOptions, chunk_seconds: float) -> str:
    st = source.stat()
    weights = None
    if engine.weights is not None:  # a weights file rewritten in place (by vsrife train) must not reuse chunks
        w = Path(engine.weights).stat()
        weights = {"path": str(Path(engine.weights).resolve()), "size": w.st_size, "mtime_ns": w.st_mtime_ns}
    what = {"source": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "job": {k: str(v) for k, v in dataclasses.asdict(job).items() if k not in ("overwrite", "progress")},
            "engine": dataclasses.asdict(engine), "weights": weights, "chunk_seconds": chunk_seconds,
            "vsrife": _version()}  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def _estimate(source: Path, job: VideoJob) -> int:
    """Output frames by the container's figures (exact counts come when the file is indexed)."""
    try:
        info = probe(source, count=False)
    except Exception:  # noqa: BLE001 - indexing says what is wrong
        return 0
    factor = job.fps / info["fps"] if job.fps and info["fps"] else job.multi
    return output_count(info["frames"], factor) if info["frames"] and factor else 0


def _plan_file(source: Path, output: Path, job: VideoJob, engine: EngineOptions, work_root: Path,
               chunk_seconds: float) -> _File:  # fmt: skip
    index = index_source(source, job)
    length = max(1, round(chunk_seconds * float(index.count / (index.end - index.times[0]))))
    folder = work_root / f"{output.name}.{_folder_key(source, job, engine, chunk_seconds)}"
    ext = output.suffix
    starts = chunk_starts(index.count, index.keyframes, index.cuts, length)
    if not index.regular or len(starts) == 1:  # one piece, made as interpolate_video makes it
        parts: list[tuple[Chunk | None, Path]] = [(None, folder / f"whole{ext}")]
    else:
        parts = [(c, folder / f"chunk-{c.index:05d}{ext}") for c in plan_chunks(index, starts, job)]
    folder.mkdir(parents=True, exist_ok=True)
    return _File(FileResult(source, output, chunks=len(parts)), folder, parts, index.slot(index.count))


def _finish(f: _File, job: VideoJob) -> None:
    """Join the chunks (or move the whole video) into the output, then drop the file's work folder."""
    r = f.result
    if f.parts[0][0] is None:
        _move_into(f.parts[0][1], r.output, job)
    else:
        join_chunks(r.source, r.output, f.parts, job)  # type: ignore[arg-type]
    r.frames = f.total
    r.interpolated = sum(s.get("interpolated", 0) for s in f.stats)
    r.cuts = sum(s.get("cuts", 0) for s in f.stats)
    shutil.rmtree(f.folder, ignore_errors=True)


def _move_into(path: Path, output: Path, job: VideoJob) -> None:
    check_paths(path, output, overwrite=job.overwrite)
    try:
        os.replace(path, output)
    except OSError:  # another filesystem: copied beside the output first, so it appears whole
        with temporary_beside(output, f".partial{output.suffix}") as (f, tmp):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, f)
            f.close()
            os.replace(tmp, output)


def run_batch(
    tasks: list[tuple[Path, Path]],
    job: VideoJob,
    engine: EngineOptions,
    *,
    work_dir: Path | None = None,
    chunk_seconds: float = CHUNK_SECONDS,
    retries: int = RETRIES,
    bar=None,
    on_progress: Callable[[dict[str, int], dict[str, int]], None] | None = None,
) -> list[FileResult]:
    """Interpolate every (source, output) pair on the Ray cluster this process is connected to
    (:func:`connect`), each source cut in chunks of about ``chunk_seconds``.

    ``bar`` (a tqdm) shows the output frames made across all workers; ``on_progress(frames, pids)`` is
    called with each chunk's frames so far and the process making it, about twice a second. One file's
    failure does not stop the others; its :class:`FileResult` says which chunk failed and why. Finished
    chunks stay in the work folder (``work_dir``, default ``.vsrife-work`` beside each output) until
    their file is joined, so the same call after an interruption makes only what is missing.
    """
    ray = _ray()
    if not ray.is_initialized():
        connect("auto")
    tasks = [(Path(os.path.abspath(s)), Path(os.path.abspath(o))) for s, o in tasks]  # workers start elsewhere
    work_dir = Path(os.path.abspath(work_dir)) if work_dir is not None else None
    gpus = ray.cluster_resources().get("GPU", 0)
    resources = {"num_gpus": 1} if gpus else {"num_cpus": engine.threads}
    # max_calls=0: a worker keeps its process (and its loaded model) for the next chunk; Ray would
    # otherwise start a fresh process for every GPU task
    remote = ray.remote(max_retries=retries, max_calls=0, **resources)(_run_chunk)
    progress = _progress_actor(ray)
    files: list[_File] = []
    results = [FileResult(source, output) for source, output in tasks]
    estimates = [_estimate(source, job) for source, _ in tasks]
    pending: dict = {}  # task ref -> (file, chunk, path, key)
    finished_frames = 0
    markers: dict[Path, tuple[str, str]] = {}

    def marker_of(root: Path) -> tuple[str, str]:
        if root not in markers:
            root.mkdir(parents=True, exist_ok=True)
            token = secrets.token_hex(16)
            path = root / f".driver-{token[:8]}"
            path.write_text(token)
            markers[root] = (str(path), token)
        return markers[root]

    def fail(f: _File, message: str) -> None:
        f.result.error = message
        for ref in list(f.waiting):
            ray.cancel(ref, force=False)
            pending.pop(ref, None)
        f.waiting.clear()

    try:
        for n, (source, output) in enumerate(tasks):
            root = work_dir if work_dir is not None else output.parent / WORK_FOLDER
            try:
                f = _plan_file(source, output, job, engine, root, chunk_seconds)
            except (VideoError, OSError) as e:
                results[n].error = str(e)
                continue
            except Exception as e:  # noqa: BLE001 - a decoder's own error: this file fails, the others go on
                results[n].error = f"cannot index {source}: {type(e).__name__}: {e}"
                continue
            f.result = results[n]
            f.result.chunks = len(f.parts)
            files.append(f)
            estimates[n] = f.total
            for chunk, path in f.parts:
                done = _stats_file(path)
                if path.is_file() and done.is_file():  # made by an earlier run
                    f.result.reused += 1
                    f.stats.append(json.loads(done.read_text()))
                    finished_frames += f.stats[-1]["frames"]
                    continue
                key = f"{path.parent.name}/{path.name}"
                ref = remote.remote(str(source), str(path), marker_of(root), job, engine, chunk, key, progress)
                pending[ref] = (f, chunk, path, key)
                f.waiting.add(ref)
            if not f.waiting:
                _try_finish(f, job)
        if bar is not None:
            bar.total = sum(estimates)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=_REPORT_EVERY)
            for ref in ready:
                if ref not in pending:
                    continue
                f, chunk, path, key = pending.pop(ref)
                f.waiting.discard(ref)
                try:
                    stats, data = ray.get(ref)
                except Exception as e:  # noqa: BLE001 - one chunk's failure fails its file only
                    fail(f, _failure(f, chunk, e, retries))
                    continue
                if data is not None:  # the worker could not see the work folder: its bytes came back
                    with temporary_beside(path, f".partial{path.suffix}") as (out, tmp):
                        out.write(data)
                        out.close()
                        os.replace(tmp, path)
                with atomic_write(_stats_file(path)) as out:  # the chunk is finished: a re-run keeps it
                    out.write(json.dumps(stats).encode())
                f.stats.append(stats)
                finished_frames += stats["frames"]
                if not f.waiting and f.result.error is None:
                    _try_finish(f, job)
            frames, pids = ray.get(progress.state.remote())
            running = sum(frames.get(key, 0) for _, _, _, key in pending.values())
            if bar is not None:
                bar.n = finished_frames + running
                bar.refresh()
            if on_progress is not None:
                on_progress(frames, pids)
        if bar is not None:
            bar.n = finished_frames
            bar.refresh()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        for path, _ in markers.values():
            Path(path).unlink(missing_ok=True)
        for root in markers:
            try:
                root.rmdir()  # only where nothing is left to resume
            except OSError:
                pass
        ray.kill(progress)
    return results


def _stats_file(chunk: Path) -> Path:
    return chunk.with_name(chunk.name + ".json")


def _try_finish(f: _File, job: VideoJob) -> None:
    try:
        _finish(f, job)
    except (VideoError, OSError) as e:
        f.result.error = str(e)


def _failure(f: _File, chunk: Chunk | None, error: Exception, retries: int) -> str:
    what = chunk.describe() if chunk is not None else "the whole video"
    cause = getattr(error, "cause", None)
    if cause is not None:  # the task raised: Ray hands its exception over
        return f"{what} failed: {cause}"
    name = type(error).__name__
    if "WorkerCrashed" in name or "NodeDied" in name or "OutOfMemory" in name:
        return f"{what} failed: its worker died, {retries + 1} time(s) ({name})"
    return f"{what} failed: {name}: {str(error).splitlines()[0] if str(error) else ''}"
