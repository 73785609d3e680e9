"""Reproduce README.md's results sections from scratch: quality, speed, FLOPs, held frames, then the report.

    python scripts/reproduce_results.py [--quick] [-- extra arguments for bench_quality.py]

Each step is a separate process, so a step's memory and threads do not colour the next one's figures.
``--quick`` makes the speed benchmark short (for checking that everything runs, not for publishing).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(script: str, *args: str) -> None:
    command = [sys.executable, str(HERE / script), *args]
    print("+ " + " ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr)


def main() -> None:
    argv = sys.argv[1:]
    quick = "--quick" in argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    run("bench_quality.py", *extra)
    run("bench_speed.py", *(["--quick"] if quick else []))
    run("bench_speed.py", "--flops-only", "--json", str(HERE.parent / "bench-results" / "flops.json"))
    run("bench_dedup.py")
    run("bench_contention.py")
    run("report.py")


if __name__ == "__main__":
    main()
