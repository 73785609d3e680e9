"""Interpolation quality: PSNR, SSIM and Middlebury IE, and loaders for the usual benchmark sets.

The measures follow the evaluation scripts of the RIFE paper (``benchmark/*.py`` in hzwer/ECCV2022-RIFE):

* every image is 8-bit colour, compared on all three channels (no luma conversion); :func:`luma_psnr`
  is also given, the figure of RIFE's HD script (BT.601 Y);
* :func:`evaluate` rounds each prediction to 8-bit levels before measuring it, as those scripts do;
* SSIM is their "MATLAB-style" SSIM, which treats the colour image as a 3-D volume (see :func:`ssim`);
* Middlebury IE is the mean absolute difference on 0..255 after rounding (see :func:`interpolation_error`).

Datasets are not downloaded here; the loaders only read folders laid out as the sets are distributed:

* Vimeo90K triplets: ``tri_testlist.txt`` and ``sequences/<entry>/im{1,2,3}.png`` (the ``vimeo_triplet``
  package) or ``target/<entry>/im{1,2,3}.png`` (the ``vimeo_interp_test`` package the RIFE script reads);
* UCF101 (the DVF/DAIN/RIFE test triplets, ``ucf101_interp_ours``): ``<n>/frame_00.png``,
  ``<n>/frame_01_gt.png``, ``<n>/frame_02.png``;
* Middlebury OTHER: ``other-data/<name>/frame10.png``, ``frame11.png`` and
  ``other-gt-interp/<name>/frame10i11.png`` (12 sequences with interpolation ground truth);
* SNU-FILM (easy, medium, hard, extreme): ``test-<level>.txt`` and the frames under ``test/``;
* RIFE's HD set: ``HD544p_GT/``, ``HD720p_GT/``, ``HD1080p_GT/`` with raw YUV 4:2:0 sequences, read, padded
  and scored as its ``benchmark/HD.py`` does;
* GoPro for 8x (:func:`evaluate_many`): a folder per video of frames; sets of 9 frames, frames 1 .. 7
  rebuilt from the first and the last at t = 1/8 .. 7/8, centre 512 x 512 as IFRNet's GoPro test.

Pillow is needed only to read image files (the ``cli`` and ``test`` extras install it).
"""

from __future__ import annotations

import functools
import itertools
import logging
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

log = logging.getLogger("vsrife")

__all__ = [
    "EvaluationResult",
    "FrameSet",
    "MultiFrameResult",
    "SNU_FILM_LEVELS",
    "SupportsInterpolate",
    "Triplet",
    "evaluate",
    "evaluate_blend",
    "evaluate_many",
    "evaluate_many_blend",
    "frame_drop_triplets",
    "gopro_sets",
    "hd_triplets",
    "interpolation_error",
    "load_rgb",
    "luma_psnr",
    "middlebury_other",
    "psnr",
    "quantize",
    "read_yuv420_frame",
    "snu_film_triplets",
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


_BT601 = (0.299, 0.587, 0.114)  # the luma weights of skimage's rgb2yuv, which RIFE's HD script uses


def luma_psnr(a: Tensor, b: Tensor) -> float:
    """PSNR in dB of the BT.601 luma (Y = 0.299 R + 0.587 G + 0.114 B) of two N x 3 x H x W RGB images in
    [0, 1]: the figure RIFE's HD benchmark reports (``benchmark/HD.py``, skimage's ``rgb2yuv`` Y). Identical
    images give ``math.inf``."""
    x, y = _pair(a, b, "luma_psnr")
    if x.shape[1] != 3:
        raise ValueError(f"luma_psnr: expected RGB images, got {x.shape[1]} channels")
    weights = torch.tensor(_BT601, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return psnr((x * weights).sum(1, keepdim=True), (y * weights).sum(1, keepdim=True))


# ----------------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Triplet:
    """Three image files of one test item: ``first`` (t=0), ``middle`` (ground truth at t=0.5), ``last`` (t=1)."""

    name: str
    first: Path
    middle: Path
    last: Path


@dataclass(frozen=True)
class FrameSet:
    """A test item read only when it is scored: ``load()`` returns its frames in time order (1 x 3 x H x W
    float tensors in [0, 1]); the first and the last are the inputs, the ones between the ground truth.

    ``group``: the sequence it comes from (a mean of group means is taken where the protocol says so, as
    RIFE's HD script does for its luma PSNR). ``pad``: rows repeated above and below the inputs before
    interpolating and removed after (RIFE's HD script)."""

    name: str
    load: Callable[[], Sequence[Tensor]]
    group: str = ""
    pad: int = 0


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


SNU_FILM_LEVELS = ("easy", "medium", "hard", "extreme")
_SNU_LAYOUT = ("test-easy.txt, test-medium.txt, test-hard.txt, test-extreme.txt (three frame paths a line, "
               "data/SNU-FILM/test/...) and the frames under test/GOPRO_test/ and test/YouTube_test/")  # fmt: skip


def _snu_path(root: Path, entry: str) -> Path:
    """A frame path of a SNU-FILM list: as written (absolute, or under ``root``), else from its ``test``
    folder on, under ``root`` (the lists are distributed with a ``data/SNU-FILM/`` prefix)."""
    path = Path(entry)
    direct = path if path.is_absolute() else root / path
    if direct.is_file() or "test" not in path.parts:
        return direct
    return root.joinpath(*path.parts[path.parts.index("test") :])


def snu_film_triplets(root: str | Path, level: str) -> list[Triplet]:
    """The SNU-FILM test triplets of one difficulty (``easy``, ``medium``, ``hard`` or ``extreme``: the same
    scenes with wider and wider gaps between the frames, 310 triplets each) under ``root``.

    ``root`` holds ``test-<level>.txt``, one triplet a line as three frame paths (first, ground truth,
    last), and the ``test/`` folder the paths point into. The lists name the frames as
    ``data/SNU-FILM/test/...``, relative to the CAIN repository they come from; a path that does not exist
    as written is looked up from its ``test`` folder on under ``root``. Triplets are named after their
    ground-truth frame.

    Raises ValueError for an unknown level, an empty list or a line without three paths,
    FileNotFoundError for a missing folder, list or frame.
    """
    root = Path(root)
    if level not in SNU_FILM_LEVELS:
        raise ValueError(f"SNU-FILM has no level {level!r}; the levels are {', '.join(SNU_FILM_LEVELS)}")
    _require_dir(root, "SNU-FILM folder", _SNU_LAYOUT)
    listing = root / f"test-{level}.txt"
    if not listing.is_file():
        raise FileNotFoundError(f"SNU-FILM: {listing} is missing; expected {_SNU_LAYOUT} under {root}")
    triplets = []
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise ValueError(f"SNU-FILM: line {number} of {listing} has {len(fields)} paths, not 3")
        first, middle, last = (_snu_path(root, f) for f in fields)
        name = middle.relative_to(root).as_posix() if middle.is_relative_to(root) else str(middle)
        triplets.append(_require_files(Triplet(name, first, middle, last), _SNU_LAYOUT))
    if not triplets:
        raise ValueError(f"SNU-FILM: {listing} lists no triplets")
    return triplets


# The HD set of RIFE's benchmark (benchmark/HD.py in hzwer/ECCV2022-RIFE): raw 8-bit YUV 4:2:0 sequences,
# with the rows its script repeats above and below each frame before interpolating (so that the sides
# divide by 32) and removes after.
HD_SEQUENCES = (
    ("HD720p_GT/parkrun_1280x720_50.yuv", 720, 1280),
    ("HD720p_GT/shields_1280x720_60.yuv", 720, 1280),
    ("HD720p_GT/stockholm_1280x720_60.yuv", 720, 1280),
    ("HD1080p_GT/BlueSky.yuv", 1080, 1920),
    ("HD1080p_GT/Kimono1_1920x1080_24.yuv", 1080, 1920),
    ("HD1080p_GT/ParkScene_1920x1080_24.yuv", 1080, 1920),
    ("HD1080p_GT/sunflower_1080p25.yuv", 1080, 1920),
    ("HD544p_GT/Sintel_Alley2_1280x544.yuv", 544, 1280),
    ("HD544p_GT/Sintel_Market5_1280x544.yuv", 544, 1280),
    ("HD544p_GT/Sintel_Temple1_1280x544.yuv", 544, 1280),
    ("HD544p_GT/Sintel_Temple2_1280x544.yuv", 544, 1280),
)
HD_PAD = {720: 24, 1080: 4, 544: 16}
HD_TRIPLETS = 50  # triplets start at frames 0, 2, ..., 98, while the third frame exists
_HD_LAYOUT = "HD720p_GT/, HD1080p_GT/ and HD544p_GT/ with the raw YUV 4:2:0 sequences of RIFE's HD benchmark"

# skimage's YUV (rgb2yuv / yuv2rgb), which RIFE's script reads the files with: full range, U and V centred
_YUV_FROM_RGB = np.array([[0.299, 0.587, 0.114], [-0.14714119, -0.28886916, 0.43601035],
                          [0.61497538, -0.51496512, -0.10001026]])  # fmt: skip
_RGB_FROM_YUV = np.linalg.inv(_YUV_FROM_RGB)


def read_yuv420_frame(path: str | Path, index: int, height: int, width: int) -> Tensor:
    """Frame ``index`` of a raw 8-bit YUV 4:2:0 file as 1 x 3 x H x W float32 RGB in [0, 1], converted as
    RIFE's HD script reads it: chroma upsampled with Pillow's bicubic resize, Y / 255 and U, V / 255 - 0.5
    taken as skimage's YUV, RGB clipped to [0, 1] and cut to whole 8-bit levels (truncated, not rounded)."""
    from PIL import Image

    plane, chroma = height * width, (height // 2) * (width // 2)
    with open(path, "rb") as f:
        f.seek(index * (plane + 2 * chroma))
        data = f.read(plane + 2 * chroma)
    if len(data) < plane + 2 * chroma:
        raise ValueError(f"{path} has no frame {index} of {width}x{height}")
    raw = np.frombuffer(data, np.uint8)
    y = raw[:plane].reshape(height, width)
    u, v = (raw[plane + i * chroma : plane + (i + 1) * chroma].reshape(height // 2, width // 2) for i in (0, 1))
    u, v = (np.asarray(Image.fromarray(c).resize((width, height), Image.Resampling.BICUBIC)) for c in (u, v))
    yuv = np.stack((y / 255.0, u / 255.0 - 0.5, v / 255.0 - 0.5), axis=-1)
    rgb = (255.0 * np.clip(yuv @ _RGB_FROM_YUV.T, 0.0, 1.0)).astype(np.uint8)
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).unsqueeze(0).float().div_(255)


def _yuv_triplet(path: Path, start: int, height: int, width: int) -> list[Tensor]:
    return [read_yuv420_frame(path, start + i, height, width) for i in range(3)]


def hd_triplets(root: str | Path) -> dict[str, list[FrameSet]]:
    """RIFE's HD benchmark under ``root`` (the ``HD_dataset`` folder), by resolution (``544p``, ``720p``,
    ``1080p``): for each of its 11 sequences that is present, the triplets its script scores, frame
    2k + 1 rebuilt from frames 2k and 2k + 2 for k = 0 .. 49 while frame 2k + 2 exists, each padded as the
    script pads it (24 rows above and below at 720p, 4 at 1080p, 16 at 544p) and grouped by sequence.

    Sequences missing from ``root`` are left out with a warning; FileNotFoundError when none is there.
    """
    root = Path(root)
    _require_dir(root, "HD folder", _HD_LAYOUT)
    found: dict[str, list[FrameSet]] = {}
    missing = []
    for relative, height, width in HD_SEQUENCES:
        path = root / relative
        if not path.is_file():
            missing.append(relative)
            continue
        frames = path.stat().st_size // (height * width * 3 // 2)
        count = min(HD_TRIPLETS, max(0, (frames - 1) // 2))
        label = f"{height}p"
        for k in range(count):
            load = functools.partial(_yuv_triplet, path, 2 * k, height, width)
            found.setdefault(label, []).append(FrameSet(f"{path.stem}/{2 * k + 1}", load, path.stem, HD_PAD[height]))
    if not found:
        raise FileNotFoundError(f"HD: no sequence of RIFE's HD set under {root}; expected {_HD_LAYOUT}")
    if missing:
        log.warning("HD: %d of %d sequences are missing and left out: %s", len(missing), len(HD_SEQUENCES),
                    ", ".join(missing))  # fmt: skip
    return {label: found[label] for label in ("544p", "720p", "1080p") if label in found}


GOPRO_BETWEEN = 7  # frames rebuilt between the two inputs of a set (8x)
GOPRO_CROP = 512  # the centre square the IFRNet GoPro test scores
_GOPRO_LAYOUT = "a folder per video (GOPR0384_11_00/, ...) of its frames in name order (000001.png, ...), or test/ holding them"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _centre_crop(image: Tensor, side: int) -> Tensor:
    h, w = image.shape[-2:]
    top, left = (max(0, h // 2 - side // 2), max(0, w // 2 - side // 2))
    return image[..., top : top + min(side, h), left : left + min(side, w)]


def _cropped_frames(paths: tuple[Path, ...], crop: int | None) -> list[Tensor]:
    frames = [load_rgb(p) for p in paths]
    return frames if crop is None else [_centre_crop(f, crop) for f in frames]


def gopro_sets(root: str | Path, *, between: int = GOPRO_BETWEEN, crop: int | None = GOPRO_CROP) -> list[FrameSet]:
    """GoPro-style sets for many frames between two (8x, as IFRNet's GoPro test): every video folder under
    ``root`` (or under ``root/test``, the GOPRO_Large layout) is cut into sets of ``between`` + 2 frames,
    one every ``between`` + 1 frames (frames 0-8, 8-16, ... for 8x); frames 1 .. ``between`` of a set are
    rebuilt from its first and last. Frames are read in name order and centre-cropped to ``crop`` x
    ``crop`` (512, as that test; None keeps the whole frame; a smaller frame is kept whole).

    Raises FileNotFoundError for a missing folder, ValueError where no video holds a whole set.
    """
    if between < 1:
        raise ValueError(f"between must be at least 1, not {between}")
    root = Path(root)
    _require_dir(root, "GoPro folder", _GOPRO_LAYOUT)
    base = root / "test" if (root / "test").is_dir() else root
    videos = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    length, stride = between + 2, between + 1
    sets = []
    for video in videos:
        frames = sorted(p for p in video.iterdir()
                        if p.suffix.lower() in _IMAGE_SUFFIXES and not p.name.startswith("."))  # fmt: skip
        for start in range(0, len(frames) - length + 1, stride):
            paths = tuple(frames[start : start + length])
            load = functools.partial(_cropped_frames, paths, crop)
            sets.append(FrameSet(f"{video.name}/{paths[0].stem}", load, video.name))
    if not sets:
        raise ValueError(f"GoPro: no video folder under {base} holds {length} frames; expected {_GOPRO_LAYOUT}")
    return sets


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
    psnr_y: float  # dB, luma PSNR (see luma_psnr); where items come in groups, the mean of the group means
    names: list[str]
    psnr_per_item: list[float]
    ssim_per_item: list[float]
    ie_per_item: list[float]
    psnr_y_per_item: list[float]


Item = Triplet | FrameSet | tuple[Tensor, Tensor, Tensor]


def _load(item: Item, index: int) -> tuple[str, Tensor, Tensor, Tensor]:
    if isinstance(item, Triplet):
        return item.name, load_rgb(item.first), load_rgb(item.middle), load_rgb(item.last)
    if isinstance(item, FrameSet):
        first, *middle, last = item.load()
        if len(middle) != 1:
            raise ValueError(f"{item.name}: {len(middle)} frames between the two inputs; a triplet has one")
        return item.name, first, middle[0], last
    first, middle, last = item
    return str(index), first, middle, last


def _padded(predict: Callable[[Tensor, Tensor], Tensor], pad: int) -> Callable[[Tensor, Tensor], Tensor]:
    """``predict`` on frames with ``pad`` rows repeated above and below, cropped back (RIFE's HD script)."""
    if not pad:
        return predict

    def run(a: Tensor, b: Tensor) -> Tensor:
        grown = [F.pad(x.float(), (0, 0, pad, pad), mode="replicate") for x in (a, b)]
        return predict(*grown)[..., pad:-pad, :]

    return run


def _group_mean(values: list[float], groups: list[str]) -> float:
    """The mean of ``values``; where they come in groups, the mean of each group's mean."""
    if len(set(groups)) <= 1:
        return statistics.fmean(values)
    by_group: dict[str, list[float]] = {}
    for value, group in zip(values, groups):
        by_group.setdefault(group, []).append(value)
    return statistics.fmean(statistics.fmean(v) for v in by_group.values())


def _score(
    predict: Callable[[Tensor, Tensor], Tensor], items: Iterable[Item], limit: int | None, rounded: bool
) -> EvaluationResult:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or at least 0, not {limit}")
    names: list[str] = []
    groups: list[str] = []
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "ie": [], "psnr_y": []}
    for index, item in enumerate(itertools.islice(items, limit)):
        name, first, middle, last = _load(item, index)
        pad = item.pad if isinstance(item, FrameSet) else 0
        gt = middle.detach().to("cpu", torch.float64)
        pred = _padded(predict, pad)(first, last).detach().to("cpu", torch.float64)
        if rounded:
            pred = quantize(pred)
        names.append(name)
        groups.append(item.group if isinstance(item, FrameSet) else "")
        scores["psnr"].append(psnr(pred, gt))
        scores["ssim"].append(ssim(pred, gt))
        scores["ie"].append(interpolation_error(pred, gt))
        scores["psnr_y"].append(luma_psnr(pred, gt))
    if not names:
        raise ValueError("no triplets to evaluate")
    return EvaluationResult(
        count=len(names),
        psnr=statistics.fmean(scores["psnr"]),
        ssim=statistics.fmean(scores["ssim"]),
        ie=statistics.fmean(scores["ie"]),
        psnr_y=_group_mean(scores["psnr_y"], groups),
        names=names,
        psnr_per_item=scores["psnr"],
        ssim_per_item=scores["ssim"],
        ie_per_item=scores["ie"],
        psnr_y_per_item=scores["psnr_y"],
    )


def evaluate(
    interpolator: SupportsInterpolate, triplets: Iterable[Item], *, limit: int | None = None, rounded: bool = True
) -> EvaluationResult:
    """Score ``interpolator.interpolate(first, last, 0.5)`` against the middle frame of each triplet.

    ``triplets`` holds :class:`Triplet` file paths (loaded with :func:`load_rgb`; named after the
    triplet), :class:`FrameSet` items (loaded when scored; padded as they say) or ``(first, middle,
    last)`` tuples of N x 3 x H x W float tensors in [0, 1] (named by position, "0", "1", ...), e.g. from
    :func:`frame_drop_triplets`. At most ``limit`` items are used. With ``rounded`` (default) each
    prediction is rounded to 8-bit levels before scoring, as in the RIFE benchmarks. Returns the count,
    mean PSNR (dB), SSIM, IE (0..255 levels) and luma PSNR, and per-item lists.
    """
    return _score(lambda a, b: interpolator.interpolate(a, b, 0.5), triplets, limit, rounded)


def evaluate_blend(triplets: Iterable[Item], *, limit: int | None = None, rounded: bool = True) -> EvaluationResult:
    """Like :func:`evaluate` for the 50/50 blend ``(first + last) / 2``, the floor any interpolator should beat."""
    return _score(lambda a, b: (a.to(torch.float64) + b.to(torch.float64)) / 2, triplets, limit, rounded)


# ----------------------------------------------------------------------------------------------- many frames


class MultiFrameResult(TypedDict):
    """Scores of a many-frames-between evaluation (:func:`evaluate_many`): means over every rebuilt frame,
    and the mean PSNR and SSIM at each position between the inputs (t = 1 / n ... (n - 1) / n)."""

    count: int  # frame sets
    frames: int  # rebuilt frames scored
    psnr: float
    ssim: float
    ie: float
    psnr_y: float
    timesteps: list[float]
    psnr_per_position: list[float]
    ssim_per_position: list[float]
    names: list[str]


def _score_many(predict: Callable[[Tensor, Tensor, Tensor], Tensor], sets: Iterable[FrameSet], limit: int | None,
                rounded: bool) -> MultiFrameResult:  # fmt: skip
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be None or at least 0, not {limit}")
    names: list[str] = []
    per_position: dict[str, list[list[float]]] = {"psnr": [], "ssim": []}
    overall: dict[str, list[float]] = {"psnr": [], "ssim": [], "ie": [], "psnr_y": []}
    steps: list[float] | None = None
    for item in itertools.islice(sets, limit):
        first, *middle, last = item.load()
        if not middle:
            raise ValueError(f"{item.name}: no frames between the two inputs")
        n = len(middle) + 1
        times = [j / n for j in range(1, n)]
        if steps is None:
            steps = times
            per_position = {"psnr": [[] for _ in times], "ssim": [[] for _ in times]}
        elif times != steps:
            raise ValueError(f"{item.name}: {len(middle)} frames between the inputs, not {len(steps)} as before")
        preds = predict(first, last, torch.tensor(times, dtype=torch.float32)).detach().to("cpu", torch.float64)
        for j, gt in enumerate(middle):
            pred = preds[j : j + 1]
            pred = quantize(pred) if rounded else pred
            gt = gt.detach().to("cpu", torch.float64)
            values = {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt), "ie": interpolation_error(pred, gt),
                      "psnr_y": luma_psnr(pred, gt)}  # fmt: skip
            for key, value in values.items():
                overall[key].append(value)
            per_position["psnr"][j].append(values["psnr"])
            per_position["ssim"][j].append(values["ssim"])
        names.append(item.name)
    if not names or steps is None:
        raise ValueError("no frame sets to evaluate")
    return MultiFrameResult(
        count=len(names),
        frames=len(overall["psnr"]),
        psnr=statistics.fmean(overall["psnr"]),
        ssim=statistics.fmean(overall["ssim"]),
        ie=statistics.fmean(overall["ie"]),
        psnr_y=statistics.fmean(overall["psnr_y"]),
        timesteps=steps,
        psnr_per_position=[statistics.fmean(v) for v in per_position["psnr"]],
        ssim_per_position=[statistics.fmean(v) for v in per_position["ssim"]],
        names=names,
    )


def evaluate_many(interpolator: SupportsInterpolate, sets: Iterable[FrameSet], *, limit: int | None = None,
                  rounded: bool = True) -> MultiFrameResult:  # fmt: skip
    """Rebuild every frame between the first and the last of each set at its own time, in one call per set
    (t = j / n for the n - 1 frames between: 1/8 ... 7/8 for GoPro's sets of 9), and score each as
    :func:`evaluate` does. An interpolator must take arbitrary timesteps (every model here does)."""
    return _score_many(lambda a, b, t: interpolator.interpolate(a, b, t), sets, limit, rounded)


def evaluate_many_blend(sets: Iterable[FrameSet], *, limit: int | None = None, rounded: bool = True) -> MultiFrameResult:
    """Like :func:`evaluate_many` for the linear blend ``(1 - t) first + t last``, the floor."""

    def blend(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
        w = t.to(torch.float64).view(-1, 1, 1, 1)
        return (1 - w) * a.to(torch.float64) + w * b.to(torch.float64)

    return _score_many(blend, sets, limit, rounded)
