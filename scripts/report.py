"""Write README.md's results section and its pictures from the benchmark JSON; no number is typed by hand.

    python scripts/report.py [--quality bench-results/quality.json] [--speed bench-results/speed.json]
                             [--dedup bench-results/dedup.json] [--contention bench-results/contention.json]
                             [--flops bench-results/flops.json]

Replaces the text between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in README.md with
tables built from the JSON files, and writes ``docs/results/speed_quality.png`` (speed against quality
per model and precision) and ``docs/results/crop.png`` (a crop of a real interpolated frame beside the
50/50 blend and the real frame, with their PSNR). ``scripts/reproduce_results.py`` runs the benchmarks
and then this.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from benchlib import cpu_kind

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
DEDUP = ("<!-- dedup:begin -->", "<!-- dedup:end -->")
CONTENTION = ("<!-- contention:begin -->", "<!-- contention:end -->")
FLOPS = ("<!-- flops:begin -->", "<!-- flops:end -->")
PICTURES = ROOT / "docs" / "results"


def fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def machine_line(machine: dict) -> str:
    parts = [machine.get("cpu", "?"), f"{machine.get('cores', '?')} cores"]
    if machine.get("ram_gib"):
        parts.append(f"{machine['ram_gib']:.0f} GiB")
    parts.append(", ".join(machine.get("gpus") or []) or (machine.get("gpu") or "no GPU"))
    if "cpu_native_bf16" in machine:
        parts.append(cpu_kind(machine))
    parts.append(f"torch {machine.get('torch', '?')}")
    return ", ".join(p for p in parts if p) + f"; measured {machine.get('date', '?')}"


def quality_section(q: dict) -> list[str]:
    hd = any(r["dataset"].startswith("hd-") for r in q["records"])  # RIFE's HD script reports luma PSNR
    rows = ["| clip / dataset | model | precision | scale | triplets | PSNR (dB) | SSIM | IE |" + (" PSNR Y (dB) |" if hd else ""),
            "|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if hd else "")]  # fmt: skip
    for r in q["records"]:
        model = "50/50 blend" if r["model"] == "blend" else r["model"]
        luma = (f" {r['psnr_y']:.2f} |" if r["dataset"].startswith("hd-") else " - |") if hd else ""
        rows.append(f"| {r['dataset']} | {model} | {r['precision'] or '-'} | {fmt(r['scale'], 'g')} | {r['count']} | "
                    f"{r['psnr']:.2f} | {r['ssim']:.4f} | {r['ie']:.3f} |{luma}")  # fmt: skip
    return [f"Quality: {machine_line(q['machine'])} (device {q.get('device', '?')}).", "", *rows]


def speed_section(s: dict) -> list[str]:
    rows = ["| model | resolution | device | path | precision | s / frame (median) | IQR | frames/s | vs plain | peak RSS MiB |",
            "|---|---|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in s["records"]:
        if "median_s" not in r:
            rows.append(f"| {r['model']} | {r['resolution']} | {r['device']} | {r['path']} | "
                        f"{r.get('precision', '-')} | failed: {r.get('error', '?')} | | | | |")  # fmt: skip
            continue
        path = r["path"] + (" (compiled)" if r.get("compiled") else "")
        rows.append(f"| {r['model']} | {r['resolution']} | {r['device']} | {path} | {r.get('precision', '-')} | "
                    f"{r['median_s']:.3f} | {fmt(r.get('iqr_s'), '.3f')} | {r['fps']:.2f} | "
                    f"{fmt(r.get('ratio_to_baseline'), '.2f')}x | {fmt(r.get('peak_rss_mib'), '.0f')} |")  # fmt: skip
    notes = [
        "- baseline: the plain upstream path, the upstream inference code's order of operations in fp32, NCHW, "
        "a fresh pad per call to upstream's multiple of 128 (`scripts/upstream_path.py`), in a process of its "
        "own with the system's allocator, as upstream's script runs (its peak RSS is that process's); stream: "
        "vsrife's engine, frames prepared once; vs plain: baseline time / this time, measured in the same run, "
        "calls interleaved.",
        "- engine, filter, cli: wall time per interpolated frame of the same short 2x clip through the bare "
        "engine loop, the VapourSynth filter and `vsrife video` (start-up, model load, decode and encode "
        "included).",
        *(f"- {n}" for n in s.get("notes", [])),
    ]
    if any(str(r.get("precision", "")).endswith("+int8") for r in s["records"]):
        notes.append("- `+int8`: the engine's own choice where no dtype is named (`Interpolator(model)`, `vsrife "
                     "video`): that dtype with the 8-bit blocks of `vsrife.int8`; a named dtype, as the filter's, "
                     "keeps float blocks.")  # fmt: skip
    if s.get("contended"):
        notes.append("- other processes took CPU time during some measurements; see the JSON's cpu_use")
    return [f"Speed: {machine_line(s['machine'])}.", "", *rows, "", *notes]


def dedup_section(d: dict) -> list[str]:
    rows = ["| clip | drawn on | dropped frames scored | held frame (no dedup), PSNR dB | dedup, PSNR dB | gain dB |",
            "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for r in d["records"]:
        rows.append(f"| {r['clip']} | {r['step']}s | {r['positions']} | {r['held_psnr']:.2f} | {r['dedup_psnr']:.2f} | "
                    f"{r['dedup_psnr'] - r['held_psnr']:+.2f} |")  # fmt: skip
    return [
        "_Generated by `python scripts/report.py` from `bench-results/dedup.json`; do not edit by hand._", "",
        f"Held frames (`scripts/bench_dedup.py`, model {d['records'][0]['model']}): {machine_line(d['machine'])} "
        f"(device {d.get('device', '?')}).", "", *rows, "",
        "- Each clip redrawn on twos or threes, encoded with x264 CRF 18, run back at its own rate through "
        "`vsrife video --multi 1 --dedup`; the frames at the dropped positions against the real frames.",
    ]  # fmt: skip


def flops_section(f: dict) -> list[str]:
    from bench_speed import flops_table

    return [
        "_Generated by `python scripts/report.py` from `bench-results/flops.json` (`python scripts/bench_speed.py "
        "--flops-only --json bench-results/flops.json`); do not edit by hand._", "",
        f"FLOPs of one interpolated 1280x720 frame, one release per family: {machine_line(f['machine'])}.", "",
        *flops_table(f["flops"]), "",
        "- Counted by `torch.utils.flop_counter.FlopCounterMode` on one forward pass (random weights: the count "
        "does not depend on them), frames padded as the engine pads them: 2 per multiply-add of convolutions, "
        "transposed convolutions and matrix products; warps, resizes and activations are not counted. 4.0/4.1's "
        "coarser re-run of large motion, which only some pairs take, is left out. Other releases of a family "
        "differ in widths, encoder or scales (`models/releases.json`): `--flops-only --models NAME` counts any.",
    ]  # fmt: skip


def contention_section(c: dict) -> list[str]:
    from bench_contention import contention_rows

    return [
        "_Generated by `python scripts/report.py` from `bench-results/contention.json`; do not edit by hand._", "",
        f"A shared CPU (`scripts/bench_contention.py`, {c['job']}): {machine_line(c['machine'])}.", "",
        *contention_rows(c), "",
        "- idle vs before: each run's time over the paired run with OpenMP's default spin, median; contended / "
        "idle: the configuration's median time beside the busy processes over its own idle median.",
    ]  # fmt: skip


def speed_quality_plot(q: dict, s: dict, path: Path) -> bool:
    """Mean frame-drop PSNR over the sample clips against stream frames/s at the smallest resolution."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    psnr = defaultdict(list)
    for r in q["records"]:
        psnr[(r["model"], r["precision"])].append(r["psnr"])
    stream = [r for r in s["records"] if r.get("path") == "stream" and "fps" in r]
    if not stream:
        return False
    smallest = min(stream, key=lambda r: r["width"] * r["height"])["resolution"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for r in stream:
        if r["resolution"] != smallest or (r["model"], r["precision"]) not in psnr:
            continue
        y = statistics.fmean(psnr[(r["model"], r["precision"])])
        ax.scatter(r["fps"], y)
        ax.annotate(f"{r['model']} {r['precision']}", (r["fps"], y), textcoords="offset points", xytext=(5, 5))
    if ("blend", None) in psnr:
        ax.axhline(statistics.fmean(psnr[("blend", None)]), color="grey", linestyle="--", label="50/50 blend")
        ax.legend(loc="lower right")
    ax.margins(x=0.25, y=0.15)
    ax.set_xlabel(f"interpolated frames per second, {smallest}, {stream[0]['device']}")
    ax.set_ylabel("mean frame-drop PSNR on the sample clips (dB)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def crop_picture(model: str, path: Path, size: tuple[int, int] = (360, 200)) -> dict:
    """A crop where the blend goes most wrong, of frame 3 of bigbuckbunny rebuilt from frames 2 and 4."""
    from vsrife.demo import comparison_image
    from vsrife.engine import Interpolator
    from vsrife.video import frames_of
    from vsrife.weights import fetch_sample

    frames = frames_of(fetch_sample("bigbuckbunny", progress=False), 4)
    prev, truth, nxt = frames[1:4]
    w, h = size
    error = ((prev + nxt) / 2 - truth).abs().mean(1, keepdim=True)
    pooled = torch.nn.functional.avg_pool2d(error, (h, w), stride=(h // 4, w // 4))
    y, x = divmod(int(pooled.flatten().argmax()), pooled.shape[-1])
    window = (slice(None), slice(None), slice(y * (h // 4), y * (h // 4) + h), slice(x * (w // 4), x * (w // 4) + w))
    rife = Interpolator(model).interpolate(prev, nxt, 0.5)  # the whole frame, as a user would see it
    path.parent.mkdir(parents=True, exist_ok=True)
    return comparison_image(prev[window], truth[window], nxt[window], rife[window], f"RIFE {model}", path)


def replace_section(readme: Path, lines: list[str], markers: tuple[str, str] = (BEGIN, END)) -> None:
    begin, end = markers
    text = readme.read_text()
    if begin not in text or end not in text:
        raise SystemExit(f"{readme} has no {begin} ... {end} section")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(head + begin + "\n" + "\n".join(lines).rstrip() + "\n" + end + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quality", type=Path, default=ROOT / "bench-results" / "quality.json")
    ap.add_argument("--speed", type=Path, default=ROOT / "bench-results" / "speed.json")
    ap.add_argument("--dedup", type=Path, default=ROOT / "bench-results" / "dedup.json")
    ap.add_argument("--contention", type=Path, default=ROOT / "bench-results" / "contention.json")
    ap.add_argument("--flops", type=Path, default=ROOT / "bench-results" / "flops.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args()
    if args.flops.is_file():
        replace_section(args.readme, flops_section(json.loads(args.flops.read_text())), FLOPS)
        print(f"wrote the FLOPs table of {args.readme}")
    if args.contention.is_file():
        replace_section(args.readme, contention_section(json.loads(args.contention.read_text())), CONTENTION)
        print(f"wrote the shared-CPU results of {args.readme}")
    if args.dedup.is_file():
        replace_section(args.readme, dedup_section(json.loads(args.dedup.read_text())), DEDUP)
        print(f"wrote the held-frame results of {args.readme}")
    if not (args.quality.is_file() and args.speed.is_file()):
        print(f"no {args.quality} and {args.speed}: the quality and speed results were left as they are")
        return
    q = json.loads(args.quality.read_text())
    s = json.loads(args.speed.read_text())
    lines = ["_Generated by `python scripts/report.py` from `bench-results/*.json`; do not edit by hand._", ""]
    lines += quality_section(q) + [""] + speed_section(s) + [""]
    if speed_quality_plot(q, s, PICTURES / "speed_quality.png"):
        lines += ["![speed against quality](docs/results/speed_quality.png)", ""]
    models = [r["model"] for r in q["records"] if r["model"] != "blend"]
    if models:
        scores = crop_picture(models[0], PICTURES / "crop.png")
        lines += [f"![blend, RIFE {models[0]} and the real frame](docs/results/crop.png)", "",
                  f"Frame 3 of bigbuckbunny rebuilt from frames 2 and 4, cropped where the blend errs most: "
                  f"blend {scores['blend']:.2f} dB, RIFE {models[0]} {scores['rife']:.2f} dB (PSNR of the crop)."]  # fmt: skip
    replace_section(args.readme, lines)
    print(f"wrote the results section of {args.readme} and {PICTURES}")


if __name__ == "__main__":
    main()
