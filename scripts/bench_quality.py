"""Frame-interpolation quality, measured the way the field measures it.

    python scripts/bench_quality.py                       # real sample clips, every fetchable model
    python scripts/bench_quality.py --vimeo90k DIR --ucf101 DIR --middlebury DIR --models 4.0 4.25

Frame drop on real footage: on each sample clip (bikes, bigbuckbunny, carphone from the package index),
frame 2k+1 is rebuilt from frames 2k and 2k+2 (frames numbered from 1) and scored against the real
frame: PSNR and SSIM on RGB in [0, 1] and the Middlebury interpolation error, the prediction rounded to
8 bits first, as the RIFE benchmarks do (vsrife/evaluation.py). Triplets that straddle a scene cut are
left out. The 50/50 blend of the two neighbours is scored too, as the floor.

Standard datasets, for users who have them: Vimeo90K triplets (the interp test set with
tri_testlist.txt), UCF101 triplets (ucf101_interp_ours) and Middlebury "other" (other-data +
other-gt-interp). Every model whose weights are cached or can be fetched here is evaluated, at each
``--precisions`` (fp32, and the device's reduced default) and ``--scales``.

Results go to ``--json`` (default bench-results/quality.json) with the machine and versions; a Markdown
table goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import vsrife
from vsrife.catalogue import release_names
from vsrife.engine import default_device, default_dtype
from vsrife.evaluation import (
    evaluate,
    evaluate_blend,
    frame_drop_triplets,
    middlebury_other,
    ucf101_triplets,
    vimeo90k_triplets,
)
from vsrife.timing import SCENE_THRESHOLD, luma_thumbnail, scene_difference
from vsrife.video import frames_of
from vsrife.weights import WeightsError, fetch_sample, fetch_weights

from benchlib import machine_info, write_results

CLIP_FRAMES = 25  # frames decoded per sample clip: 12 frame-drop triplets each
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def available_models(names: list[str] | None) -> list[str]:
    chosen = []
    for name in names or release_names():
        try:
            fetch_weights(name, progress=False)
        except WeightsError as e:
            print(f"skipping model {name}: no weights here ({str(e).splitlines()[0]})", file=sys.stderr)
            continue
        chosen.append(name)
    return chosen


def clip_triplets(name: str) -> list[tuple]:
    frames = frames_of(fetch_sample(name, progress=False), CLIP_FRAMES)
    keep = []
    for first, middle, last in frame_drop_triplets(frames):
        a, b, c = (luma_thumbnail(x) for x in (first, middle, last))
        if max(scene_difference(a, b), scene_difference(b, c)) <= SCENE_THRESHOLD:
            keep.append((first, middle, last))
    return keep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="models to evaluate (default: every one whose weights are here)")
    ap.add_argument("--clips", nargs="*", default=["bikes", "bigbuckbunny", "carphone"])
    ap.add_argument("--precisions", nargs="*", help="fp32 bf16 fp16 (default: fp32 and the device's default)")
    ap.add_argument("--scales", nargs="*", type=float, default=[1.0])
    ap.add_argument("--device", default=None)
    ap.add_argument("--vimeo90k", type=Path, help="Vimeo90K interp test set (folder with tri_testlist.txt)")
    ap.add_argument("--ucf101", type=Path, help="UCF101 interpolation test set (ucf101_interp_ours)")
    ap.add_argument("--middlebury", type=Path, help="Middlebury folder with other-data and other-gt-interp")
    ap.add_argument("--limit", type=int, help="at most this many items per dataset")
    ap.add_argument("--json", type=Path, default=Path("bench-results/quality.json"))
    args = ap.parse_args()

    device = torch.device(args.device) if args.device else default_device()
    reduced = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(default_dtype(device))
    precisions = args.precisions or ["fp32"] + ([reduced] if reduced else [])
    datasets: dict[str, list] = {name: clip_triplets(name) for name in args.clips}
    for flag, loader in (("vimeo90k", vimeo90k_triplets), ("ucf101", ucf101_triplets), ("middlebury", middlebury_other)):
        root = getattr(args, flag)
        if root is not None:
            datasets[flag] = loader(root)[: args.limit] if args.limit else loader(root)

    records = []
    for dataset, items in datasets.items():
        blend = evaluate_blend(items)
        records.append({"dataset": dataset, "model": "blend", "precision": None, "scale": None, **blend})
        print(f"{dataset}: blend {blend['psnr']:.2f} dB over {blend['count']}", file=sys.stderr)
    for model in available_models(args.models):
        for precision in precisions:
            for scale in args.scales:
                it = vsrife.Interpolator(model, device=device, dtype=PRECISIONS[precision], scale=scale)
                for dataset, items in datasets.items():
                    result = evaluate(it, items)
                    records.append({"dataset": dataset, "model": model, "precision": precision, "scale": scale, **result})
                    print(f"{dataset}: {model} {precision} x{scale} {result['psnr']:.2f} dB "
                          f"SSIM {result['ssim']:.4f} IE {result['ie']:.3f}", file=sys.stderr)  # fmt: skip
    report = {"machine": machine_info([device]), "device": str(device), "records": records}
    table = ["| dataset | model | precision | scale | n | PSNR dB | SSIM | IE |", "|---|---|---|---|---:|---:|---:|---:|"]
    for r in records:
        table.append(f"| {r['dataset']} | {r['model']} | {r['precision'] or '-'} | {r['scale'] or '-'} | "
                     f"{r['count']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['ie']:.3f} |")  # fmt: skip
    write_results(report, args.json, "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
