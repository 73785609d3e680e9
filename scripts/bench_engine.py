"""Speed and quality benchmark for the engine: the plain path against the default path, side by side.

Run from the repository root (the venv needs ``av`` for decoding)::

    python scripts/bench_engine.py                      # 12 timed frames per path, model 4.0, scale 1
    python scripts/bench_engine.py --frames 24 --threads 2 --dtypes --json bench-results/engine.json

What it measures, in one process and on the same real frames (``bigbuckbunny``, 1280x720, from the
sample catalogue; fetched once into ``bench-results/samples/``):

* **plain** path: the upstream inference code's order of operations in eager PyTorch, fp32, NCHW, given
  raw tensors on every call, so each call pads both frames afresh, to upstream's multiple of 128
  (``scripts/upstream_path.py``; for IFNet_m and IFRNet, which it does not cover, vsrife's own network in
  fp32, NCHW). It runs in a process of its own with the system's allocator, as upstream's script runs
  (``PlainProcess``: the child times each call itself; the frames' trip through the pipe is not timed).
* **default** path: ``Interpolator(model)`` with its default dtype, layout and int8 choice (the 8-bit
  blocks where they are measured: the 4.0 weights on the CPU; the row says so), run as a stream: each
  source frame is prepared once (``Interpolator.prepare``) and reused for the pairs on either side of
  it. A timed step is "prepare the next frame, interpolate the pair", i.e. the cost of one output
  frame in a stream; the first source frame is prepared before timing starts.
* with ``--float-blocks``, also the default path with ``int8=False`` (what the 8-bit blocks add), with
  its own PSNR drop;
* with ``--dtypes``, also the default path's calling convention with float32 + channels_last and with
  the default dtype + contiguous layout (both with float blocks: a dtype named keeps them float, so compare
  them with ``--float-blocks``), so the effects of precision and of layout can be told apart, and
  the plain path in this process ("plain, here"), where it shares the engine's allocator settings.

Each row also gives the median page faults per call: the engine keeps freed host memory for reuse
(``vsrife.engine.keep_host_memory``), so after its first frame it should take next to none.

Calls alternate between the paths (A B A B ...) on the same frame pairs at t=0.5, so drift in the
machine's speed hits every path alike; the first ``--warmup`` calls of each path are discarded. Each
row reports the median and interquartile range of seconds per interpolated frame, and the ratio of
the plain median to its own. The paired ratio is the median over pairs of plain/default call times.
"CPU use" is the process's CPU time per call over wall time x torch threads; a run where it falls
below 75% (other processes taking the cores) is flagged as unreliable, in the table and the JSON.

Quality, in the same run: frame-drop PSNR on the same clip. Frame 2k+2 (0-based decode index, k = 0 ..
``--quality-triplets`` - 1, default 30) is interpolated from frames 2k+1 and 2k+3 with the plain and the
default path; PSNR = 10 log10(1/MSE) on RGB in [0, 1] per frame, then averaged. The 50/50 blend of the two neighbours is reported as a floor.

Results go to ``--json`` (default ``bench-results/engine.json``) with the machine's description; a
Markdown summary goes to stdout (or ``--markdown PATH``); progress goes to stderr. Nothing is asserted:
the project's goal (default path >= 1.5x the plain path, PSNR at most 0.1 dB lower) is reported, not
enforced. Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import vsrife
from vsrife.catalogue import get_sample
from vsrife.engine import Frame, Interpolator, default_device, default_dtype
from vsrife.video import frames_of
from vsrife.weights import fetch_file

from benchlib import cpu_kind, machine_info, write_results
from upstream_path import PlainProcess, baseline

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench-results"
GOAL_SPEEDUP = {"bfloat16": 2.5, "float32": 2.0}  # issue 13's CPU goals: with native bf16, and without
GOAL_SPEEDUP_GPU = 2.0
GOAL_PSNR_DROP_DB = 0.1
QUALITY_TRIPLETS = 30  # default k = 0..29: frame 2k+2 from frames 2k+1 and 2k+3
TIMESTEP = 0.5
CONTENDED_BELOW = 0.75  # median CPU use per thread under which a run is flagged as sharing the CPU

_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- inputs -------------------------------------------------------------------------------------------


def sample_path(name: str, folder: Path) -> Path:
    """The catalogue sample ``name`` in ``folder``, fetched (and checked) if absent or damaged."""
    source = get_sample(name).source
    dest = folder / Path(source.member or f"{name}.mp4").name
    if dest.is_file() and source.sha256 is not None:
        if hashlib.sha256(dest.read_bytes()).hexdigest() == source.sha256:
            return dest
        log(f"{dest} does not match the catalogue; fetching it again")
    elif dest.is_file():
        return dest
    log(f"fetching sample {name!r} into {dest}")
    folder.mkdir(parents=True, exist_ok=True)
    fetch_file(source, dest)
    return dest


def decode(path: Path, count: int) -> list[Tensor]:
    """The first ``count`` frames of ``path`` as 1 x 3 x H x W float32 tensors in [0, 1]."""
    frames = frames_of(path, count)
    if len(frames) < count:
        raise SystemExit(f"{path.name} has only {len(frames)} frames; {count} are needed (lower --frames)")
    return frames


# --- runners ------------------------------------------------------------------------------------------


@dataclass
class Runner:
    """One way of calling the engine, and the times it took."""

    key: str
    label: str
    interpolator: Interpolator
    stream: bool  # True: frames prepared once and reused; False: raw tensors on every call
    note: str = ""  # what the path is, in words
    times: list[float] = field(default_factory=list)  # wall seconds per call
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds per call, all threads
    faults: list[int] = field(default_factory=list)  # minor page faults per call
    _previous: Frame | None = None

    @property
    def dtype(self) -> str:
        return _DTYPES[self.interpolator.dtype]

    @property
    def layout(self) -> str:
        inner = getattr(self.interpolator, "network", self.interpolator)
        return "channels_last" if inner.memory_format == torch.channels_last else "contiguous"

    def measure(self, a: Tensor, b: Tensor, sync: Callable[[], None]) -> None:
        """One timed step; a path in its own process reports the time its child measured."""
        faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), time.process_time()
        self.step(a, b)
        sync()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
        if isinstance(self.interpolator, PlainProcess):
            last = self.interpolator.last
            wall, cpu, faults = last["wall"], last["cpu"], last["faults"]
        self.times.append(wall)
        self.cpu_times.append(cpu)
        self.faults.append(faults)

    def start(self, first: Tensor) -> None:
        """Begin a stream at ``first`` (untimed); a no-op for the plain calling convention."""
        self._previous = self.interpolator.prepare(first) if self.stream else None

    def step(self, a: Tensor, b: Tensor) -> Tensor:
        """The frame between ``a`` and ``b``; in a stream ``a`` is the frame prepared by the last step."""
        if not self.stream:
            return self.interpolator.interpolate(a, b, TIMESTEP)
        assert self._previous is not None, "start() the stream first"
        nxt = self.interpolator.prepare(b)
        out = self.interpolator.interpolate(self._previous, nxt, TIMESTEP)
        self._previous = nxt
        return out


def make_runners(args: argparse.Namespace, device: torch.device) -> list[Runner]:
    """The plain and default paths, then (``--dtypes``) the two mixed ones not already present."""

    def build(dtype: torch.dtype | None, channels_last: bool) -> Interpolator:
        return Interpolator(args.model, device=device, dtype=dtype, scale=args.scale, channels_last=channels_last)

    default = build(None, True)
    if args.plain_here:
        plain, what = baseline(args.model, device, args.scale)
    else:
        plain = PlainProcess(args.model, device, args.scale)
        what = plain.description
    log(f"plain path: {what}")
    runners = [Runner("plain", "plain (upstream order)", plain, stream=False, note=what),
               Runner("default", "default (stream, 8-bit blocks)" if default.int8 else "default (stream)", default,
                      stream=True)]  # fmt: skip
    if args.dtypes and not args.plain_here:
        here, _ = baseline(args.model, device, args.scale)
        runners.append(Runner("plain-here", "plain, here", here, stream=False))
    if args.float_blocks:
        floating = Interpolator(args.model, device=device, scale=args.scale, int8=False)
        runners.append(Runner("float-blocks", "default, int8=False (stream)", floating, stream=True,
                              note="the default path without the 8-bit blocks (vsrife.int8)"))  # fmt: skip
    if args.dtypes:
        for dtype, channels_last in ((torch.float32, True), (default.dtype, False)):
            if (dtype, channels_last) == (default.dtype, True):
                continue  # the default row
            key = f"{_DTYPES[dtype]}-{'channels_last' if channels_last else 'contiguous'}"
            runners.append(Runner(key, "stream", build(dtype, channels_last), stream=True))
    return runners


def synchronizer(device: torch.device) -> Callable[[], None]:
    module = getattr(torch, device.type, None)
    sync = getattr(module, "synchronize", None) if device.type != "cpu" else None
    return sync if sync is not None else (lambda: None)


# --- measurements -------------------------------------------------------------------------------------


def time_runners(runners: Sequence[Runner], frames: Sequence[Tensor], calls: int, sync: Callable[[], None]) -> None:
    """``calls`` steps per path over pairs (j, j+1), interleaved call by call."""
    for runner in runners:
        runner.start(frames[0])
    sync()
    for j in range(calls):
        for runner in runners:
            runner.measure(frames[j], frames[j + 1], sync)
        log(f"pair {j + 1}/{calls}: " + "  ".join(f"{p.key} {p.times[-1]:.3f}s" for p in runners))


def psnr(a: Tensor, b: Tensor) -> float:
    mse = torch.mean((a.double().cpu().clamp(0, 1) - b.double().cpu().clamp(0, 1)) ** 2).item()
    return float("inf") if mse == 0 else 10 * float(np.log10(1 / mse))


def frame_drop_quality(plain: Runner, default: Runner, frames: Sequence[Tensor], triplets: int,
                       plain_outputs: dict[int, Tensor]) -> dict:  # fmt: skip
    """Frame 2k+2 from 2k+1 and 2k+3 with both paths (the default one reusing prepared frames). The plain
    path's frames are kept in ``plain_outputs`` (by target index), so that scoring another path against
    it does not compute them again."""
    rows: list[dict] = []
    prepared: dict[int, Frame] = {}

    def ready(i: int) -> Frame:
        if i not in prepared:
            prepared[i] = default.interpolator.prepare(frames[i])
        return prepared[i]

    for k in range(triplets):
        a, target, b = 2 * k + 1, 2 * k + 2, 2 * k + 3
        if target not in plain_outputs:
            plain_outputs[target] = plain.interpolator.interpolate(frames[a], frames[b], TIMESTEP)
        out_plain = plain_outputs[target]
        out_default = default.interpolator.interpolate(ready(a), ready(b), TIMESTEP)
        blend = (frames[a] + frames[b]) / 2
        rows.append({
            "target": target, "from": [a, b],
            "plain_db": psnr(out_plain, frames[target]),
            "default_db": psnr(out_default, frames[target]),
            "blend_db": psnr(blend, frames[target]),
            "default_vs_plain_db": psnr(out_default, out_plain),
        })  # fmt: skip
        log(f"quality: frame {target}: plain {rows[-1]['plain_db']:.3f} dB, default {rows[-1]['default_db']:.3f} dB")
    mean = {key: statistics.fmean(r[key] for r in rows) for key in ("plain_db", "default_db", "blend_db")}
    return {
        "frames": rows,
        "plain_db": mean["plain_db"],
        "default_db": mean["default_db"],
        "blend_db": mean["blend_db"],
        "drop_db": mean["plain_db"] - mean["default_db"],
        "default_vs_plain_db": statistics.fmean(r["default_vs_plain_db"] for r in rows),
    }


def summarise(times: Sequence[float], cpu_times: Sequence[float], faults: Sequence[int], threads: int) -> dict:
    """Median, quartiles and spread of ``times``; ``cpu_use`` is CPU time / (wall time x threads)."""
    q25, median, q75 = (float(v) for v in np.percentile(times, [25, 50, 75]))
    cpu_use = statistics.median(c / (w * threads) for c, w in zip(cpu_times, times))
    return {"median_s": median, "q25_s": q25, "q75_s": q75, "iqr_s": q75 - q25, "mean_s": statistics.fmean(times),
            "min_s": min(times), "max_s": max(times), "n": len(times), "cpu_use": cpu_use,
            "page_faults": statistics.median(faults)}  # fmt: skip


# --- report -------------------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    m, cfg, q = result["machine"], result["config"], result["quality"]
    lines = [
        f"### Engine benchmark: RIFE {cfg['model']}, {cfg['sample']} {cfg['width']}x{cfg['height']}, "
        f"scale {cfg['scale']}",
        "",
        f"{m['cpu']}, {m['cores_available']} cores, {cpu_kind(m)}, torch {m['torch']} ({m['torch_threads']} "
        f"threads), {m['date']}. {cfg['timed_calls']} timed calls per path after {cfg['warmup']} warm-up, "
        "interleaved.",
        "",
        f"Plain path: {result['plain_path']}.",
        "",
        "| path | dtype | layout | median s/frame | IQR s | plain / this | CPU use | page faults/call |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["paths"]:
        s = row["stats"]
        lines.append(f"| {row['label']} | {row['dtype']} | {row['layout']} | {s['median_s']:.3f} | "
                     f"{s['iqr_s']:.3f} | {row['speedup']:.2f}x | {s['cpu_use']:.0%} | {s['page_faults']:.0f} |")  # fmt: skip
    sp = result["speedup"]
    lines += [
        "",
        f"Speed-up of the default path: **{sp['ratio_of_medians']:.2f}x** (ratio of medians; paired median "
        f"{sp['paired_median']:.2f}x); goal >= {sp['goal']}x: {'met' if sp['goal_met'] else 'NOT met'}.",
        "",
        f"| frame-drop PSNR ({cfg['quality_triplets']} frames) | dB |",
        "|---|---:|",
        f"| plain | {q['plain_db']:.3f} |",
        f"| default | {q['default_db']:.3f} |",
        f"| 50/50 blend (floor) | {q['blend_db']:.3f} |",
        "",
        f"PSNR drop of the default path: **{q['drop_db']:+.3f} dB** (goal <= {GOAL_PSNR_DROP_DB} dB: "
        f"{'met' if q['goal_met'] else 'NOT met'}); default vs plain output: {q['default_vs_plain_db']:.2f} dB.",
    ]
    qf = result.get("quality_float_blocks")
    if qf is not None:
        lines += ["", f"Without int8: frame-drop PSNR {qf['default_db']:.3f} dB, drop **{qf['drop_db']:+.3f} dB**; "
                      f"its output vs plain: {qf['default_vs_plain_db']:.2f} dB."]  # fmt: skip
    worst = min(r["default_db"] - r["plain_db"] for r in q["frames"])
    lines += ["", f"Per frame, the default path's largest loss against plain: {-worst:+.3f} dB."]
    lines += [
        "",
        f"Peak host RSS: {result['peak_rss_mib']:.0f} MiB.",
    ]
    if result["contended"]:
        lines += ["", "**Warning: other processes competed for the CPU during timing; the speeds are unreliable.**"]
    return "\n".join(lines) + "\n"


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--model", default="4.0", help="release name (default 4.0)")
    p.add_argument("--scale", type=float, default=1.0, help="flow scale (default 1)")
    p.add_argument("--frames", type=int, default=12, help="timed interpolated frames per path (default 12)")
    p.add_argument("--warmup", type=int, default=2, help="discarded calls per path before timing (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--dtypes", action="store_true",
                   help="add float32+channels_last and <default dtype>+contiguous rows (both streamed), and the "
                        "plain path run in this process")  # fmt: skip
    p.add_argument("--float-blocks", action="store_true",
                   help="add the default path with int8=False (without the 8-bit blocks), with its own PSNR drop")
    p.add_argument("--quality-triplets", type=int, default=QUALITY_TRIPLETS,
                   help=f"frame-drop triplets scored per path (default {QUALITY_TRIPLETS})")
    p.add_argument("--plain-here", action="store_true",
                   help="run the plain path in this process (with the engine's allocator settings), not its own")
    p.add_argument("--sample", default="bigbuckbunny", help="catalogue sample clip (default bigbuckbunny)")
    p.add_argument("--device", default=None, help="torch device (default: the engine's default)")
    p.add_argument("--samples-dir", type=Path, default=RESULTS / "samples", help="where the sample clip is kept")
    p.add_argument("--json", type=Path, default=RESULTS / "engine.json", help="JSON results file")
    p.add_argument("--markdown", type=Path, default=None, help="write the Markdown summary here, not stdout")
    args = p.parse_args(argv)
    if args.frames < 1 or args.warmup < 0 or args.quality_triplets < 1:
        p.error("--frames and --quality-triplets must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else default_device()
    calls = args.warmup + args.frames
    needed = max(calls + 1, 2 * args.quality_triplets + 2)

    clip = sample_path(args.sample, args.samples_dir)
    log(f"decoding {needed} frames of {clip}")
    frames = decode(clip, needed)
    height, width = frames[0].shape[-2:]

    vsrife.fetch_weights(args.model)  # no-op when cached
    runners = make_runners(args, device)
    plain, default = runners[0], runners[1]
    log(f"model {args.model} on {device}, default dtype {_DTYPES[default_dtype(device)]}, "
        f"{torch.get_num_threads()} threads, {len(runners)} paths x {calls} calls at {width}x{height}")  # fmt: skip

    load_before = os.getloadavg()
    time_runners(runners, frames, calls, synchronizer(device))
    load_after = os.getloadavg()
    log("measuring frame-drop quality")
    plain_outputs: dict[int, Tensor] = {}
    quality = frame_drop_quality(plain, default, frames, args.quality_triplets, plain_outputs)
    quality["goal_met"] = quality["drop_db"] <= GOAL_PSNR_DROP_DB
    floating = next((p for p in runners if p.key == "float-blocks"), None)
    quality_float = None
    if floating is not None:
        log("measuring frame-drop quality of the default path without int8")
        quality_float = frame_drop_quality(plain, floating, frames, args.quality_triplets, plain_outputs)
        quality_float["goal_met"] = quality_float["drop_db"] <= GOAL_PSNR_DROP_DB

    timed = {p.key: p.times[args.warmup :] for p in runners}
    threads = torch.get_num_threads()
    stats = {p.key: summarise(timed[p.key], p.cpu_times[args.warmup :], p.faults[args.warmup :], threads)
             for p in runners}  # fmt: skip
    cpu_use = min(s["cpu_use"] for s in stats.values())
    contended = device.type == "cpu" and cpu_use < CONTENDED_BELOW
    if contended:
        log(f"WARNING: the timed calls got only {cpu_use:.0%} of {threads} threads' CPU time: other processes "
            "were competing for the CPU, so these timings are not representative")  # fmt: skip
    base = stats["plain"]["median_s"]
    paired = [a / b for a, b in zip(timed["plain"], timed["default"])]
    ratio = base / stats["default"]["median_s"]
    goal = GOAL_SPEEDUP_GPU if device.type != "cpu" else GOAL_SPEEDUP.get(default.dtype, GOAL_SPEEDUP["float32"])
    result = {
        "config": {"model": args.model, "scale": args.scale, "sample": args.sample, "width": width, "height": height,
                   "timestep": TIMESTEP, "timed_calls": args.frames, "warmup": args.warmup,
                   "threads": args.threads, "quality_triplets": args.quality_triplets,
                   "default_int8": default.interpolator.int8},  # fmt: skip
        "machine": {**machine_info([device]), "device": str(device), "loadavg_before": load_before, "loadavg_after": load_after},
        "paths": [
            {"key": p.key, "label": p.label, "dtype": p.dtype, "layout": p.layout, "stream": p.stream,
             "stats": stats[p.key], "speedup": base / stats[p.key]["median_s"], "times_s": p.times,
             "cpu_times_s": p.cpu_times, "page_faults": p.faults,
             "timed_from": args.warmup}  # fmt: skip
            for p in runners
        ],
        "plain_path": plain.note,
        "contended": contended,
        "speedup": {"ratio_of_medians": ratio, "paired_median": statistics.median(paired),
                    "goal": goal, "goal_met": ratio >= goal},  # fmt: skip
        "quality": {**quality, "goal_drop_db": GOAL_PSNR_DROP_DB},
        "quality_float_blocks": quality_float,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
    }

    if isinstance(plain.interpolator, PlainProcess):
        plain.interpolator.close()
    write_results(result, args.json, markdown(result), args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
