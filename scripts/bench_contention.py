"""Fair use of a shared CPU: `vsrife video` idle and beside busy processes, ratios from one run.

    python scripts/bench_contention.py [--busy 2] [--runs 3] [--json bench-results/contention.json]

Users encode while they interpolate: x264 or ffmpeg take every core they find. This times the same job
(`vsrife video` on the real carphone sample, 2x, model 4.0) with the machine otherwise idle and with
``--busy`` processes spinning beside it, and reports each configuration's contended time as a multiple of
its own idle time, measured in the same run, runs interleaved so that drift hits every configuration
alike. Configurations: the program as shipped (short OpenMP spins; see vsrife/program.py), libgomp's
own default spin (GOMP_SPINCOUNT=300000, what the program ran with before) and OMP_WAIT_POLICY=PASSIVE
(threads sleep at once).
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
OPENMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


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
        for load in (0, args.busy):
            spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
            try:
                time.sleep(0.5 if load else 0)
                for _ in range(args.runs):
                    for name, extra in CONFIGS.items():
                        env = {k: v for k, v in os.environ.items() if k not in OPENMP} | extra
                        times.setdefault((name, load), []).append(timed(command, env))
                        print(f"{name:<24} busy {load}: {times[(name, load)][-1]:.2f} s", file=sys.stderr)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    records = []
    before = "OpenMP's default spin (before)"
    for name in CONFIGS:
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
