"""Frame-interpolation quality, measured the way the field measures it.

    python scripts/bench_quality.py                       # real sample clips, every fetchable model
    python scripts/bench_quality.py --vimeo90k DIR --ucf101 DIR --middlebury DIR --models 4.0 4.25
    python scripts/bench_quality.py --snu-film DIR --hd DIR --gopro DIR --models 4.25 ifrnet ifrnet_gopro

Frame drop on real footage: on each sample clip (bikes, bigbuckbunny, carphone from the package index),
frame 2k+1 is rebuilt from frames 2k and 2k+2 (frames numbered from 1) and scored against the real
frame: PSNR and SSIM on RGB in [0, 1] and the Middlebury interpolation error, the prediction rounded to
8 bits first, as the RIFE benchmarks do (vsrife/evaluation.py). Triplets that straddle a scene cut are
left out. The 50/50 blend of the two neighbours is scored too, as the floor.

Standard datasets, for users who have them (vsrife/evaluation.py says how each is laid out and read):

* Vimeo90K triplets (the interp test set with tri_testlist.txt), UCF101 triplets (ucf101_interp_ours)
  and Middlebury "other" (other-data + other-gt-interp);
* SNU-FILM (``--snu-film``): its four lists, easy, medium, hard and extreme (310 triplets each), each a
  dataset of its own; whole frames, PSNR and SSIM on RGB as above;
* RIFE's HD set (``--hd``, the HD_dataset folder): the raw YUV sequences read, padded and cropped as
  ECCV2022-RIFE's ``benchmark/HD.py`` does, one dataset per resolution (544p, 720p, 1080p); besides the
  RGB scores, ``PSNR Y``, that script's own figure: BT.601 luma PSNR, the mean over each sequence's
  triplets, then over the sequences;
* GoPro 8x (``--gopro``, its test folder of video folders): sets of 9 frames, frames 1 .. 7 rebuilt from
  the first and the last at t = 1/8 .. 7/8 in one call, on the centre 512 x 512 (IFRNet's GoPro test), for
  every model (all of them take any timestep); the linear blend is the floor. Scores are means over all
  rebuilt frames; the JSON also has the PSNR at each of the seven positions.

Every model whose weights are cached or can be fetched here is evaluated (IFRNet's only once imported:
``vsrife models import FILE --model ifrnet``), at each ``--precisions`` (fp32, and the device's reduced
default) and ``--scales`` (IFRNet only at 1: it has no flow scale).

Results go to ``--json`` (default bench-results/quality.json) with the machine and versions; a Markdown
table goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import vsrife
from vsrife.catalogue import get_release, release_names
from vsrife.engine import default_device, default_dtype
from vsrife.evaluation import (
    SNU_FILM_LEVELS,
    evaluate,
    evaluate_blend,
    evaluate_many,
    evaluate_many_blend,
    frame_drop_triplets,
    gopro_sets,
    hd_triplets,
    middlebury_other,
    snu_film_triplets,
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


def triplet_datasets(args: argparse.Namespace) -> dict[str, list]:
    """Every triplet dataset asked for, by name: the sample clips, then the standard sets given."""
    limit = args.limit
    datasets: dict[str, list] = {name: clip_triplets(name) for name in args.clips}
    for flag, loader in (("vimeo90k", vimeo90k_triplets), ("ucf101", ucf101_triplets), ("middlebury", middlebury_other)):
        root = getattr(args, flag)
        if root is not None:
            datasets[flag] = loader(root)[:limit]
    if args.snu_film is not None:
        for level in SNU_FILM_LEVELS:
            datasets[f"snu-film-{level}"] = snu_film_triplets(args.snu_film, level)[:limit]
    if args.hd is not None:
        for resolution, items in hd_triplets(args.hd).items():
            datasets[f"hd-{resolution}"] = items[:limit]
    return datasets


def record(dataset: str, model: str, precision: str | None, scale: float | None, result: dict) -> dict:
    return {"dataset": dataset, "model": model, "precision": precision, "scale": scale, **result}


def table(records: list[dict]) -> str:
    lines = ["| dataset | model | precision | scale | n | PSNR dB | SSIM | IE | PSNR Y dB |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in records:
        luma = f"{r['psnr_y']:.2f}" if r["dataset"].startswith("hd-") else "-"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['precision'] or '-'} | {r['scale'] or '-'} | "
                     f"{r['count']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['ie']:.3f} | {luma} |")  # fmt: skip
    return "\n".join(lines) + "\n"


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
    ap.add_argument("--snu-film", type=Path, help="SNU-FILM folder with test-easy.txt ... test-extreme.txt and test/")
    ap.add_argument("--hd", type=Path, help="RIFE's HD set: the folder with HD544p_GT, HD720p_GT, HD1080p_GT")
    ap.add_argument("--gopro", type=Path, help="GoPro test folder (a folder of frames per video): 8x, frames 1-7 of 9")
    ap.add_argument("--limit", type=int, help="at most this many items per dataset")
    ap.add_argument("--json", type=Path, default=Path("bench-results/quality.json"))
    args = ap.parse_args()

    device = torch.device(args.device) if args.device else default_device()
    reduced = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(default_dtype(device))
    precisions = args.precisions or ["fp32"] + ([reduced] if reduced else [])
    datasets = triplet_datasets(args)
    sets = gopro_sets(args.gopro)[: args.limit] if args.gopro is not None else None

    records = []
    for dataset, items in datasets.items():
        blend = evaluate_blend(items)
        records.append(record(dataset, "blend", None, None, blend))
        print(f"{dataset}: blend {blend['psnr']:.2f} dB over {blend['count']}", file=sys.stderr)
    if sets is not None:
        blend = evaluate_many_blend(sets)
        records.append(record("gopro-8x", "blend", None, None, blend))
        print(f"gopro-8x: blend {blend['psnr']:.2f} dB over {blend['frames']} frames", file=sys.stderr)
    for model in available_models(args.models):
        for precision in precisions:
            for scale in args.scales:
                if scale != 1 and not get_release(model).flow_scale:
                    print(f"{model}: no flow scale, scale {scale:g} left out", file=sys.stderr)
                    continue
                it = vsrife.Interpolator(model, device=device, dtype=PRECISIONS[precision], scale=scale)
                for dataset, items in datasets.items():
                    result = evaluate(it, items)
                    records.append(record(dataset, model, precision, scale, result))
                    print(f"{dataset}: {model} {precision} x{scale} {result['psnr']:.2f} dB "
                          f"SSIM {result['ssim']:.4f} IE {result['ie']:.3f}", file=sys.stderr)  # fmt: skip
                if sets is not None:
                    result = evaluate_many(it, sets)
                    records.append(record("gopro-8x", model, precision, scale, result))
                    print(f"gopro-8x: {model} {precision} x{scale} {result['psnr']:.2f} dB "
                          f"SSIM {result['ssim']:.4f} over {result['frames']} frames", file=sys.stderr)  # fmt: skip
    report = {"machine": machine_info([device]), "device": str(device), "records": records}
    write_results(report, args.json, table(records))


if __name__ == "__main__":
    main()
