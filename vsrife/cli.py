"""The ``vsrife`` command line (also ``python -m vsrife``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

from . import __name__ as _package
from .catalogue import get_release, release_names, releases
from .timing import HOLD_THRESHOLD, SCENE_THRESHOLD, as_fraction, output_count
from .weights import (
    WeightsError,
    cached_weights,
    fetch_weights,
    import_weights,
    model_dir,
    verify_cache,
)

log = logging.getLogger(_package)

CHUNK_SECONDS = 60.0  # vsrife.cluster's default, here so that --help needs no Ray


class CommandError(Exception):
    """A failure the user can act on: printed as one line, exit status 1."""


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def error_line(e: BaseException, where: str = "") -> str:
    """The one line a failure is shown as, here and on `vsrife app`'s page: a CommandError as it says, anything
    unforeseen (a bug, the device out of memory) with its type, and ``where`` to look for the details."""
    if isinstance(e, CommandError):
        return f"vsrife: error: {_one_line(str(e))}"
    return f"vsrife: error: {type(e).__name__}: {_one_line(str(e))}{where}"


class _Parser(argparse.ArgumentParser):
    """argparse, with its complaints in the same one-line form as every other error (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"vsrife: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def models_list(args: argparse.Namespace) -> int:
    print(f"cache: {model_dir()}")
    print(f"{'model':<15} {'family':<8} {'tta':<4} {'pad':>4}  {'cached':<10} source")
    for r in releases().values():
        path = cached_weights(r.name)
        cached = _human(path.stat().st_size) if path else "-"
        source = r.sources[0].describe() if r.sources else "import by hand (see note)"
        print(f"{r.name:<15} {r.family:<8} {'yes' if r.tta else 'no':<4} {r.modulo:>4}  {cached:<10} {source}")
    return 0


def models_download(args: argparse.Namespace) -> int:
    names = list(release_names()) if args.all else args.names
    if not names:
        raise CommandError("name at least one model (see `vsrife models list`) or pass --all")
    failed = []
    for name in names:
        try:
            path = fetch_weights(name, force=args.force, progress=not args.quiet)
        except (WeightsError, ValueError) as e:
            log.error("%s", e.offering(None) if isinstance(e, WeightsError) else e)  # this command has no --weights
            failed.append(name)
            continue
        print(f"{name}: {path}")
    if failed:
        raise CommandError(f"could not fetch: {', '.join(failed)}")
    return 0


def models_import(args: argparse.Namespace) -> int:
    try:
        path = import_weights(args.file, args.model)
    except (WeightsError, ValueError) as e:
        raise CommandError(str(e)) from e
    print(f"{args.model}: {path}")
    return 0


def models_verify(args: argparse.Namespace) -> int:
    results = verify_cache()
    if not results:
        print(f"no models cached in {model_dir()}")
    for name, ok, message in results:
        print(f"{name:<12} {'ok' if ok else 'BAD':<4} {message}")
    bad = [name for name, ok, _ in results if not ok]
    if bad:
        raise CommandError(f"{len(bad)} cached model(s) failed verification: {', '.join(bad)}")
    return 0


def _interpolator(args: argparse.Namespace):
    import torch

    from .engine import Interpolator, parse_device

    try:
        device = parse_device(args.device)
        dtype = None
        if args.fp32:
            dtype = torch.float32
        elif args.fp16:
            dtype = torch.float16 if device.type != "cpu" else torch.bfloat16
        return Interpolator(args.model, weights=args.weights, device=device, dtype=dtype, scale=args.scale,
                            tta=args.tta, auto_download=not args.no_download,
                            compile=getattr(args, "compile_mode", None) or getattr(args, "compile", False),
                            int8=getattr(args, "int8", None))  # fmt: skip
    except WeightsError as e:
        raise CommandError(e.offering("--weights FILE")) from e
    except ValueError as e:
        raise CommandError(str(e)) from e


def check_engine_options(args: argparse.Namespace) -> None:
    """The model name, and --scale and --tta against its architecture, checked before any file is touched
    (also for --cluster, whose workers load the model); CommandError says what to do instead."""
    try:
        get_release(args.model).check_options(args.scale, args.tta)
    except ValueError as e:
        raise CommandError(str(e)) from e


def load_interpolator(args: argparse.Namespace):
    """The model that `vsrife video` and `vsrife images` load from their options; CommandError says why not."""
    return _interpolator(args)


def _multi(args: argparse.Namespace) -> tuple[Fraction | None, Fraction | None]:
    try:
        if args.fps is not None:
            fps = as_fraction(args.fps, "--fps")
            if fps <= 0:
                raise ValueError(f"--fps must be positive, not {args.fps}")
            return None, fps
        multi = as_fraction(args.multi, "--multi")
    except ValueError as e:
        raise CommandError(str(e)) from e
    if multi == 1 and getattr(args, "dedup", False):
        return multi, None  # the source rate, with held drawings replaced by motion
    if multi <= 1:
        raise CommandError(f"--multi must be above 1 (1 with --dedup), not {args.multi}")
    return multi, None


def _unit_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _progress_bar(total: int | None, quiet: bool, unit: str = "frame", desc: str | None = None):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, file=sys.stderr, disable=quiet, dynamic_ncols=True, smoothing=0.1,
                desc=desc)  # fmt: skip


def _video_job(args: argparse.Namespace, multi: Fraction | None, fps: Fraction | None):
    from .video import CRF_RANGE, VideoJob

    try:
        options = dict(item.split("=", 1) for item in args.encoder_option)
    except ValueError as e:
        raise CommandError(f"--encoder-option takes KEY=VALUE, not {args.encoder_option}") from e
    if args.crf is not None and args.codec not in CRF_RANGE:
        raise CommandError(f"--crf is for {', '.join(CRF_RANGE)}; give {args.codec}'s own options with -x KEY=VALUE")
    return VideoJob(
        multi=multi, fps=fps, codec=args.codec, crf=18 if args.crf is None else args.crf, preset=args.preset,
        pix_fmt=args.pix_fmt, scene_detection=not args.no_sc, scene_threshold=args.sc_threshold,
        dedup=args.dedup, dedup_threshold=args.dedup_threshold, overwrite=args.overwrite, encoder_options=options,
        montage=args.montage,
    )  # fmt: skip


@contextlib.contextmanager
def _library_output():
    """What C libraries print straight to the terminal meanwhile (x264, x265 and SVT-AV1 write to stderr
    themselves): kept out of the terminal and handed over as lines, e.g. to complete an error message."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(line.strip() for line in sink.read().decode(errors="replace").splitlines() if line.strip())


def _check_video(source: Path, output: Path, job) -> None:
    """The job's dry run (see video.check_job), with what the encoder library said when it refuses."""
    from .video import VideoError, check_job

    try:
        with _library_output() as said:
            check_job(source, output, job)
    except VideoError as e:
        errors = "; ".join(line for line in said if "error" in line.lower())
        raise CommandError(f"{e} ({errors})" if errors else str(e)) from e


# What a folder given as input contributes: its files with these extensions (not its subfolders).
VIDEO_EXTENSIONS = (".mkv", ".mp4", ".m4v", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mts", ".mpg", ".mpeg",
                    ".flv", ".wmv", ".ogv", ".3gp", ".nut", ".y4m")  # fmt: skip


def _video_tasks(args: argparse.Namespace) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs, and whether this is a batch (several inputs, or a folder of them).

    A batch, or -o naming a folder (an existing one, or a name ending in /), writes <folder>/<stem><ext>,
    with each input's extension or --ext. Two inputs that would get the same output name are refused.
    """
    inputs: list[Path] = []
    folder_given = False
    for name in args.inputs:
        path = Path(name)
        if path.is_dir():
            folder_given = True
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith("."))  # fmt: skip
            if not found:
                raise CommandError(f"folder {path} holds no video files ({' '.join(VIDEO_EXTENSIONS)})")
            inputs += found
        else:
            inputs.append(path)
    batch = folder_given or len(inputs) > 1
    out = Path(args.output)
    if not (batch or out.is_dir() or args.output.endswith(("/", os.sep))):
        if args.ext:
            raise CommandError("--ext names the outputs written into a folder; here -o names the output file")
        return [(inputs[0], out)], False
    if out.exists() and not out.is_dir():
        raise CommandError(f"{out} is a file; with several inputs -o names a folder to write them into")
    ext = "" if not args.ext else args.ext if args.ext.startswith(".") else f".{args.ext}"
    tasks = [(source, out / f"{source.stem}{ext or source.suffix}") for source in inputs]
    claimed: dict[str, Path] = {}
    for source, output in tasks:
        key = os.path.normcase(os.path.abspath(output))
        if key in claimed:
            raise CommandError(f"{claimed[key]} and {source} would both be written to {output}; rename one, "
                               "or run them separately")  # fmt: skip
        claimed[key] = source
    return tasks, batch


def _progress_total(source: Path, multi: Fraction | None, fps: Fraction | None) -> int | None:
    from .video import probe

    try:
        info = probe(source, count=False)  # the container's count: no need to read hours of video twice
    except Exception as e:  # noqa: BLE001 - any decoder failure means the same to the user
        raise CommandError(f"cannot read {source}: {e}") from e
    factor = (fps / info["fps"]) if (fps and info["fps"]) else multi
    return output_count(info["frames"], factor) if info["frames"] and factor else None


def prepare_video(args: argparse.Namespace, source: Path, output: Path):
    """What `vsrife video ARGS` settles for one file before any model loads: the VideoJob from the options,
    checked in the encoder's dry run on this file, and how many frames it will write (None if unknown).
    CommandError says what is wrong. `vsrife app` runs its jobs through this too."""
    multi, fps = _multi(args)
    job = _video_job(args, multi, fps)
    _check_video(source, output, job)
    return job, _progress_total(source, multi, fps)


def run_video(args: argparse.Namespace) -> int:
    from .video import VideoError, interpolate_video

    check_engine_options(args)
    multi, fps = _multi(args)
    job = _video_job(args, multi, fps)
    tasks, batch = _video_tasks(args)
    if tasks[0][1] != Path(args.output):  # named into a folder
        try:
            tasks[0][1].parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CommandError(f"cannot create output folder {tasks[0][1].parent}: {e}") from e
    if args.cluster is None and (args.work_dir is not None or args.chunk_seconds != CHUNK_SECONDS):
        raise CommandError("--work-dir and --chunk-seconds are options of --cluster")
    if args.cluster is not None and args.device is not None:
        raise CommandError("--device picks a device on this machine; with --cluster each task gets a GPU of its own")
    failed: dict[Path, str] = {}
    ready = []
    for source, output in tasks:  # every check that needs no model, for every file, before the model loads
        try:
            _check_video(source, output, job)
            ready.append((source, output, _progress_total(source, multi, fps)))
        except CommandError as e:
            if not batch:
                raise
            failed[source] = str(e)
    done: dict[Path, str] = {}
    if args.cluster is not None:
        return _run_cluster(args, job, tasks, ready, failed, batch)
    try:
        it = _interpolator(args) if ready else None  # one model for every file
        for source, output, total in ready:
            try:
                with _progress_bar(total, args.quiet, desc=source.name if batch else None) as bar:
                    result = interpolate_video(source, output, it, job, on_frame=bar.update)
            except VideoError as e:
                if not batch:
                    raise CommandError(str(e)) from e
                failed[source] = str(e)
                continue
            except Exception as e:  # one file's failure (out of memory, ...) does not end a batch
                if not batch:
                    raise
                failed[source] = f"{type(e).__name__}: {e}"
                continue
            log.info("%d source frames -> %d frames (%d interpolated, %d scene cuts)", result.source_frames,
                     result.output_frames, result.interpolated, result.cuts)  # fmt: skip
            done[source] = (f"{output}: {result.output_frames} frames at {float(result.fps):.3f} fps "
                            f"({result.interpolated} interpolated, {result.cuts} scene cuts kept sharp)")  # fmt: skip
            print(done[source], file=sys.stderr)
    finally:
        if batch:  # also when interrupted: what was finished is complete and stays
            _batch_summary(tasks, done, failed)
    if failed:
        raise CommandError(f"{len(failed)} of {len(tasks)} files failed")
    return 0


def _run_cluster(args: argparse.Namespace, job, tasks, ready, failed: dict[Path, str], batch: bool) -> int:
    """The checked files on a Ray cluster (vsrife.cluster): one progress bar for the batch, a line per file."""
    from .cluster import ClusterError, EngineOptions, connect, run_batch

    if args.chunk_seconds <= 0:
        raise CommandError(f"--chunk-seconds must be positive, not {args.chunk_seconds}")
    weights = os.path.abspath(args.weights) if args.weights else None  # the workers run in other folders
    engine = EngineOptions(model=args.model, weights=weights, scale=args.scale, tta=args.tta,
                           precision="fp32" if args.fp32 else "fp16" if args.fp16 else None,
                           auto_download=not args.no_download, int8=args.int8)  # fmt: skip
    done: dict[Path, str] = {}
    try:
        if ready:
            try:
                resources = connect(args.cluster)
            except ClusterError as e:
                raise CommandError(str(e)) from e
            gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
            log.info("Ray cluster: %s", f"{gpus} GPU(s), one task each" if gpus else f"{cpus} CPU(s), no GPU")
            work = Path(args.work_dir) if args.work_dir else None
            try:
                with _progress_bar(None, args.quiet, desc="batch") as bar:
                    results = run_batch([(s, o) for s, o, _ in ready], job, engine, work_dir=work,
                                        chunk_seconds=args.chunk_seconds, bar=bar)  # fmt: skip
            except OSError as e:  # the work folder cannot be written
                raise CommandError(f"work folder: {e}; choose another with --work-dir") from e
            for r in results:
                if r.error is not None:
                    failed[r.source] = r.error
                    continue
                reused = f", {r.reused} reused" if r.reused else ""
                done[r.source] = (f"{r.output}: {r.frames} frames in {r.chunks} chunk(s){reused} "
                                  f"({r.interpolated} interpolated, {r.cuts} scene cuts kept sharp)")  # fmt: skip
                print(done[r.source], file=sys.stderr)
    finally:
        if batch:
            _batch_summary(tasks, done, failed)
    if failed:
        if not batch:
            raise CommandError(next(iter(failed.values())))
        raise CommandError(f"{len(failed)} of {len(tasks)} files failed")
    return 0


def _batch_summary(tasks: list[tuple[Path, Path]], done: dict[Path, str], failed: dict[Path, str]) -> None:
    for source, output in tasks:
        if source in done:
            print(f"vsrife: ok      {source} -> {output}", file=sys.stderr)
        elif source in failed:
            print(f"vsrife: failed  {source}: {failed[source]}", file=sys.stderr)
        else:
            print(f"vsrife: not run {source}", file=sys.stderr)


def _read_image(path: Path):
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise CommandError(f"cannot read image {path}: {e}") from e
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float().div(255)


def _write_image(tensor, path: Path) -> None:
    from PIL import Image

    from .files import atomic_write

    arr = tensor[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().cpu().numpy()
    with atomic_write(path) as f:  # an exclusive temporary file: nothing planted in the folder is followed
        Image.fromarray(arr).save(f, format="PNG")


def run_images(args: argparse.Namespace) -> int:
    import torch

    check_engine_options(args)
    steps = 2**args.exp if args.multi is None else args.multi
    if steps < 2:
        raise CommandError("--multi must be at least 2 (or --exp at least 1)")
    img0, img1 = _read_image(Path(args.img0)), _read_image(Path(args.img1))
    if img0.shape != img1.shape:
        raise CommandError(f"the images differ in size: {tuple(img0.shape[-2:])} and {tuple(img1.shape[-2:])}")
    out = Path(args.output)
    width = len(str(steps))
    names = [out / f"{j:0{width}d}.png" for j in range(steps + 1)]
    existing = [p.name for p in names if p.exists()]
    if existing and not args.overwrite:
        raise CommandError(f"{out} already has {', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}; "
                           "pass --overwrite to replace them or choose another folder")  # fmt: skip
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"cannot create output folder {out}: {e}") from e
    it = _interpolator(args)
    a, b = it.prepare(img0), it.prepare(img1)
    with _progress_bar(steps + 1, args.quiet) as bar:
        for j in range(steps + 1):
            frame = img0 if j == 0 else img1 if j == steps else it.interpolate(a, b, torch.tensor([j / steps]))
            _write_image(frame, names[j])
            bar.update(1)
    print(f"{steps + 1} frames in {out}", file=sys.stderr)
    return 0


def run_plugin(args: argparse.Namespace) -> int:
    from . import native

    folder = Path(args.dir).expanduser() if args.dir else None
    try:
        if args.action == "install":
            path = native.install(args.namespace, folder)
            if folder is None:
                print(f"installed {path}: core.{args.namespace}.RIFE(clip, ...) works in every script from now on")
            else:
                print(f"installed {path}: VapourSynth loads it where {folder} is a plugin folder it searches, "
                      f"or after core.std.LoadPlugin({str(path)!r})")  # fmt: skip
        elif args.action == "remove":
            removed = native.remove(args.namespace, folder)
            for path in removed:
                print(f"removed {path}")
            if not removed:
                print(f"no vsrife plugin in {folder or native.plugin_dir()}")
        else:
            where = folder or native.plugin_dir()
            found = native.find_installed([where])
            for item in found:
                print(f"{item.path}: core.{item.namespace}.RIFE")
            if not found:
                print(f"no vsrife plugin in {where}; run `vsrife plugin install`")
    except native.PluginError as e:
        raise CommandError(str(e)) from e
    except OSError as e:
        raise CommandError(f"{e.filename or 'the plugin folder'}: {e.strerror}; give a folder of your own with --dir "
                           "and name it UserPluginDir in vapoursynth.conf (R66-R73)") from e  # fmt: skip
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from .demo import DemoError, run
    from .video import VideoError

    try:
        paths = run(Path(args.output), model=args.model, sample=args.sample, quiet=args.quiet)
    except WeightsError as e:
        raise CommandError(e.offering(None)) from e  # the demo has no --weights
    except (DemoError, VideoError, ValueError) as e:
        raise CommandError(str(e)) from e
    for label, path in paths.items():
        print(f"{label}: {path}")
    return 0


def run_app(args: argparse.Namespace) -> int:
    from .app import serve

    if args.max_upload_mb <= 0:
        raise CommandError(f"--max-upload-mb must be positive, not {args.max_upload_mb:g}")
    try:
        return serve(args.host, args.port, max_upload_mb=args.max_upload_mb, device=args.device)
    except _Terminated:  # SIGTERM stops the app as Ctrl-C does: serve removed its files on the way out
        return 0


def run_train(args: argparse.Namespace) -> int:
    from .training import TrainError, TrainSettings, train
    from .triplets import DataError

    settings = TrainSettings(
        model=args.model, data=tuple(args.data), run_dir=args.output, weights=args.weights,
        from_scratch=args.from_scratch, steps=args.steps, batch_size=args.batch_size, crop=args.crop, lr=args.lr,
        seed=args.seed, eval_every=args.eval_every, eval_limit=args.eval_limit, eval_crop=args.eval_crop,
        device=args.device, amp=not args.no_amp, upstream_pickle=args.upstream_pickle, progress=not args.quiet,
    )  # fmt: skip
    try:
        result = train(settings)
    except WeightsError as e:
        raise CommandError(e.offering("--weights FILE")) from e
    except (TrainError, DataError) as e:
        raise CommandError(str(e)) from e
    print(f"weights: {result.weights}")
    print(f"metrics: {result.run_dir / 'metrics.jsonl'}")
    if result.plot is not None:
        print(f"curves: {result.plot}")
    if result.psnr_start is not None and result.psnr_end is not None:
        print(f"held-out PSNR: {result.psnr_start:.2f} dB before, {result.psnr_end:.2f} dB after")
    return 0


def _engine_options(p: argparse.ArgumentParser, default_model: str = "4.25") -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default=default_model, metavar="NAME", help=f"model (default {default_model})")
    g.add_argument("--weights", metavar="FILE", help="weights file to use instead of the cached model")
    g.add_argument("--scale", type=float, default=1.0, help="flow scale: 0.25, 0.5, 1, 2 or 4 (0.5 for 4K)")
    g.add_argument("--tta", action="store_true", help="test-time augmentation (slower, steadier)")
    g.add_argument("--device", help="torch device, e.g. cpu, cuda, cuda:1 (default: best available)")
    prec = g.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="reduced precision: half on GPU, bfloat16 on CPU")
    prec.add_argument("--fp32", action="store_true", help="full precision (default: reduced where it is native)")
    g.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                   help="CPU: the flow blocks' convolutions on 8-bit integers (default: on where measured, that "
                        "is 4.0 weights, no --fp16/--fp32, scale 1; --int8 asks for it, --no-int8 turns it off)")
    g.add_argument("--no-download", action="store_true", help="fail instead of downloading missing weights")
    g.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile (opt-in; the first frames wait for it)")
    g.add_argument("--compile-mode", metavar="MODE",
                   help="torch.compile mode, e.g. reduce-overhead (CUDA graphs); implies --compile")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vsrife", description="RIFE frame interpolation.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="list, download, import and verify network weights")
    sub = models.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every known model, and which are cached").set_defaults(run=models_list)
    dl = sub.add_parser("download", help="fetch and verify weights into the cache")
    dl.add_argument("names", nargs="*", metavar="NAME", help="model names, e.g. 4.0 4.25")
    dl.add_argument("--all", action="store_true", help="every model that has a download source")
    dl.add_argument("--force", action="store_true", help="fetch again even if cached")
    dl.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    dl.set_defaults(run=models_download)
    imp = sub.add_parser("import", help="check a weights file you downloaded yourself and cache it")
    imp.add_argument("file", help=".pkl, .pth or .safetensors file")
    imp.add_argument("--model", required=True, choices=release_names(), metavar="NAME", help="which model it is")
    imp.set_defaults(run=models_import)
    sub.add_parser("verify", help="re-hash every cached model").set_defaults(run=models_verify)

    video = commands.add_parser("video", help="interpolate video files (audio, subtitles and tags are kept)")
    video.add_argument("inputs", nargs="+", metavar="INPUT", help="input video(s), or folders of them")
    video.add_argument("-o", "--output", required=True,
                       help="output video (its extension picks the container), or a folder for several inputs")  # fmt: skip
    video.add_argument("--ext", help="extension of the outputs written into a folder (default: each input's)")
    rate = video.add_mutually_exclusive_group()
    rate.add_argument("--multi", default="2", help="frame-rate multiplier, an integer or a ratio like 5/2 (default 2)")
    rate.add_argument("--fps", help="target frame rate instead, e.g. 60 or 60000/1001")
    video.add_argument("--no-sc", action="store_true", help="interpolate across scene cuts too")
    video.add_argument("--dedup", action="store_true",
                       help="animation drawn on twos or threes: move held frames between the drawings "
                            "(--multi 1 keeps the source rate)")  # fmt: skip
    video.add_argument("--dedup-threshold", type=_unit_interval, default=HOLD_THRESHOLD, metavar="SHARE",
                       help=f"share of pixels that may change in a held frame (default {HOLD_THRESHOLD})")  # fmt: skip
    video.add_argument("--sc-threshold", type=_unit_interval, default=SCENE_THRESHOLD,
                       help=f"scene-cut threshold, mean luma difference (default {SCENE_THRESHOLD})")  # fmt: skip
    video.add_argument("--montage", action="store_true",
                       help="write the source and the result side by side (stacked for tall video) at the output "
                            "rate, to see what interpolation did")  # fmt: skip
    enc = video.add_argument_group("encoder")
    enc.add_argument("--codec", default="libx264", help="FFmpeg encoder (default libx264)")
    enc.add_argument("--crf", type=int, help="quality for x264/x265 (0-51), vp9/svt-av1 (0-63) (default 18)")
    enc.add_argument("--preset", help="encoder preset (default medium for x264/x265)")
    enc.add_argument("--pix-fmt", help="output pixel format (default: the source's)")
    enc.add_argument("-x", "--encoder-option", action="append", default=[], metavar="KEY=VALUE",
                     help="FFmpeg encoder option, repeatable (e.g. -x qp=0 for lossless x264; replaces --crf)")  # fmt: skip
    video.add_argument("--overwrite", action="store_true", help="replace an existing output")
    ray = video.add_argument_group("cluster (Ray: pip install \"vsrife[cluster]\")")
    ray.add_argument("--cluster", metavar="auto|ADDRESS",
                     help="cut the work in chunks and run them on every GPU (else CPU) of a Ray cluster: auto "
                          "starts or joins one on this machine, ADDRESS joins a running one (host:6379)")  # fmt: skip
    ray.add_argument("--work-dir", metavar="DIR",
                     help="where finished chunks are kept until joined (default: .vsrife-work beside the "
                          "outputs); on a filesystem every machine sees, workers write there directly")  # fmt: skip
    ray.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS, metavar="S",
                     help=f"source seconds per chunk (default {CHUNK_SECONDS:g}); chunks start at scene cuts "
                          "or keyframes")  # fmt: skip
    _engine_options(video)
    video.set_defaults(run=run_video)

    images = commands.add_parser("images", help="frames between two images, as numbered PNGs")
    images.add_argument("img0")
    images.add_argument("img1")
    images.add_argument("-o", "--output", required=True, help="output folder")
    steps = images.add_mutually_exclusive_group()
    steps.add_argument("--exp", type=int, default=1, help="2**EXP intervals (default 1: one frame between)")
    steps.add_argument("--multi", type=int, help="N intervals instead (N - 1 frames between)")
    images.add_argument("--overwrite", action="store_true", help="replace PNGs already in the folder")
    _engine_options(images)
    images.set_defaults(run=run_images)

    plugin = commands.add_parser("plugin", help="core.rife.RIFE in any VapourSynth script: a native namespace")
    actions = plugin.add_subparsers(dest="action", required=True)
    for action, text in (("install", "build the namespace's plugin and install it where VapourSynth loads it"),
                         ("remove", "remove vsrife's plugin"), ("status", "what is installed where")):  # fmt: skip
        a = actions.add_parser(action, help=text)
        a.add_argument("--dir", metavar="DIR", help="plugin folder (default: the one VapourSynth loads by itself)")
        if action != "status":
            a.add_argument("--namespace", default="rife" if action == "install" else None, metavar="NAME",
                           help="namespace (install: default rife; remove: default every vsrife one)")  # fmt: skip
        a.set_defaults(run=run_plugin, namespace=None) if action == "status" else a.set_defaults(run=run_plugin)

    tr = commands.add_parser("train", help="fine-tune a model on your own footage (the paper's distillation)")
    tr.add_argument("--model", default="4.25", metavar="NAME", help="model to fine-tune (default 4.25)")
    tr.add_argument("--data", nargs="+", required=True, metavar="DIR_OR_VIDEO",
                    help="Vimeo90K-style triplet folders, videos, or folders of videos")  # fmt: skip
    tr.add_argument("-o", "--output", required=True, metavar="RUN_DIR",
                    help="run folder: weights, metrics, checkpoints (a re-run resumes there)")  # fmt: skip
    begin = tr.add_mutually_exclusive_group()
    begin.add_argument("--weights", metavar="FILE", help="start from this weights file instead of the model's own")
    begin.add_argument("--from-scratch", action="store_true", help="start from random weights")
    tr.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    tr.add_argument("--batch-size", type=int, default=8, help="triplets per step and process (default 8)")
    tr.add_argument("--crop", type=int, default=224, help="side of the square training crops (default 224)")
    tr.add_argument("--lr", type=float, help="peak learning rate (default 3e-5 fine-tuning, 3e-4 from scratch)")
    tr.add_argument("--seed", type=int, default=1234, help="seed of the crops, order and fresh weights (default 1234)")
    tr.add_argument("--eval-every", type=int, default=250, help="steps between checkpoints and held-out PSNR")
    tr.add_argument("--eval-limit", type=int, default=16, help="held-out triplets scored (default 16)")
    tr.add_argument("--eval-crop", type=int, metavar="SIDE", help="score a central square of this side only")
    tr.add_argument("--device", help="torch device (default: best available; torchrun: one GPU per process)")
    tr.add_argument("--no-amp", action="store_true", help="full precision on GPU too (default: mixed precision)")
    tr.add_argument("--upstream-pickle", action="store_true",
                    help="also write flownet.pkl in the upstream layout (module. keys, teacher included)")  # fmt: skip
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(run=run_train)

    demo = commands.add_parser("demo", help="one-command first run on real sample footage")
    demo.add_argument("-o", "--output", default="vsrife-demo", help="output folder (default ./vsrife-demo)")
    demo.add_argument("--model", default="4.0", help="model (default 4.0, whose weights are on the package index)")
    demo.add_argument("--sample", default="bikes", help="sample clip: bikes, bigbuckbunny or carphone")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(run=run_demo)

    app = commands.add_parser("app", help="a local web page: upload, interpolate, compare, download (vsrife[app])")
    app.add_argument("--host", default="127.0.0.1",
                     help="address to serve on (default 127.0.0.1: this machine only; another is reachable by others)")  # fmt: skip
    app.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    app.add_argument("--max-upload-mb", type=float, default=500, metavar="MB", help="largest upload (default 500)")
    app.add_argument("--device", help="torch device for every job (default: best available)")
    app.set_defaults(run=run_app)
    return parser


class _Terminated(Exception):
    pass


def _on_sigterm(signum, frame) -> None:  # noqa: ARG001
    raise _Terminated  # unwinds like Ctrl-C, so temporary outputs are removed on the way out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="vsrife: %(message)s")  # fmt: skip
    try:
        return args.run(args)
    except CommandError as e:
        print(error_line(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vsrife: interrupted; nothing was written under the output name", file=sys.stderr)
        return 130
    except _Terminated:
        print("vsrife: terminated; nothing was written under the output name", file=sys.stderr)
        return 143
    except BrokenPipeError:  # e.g. `vsrife models list | head`
        sys.stdout = None  # type: ignore[assignment]  # nothing more can be written, not even at exit
        return 141
    except Exception as e:  # noqa: BLE001 - unforeseen (a bug, the device out of memory): one line too
        if args.verbose:
            traceback.print_exc()
        print(error_line(e, "" if args.verbose else " (`vsrife -v ...` shows where)"), file=sys.stderr)
        return 1
