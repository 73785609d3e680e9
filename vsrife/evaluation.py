"""Interpolation quality: PSNR, SSIM and Middlebury IE, and loaders for the usual benchmark sets.

The measures follow the evaluation scripts of the RIFE paper (``benchmark/*.py`` in hzwer/ECCV2022-RIFE):

* every image is 8-bit colour, compared on all three channels (no luma conversion);
* :func:`evaluate` rounds each prediction to 8-bit levels before measuring it, as those scripts do;
* SSIM is their "MATLAB-style" SSIM, which treats the colour image as a 3-D volume (see :func:`ssim`);
* Middlebury IE is the mean absolute difference on 0..255 after rounding (see :func:`interpolation_error`).

Datasets are not downloaded here; the loaders only read folders laid out as the sets are distributed:

* Vimeo90K triplets: ``tri_testlist.txt`` and ``sequences/<entry>/im{1,2,3}.png`` (the ``vimeo_triplet``
  package) or ``target/<entry>/im{1,2,3}.png`` (the ``vimeo_interp_test`` package the RIFE script reads);
* UCF101 (the DVF/DAIN/RIFE test triplets, ``ucf101_interp_ours``): ``<n>/frame_00.png``,
  ``<n>/frame_01_gt.png``, ``<n>/frame_02.png``;
* Middlebury OTHER: ``other-data/<name>/frame10.png``, ``frame11.png`` and
  ``other-gt-interp/<name>/frame10i11.png`` (12 sequences with interpolation ground truth).

Pillow is needed only to read image files (the ``cli`` and ``test`` extras install it).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EvaluationResult",
    "SupportsInterpolate",
    "Triplet",
    "evaluate",
    "evaluate_blend",
    "frame_drop_triplets",
    "interpolation_error",
    "load_rgb",
    "middlebury_other",
    "psnr",
    "quantize",
    "ssim",
    "ucf101_triplets",
    "vimeo90k_triplets",
]

# SSIM constants of Wang et al. (2004) for data in [0, 1]: an 11-tap Gaussian window with sigma 1.5,
# C1 = (0.01 * L)^2 and C2 = (0.03 * L)^2 with L = 1.
_SSIM_TAPS = 11
_SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2
_SSIM_C2 = 0.03**2


# ----------------------------------------------------------------------------------------------- metrics


def _pair(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """``a`` and ``b`` as float64 tensors on one device, after checking they are N x C x H x W of one shape."""
    if a.shape != b.shape:
        raise ValueError(f"{what}: the images differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    if a.ndim != 4:
        raise ValueError(f"{what}: expected N x C x H x W tensors, got shape {tuple(a.shape)}")
    if a.numel() == 0:
        raise ValueError(f"{what}: the images are empty (shape {tuple(a.shape)})")
    return a.detach().to(torch.float64), b.detach().to(a.device, torch.float64)


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of two N x 3 x H x W float images with values in [0, 1].

    ``10 * log10(1 / MSE)``, the mean squared error taken over every value of the batch (peak 1.0).
    Identical images give ``math.inf``. No rounding is done here; :func:`evaluate` rounds predictions to
    8-bit levels first, as the RIFE benchmarks do.
    """
    x, y = _pair(a, b, "psnr")
    mse = float(torch.mean((x - y) ** 2))
    if mse == 0.0:
        return math.inf
    return -10.0 * math.log10(mse)


def _gaussian_taps(device: torch.device) -> Tensor:
    """The normalised 11-tap Gaussian (sigma 1.5) of the SSIM window, float64."""
    centre = _SSIM_TAPS // 2
    offsets = torch.arange(_SSIM_TAPS, dtype=torch.float64, device=device) - centre
    taps = torch.exp(-(offsets**2) / (2 * _SSIM_SIGMA**2))
    return taps / taps.sum()


def _blur_axis(x: Tensor, dim: int, taps: Tensor) -> Tensor:
    """Filter ``x`` along ``dim`` with ``taps`` after edge-replicating padding, keeping the size."""
    moved = x.movedim(dim, -1)
    shape = moved.shape
    rows = moved.reshape(-1, 1, shape[-1])
    half = taps.numel() // 2
    rows = F.pad(rows, (half, half), mode="replicate")
    rows = F.conv1d(rows, taps.view(1, 1, -1))
    return rows.reshape(shape).movedim(-1, dim)


def ssim(a: Tensor, b: Tensor, *, volumetric: bool = True) -> float:
    """Structural similarity of two N x 3 x H x W float images with values in [0, 1]; 1.0 means identical.

    By default this is exactly the SSIM of the RIFE benchmarks (their ``ssim_matlab``), which differs
    from per-channel SSIM: the colour image is treated as a C x H x W volume and the local statistics
    are taken with an 11 x 11 x 11 Gaussian window (sigma 1.5) that also spans the colour channels.
    Borders of all three axes are extended by edge replication (5 samples each side) so the SSIM map
    keeps the image's size; C1 = 0.01^2, C2 = 0.03^2 (data range 1). The result is the mean of the map
    over the whole batch. Channel order (RGB or BGR) does not change the value.

    With ``volumetric=False`` the window is the usual 11 x 11 Gaussian applied to each channel on its
    own (Wang et al. 2004) with the same constants and border handling, and the per-channel maps are
    averaged.

    The Gaussian is separable, so it is applied one axis at a time (in float64). The RIFE script
    shrinks the window for images smaller than 11 pixels; here it is always 11 taps.
    """
    x, y = _pair(a, b, "ssim")
    taps = _gaussian_taps(x.device)
    axes = (1, 2, 3) if volumetric else (2, 3)

    def local_mean(t: Tensor) -> Tensor:
        for dim in axes:
            t = _blur_axis(t, dim, taps)
        return t

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x * mu_x
    var_y = local_mean(y * y) - mu_y * mu_y
    cov = local_mean(x * y) - mu_x * mu_y
    contrast = 2 * cov + _SSIM_C2
    spread = var_x + var_y + _SSIM_C2
    ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * contrast) / ((mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * spread)
    return float(ssim_map.mean())


def _to_8bit(image: Tensor) -> Tensor:
    """``image`` in [0, 1] as 8-bit levels 0..255 (still a float tensor), rounding half to even."""
    return torch.round(image.clamp(0, 1) * 255)


def quantize(image: Tensor) -> Tensor:
    """``image`` (float, [0, 1]) rounded to the nearest 8-bit level and scaled back to [0, 1]."""
    return _to_8bit(image.to(torch.float64)) / 255


def interpolation_error(pred: Tensor, gt: Tensor) -> float:
    """Middlebury interpolation error (IE) as the RIFE benchmark computes it, in 8-bit grey levels (0..255).

    Both images (N x 3 x H x W, floats in [0, 1]) are clamped, scaled to 0..255 and rounded to whole
    levels (the ground truth, read from an 8-bit file, is unchanged by this); the IE is the mean
    absolute difference over every pixel and channel. This is RIFE's definition: the official
    Middlebury table uses the root-mean-square difference instead.
    """
    p, g = _pair(pred, gt, "interpolation_error")
    return float(torch.mean(torch.abs(_to_8bit(p) - _to_8bit(g))))


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Triplet:
    """Three image files of one test item: ``first`` (t=0), ``middle`` (ground truth at t=0.5), ``last`` (t=1)."""

    name: str
    first: Path
    middle: Path
    last: Path


def _require_dir(path: Path, what: str, layout: str) -> None:
    if not path.is_dir():
        state = "is not a folder" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{what} {path} {state}; expected {layout}")


def _require_files(triplet: Triplet, layout: str) -> Triplet:
    missing = [str(p) for p in (triplet.first, triplet.middle, triplet.last) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{triplet.name}: missing {', '.join(missing)}; expected {layout}")
    return triplet


def _folder_triplets(base: Path, names: list[str], files: tuple[str, str, str], layout: str) -> list[Triplet]:
    """One checked triplet per ``base/<name>/`` holding the files (first, middle, last), named after it."""
    return [_require_files(Triplet(n, *(base / n / f for f in files)), layout) for n in names]


def _natural_key(name: str) -> tuple[int, int, str]:
    """Sort key that puts numeric names in numeric order ("2" before "11") ahead of other names."""
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


_VIMEO_LAYOUT = "tri_testlist.txt and sequences/<entry>/im1.png, im2.png, im3.png (or target/<entry>/...)"


def vimeo90k_triplets(root: str | Path) -> list[Triplet]:
    """The Vimeo90K triplet test set under ``root``, in the order of ``tri_testlist.txt``.

    ``root`` is the ``vimeo_triplet`` folder (frames under ``sequences/``) or the ``vimeo_interp_test``
    folder the RIFE script reads (frames under ``target/``); either holds ``tri_testlist.txt``, one
    entry such as ``00001/0266`` per line (blank lines are skipped). Each entry becomes a Triplet named
    after it: ``im1.png`` first, ``im2.png`` middle (ground truth), ``im3.png`` last.

    Raises FileNotFoundError for a missing list, frame folder or image, ValueError for an empty list.
    """
    root = Path(root)
    _require_dir(root, "Vimeo90K folder", _VIMEO_LAYOUT)
    listing = root / "tri_testlist.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"Vimeo90K: {listing} is missing; expected {_VIMEO_LAYOUT} under {root}")
    frames = next((root / sub for sub in ("sequences", "target") if (root / sub).is_dir()), None)
    if frames is None:
        raise FileNotFoundError(
            f"Vimeo90K: neither {root / 'sequences'} nor {root / 'target'} is a folder; expected {_VIMEO_LAYOUT}"
        )
    entries = [line.strip() for line in listing.read_text().splitlines()]
    entries = [e for e in entries if e]
    if not entries:
        raise ValueError(f"Vimeo90K: {listing} lists no sequences")
    return _folder_triplets(frames, entries, ("im1.png", "im2.png", "im3.png"), _VIMEO_LAYOUT)


_UCF_LAYOUT = "a folder per triplet, <name>/frame_00.png, frame_01_gt.png, frame_02.png (ucf101_interp_ours)"


def ucf101_triplets(root: str | Path) -> list[Triplet]:
    """The UCF101 interpolation test triplets (``ucf101_interp_ours``, 379 folders) under ``root``.

    Every non-hidden sub-folder is one triplet: ``frame_00.png`` first, ``frame_01_gt.png`` middle
    (ground truth), ``frame_02.png`` last; other files in a folder are ignored. Triplets are named after
    their folders and sorted with numeric names in numeric order.

    Raises FileNotFoundError for a missing root or a folder without the three frames, ValueError when
    ``root`` has no sub-folders at all.
    """
    root = Path(root)
    _require_dir(root, "UCF101 folder", _UCF_LAYOUT)
    names = sorted((p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=_natural_key)
    if not names:
        raise ValueError(f"UCF101: {root} has no triplet folders; expected {_UCF_LAYOUT}")
    return _folder_triplets(root, names, ("frame_00.png", "frame_01_gt.png", "frame_02.png"), _UCF_LAYOUT)


_MIDDLEBURY_LAYOUT = "other-data/<name>/frame10.png, frame11.png and other-gt-interp/<name>/frame10i11.png"


def middlebury_other(root: str | Path) -> list[Triplet]:
    """The Middlebury OTHER interpolation set under ``root``, sorted by sequence name.

    ``root`` holds ``other-data`` (the colour two-frame inputs) and ``other-gt-interp`` (ground truth).
    Sequences with a folder in both are used (RIFE evaluates the 12 with ground truth: Beanbags ...
    Walking); ``frame10.png`` is first, ``other-gt-interp/<name>/frame10i11.png`` the middle and
    ``frame11.png`` the last frame.

    Raises FileNotFoundError for a missing folder or a shared sequence without its three images,
    ValueError when no sequence has both inputs and ground truth.
    """
    root = Path(root)
    data, gt = root / "other-data", root / "other-gt-interp"
    _require_dir(root, "Middlebury folder", _MIDDLEBURY_LAYOUT)
    _require_dir(data, "Middlebury input folder", _MIDDLEBURY_LAYOUT)
    _require_dir(gt, "Middlebury ground-truth folder", _MIDDLEBURY_LAYOUT)

    def sequences(folder: Path) -> set[str]:
        return {p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")}

    names = sorted(sequences(data) & sequences(gt))
    if not names:
        raise ValueError(f"Middlebury: no sequence has a folder in both {data} and {gt}; expected {_MIDDLEBURY_LAYOUT}")
    return [
        _require_files(
            Triplet(n, data / n / "frame10.png", gt / n / "frame10i11.png", data / n / "frame11.png"),
            _MIDDLEBURY_LAYOUT,
        )
        for n in names
    ]


def load_rgb(path: str | Path) -> Tensor:
    """An image file as a 1 x 3 x H x W float32 RGB tensor in [0, 1] (8-bit levels / 255), via Pillow.

    Grey, palette and alpha images are converted to RGB (alpha is dropped).
    """
    from PIL import Image

    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)


def frame_drop_triplets(frames: Sequence[Tensor]) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Frame-drop test items from consecutive frames of a clip: ``(frames[2k-1], frames[2k], frames[2k+1])``.

    ``k`` runs 1, 2, ... while ``2k+1 < len(frames)`` (0-based indices). Counting frames from 1, frame
    ``2k+1`` is rebuilt from frames ``2k`` and ``2k+2``; the first frame of the clip is never used.
    """
    for k in itertools.count(1):
        if 2 * k + 1 >= len(frames):
            return
        yield frames[2 * k - 1], frames[2 * k], frames[2 * k + 1]


# ----------------------------------------------------------------------------------------------- evaluation


class SupportsInterpolate(Protocol):
    """Anything with :meth:`vsrife.Interpolator.interpolate`'s signature."""

    def interpolate(self, img0: Tensor, img1: Tensor, timestep: float) -> Tensor: ...


class EvaluationResult(TypedDict):
    """Scores of one run: means over all items, then per-item values in item order."""

    count: int
    psnr: float  # dB, mean of per-item PSNR
    ssim: float  # mean of per-item SSIM (RIFE's volumetric SSIM)
    ie: float  # 8-bit levels, mean of per-item Middlebury IE
    names: list[str]
    psnr_per_item: list[float]
    ssim_per_item: list[float]
    ie_per_item: list[float]


Item = Triplet | tuple[Tensor, Tensor, Tensor]


def _load(item: Item, index: int) -> tuple[str, Tensor, Tensor, Tensor]:
    if isinstance(item, Triplet):
        return item.name, load_rgb(item.first), load_rgb(item.middle), load_rgb(item.last)
    first, middle, last = item
    return str(index), first, middle, last


def _score(
    predict: Callable[[Tensor, Tensor], Tensor], items: Iterable[Item], limit: int | None, rounded: bool
) -> EvaluationResult:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or at least 0, not {limit}")
    names: list[str] = []
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "ie": []}
    for index, item in enumerate(itertools.islice(items, limit)):
        name, first, middle, last = _load(item, index)
        gt = middle.detach().to("cpu", torch.float64)
        pred = predict(first, last).detach().to("cpu", torch.float64)
        if rounded:
            pred = quantize(pred)
        names.append(name)
        scores["psnr"].append(psnr(pred, gt))
        scores["ssim"].append(ssim(pred, gt))
        scores["ie"].append(interpolation_error(pred, gt))
    if not names:
        raise ValueError("no triplets to evaluate")
    return EvaluationResult(
        count=len(names),
        psnr=statistics.fmean(scores["psnr"]),
        ssim=statistics.fmean(scores["ssim"]),
        ie=statistics.fmean(scores["ie"]),
        names=names,
        psnr_per_item=scores["psnr"],
        ssim_per_item=scores["ssim"],
        ie_per_item=scores["ie"],
    )


def evaluate(
    interpolator: SupportsInterpolate, triplets: Iterable[Item], *, limit: int | None = None, rounded: bool = True
) -> EvaluationResult:
    """Score ``interpolator.interpolate(first, last, 0.5)`` against the middle frame of each triplet.

    ``triplets`` holds :class:`Triplet` file paths (loaded with :func:`load_rgb`; named after the
    triplet) or ``(first, middle, last)`` tuples of N x 3 x H x W float tensors in [0, 1] (named by
    position, "0", "1", ...), e.g. from :func:`frame_drop_triplets`. At most ``limit`` items are used.
    With ``rounded`` (default) each prediction is rounded to 8-bit levels before scoring, as in the
    RIFE benchmarks. Returns the count, mean PSNR (dB), SSIM and IE (0..255 levels) and per-item lists.
    """
    return _score(lambda a, b: interpolator.interpolate(a, b, 0.5), triplets, limit, rounded)


def evaluate_blend(triplets: Iterable[Item], *, limit: int | None = None, rounded: bool = True) -> EvaluationResult:
    """Like :func:`evaluate` for the 50/50 blend ``(first + last) / 2``, the floor any interpolator should beat."""
    return _score(lambda a, b: (a.to(torch.float64) + b.to(torch.float64)) / 2, triplets, limit, rounded)
