"""The ``vsrife`` program's start: what must be settled before torch loads, then the command line."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

# OpenMP threads spin this many times at a barrier before they sleep (GNU libgomp, which torch's Linux
# wheels use; its own default is 300000 and, with OMP_WAIT_POLICY=ACTIVE, 30 billion).
SPIN_COUNT = "1000"


def _fair_threads() -> None:
    """Short spins for torch's OpenMP threads, unless the user set the OpenMP wait policy themselves.

    torch's CPU kernels run on OpenMP, whose idle threads spin at every barrier; beside other busy
    processes (an encoder, another job) a spinning thread burns the time slice a descheduled one needs.
    scripts/bench_contention.py measures it: with two busy processes on 2 cores, `vsrife video` took 8x
    its idle time with libgomp's default spin and about 2.3x with this one, while idle it is as fast
    (within the run-to-run noise). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) is as fair but 9% slower
    idle. The library reads this once, when torch loads it, so it must run first; it changes nothing once
    torch is loaded, and other OpenMP runtimes ignore it.
    """
    if "torch" not in sys.modules and not ({"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ)):
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT


def main(argv: Sequence[str] | None = None) -> int:
    _fair_threads()
    from .cli import main as command_line

    return command_line(argv)
