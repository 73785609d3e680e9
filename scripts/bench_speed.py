"""Speed benchmark: frames per second and peak memory per model x resolution x device x precision x scale.

Run from the repository root::

    python scripts/bench_speed.py                       # every available model, 540p and 720p, all devices
    python scripts/bench_speed.py --quick               # the smallest useful run (checks the script)
    python scripts/bench_speed.py --models 4.0 --resolutions 720p,1080p,2160p --scales 0.5,1 \\
        --devices cuda --precisions fp16 --markdown bench-results/speed.md

Input: real footage, the first frames of the ``bigbuckbunny`` sample (1280x720), resized with bilinear
interpolation (antialiased when shrinking) to 540p (960x540), 720p, 1080p (1920x1080) or 2160p (3840x2160).

For every (model, resolution, device, scale) one group of paths runs interleaved call by call (A B C A B
C ...), so drift in the machine's speed hits them alike; the first ``--warmup`` calls of each are dropped
and the next ``--repeats`` give the median and interquartile range of seconds per interpolated frame:

* ``baseline``: the plain upstream path: the upstream inference code's order of operations in fp32, NCHW
  (``scripts/upstream_path.py``; vsrife's own network in fp32, NCHW for IFNet_m and IFRNet), given raw
  host tensors on every call (a fresh pad per call, to upstream's multiple of 128), in a process of its
  own with the system's allocator as upstream's script runs (its child times each call; the frames' trip
  through the pipe is not timed, and its RSS is the child's). Every figure is also
  reported as its speed relative to this one (baseline s/frame / this s/frame; above 1 is faster).
* ``stream``: ``Interpolator(model, dtype=<precision>)`` with channels-last convolutions, run as a stream:
  each source frame is prepared once, so one call is "prepare the next frame, interpolate the pair". A
  named dtype keeps float blocks; where the engine's own choice differs (on the CPU, the 8-bit blocks of
  ``vsrife.int8`` for weights with measured ranges), ``Interpolator(model)`` is a row of its own, its
  precision written ``<dtype>+int8``.
* ``stream`` compiled: the same with the network wrapped in ``torch.compile`` (``--compile-mode``), on GPUs
  by default and on the CPU only with ``--compile on``. Its first warm-up call includes the compilation,
  reported as ``compile_s``; whether compiling pays off is stated against the uncompiled row.

Engine outputs stay on the device (nothing is copied back). Then, at 720p (or the smallest requested
resolution), the first scale and each device's default precision, the three ways of running the package
on the same short clip (``--clip-frames`` frames, written once as H.264 with PyAV and decoded back, 2x):

* ``engine``: the clip's frames and pairs submitted to the device's ``Batcher`` without waiting, as
  ``vsrife video`` does (a bounded number in flight), every middle frame copied back to the host, with
  the engine's own choice of precision (``Interpolator(model)``, as ``vsrife video`` makes it);
* ``filter``: ``vsrife.RIFE`` on an RGBS clip of those frames (RGBH in and out with fp16), every output
  frame requested through ``clip.frames()``, concurrently and in order as ``vspipe`` does (only where
  ``import vapoursynth`` works);
* ``cli``: ``python -m vsrife video CLIP -o OUT --model M -q --overwrite`` as a subprocess, timed end to end:
  interpreter start-up, model load, decode, inference and encode.

Their s/frame is wall time per interpolated output frame (median over ``--repeats`` rounds after one
warm-up round).

Memory: peak host RSS during each call (the kernel's high-water mark, reset before the call through
``/proc/self/clear_refs`` and read with ``resource.getrusage``; where the reset is not possible it is the
process's peak so far, as the JSON says); in-process rows therefore include all this process holds (every
loaded network, the frames at hand, memory the allocator kept). For the CLI, the child's own peak (VmHWM
polled from /proc every 20 ms; its rusage would include this process's RSS at fork). On CUDA, peak
``torch.cuda.max_memory_allocated`` during the call, which includes every loaded network's weights.

CPU use: process CPU time over wall time x torch threads, and the cores kept busy by other processes
(from /proc/stat) during each group. On the CPU a group where those take half a core or more, or where
this process got under 75% of its threads' time, is flagged as contended. Nothing is asserted.
FLOPs: every run also counts the floating-point operations of one interpolated 1280x720 frame (padded as
the engine pads it) of each benchmarked model and of one release per architecture family, every IFRNet size
included (``FLOPS_MODELS``), with ``torch.utils.flop_counter`` on random weights (``benchlib.flops_per_frame``
says what is counted); ``--flops-only`` does only that, for ``--models`` or those releases, no weights needed.
IFRNet releases are timed like the RIFE ones where their weights are present (imported), at scale 1 only.

Results: ``--json`` (machine description and one record per measurement); a Markdown table to stdout (or
``--markdown``); progress to stderr.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

import vsrife
from vsrife.engine import Batcher, Frame, Interpolator, default_dtype, parse_device
from vsrife.video import IN_FLIGHT, frames_of
from vsrife.weights import fetch_sample

from benchlib import flops_per_frame, machine_info, write_results
from upstream_path import PlainProcess

REPO = Path(__file__).resolve().parents[1]
RESOLUTIONS = {"540p": (960, 540), "720p": (1280, 720), "1080p": (1920, 1080), "2160p": (3840, 2160)}
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
NAMES = {v: k for k, v in PRECISIONS.items()}
SAMPLE = "bigbuckbunny"
TIMESTEP = 0.5
CONTENDED_USE, CONTENDED_OTHERS = 0.75, 0.5
PAYS_OFF = 1.05  # compiled / eager speed above which compiling is said to pay off
# one release of each architecture family (every IFRNet size), whose FLOPs per 720p frame every run states
FLOPS_MODELS = ("4.0", "4.4", "4.6", "4.17", "4.25", "ifnet_m", "ifrnet_s", "ifrnet", "ifrnet_l")


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- measuring ----------------------------------------------------------------------------------------


def _can_reset_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


RSS_RESETTABLE = _can_reset_rss()


class Meter:
    """Wall time, CPU time, peak RSS and peak device memory of one measured stretch of work."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.sync = getattr(getattr(torch, device.type, None), "synchronize", None) if device.type != "cpu" else None

    def __enter__(self) -> "Meter":
        if RSS_RESETTABLE:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.dev_start = torch.cuda.memory_allocated(self.device)
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        if self.sync is not None:
            self.sync()
        self.wall, self.cpu = time.perf_counter() - self.t0, time.process_time() - self.c0
        self.rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        self.dev_mib = self.dev_call_mib = None
        if self.cuda:
            peak = torch.cuda.max_memory_allocated(self.device)
            self.dev_mib, self.dev_call_mib = peak / 2**20, (peak - self.dev_start) / 2**20


class Load:
    """Cores kept busy by other processes between start() and stop(), from /proc/stat and our own CPU time
    (this process's, its finished children's and that of ``helpers``, live processes working for it, such
    as the baseline's)."""

    def __init__(self, helpers: list[int] | None = None) -> None:
        self.helpers = helpers or []

    def _sample(self) -> tuple[float, float, float] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            helpers = 0
            for pid in self.helpers:  # utime and stime, fields 14 and 15, after the parenthesised name
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                helpers += int(stat[11]) + int(stat[12])
        except (OSError, ValueError, IndexError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / tick  # minus idle, iowait
        t = os.times()
        return busy, t.user + t.system + t.children_user + t.children_system + helpers / tick, time.perf_counter()

    def __enter__(self) -> "Load":
        self.start, self.others = self._sample(), None
        return self

    def __exit__(self, *exc) -> None:
        end = self._sample()
        if self.start and end and end[2] > self.start[2]:
            self.others = max(0.0, ((end[0] - self.start[0]) - (end[1] - self.start[1])) / (end[2] - self.start[2]))


def summary(times: list[float]) -> dict:
    q25, med, q75 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    return {"median_s": med, "q25_s": q25, "q75_s": q75, "iqr_s": q75 - q25, "fps": 1 / med, "n": len(times)}


# --- inputs -------------------------------------------------------------------------------------------


def decode_sample(count: int) -> list[Tensor]:
    frames = frames_of(fetch_sample(SAMPLE), count)
    if len(frames) == count:
        return frames
    raise SystemExit(f"{SAMPLE} has only {len(frames)} frames; lower --warmup/--repeats")


def resize(frame: Tensor, width: int, height: int) -> Tensor:
    h, w = frame.shape[-2:]
    if (h, w) == (height, width):
        return frame
    shrink = height < h or width < w
    out = F.interpolate(frame, size=(height, width), mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp_(0, 1).contiguous()


def write_clip(frames: list[Tensor], path: Path) -> None:
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = frames[0].shape[-1], frames[0].shape[-2], "yuv420p"
        s.options = {"crf": "16", "preset": "fast"}
        for f in frames:
            rgb = f[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
            for packet in s.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in s.encode(None):
            out.mux(packet)


# --- engine groups ------------------------------------------------------------------------------------


@dataclass
class Runner:
    path: str  # "baseline" or "stream"
    precision: str
    compiled: bool
    it: Interpolator
    calls: list[dict] = field(default_factory=list)
    error: str | None = None
    previous: Frame | None = None

    def start(self, first: Tensor) -> None:
        self.previous = self.it.prepare(first) if self.path == "stream" else None

    def step(self, a: Tensor, b: Tensor) -> dict | None:
        """One call; the baseline's child returns what it measured (wall, cpu, peak_rss_mib)."""
        if self.path == "baseline":
            self.it.interpolate(a, b, TIMESTEP)
            return self.it.last
        nxt = self.it.prepare(b)
        self.it.interpolate(self.previous, nxt, TIMESTEP)
        self.previous = nxt


def build_runners(model: str, dev: torch.device, scale: float, precisions: list[str], compile_: bool,
                  mode: str) -> list[Runner]:  # fmt: skip
    runners = [Runner("stream", p, False, Interpolator(model, device=dev, dtype=PRECISIONS[p], scale=scale))
               for p in precisions]  # fmt: skip
    default = Interpolator(model, device=dev, scale=scale)  # the engine's own choice, as vsrife video makes it
    if default.int8:
        runners.append(Runner("stream", f"{NAMES[default.dtype]}+int8", False, default))
    if compile_:
        torch._dynamo.reset()
        for p in precisions:
            it = copy.copy(Interpolator(model, device=dev, dtype=PRECISIONS[p], scale=scale))
            it.network = torch.compile(it.network, mode=None if mode == "default" else mode, dynamic=False)
            runners.append(Runner("stream", p, True, it))
    # last, so that nothing above can fail and leave its process running
    runners.insert(0, Runner("baseline", "fp32", False, PlainProcess(model, dev, scale)))
    return runners


def run_group(runners: list[Runner], frames: list[Tensor], warmup: int, repeats: int,
              dev: torch.device) -> float | None:  # fmt: skip
    for r in runners:
        r.start(frames[0])
    with Load([r.it.pid for r in runners if isinstance(r.it, PlainProcess)]) as load:
        for j in range(warmup + repeats):
            for r in runners:
                if r.error:
                    continue
                try:
                    with Meter(dev) as m:
                        child = r.step(frames[j], frames[j + 1])
                    if child is not None:  # measured in its own process
                        m.wall, m.cpu, m.rss_mib = child["wall"], child["cpu"], child["peak_rss_mib"]
                except Exception as e:  # noqa: BLE001 - a failing configuration is reported, not fatal
                    r.error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                    log(f"  {r.precision} {r.path}{' compiled' if r.compiled else ''} failed: {r.error}")
                    continue
                r.calls.append({"wall": m.wall, "cpu": m.cpu, "rss": m.rss_mib, "dev": m.dev_mib,
                                "dev_call": m.dev_call_mib})  # fmt: skip
            state = "warm-up" if j < warmup else "timed"
            log(f"  call {j + 1}/{warmup + repeats} ({state}): " + "  ".join(
                f"{r.precision}{'-c' if r.compiled else ''}{'' if r.path == 'stream' else '-base'} "
                f"{r.calls[-1]['wall']:.3f}s" for r in runners if r.calls and not r.error))  # fmt: skip
    return load.others


def runner_record(r: Runner, common: dict, warmup: int, threads: int) -> dict:
    fmt = getattr(r.it, "network", r.it).memory_format
    layout = "channels_last" if fmt == torch.channels_last else "contiguous"
    rec = {**common, "path": r.path, "precision": r.precision, "compiled": r.compiled, "layout": layout}
    if r.error:
        return {**rec, "error": r.error}
    timed = r.calls[warmup:]
    walls = [c["wall"] for c in timed]
    rec.update(summary(walls))
    rec.update({
        "peak_rss_mib": max(c["rss"] for c in timed),
        "peak_device_mib": max(c["dev"] for c in timed) if timed[0]["dev"] is not None else None,
        "device_call_mib": max(c["dev_call"] for c in timed) if timed[0]["dev_call"] is not None else None,
        "cpu_use": statistics.median(c["cpu"] / (c["wall"] * threads) for c in timed),
        "times_s": [c["wall"] for c in r.calls], "timed_from": warmup,
    })  # fmt: skip
    if r.compiled:
        rec["compile_s"] = r.calls[0]["wall"]  # the first call compiles
    return rec


# --- the three ways: engine loop, VapourSynth filter, command line ------------------------------------


def engine_pass(it: Interpolator, frames: list[Tensor]) -> int:
    """The clip through the device's Batcher as ``vsrife video`` drives it: every frame and pair submitted
    without waiting, a bounded number in flight, each middle frame back on the host."""
    batcher = Batcher.for_device(it.device)
    window = IN_FLIGHT
    prepared = [batcher.prepare(it, frames[0])]
    in_flight = []
    for f in frames[1:]:
        prepared.append(batcher.prepare(it, f))
        in_flight.append(batcher.interpolate(it, prepared[-2], prepared[-1], TIMESTEP))
        if len(in_flight) > window:
            in_flight.pop(0).result()
        prepared = prepared[-1:]
    for future in in_flight:
        future.result()
    return len(frames) - 1


def filter_pass(frames: list[Tensor], model: str, dev: torch.device, scale: float, fp16: bool) -> int:
    import vapoursynth as vs

    h, w = frames[0].shape[-2:]
    blank = vs.core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=len(frames), fpsnum=25, fpsden=1)

    def fill(n: int, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n][0, p].numpy())
        return out

    src = vs.core.std.ModifyFrame(blank, blank, fill)
    if fp16:  # half-float planes in and out, as GPU users feed it
        src = vs.core.resize.Point(src, format=vs.RGBH)
    clip = vsrife.RIFE(src, model=model, scale=scale, fp16=fp16, device=str(dev))
    # Concurrent requests in order, as `vspipe -p .` makes them (one per core thread)
    return sum("RIFE_Timestep" in f.props for f in clip.frames())


def cli_pass(clip: Path, out: Path, model: str, dev: torch.device, scale: float, threads: int | None) -> dict:
    cmd = [sys.executable, "-m", "vsrife", "video", str(clip), "-o", str(out), "--model", model, "-q",
           "--overwrite", "--device", str(dev), "--scale", str(scale)]  # fmt: skip
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    peak_kib = 0
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
        status_file = Path(f"/proc/{proc.pid}/status")
        while True:
            # The child's rusage ru_maxrss would count this process's RSS at the fork/exec too, so its own
            # high-water mark is polled instead (monotonic; the last read is a few ms before the exit).
            try:
                hwm = re.search(r"^VmHWM:\s+(\d+)", status_file.read_text(), re.M)
                peak_kib = max(peak_kib, int(hwm.group(1))) if hwm else peak_kib
            except OSError:
                pass
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # reaped here: CPU time is the child's own
            if pid:
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode:
        raise RuntimeError(f"{shlex.join(cmd)} exited with {proc.returncode}: {text.strip()[-500:]}")
    found = re.search(r"\((\d+) interpolated", text)
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": peak_kib / 1024 or None,
            "interpolated": int(found.group(1)) if found else None, "command": shlex.join(cmd)}  # fmt: skip


def three_ways(model: str, dev: torch.device, scale: float, res: str, args: argparse.Namespace,
               threads: int, workdir: Path) -> list[dict]:  # fmt: skip
    width, height = RESOLUTIONS[res]
    dtype = default_dtype(dev)
    clip, out = workdir / f"clip-{res}.mp4", workdir / "out.mp4"
    if not clip.exists():
        write_clip([resize(f, width, height) for f in decode_sample(args.clip_frames)], clip)
    frames = [f.contiguous() for f in frames_of(clip)]
    try:
        import vapoursynth  # noqa: F401

        has_vs = True
    except ImportError as e:
        has_vs = False
        log(f"  no VapourSynth ({e}): the filter path is skipped")
    it = Interpolator(model, device=dev, scale=scale)  # the engine's own choice (dtype, 8-bit blocks)
    fp16 = dtype != torch.float32
    results: dict[str, list[dict]] = {"engine": [], "filter": [], "cli": []}
    errors: dict[str, str] = {}

    def once(path: str) -> dict:
        if path == "cli":
            return cli_pass(clip, out, model, dev, scale, args.threads)
        with Meter(dev) as m:
            n = engine_pass(it, frames) if path == "engine" else filter_pass(frames, model, dev, scale, fp16)
        return {"wall": m.wall, "cpu": m.cpu, "rss": m.rss_mib, "dev": m.dev_mib, "interpolated": n}

    paths = ["engine"] + (["filter"] if has_vs else []) + ["cli"]
    with Load() as load:
        for rnd in range(-1 if args.warmup else 0, args.repeats):
            for path in paths:
                if path in errors:
                    continue
                try:
                    r = once(path)
                except Exception as e:  # noqa: BLE001
                    errors[path] = f"{type(e).__name__}: {e}"
                    log(f"  {path} failed: {errors[path]}")
                    continue
                if rnd >= 0:
                    results[path].append(r)
                log(f"  {'warm-up' if rnd < 0 else f'round {rnd + 1}/{args.repeats}'} {path}: {r['wall']:.2f} s, "
                    f"{r['interpolated']} interpolated")  # fmt: skip
    records = []
    common = {"model": model, "resolution": res, "width": width, "height": height, "device": str(dev),
              "precision": NAMES[dtype], "scale": scale, "compiled": False, "clip_frames": len(frames),
              "others_cores": load.others}  # fmt: skip
    for path in paths:
        rec = {**common, "path": path}
        if it.int8 and path != "filter":  # the filter names its precision, so its blocks stay float
            rec["precision"] += "+int8"
        if path in errors:
            records.append({**rec, "error": errors[path]})
            continue
        rows = results[path]
        per_frame = [r["wall"] / max(1, r["interpolated"] or 0) for r in rows]
        rec.update(summary(per_frame))
        outputs = 2 * (len(frames) - 1) + 1  # a 2x clip: every source frame, and one between each pair
        rec.update({
            "interpolated": rows[0]["interpolated"], "wall_s": [r["wall"] for r in rows],
            "output_fps": statistics.median(outputs / r["wall"] for r in rows),
            "interpolations_per_s": statistics.median((r["interpolated"] or 0) / r["wall"] for r in rows),
            "peak_rss_mib": max((r["rss"] for r in rows if r["rss"] is not None), default=None),
            "peak_device_mib": max(r["dev"] for r in rows) if rows[0].get("dev") is not None else None,
            "cpu_use": statistics.median(r["cpu"] / (r["wall"] * threads) for r in rows),
        })  # fmt: skip
        if path == "cli":
            rec["command"] = rows[0]["command"]
        records.append(rec)
    return records


# --- report -------------------------------------------------------------------------------------------


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def flops_table(rows: list[dict]) -> list[str]:
    """The FLOPs records as a Markdown table."""
    out = ["| model | family | GFLOPs per 720p frame | parameters (M) | padded to |", "|---|---|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['model']} | {r['family']} | {r['gflops']:.1f} | {r['params_m']:.2f} | "
                   f"{r['padded'][0]}x{r['padded'][1]} |")  # fmt: skip
    return out


def count_flops(models: list[str]) -> list[dict]:
    rows = []
    for model in models:
        log(f"{model}: counting FLOPs of one 720p frame")
        rows.append(flops_per_frame(model))
    return rows


def markdown(result: dict) -> str:
    m, cfg = result["machine"], result["config"]
    lines = [
        f"### vsrife speed: {m['cpu']} ({m['cores_available']} cores, {m['ram_gib']} GiB)"
        + (f", {', '.join(m['gpus'])}" if m["gpus"] else "") + f", torch {m['torch']} ({m['torch_threads']} threads)",
        "",
        f"{m['date']}; {SAMPLE} frames; medians of {cfg['repeats']} after {cfg['warmup']} warm-up; engine rows "
        f"interleaved per group; `x base` = baseline s/frame / this s/frame.",
        "",
        "| model | res | device | precision | scale | path | compiled | s/frame | IQR s | fps | x base "
        "| peak RSS MiB | peak dev MiB | CPU use | others (cores) |",
        "|---|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in result["records"]:
        head = (f"| {r['model']} | {r['resolution']} | {r['device']} | {r['precision']} | {r['scale']:g} | "
                f"{r['path']} | {'yes' if r['compiled'] else 'no'} |")  # fmt: skip
        if "error" in r:
            lines.append(head + f" failed: {r['error'][:80]} |" + " |" * 7)
            continue
        lines.append(head + f" {r['median_s']:.3f} | {r['iqr_s']:.3f} | {r['fps']:.2f} | "
                     f"{_f(r.get('ratio_to_baseline'), '.2f')} | {_f(r['peak_rss_mib'], '.0f')} | "
                     f"{_f(r['peak_device_mib'], '.0f')} | {r['cpu_use']:.0%} | "
                     f"{_f(r['others_cores'], '.2f')} |")  # fmt: skip
    notes = list(result["notes"])
    for c in result["compile"]:
        notes.append(f"torch.compile ({cfg['compile_mode']}), {c['model']} {c['resolution']} {c['device']} "
                     f"{c['precision']} scale {c['scale']:g}: {c['speedup']:.2f}x the eager stream, first call "
                     f"{c['compile_s']:.1f} s: {'pays off' if c['pays_off'] else 'does not pay off'}.")  # fmt: skip
    notes.append("engine/filter/cli rows: s/frame = wall time per interpolated frame of a "
                 f"{cfg['clip_frames']}-frame clip at 2x; cli includes interpreter start-up, model load, "
                 "decode and encode.")  # fmt: skip
    for r in result["records"]:
        if r.get("output_fps") is not None:
            notes.append(f"{r['model']} {r['resolution']} {r['device']} {r['precision']} {r['path']}: "
                         f"{r['output_fps']:.1f} output frames/s of the 2x clip (source frames included, as "
                         f"published figures count them), {r['interpolations_per_s']:.1f} interpolations/s.")  # fmt: skip
    if result.get("flops"):
        lines += ["", *flops_table(result["flops"])]
    if result["contended"]:
        notes.append("**Other processes competed for the CPU in at least one group (see CPU use / others): "
                     "those timings are not representative.**")  # fmt: skip
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--models", help="comma-separated releases (default: every one whose weights are cached or "
                   "fetchable here)")  # fmt: skip
    p.add_argument("--resolutions", help=f"comma-separated, of {', '.join(RESOLUTIONS)} (default 540p,720p)")
    p.add_argument("--devices", help="comma-separated torch devices (default: cpu, plus cuda if available)")
    p.add_argument("--precisions", help="comma-separated, of fp32, bf16, fp16 (default: fp32 and each device's "
                   "default reduced precision)")  # fmt: skip
    p.add_argument("--scales", help="comma-separated flow scales (default 1)")
    p.add_argument("--repeats", type=int, help="timed calls per configuration, rounds for the three ways (default 5)")
    p.add_argument("--warmup", type=int, help="discarded calls per configuration before timing (default 2)")
    p.add_argument("--clip-frames", type=int, help="frames of the clip for engine/filter/cli (default 12)")
    p.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                   help="torch.compile rows: auto = on GPUs only (default)")  # fmt: skip
    p.add_argument("--compile-mode", default="default", help="torch.compile mode: default or max-autotune ...")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--json", type=Path, default=REPO / "bench-results" / "speed.json", help="JSON results file")
    p.add_argument("--markdown", type=Path, help="write the Markdown table here instead of stdout")
    p.add_argument("--flops-only", action="store_true",
                   help="only count the FLOPs per 720p frame of --models (default: one release per family)")
    p.add_argument("--quick", action="store_true",
                   help="smallest useful run: first available model, 540p, 2 timed calls, 1 warm-up, "
                   "4-frame clip")  # fmt: skip
    a = p.parse_args(argv)
    defaults = ({"resolutions": "540p", "repeats": 2, "warmup": 1, "clip_frames": 4} if a.quick else
                {"resolutions": "540p,720p", "repeats": 5, "warmup": 2, "clip_frames": 12})  # fmt: skip
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.resolutions = [r.strip() for r in a.resolutions.split(",") if r.strip()]
    if bad := [r for r in a.resolutions if r not in RESOLUTIONS]:
        p.error(f"unknown resolution(s) {bad}; choose from {', '.join(RESOLUTIONS)}")
    a.scales = [float(s) for s in (a.scales or "1").split(",")]
    if a.precisions:
        a.precisions = [s.strip() for s in a.precisions.split(",")]
        if bad := [s for s in a.precisions if s not in PRECISIONS]:
            p.error(f"unknown precision(s) {bad}; choose from fp32, bf16, fp16")
    if a.repeats < 1 or a.warmup < 0 or a.clip_frames < 2 or a.warmup + a.repeats > 120:
        p.error("need --repeats >= 1, --warmup >= 0, --warmup + --repeats <= 120, --clip-frames >= 2")
    return a


def available_models(names: list[str], notes: list[str]) -> tuple[list[str], dict[str, str]]:
    """The models whose weights are cached or can be fetched now; the others with the reason."""
    found, skipped = [], {}
    for name in names:
        try:
            vsrife.get_release(name)
            vsrife.fetch_weights(name)
            found.append(name)
        except (ValueError, vsrife.WeightsError) as e:
            skipped[name] = " ".join(str(e).split())
    if skipped:
        first = next(iter(skipped.values()))
        notes.append(f"{len(skipped)} model(s) skipped, no weights here: {', '.join(skipped)} "
                     f"(e.g. {first[:160]}{'...' if len(first) > 160 else ''})")  # fmt: skip
    return found, skipped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_start = os.getloadavg()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    notes: list[str] = []
    wanted = [s.strip() for s in args.models.split(",")] if args.models else list(vsrife.release_names())
    if args.flops_only:  # no weights needed: the count does not depend on them
        flops = count_flops(wanted if args.models else list(FLOPS_MODELS))
        result = {"machine": machine_info([]), "flops": flops}
        write_results(result, args.json, "\n".join(flops_table(flops)) + "\n", args.markdown or None)
        return 0
    models, skipped = available_models(wanted, notes)
    if skipped:
        log(f"{len(skipped)} of {len(wanted)} models skipped (no weights here): {', '.join(skipped)}")
    if args.quick and not args.models:
        models = models[:1]
    if not models:
        raise SystemExit("no model has weights here; try --models 4.0")
    devices = []
    names = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for name in names:
        try:
            devices.append(parse_device(name.strip()))
        except ValueError as e:
            notes.append(f"device {name} skipped: {e}")
    three_res = "720p" if "720p" in args.resolutions else min(args.resolutions, key=lambda r: RESOLUTIONS[r][0])
    log(f"models {models}, resolutions {args.resolutions}, devices {[str(d) for d in devices]}, scales "
        f"{args.scales}, {args.warmup} warm-up + {args.repeats} timed calls, {threads} torch threads")  # fmt: skip
    if args.compile != "off":
        dynamo = torch._dynamo.config
        setattr(dynamo, "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit", 64)

    frames_720 = decode_sample(args.warmup + args.repeats + 1)
    records: list[dict] = []
    compile_notes: list[dict] = []
    for res in args.resolutions:
        width, height = RESOLUTIONS[res]
        frames = [resize(f, width, height) for f in frames_720]
        for model in models:
            for dev in devices:
                precs = args.precisions or list(dict.fromkeys(["fp32", NAMES[default_dtype(dev)]]))
                compile_ = args.compile == "on" or (args.compile == "auto" and dev.type != "cpu")
                for scale in args.scales:
                    log(f"{model} {res} {dev} scale {scale:g}: baseline + {', '.join(precs)}"
                        + (" (+ compiled)" if compile_ else ""))  # fmt: skip
                    try:
                        runners = build_runners(model, dev, scale, precs, compile_, args.compile_mode)
                    except (ValueError, RuntimeError, vsrife.WeightsError) as e:
                        notes.append(f"{model} {res} {dev} scale {scale:g} skipped: {e}")
                        continue
                    others = run_group(runners, frames, args.warmup, args.repeats, dev)
                    common = {"model": model, "resolution": res, "width": width, "height": height,
                              "device": str(dev), "scale": scale, "others_cores": others}  # fmt: skip
                    group = [runner_record(r, common, args.warmup, threads) for r in runners]
                    base = group[0].get("median_s")
                    for rec in group:
                        rec["ratio_to_baseline"] = base / rec["median_s"] if base and "median_s" in rec else None
                    for rec in group:
                        eager = next((g for g in group if g["path"] == "stream" and not g["compiled"]
                                      and g["precision"] == rec["precision"]), None)  # fmt: skip
                        if rec["compiled"] and "median_s" in rec and eager and "median_s" in eager:
                            speedup = eager["median_s"] / rec["median_s"]
                            compile_notes.append({**common, "precision": rec["precision"], "speedup": speedup,
                                                  "compile_s": rec["compile_s"],
                                                  "pays_off": speedup >= PAYS_OFF})  # fmt: skip
                    records += group
                    for r in runners:
                        if isinstance(r.it, PlainProcess):
                            r.it.close()
                    del runners

    with tempfile.TemporaryDirectory(prefix="vsrife-bench-") as tmp:
        for model in models:
            scale = args.scales[0] if vsrife.get_release(model).flow_scale else 1.0  # IFRNet: no flow scale
            for dev in devices:
                log(f"{model} {three_res} {dev} scale {scale:g}: engine / filter / cli on a "
                    f"{args.clip_frames}-frame clip, {NAMES[default_dtype(dev)]}")  # fmt: skip
                group = three_ways(model, dev, scale, three_res, args, threads, Path(tmp))
                base = next((r.get("median_s") for r in records if r["path"] == "baseline" and r["model"] == model
                             and r["resolution"] == three_res and r["device"] == str(dev)
                             and r["scale"] == scale), None)  # fmt: skip
                for rec in group:
                    rec["ratio_to_baseline"] = base / rec["median_s"] if base and "median_s" in rec else None
                records += group

    contended = any(
        r["device"] == "cpu" and "median_s" in r and r["path"] in ("baseline", "stream", "engine")
        and (r["cpu_use"] < CONTENDED_USE or (r["others_cores"] or 0) >= CONTENDED_OTHERS)
        for r in records
    )  # fmt: skip
    result = {
        "machine": {**machine_info(devices), "loadavg_start": load_start, "loadavg_end": os.getloadavg(),
                    "peak_rss_method": "per call (clear_refs + getrusage)" if RSS_RESETTABLE
                    else "process peak so far (getrusage)"},  # fmt: skip
        "config": {"models": models, "resolutions": args.resolutions, "devices": [str(d) for d in devices],
                   "precisions": args.precisions or "fp32 + device default", "scales": args.scales,
                   "repeats": args.repeats, "warmup": args.warmup, "clip_frames": args.clip_frames,
                   "three_ways_resolution": three_res, "compile": args.compile, "compile_mode": args.compile_mode,
                   "sample": SAMPLE, "timestep": TIMESTEP, "quick": args.quick},  # fmt: skip
        "records": records,
        "flops": count_flops(list(dict.fromkeys([*models, *FLOPS_MODELS]))),
        "compile": compile_notes,
        "contended": contended,
        "notes": notes,
        "skipped_models": skipped,
    }
    write_results(result, args.json, markdown(result), args.markdown or None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
