"""``vsrife app``: a local page (Gradio) for people who do not write scripts.

The page is a form over the command line: each job turns the page's choices into the arguments of
`vsrife video` or `vsrife images`, parses them with the same parser and runs the same steps
(:func:`vsrife.cli.prepare_video`, :func:`vsrife.cli.load_interpolator`,
:func:`vsrife.video.interpolate_video`, :func:`vsrife.cli.run_images`,
:func:`vsrife.demo.comparison_image`), so its checks, results and one-line error messages are the command
line's. What the page adds is only what a shared page needs:

- one folder of its own for everything it writes (Gradio's uploads included), removed when the app stops;
  each job works in a new subfolder that is removed when the job fails or is cancelled;
- uploads limited in size and opened as media before any work; a file name only ever becomes the name of
  a file inside the job's folder;
- one job at a time on the device, in the order asked; a cancel button that stops the running job.
"""

import argparse
import importlib.util
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .catalogue import release_names
from .cli import CommandError, build_parser, error_line, load_interpolator, prepare_video
from .timing import HOLD_THRESHOLD, SCENE_THRESHOLD
from .weights import cached_weights

__all__ = ["App", "JobCancelled", "safe_name", "serve"]

log = logging.getLogger("vsrife")

TITLE = "vsrife"
DEFAULT_MODEL = "4.25"
SCALES = ("0.25", "0.5", "1", "2", "4")
PRECISIONS = ("auto", "fp16", "fp32")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
_WHERE = " (the terminal running `vsrife app` shows where)"


class JobCancelled(Exception):
    """The user pressed Cancel: the job stops and leaves nothing behind."""


def _gradio():
    try:
        import gradio as gr
    except ImportError as e:
        raise CommandError('vsrife app needs Gradio: pip install "vsrife[app]"') from e
    return gr


def safe_name(name: str, fallback: str) -> str:
    """A file name made of letters, digits, ``.``, ``_`` and ``-`` only, from the last part of ``name``
    without its extension (``fallback`` where nothing is left): never a folder, never hidden."""
    stem = Path(name.replace("\\", "/").split("/")[-1]).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:60]
    return stem or fallback


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class _FrameProgress:
    """``on_frame`` for :func:`vsrife.video.interpolate_video`, as the command line's progress bar is: it
    counts frames and reports frames, rate and time left to the page; it raises JobCancelled once the
    job's cancel event is set, which stops the pipeline like any other failure."""

    def __init__(self, total: int | None, report: Callable, cancelled: threading.Event):
        self.total, self.report, self.cancelled = total, report, cancelled
        self.done = 0
        self.start = self.shown = time.monotonic()

    def __call__(self, n: int = 1) -> None:
        if self.cancelled.is_set():
            raise JobCancelled
        self.done += n
        now = time.monotonic()
        if now - self.shown < 0.25 and self.done != self.total:
            return
        self.shown = now
        rate = self.done / max(now - self.start, 1e-6)
        if self.total:
            eta = _duration((self.total - self.done) / rate) if rate > 0 else "?"
            self.report((min(self.done, self.total), self.total), desc=f"{rate:.1f} fps, ETA {eta}", unit="frames")
        else:
            self.report(None, desc=f"{self.done} frames, {rate:.1f} fps", unit="frames")


@dataclass
class _Job:
    """One job's folder and its cancel event; the folder goes unless the job keeps its result."""

    folder: Path
    session: str
    cancelled: threading.Event
    keep: bool = False
    names: dict[str, str] = field(default_factory=dict)  # path -> the name the user knows it by

    def check(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled

    def message(self, e: BaseException) -> str:
        """The command line's one-line message, with the app's own paths replaced by the names users know."""
        text = error_line(e, _WHERE)
        for path, name in sorted(self.names.items(), key=lambda item: -len(item[0])):
            text = text.replace(path, name)
        return text


class App:
    """The page's state: its folder, the upload limit, the device and its one-at-a-time lock, and the
    cancel event of each browser session's current job."""

    def __init__(self, root: Path, *, max_upload_mb: float = 500, device: str | None = None):
        self.root = root.resolve()
        self.jobs = self.root / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.max_upload = int(max_upload_mb * 2**20)
        self.max_upload_mb = max_upload_mb
        self.device = device
        self.device_lock = threading.Lock()  # one job at a time on the device, whatever the page's queue does
        # Each job asked for has its own cancel event, kept from the click (arm) until the job ends; jobs of
        # a session start in the order asked (one queue), so each takes the oldest event not yet taken.
        self._cancel: dict[str, list[threading.Event]] = {}
        self._started: set[int] = set()  # ids of the events whose job has started
        self._cancel_lock = threading.Lock()

    # -- jobs -------------------------------------------------------------------------------------------

    def arm(self, session: str) -> None:
        """A new job is asked for in this session: a cancel event of its own (Cancel works while it queues)."""
        with self._cancel_lock:
            self._cancel.setdefault(session, []).append(threading.Event())

    def cancel(self, session: str) -> None:
        """Cancel stops every job of this session: the one running and the ones still queued."""
        with self._cancel_lock:
            events = list(self._cancel.get(session, ()))
        for event in events:
            event.set()

    def cancel_all(self) -> None:
        with self._cancel_lock:
            for events in self._cancel.values():
                for event in events:
                    event.set()

    def _job(self, session: str) -> _Job:
        with self._cancel_lock:
            events = self._cancel.setdefault(session, [])
            cancelled = next((e for e in events if id(e) not in self._started), None)
            if cancelled is None:
                cancelled = threading.Event()
                events.append(cancelled)
            self._started.add(id(cancelled))
        folder = self.jobs / secrets.token_hex(8)
        folder.mkdir()
        job = _Job(folder, session, cancelled)
        job.names[str(folder) + os.sep] = ""
        job.names[str(self.root) + os.sep] = ""
        return job

    def _finish(self, job: _Job) -> None:
        if not job.keep:
            shutil.rmtree(job.folder, ignore_errors=True)
        with self._cancel_lock:
            events = self._cancel.get(job.session, [])
            if job.cancelled in events:
                events.remove(job.cancelled)
            self._started.discard(id(job.cancelled))
            if not events:
                self._cancel.pop(job.session, None)

    def upload(self, job: _Job, path: str | None, what: str) -> Path:
        """An uploaded file, checked: Gradio's copy inside this app's folder, within the size limit."""
        if not path:
            raise CommandError(f"upload {what} first")
        file = Path(path).resolve()
        if not file.is_relative_to(self.root) or not file.is_file():
            raise CommandError(f"{what} is not an upload of this page; upload it again")
        job.names[str(file)] = file.name
        size = file.stat().st_size
        if size > self.max_upload:
            raise CommandError(f"{file.name} is {size / 2**20:.1f} MiB; this app takes uploads up to "
                               f"{self.max_upload_mb:g} MiB (vsrife app --max-upload-mb)")  # fmt: skip
        return file

    def _engine_argv(self, model: str, scale: str, precision: str, tta: bool) -> list[str]:
        argv = [f"--model={model}", f"--scale={scale}", "-q"]
        if precision in ("fp16", "fp32"):
            argv.append(f"--{precision}")
        if tta:
            argv.append("--tta")
        if self.device:
            argv.append(f"--device={self.device}")
        return argv

    def video_args(self, source: Path, output: Path, *, model: str, rate: str, multi: str, fps: str, scale: str,
                   precision: str, tta: bool, scenes: bool, scene_threshold: float, dedup: bool,
                   dedup_threshold: float) -> argparse.Namespace:  # fmt: skip
        """The page's choices as `vsrife video`'s arguments, parsed by its own parser."""
        argv = ["video", str(source), "-o", str(output), *self._engine_argv(model, scale, precision, tta)]
        argv.append(f"--fps={fps.strip()}" if rate == "target fps" else f"--multi={multi.strip()}")
        argv.append(f"--sc-threshold={scene_threshold}")
        if not scenes:
            argv.append("--no-sc")
        if dedup:
            argv += ["--dedup", f"--dedup-threshold={dedup_threshold}"]
        return _parse(argv)

    def run_video(self, session: str, upload: str | None, options: dict, report: Callable) -> dict:
        """Interpolate an uploaded video as `vsrife video` does; the result's path, frames, rate and
        duration. CommandError, JobCancelled or any failure of the job, with its folder removed."""
        from .video import VideoError, interpolate_video, probe

        job = self._job(session)
        try:
            source = self.upload(job, upload, "a video")
            label = f"{options['multi'].strip()}x" if options["rate"] != "target fps" else f"{options['fps'].strip()}fps"
            output = job.folder / f"{safe_name(source.name, 'video')}_{safe_name(label, 'rife')}.mp4"
            args = self.video_args(source, output, **options)
            report(None, desc="checking the video")
            job_settings, total = prepare_video(args, source, output)  # opens it as media: before any work
            with self.device_lock:
                job.check()
                report(None, desc="loading the model")
                it = load_interpolator(args)
                job.check()
                try:
                    interpolate_video(source, output, it, job_settings,
                                      on_frame=_FrameProgress(total, report, job.cancelled))  # fmt: skip
                except VideoError as e:
                    raise CommandError(str(e)) from e
            info = probe(output)
            job.keep = True
            return {"path": output, "frames": info["frames"], "fps": info["fps"], "duration": info["duration"]}
        except Exception as e:
            e.page_message = job.message(e)  # type: ignore[attr-defined]
            raise
        finally:
            self._finish(job)

    def compare(self, session: str, upload: str | None, frame: int, options: dict) -> dict:
        """Frames ``frame`` and ``frame + 2`` of an uploaded video, and the picture `vsrife demo` draws of
        the frame between them: 50/50 blend | RIFE | the real frame, with their PSNR."""
        from .demo import comparison_image
        from .video import frames_of, probe

        job = self._job(session)
        try:
            source = self.upload(job, upload, "a video on the Video tab")
            args = self.video_args(source, job.folder / "unused.mp4", **options)
            try:
                info = probe(source, count=False)
            except Exception as e:  # noqa: BLE001 - any decoder failure means the same to the user
                raise CommandError(f"cannot read {source}: {e}") from e
            if not info["width"]:
                raise CommandError(f"{source} has no video stream")
            frame = max(0, int(frame))
            frames = frames_of(source, 3, start=frame)
            if len(frames) < 3:
                raise CommandError(f"{source.name} has no frames {frame} to {frame + 2}; pick an earlier frame")
            with self.device_lock:
                job.check()
                it = load_interpolator(args)
                rife = it.interpolate(frames[0], frames[2], 0.5)
            picture = job.folder / f"{safe_name(source.name, 'video')}_compare_{frame}.png"
            scores = comparison_image(frames[0], frames[1], frames[2], rife, f"RIFE {it.release.name}", picture)
            job.keep = True
            return {"pair": (_picture(frames[0]), _picture(frames[2])), "comparison": picture, **scores}
        except Exception as e:
            e.page_message = job.message(e)  # type: ignore[attr-defined]
            raise
        finally:
            self._finish(job)

    def run_images(self, session: str, first: str | None, second: str | None, mode: str, amount: int,
                   model: str, scale: str, precision: str, tta: bool) -> dict:  # fmt: skip
        """The frames between two uploaded images as `vsrife images` writes them, an animated preview of
        them and a zip of them."""
        from PIL import Image

        job = self._job(session)
        try:
            a = self.upload(job, first, "the first image")
            b = self.upload(job, second, "the second image")
            frames = job.folder / "frames"
            steps = f"--multi={int(amount)}" if mode == "count" else f"--exp={int(amount)}"
            argv = ["images", str(a), str(b), "-o", str(frames), steps, *self._engine_argv(model, scale, precision, tta)]
            args = _parse(argv)
            with self.device_lock:
                job.check()
                args.run(args)
            pngs = sorted(frames.glob("*.png"))
            stem = f"{safe_name(a.name, 'a')}_{safe_name(b.name, 'b')}"
            preview = job.folder / f"{stem}.gif"
            pictures = [Image.open(p).convert("RGB") for p in pngs]
            loop = pictures + pictures[-2:0:-1]  # there and back
            loop[0].save(preview, save_all=True, append_images=loop[1:], duration=max(40, 800 // len(pngs)), loop=0)
            archive = job.folder / f"{stem}_frames.zip"
            with zipfile.ZipFile(archive, "w") as z:
                for p in pngs:
                    z.write(p, p.name)
            job.keep = True
            return {"frames": pngs, "preview": preview, "zip": archive}
        except Exception as e:
            e.page_message = job.message(e)  # type: ignore[attr-defined]
            raise
        finally:
            self._finish(job)

    # -- the page -----------------------------------------------------------------------------------------

    def model_choices(self) -> list[tuple[str, str]]:
        return [(f"{name} (cached)" if cached_weights(name) else f"{name} (downloads on first use)", name)
                for name in release_names()]  # fmt: skip

    def default_model(self) -> str:
        if cached_weights(DEFAULT_MODEL):
            return DEFAULT_MODEL
        return next((name for name in release_names() if cached_weights(name)), DEFAULT_MODEL)

    def page(self):
        """The Gradio page (Blocks) over this app."""
        return _build_page(self, _gradio())


def _parse(argv: list[str]) -> argparse.Namespace:
    try:
        return build_parser().parse_args(argv)
    except SystemExit as e:  # the parser printed why to the terminal
        raise CommandError(f"these settings are not valid ({' '.join(argv[3:])})") from e


def _picture(frame):
    return frame[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().numpy()


def _describe(result: dict) -> str:
    fps = result["fps"]
    rate = f"{float(fps):.3f}".rstrip("0").rstrip(".") if fps else "?"
    exact = f" ({fps.numerator}/{fps.denominator})" if fps and fps.denominator != 1 else ""
    duration = f"{result['duration']:.2f} s" if result["duration"] else "unknown duration"
    return f"**{Path(result['path']).name}**: {result['frames']} frames at {rate} fps{exact}, {duration}"


def _build_page(app: App, gr):
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(1800, 6 * 3600)) as page:
        gr.Markdown(f"# {TITLE}\nRIFE frame interpolation: the engine of `vsrife video` and `vsrife images`, "
                    "on this machine. Jobs run one at a time.")  # fmt: skip
        with gr.Accordion("Model", open=True):
            with gr.Row():
                model = gr.Dropdown(app.model_choices(), value=app.default_model(), label="Model", elem_id="model")
                scale = gr.Dropdown(list(SCALES), value="1", label="Scale (0.5 for 4K)", elem_id="scale")
                precision = gr.Radio(list(PRECISIONS), value="auto", label="Precision", elem_id="precision")
                tta = gr.Checkbox(False, label="TTA (slower, steadier)", elem_id="tta")
        engine = [model, scale, precision, tta]

        with gr.Tab("Video", elem_id="video-tab"):
            with gr.Row():
                with gr.Column():
                    video_in = gr.File(label="Video", file_types=["video"], file_count="single", elem_id="video-in")
                    with gr.Row():
                        rate = gr.Radio(["multiply", "target fps"], value="multiply", label="Rate", elem_id="rate")
                        multi = gr.Textbox("2", label="Multiplier (2, 5/2, ...)", elem_id="multi")
                        fps = gr.Textbox("60", label="Target fps (60, 60000/1001, ...)", elem_id="fps")
                    with gr.Row():
                        scenes = gr.Checkbox(True, label="Keep scene cuts sharp", elem_id="scenes")
                        scene_threshold = gr.Slider(0, 1, SCENE_THRESHOLD, step=0.01, label="Scene-cut threshold")
                    with gr.Row():
                        dedup = gr.Checkbox(False, label="Dedup: animation drawn on twos or threes", elem_id="dedup")
                        dedup_threshold = gr.Slider(0, 0.05, HOLD_THRESHOLD, step=0.001, label="Held-frame threshold")
                    with gr.Row():
                        run = gr.Button("Interpolate", variant="primary", elem_id="run-video")
                        stop = gr.Button("Cancel", variant="stop", elem_id="cancel-video")
                with gr.Column():
                    video_status = gr.Markdown("", elem_id="video-status")
                    video_out = gr.Video(label="Result", interactive=False, elem_id="video-out")
                    video_file = gr.File(label="Download", interactive=False, elem_id="video-download")
        video_options = [rate, multi, fps, scenes, scene_threshold, dedup, dedup_threshold]

        with gr.Tab("Compare", elem_id="compare-tab"):
            gr.Markdown("The video and the settings of the Video tab: two source frames, and the frame between "
                        "them as a 50/50 blend, as RIFE makes it, and as it really is.")  # fmt: skip
            with gr.Row():
                frame = gr.Number(0, label="First frame of the pair (from 0)", precision=0, minimum=0, elem_id="frame")
                compare = gr.Button("Compare", variant="primary", elem_id="run-compare")
            compare_status = gr.Markdown("", elem_id="compare-status")
            with gr.Row():
                pair_a = gr.Image(label="Frame n", interactive=False)
                pair_b = gr.Image(label="Frame n + 2", interactive=False)
            comparison = gr.Image(label="Frame n + 1: blend | RIFE | real", interactive=False, elem_id="comparison")

        with gr.Tab("Images", elem_id="images-tab"):
            with gr.Row():
                with gr.Column():
                    with gr.Row():
                        image_a = gr.File(label="First image", file_types=["image"], elem_id="image-a")
                        image_b = gr.File(label="Second image", file_types=["image"], elem_id="image-b")
                    with gr.Row():
                        mode = gr.Radio(["exponent", "count"], value="exponent", label="Steps",
                                        info="exponent e: 2^e intervals; count n: n intervals")  # fmt: skip
                        amount = gr.Number(1, label="e or n", precision=0, minimum=1, elem_id="amount")
                    images_run = gr.Button("Interpolate", variant="primary", elem_id="run-images")
                with gr.Column():
                    images_status = gr.Markdown("", elem_id="images-status")
                    gallery = gr.Gallery(label="Frames", columns=4, elem_id="gallery")
                    preview = gr.Image(label="Animated preview", interactive=False, elem_id="preview")
                    archive = gr.File(label="All frames (zip)", interactive=False, elem_id="images-zip")

        def options_of(m, s, p, t, r, mu, f, sc, sct, d, dt) -> dict:
            return {"model": m, "scale": s, "precision": p, "tta": t, "rate": r, "multi": mu, "fps": f,
                    "scenes": sc, "scene_threshold": sct, "dedup": d, "dedup_threshold": dt}  # fmt: skip

        def arm(request: gr.Request):
            app.arm(request.session_hash)

        def cancel(request: gr.Request):
            app.cancel(request.session_hash)
            return "Cancelling ..."

        # Gradio hands the request and the progress tracker to parameters so annotated, so each job names
        # its inputs one by one.
        def video_job(upload, m, s, p, t, r, mu, f, sc, sct, d, dt, request: gr.Request, progress=gr.Progress()):
            try:
                result = app.run_video(request.session_hash, upload, options_of(m, s, p, t, r, mu, f, sc, sct, d, dt),
                                       progress)  # fmt: skip
            except JobCancelled:
                return "Cancelled: the job stopped and left no files behind.", None, None, gr.update()
            except Exception as e:  # noqa: BLE001 - the page shows one line, the terminal the details
                return _failed(e), None, None, gr.update()
            return (_describe(result), str(result["path"]), str(result["path"]),
                    gr.update(choices=app.model_choices()))  # fmt: skip

        def compare_job(upload, index, m, s, p, t, r, mu, f, sc, sct, d, dt, request: gr.Request):
            try:
                result = app.compare(request.session_hash, upload, index, options_of(m, s, p, t, r, mu, f, sc, sct, d, dt))
            except JobCancelled:
                return "Cancelled.", None, None, None
            except Exception as e:  # noqa: BLE001
                return _failed(e), None, None, None
            text = f"PSNR against the real frame: RIFE {result['rife']:.2f} dB, 50/50 blend {result['blend']:.2f} dB"
            return text, result["pair"][0], result["pair"][1], str(result["comparison"])

        def images_job(a, b, how, n, m, s, p, t, request: gr.Request):
            try:
                result = app.run_images(request.session_hash, a, b, how, n, m, s, p, t)
            except JobCancelled:
                return "Cancelled.", None, None, None
            except Exception as e:  # noqa: BLE001
                return _failed(e), None, None, None
            frames = [str(path) for path in result["frames"]]
            return f"{len(frames)} frames", frames, str(result["preview"]), str(result["zip"])

        on_device = {"concurrency_limit": 1, "concurrency_id": "device"}  # one queue for every job on the device
        run.click(arm, None, None, queue=False).then(
            video_job, [video_in, *engine, *video_options], [video_status, video_out, video_file, model],
            show_progress_on=[video_out], **on_device)  # fmt: skip
        stop.click(cancel, None, video_status, queue=False)
        compare.click(arm, None, None, queue=False).then(
            compare_job, [video_in, frame, *engine, *video_options], [compare_status, pair_a, pair_b, comparison],
            **on_device)  # fmt: skip
        images_run.click(arm, None, None, queue=False).then(
            images_job, [image_a, image_b, mode, amount, *engine], [images_status, gallery, preview, archive],
            **on_device)  # fmt: skip
        page.load(lambda: gr.update(choices=app.model_choices()), None, model, queue=False)
    return page


def _failed(e: BaseException) -> str:
    if not isinstance(e, CommandError):
        log.error("a job failed", exc_info=e)  # the details, for the terminal only
    return getattr(e, "page_message", None) or error_line(e, _WHERE)


def serve(host: str = "127.0.0.1", port: int = 7860, *, max_upload_mb: float = 500, device: str | None = None,
          ready: Callable[[str], None] | None = None) -> int:  # fmt: skip
    """Serve the page on ``host``:``port`` until Ctrl-C (or SIGTERM); then stop the running job and remove
    every file the app wrote. ``ready(url)`` is called once the page is served (default: print it)."""
    if host not in LOCAL_HOSTS:
        log.warning("serving on %s: anyone who can reach this address can upload files and run jobs on this "
                    "machine", host)  # fmt: skip
    if importlib.util.find_spec("gradio") is None:
        _gradio()  # says which extra to install
    root = Path(tempfile.mkdtemp(prefix="vsrife-app-"))
    # Gradio keeps its uploads and the files it serves in GRADIO_TEMP_DIR, read when it is imported.
    os.environ["GRADIO_TEMP_DIR"] = str(root)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    page = None
    app = App(root, max_upload_mb=max_upload_mb, device=device)
    try:
        gr = _gradio()
        page = app.page()
        page.queue(default_concurrency_limit=1)
        try:
            page.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, show_error=False,
                        max_file_size=app.max_upload)  # fmt: skip
        except OSError as e:
            log.debug("launch: %s", e)
            raise CommandError(f"cannot serve on {host}:{port}: the port is taken or the address is not this "
                               "machine's; pick another with --port or --host") from e  # fmt: skip
        url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
        (ready or (lambda u: print(f"vsrife app: {u} (Ctrl-C stops it)", flush=True)))(url)
        while True:  # until Ctrl-C
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        app.cancel_all()
        if app.device_lock.acquire(timeout=60):  # the running job has stopped and removed its files
            app.device_lock.release()
        if page is not None:
            page.close()
        shutil.rmtree(root, ignore_errors=True)
        print("vsrife app: stopped; its temporary files are removed", flush=True)
    return 0
