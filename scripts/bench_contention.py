"""Fair use of a shared CPU: `vsrife video` and the filter in vspipe, idle and beside busy processes.

    python scripts/bench_contention.py [--busy 2] [--runs 3] [--json bench-results/contention.json]

Users encode while they interpolate: x264 or ffmpeg take every core they find. This times the same job
(`vsrife video` on the real carphone sample, 2x, model 4.0) with the machine otherwise idle and with
``--busy`` processes spinning beside it, and reports each configuration's contended time as a multiple of
its own idle time, measured in the same run, runs interleaved so that drift hits every configuration
alike. Configurations: the program as shipped (short OpenMP spins; see vsrife/program.py), libgomp's
own default spin (GOMP_SPINCOUNT=300000, what the program ran with before) and OMP_WAIT_POLICY=PASSIVE
(threads sleep at once).

Where VapourSynth's vspipe is on PATH and ``import vapoursynth`` works, the same clip also goes through
``vsrife.RIFE`` (2x, model 4.0) in a script run by ``vspipe script.vpy --`` (every frame requested, none
written), as users pipe it into an encoder: with the environment as it comes (libgomp's default spin,
since vspipe loads torch before vsrife could change it) and with ``GOMP_SPINCOUNT=1000`` set by the user,
as the README advises.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vsrife.weights import fetch_sample, fetch_weights

from benchlib import machine_info, write_results

CONFIGS = {
    "shipped (GOMP_SPINCOUNT=1000)": {},
    "OpenMP's default spin (before)": {"GOMP_SPINCOUNT": "300000"},
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
}
FILTER_CONFIGS = {
    "filter in vspipe, as it comes": {},
    "filter in vspipe, GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
}
OPENMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SCRIPT = """\
import site
site.addsitedir({site!r})
import numpy as np
import vapoursynth as vs
import vsrife
from vsrife.video import frames_of

frames = frames_of({clip!r})
h, w = frames[0].shape[-2:]
blank = vs.core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=len(frames), fpsnum=30000, fpsden=1001)


def fill(n, f):
    out = f.copy()
    for p in range(3):
        np.copyto(np.asarray(out[p]), frames[n][0, p].numpy())
    return out


vsrife.RIFE(vs.core.std.ModifyFrame(blank, blank, fill), multi=2, model="4.0").set_output()
"""


def filter_command(clip: Path, folder: Path) -> tuple[list[str], dict] | None:
    """vspipe running the filter on ``clip``, and the environment it needs; None where it cannot run."""
    import shutil
    import sysconfig

    vspipe = shutil.which("vspipe")
    try:
        import vapoursynth  # noqa: F401
    except ImportError:
        return None
    if vspipe is None:
        return None
    site = sysconfig.get_paths()["purelib"]  # vspipe embeds its own interpreter: show it this environment
    script = folder / "two_x.vpy"
    script.write_text(SCRIPT.format(site=site, clip=str(clip)))
    return [vspipe, str(script), "--"], {"PYTHONPATH": site}


def contention_rows(result: dict) -> list[str]:
    busy = result["records"][0]["busy"]
    rows = [f"| configuration | idle s | idle vs before (paired) | {busy} busy processes, s | contended / idle |",
            "|---|---:|---:|---:|---:|"]  # fmt: skip
    rows += [f"| {r['config']} | {r['idle_s']:.2f} | {r['idle_vs_before']:.2f}x | {r['contended_s']:.2f} | "
             f"{r['ratio']:.2f}x |" for r in result["records"]]  # fmt: skip
    return rows


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=2, help="busy processes beside the job (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each configuration and load (default 3)")
    parser.add_argument("--json", type=Path, default=Path("bench-results/contention.json"))
    args = parser.parse_args()
    fetch_weights("4.0", progress=False)
    clip = fetch_sample("carphone", progress=False)
    times: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.mp4"
        command = [sys.executable, "-m", "vsrife", "video", str(clip), "-o", str(out), "--model", "4.0", "-q",
                   "--overwrite"]  # fmt: skip
        jobs = {name: (command, extra) for name, extra in CONFIGS.items()}
        vspipe = filter_command(clip, Path(tmp))
        if vspipe is None:
            print("vspipe or the vapoursynth module is missing: the filter is not measured", file=sys.stderr)
        else:
            jobs |= {name: (vspipe[0], vspipe[1] | extra) for name, extra in FILTER_CONFIGS.items()}
        for load in (0, args.busy):
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
            try:
                time.sleep(0.5 if load else 0)
                for _ in range(args.runs):
                    for name, (job, extra) in jobs.items():
                        env = {k: v for k, v in os.environ.items() if k not in OPENMP} | extra
                        times.setdefault((name, load), []).append(timed(job, env))
                        print(f"{name:<24} busy {load}: {times[(name, load)][-1]:.2f} s", file=sys.stderr)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    records = []
    before = "OpenMP's default spin (before)"
    for name in [n for n in (*CONFIGS, *FILTER_CONFIGS) if (n, 0) in times]:
        idle, busy = statistics.median(times[(name, 0)]), statistics.median(times[(name, args.busy)])
        idle_vs_before = statistics.median(a / b for a, b in zip(times[(name, 0)], times[(before, 0)], strict=True))
        records.append({"config": name, "busy": args.busy, "idle_s": idle, "contended_s": busy,
                        "ratio": busy / idle, "idle_vs_before": idle_vs_before, "runs": args.runs})  # fmt: skip
    result = {"machine": machine_info(), "job": "vsrife video carphone.mp4 (176x144, 120 frames) 2x, model 4.0",
              "records": records}  # fmt: skip
    rows = contention_rows(result)
    write_results(result, args.json, "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
