"""Measure the fixed activation ranges that let a model's flow blocks run on 8 bits (vsrife.int8), and
keep them in the catalogue (models/int8.json) under the weights file's sha256.

    python scripts/calibrate_int8.py                      # the catalogue's 4.0 weights
    python scripts/calibrate_int8.py --model 4.1 --weights flownet_v4.1.pkl

The float32 network runs on the CPU over vsrife.int8.CALIBRATION_FOOTAGE (sample clips from the package
index, none of them the footage that the benchmarks and quality tests score) and records the smallest and
largest value of each input channel of every quantised layer. Check the quality afterwards:
scripts/bench_engine.py scores the default path (which then runs on 8 bits) against the plain float path
on other footage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vsrife import int8
from vsrife.engine import Interpolator
from vsrife.weights import weights_digest

TABLE = Path(__file__).resolve().parent.parent / "models" / "int8.json"


def _dumps(table: dict) -> str:
    """JSON with one line per weights file's footage and per block's ranges."""
    lines = ["{", f' "about": {json.dumps(table["about"])},', ' "weights": {']
    entries = list(table["weights"].items())
    for i, (digest, entry) in enumerate(entries):
        lines += [f'  "{digest}": {{', f'   "model": {json.dumps(entry["model"])},',
                  f'   "footage": {json.dumps(entry["footage"])},', '   "ranges": {']
        blocks = list(entry["ranges"].items())
        for j, (b, rows) in enumerate(blocks):
            lines.append(f'    "{b}": [')
            lines += [f"     {json.dumps(row)}" + ("," if k < len(rows) - 1 else "") for k, row in enumerate(rows)]
            lines.append("    ]" + ("," if j < len(blocks) - 1 else ""))
        lines += ["   }", "  }" + ("," if i < len(entries) - 1 else "")]
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="4.0")
    parser.add_argument("--weights", default=None, help="a weights file (default: the catalogue's)")
    args = parser.parse_args()
    interpolator = Interpolator(args.model, weights=args.weights, device="cpu", dtype=torch.float32, int8=False)
    ranges = int8.calibrate(interpolator)
    table = json.loads(TABLE.read_text("utf-8"))
    table["weights"][weights_digest(interpolator.weights)] = {
        "model": args.model,
        "footage": [[name, list(starts)] for name, starts in int8.CALIBRATION_FOOTAGE],
        "ranges": {b: [[[round(v, 6) for v in lows], [round(v, 6) for v in highs]] for lows, highs in rows]
                   for b, rows in ranges.items()},
    }
    TABLE.write_text(_dumps(table), "utf-8")
    print(f"{args.model}: ranges of {sum(len(r) for r in ranges.values())} layers written to {TABLE}")


if __name__ == "__main__":
    main()
