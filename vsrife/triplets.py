"""Training triplets: Vimeo90K-style folders, or triplets mined from the user's own videos.

A triplet is three frames at t = 0, 0.5 and 1; the network learns the middle one from the other two.

Mining a video (:func:`mine_video`) decodes it with the project's decoder and keeps three successive
*drawings* whose middle lies exactly halfway between the other two:

* a frame that holds the previous drawing (``timing.hold_difference`` below ``HOLD_THRESHOLD``: the
  ``dedup`` detector) is skipped, so animation on twos or threes gives its distinct drawings, and a static
  shot gives nothing;
* the three must be evenly spaced (a drawing held for 2 frames between two held for 2, or, in live
  action, three consecutive frames) and no drawing may be held longer than ``MAX_HOLD`` frames;
* no scene cut may fall inside (``timing.scene_difference`` above ``SCENE_THRESHOLD`` between any two
  successive frames);
* first and last may not hold one image (``hold_difference`` again): such a triplet has no motion to learn.

Mined frames are written once as PNG under the run folder, and triplets point at them, so the data is
read lazily and can be looked at. The held-out split of each input is its last triplets (a tenth by
default), with the training triplets stopping before the first held-out frame, so no frame is in both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .evaluation import Triplet
from .files import atomic_write
from .timing import HOLD_THRESHOLD, MAX_HOLD, SCENE_THRESHOLD, hold_difference, hold_luma, luma_thumbnail, scene_difference

__all__ = [
    "DataError",
    "ImageCache",
    "MiningReport",
    "TripletSet",
    "augmented_batch",
    "check_crop",
    "collect_triplets",
    "mine_video",
]

log = logging.getLogger("vsrife")

FRAME_NAMES = ("im1.png", "im2.png", "im3.png")
MANIFEST = "manifest.json"
MINING_VERSION = 1  # bump when the mining rules change, so cached triplets are mined again


class DataError(ValueError):
    """Training data that cannot be used; the message says which input and what to do."""


@dataclass
class MiningReport:
    """What mining one video found: triplets kept and frames or triplets skipped, by reason."""

    frames: int = 0
    triplets: int = 0
    held: int = 0  # frames that hold the previous drawing (dedup) or a static shot
    cuts: int = 0  # scene cuts
    uneven: int = 0  # three drawings not evenly spaced, or a drawing held too long
    static: int = 0  # first and last frame hold one image

    def describe(self) -> str:
        return (f"{self.frames} frames, {self.triplets} triplets; skipped {self.held} held or static frames, "
                f"{self.cuts} scene cuts, {self.uneven} unevenly spaced and {self.static} motionless triplets")  # fmt: skip


@dataclass(frozen=True)
class TripletSet:
    """Training and held-out triplets (files), and a line on where they came from."""

    train: tuple[Triplet, ...]
    held_out: tuple[Triplet, ...]
    summary: str


# ------------------------------------------------------------------------------------------------ mining


@dataclass
class _Drawing:
    index: int
    image: Tensor  # 1 x 3 x H x W float32
    luma: Tensor


def mine_video(
    frames: Iterable[Tensor], write: Callable[[int, Tensor], Path], report: MiningReport
) -> list[tuple[int, int, int]]:
    """Triplets of frame indices from decoded ``frames`` (module docstring); ``write(index, image)`` stores
    a frame that a triplet uses (once per frame) and returns its path."""
    chain: list[_Drawing] = []
    written: dict[int, Path] = {}
    triplets = []
    previous_thumb = None
    for i, image in enumerate(frames):
        report.frames += 1
        thumb = luma_thumbnail(image)
        luma = hold_luma(image)
        cut = previous_thumb is not None and scene_difference(previous_thumb, thumb) > SCENE_THRESHOLD
        previous_thumb = thumb
        if cut:
            report.cuts += 1
            chain = []
        elif chain and hold_difference(chain[-1].luma, luma) < HOLD_THRESHOLD:
            report.held += 1
            continue
        chain.append(_Drawing(i, image, luma))
        if len(chain) < 3:
            continue
        a, b, c = chain
        chain = chain[1:]
        gap = b.index - a.index
        if c.index - b.index != gap or gap > MAX_HOLD:
            report.uneven += 1
            continue
        if hold_difference(a.luma, c.luma) < HOLD_THRESHOLD:
            report.static += 1
            continue
        for d in (a, b, c):
            if d.index not in written:
                written[d.index] = write(d.index, d.image)
        triplets.append((a.index, b.index, c.index))
        report.triplets += 1
    return triplets


def _save_png(image: Tensor, path: Path) -> None:
    from PIL import Image

    rgb = image[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        Image.fromarray(rgb).save(out, format="PNG", compress_level=1)


def _fingerprint(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _split(triplets: list[Triplet], spans: list[tuple[int, int]], fraction: float) -> tuple[list, list]:
    """The last ``fraction`` of one input's triplets held out (at least one where there are two or more),
    and the training triplets that end before the first held-out frame."""
    if len(triplets) < 2:
        return triplets, []
    count = max(1, round(len(triplets) * fraction))
    held = triplets[-count:]
    first_held = spans[-count][0]
    train = [t for t, (_, end) in zip(triplets[:-count], spans[:-count]) if end < first_held]
    return train, held


def _mine_into(video: Path, folder: Path, fraction: float) -> tuple[list[Triplet], list[Triplet], MiningReport]:
    from .video import iter_frames

    report = MiningReport()
    key = hashlib.sha256(str(video.resolve()).encode()).hexdigest()[:8]
    base = folder / f"{video.stem}-{key}"

    def write(index: int, image: Tensor) -> Path:
        path = base / f"{index:06d}.png"
        _save_png(image, path)
        return path

    try:
        indices = mine_video(iter_frames(video), write, report)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises its own errors for files it cannot read
        if report.frames == 0:
            raise DataError(f"{video}: not a readable video ({type(e).__name__}: {e})") from e
        raise DataError(f"{video}: decoding failed after {report.frames} frames ({e})") from e
    if report.frames == 0:
        raise DataError(f"{video}: no video frames could be decoded")
    triplets = [
        Triplet(f"{video.stem}:{a}", base / f"{a:06d}.png", base / f"{b:06d}.png", base / f"{c:06d}.png")
        for a, b, c in indices
    ]
    train, held = _split(triplets, [(a, c) for a, _, c in indices], fraction)
    return train, held, report


def _folder_triplets(root: Path, fraction: float) -> tuple[list[Triplet], list[Triplet], str]:
    """Vimeo90K's training layout (``tri_trainlist.txt``, ``tri_testlist.txt``, ``sequences/``), or any
    folder whose sub-folders hold ``im1.png``, ``im2.png`` and ``im3.png``."""
    frames = next((root / s for s in ("sequences", "target") if (root / s).is_dir()), root)

    def listed(name: str) -> list[Triplet] | None:
        listing = root / name
        if not listing.is_file():
            return None
        entries = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        found = [Triplet(e, *(frames / e / f for f in FRAME_NAMES)) for e in entries]
        missing = [t.name for t in found if not all(p.is_file() for p in (t.first, t.middle, t.last))]
        if missing:
            raise DataError(f"{listing} lists {len(missing)} entries without im1/im2/im3.png, e.g. {missing[0]}")
        return found

    train, held = listed("tri_trainlist.txt"), listed("tri_testlist.txt")
    if train is not None:
        return train, held or [], f"{root}: Vimeo90K lists"
    folders = sorted({p.parent for p in root.rglob(FRAME_NAMES[0])})
    found = [Triplet(str(d.relative_to(root)), *(d / f for f in FRAME_NAMES)) for d in folders
             if all((d / f).is_file() for f in FRAME_NAMES)]  # fmt: skip
    if not found:
        raise DataError(f"{root}: no triplet folders (sub-folders with im1.png, im2.png, im3.png) and no videos")
    if len(found) < 2:
        return found, [], f"{root}: 1 triplet folder"
    count = max(1, round(len(found) * fraction))
    return found[:-count], found[-count:], f"{root}: {len(found)} triplet folders"


def _videos_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def collect_triplets(
    inputs: Sequence[str | os.PathLike[str]],
    mined: str | os.PathLike[str],
    *,
    held_out: float = 0.1,
    min_train: int = 2,
    min_held_out: int = 1,
) -> TripletSet:
    """The triplets of ``inputs`` (triplet folders, videos, or folders of videos), videos mined into the
    folder ``mined`` (reused when the same inputs were mined there before). ``held_out`` is the share of
    each input kept for evaluation. Raises :class:`DataError` before anything is trained when an input is
    missing or unreadable or the whole yields fewer than ``min_train`` training or ``min_held_out``
    held-out triplets."""
    if not inputs:
        raise DataError("no training data given: pass triplet folders or videos")
    if not 0 < held_out < 1:
        raise DataError(f"the held-out share must lie between 0 and 1, not {held_out}")
    paths = [Path(p).expanduser() for p in inputs]
    for p in paths:
        if not p.exists():
            raise DataError(f"{p} does not exist")
    mined = Path(mined)
    train: list[Triplet] = []
    held: list[Triplet] = []
    lines = []
    videos: list[Path] = []
    for p in paths:
        if p.is_dir() and not any(p.rglob(FRAME_NAMES[0])):
            inside = _videos_in(p)
            if not inside:
                raise DataError(f"{p} is an empty folder: no triplet folders and no videos")
            videos.extend(inside)
        elif p.is_dir():
            t, h, line = _folder_triplets(p, held_out)
            train += t
            held += h
            lines.append(line)
        else:
            if p.stat().st_size == 0:
                raise DataError(f"{p} is an empty file, not a video")
            videos.append(p)
    if videos:
        t, h, video_lines = _mined(videos, mined, held_out)
        train += t
        held += h
        lines += video_lines
    summary = "; ".join(lines)
    if len(train) < min_train or len(held) < min_held_out:
        raise DataError(
            f"too few triplets: {len(train)} for training and {len(held)} held out (need at least {min_train} "
            f"and {min_held_out}) from {summary}. Give longer footage or more of it; static shots, held frames "
            "and scene cuts yield none"
        )
    return TripletSet(tuple(train), tuple(held), summary)


def _mined(videos: list[Path], folder: Path, fraction: float) -> tuple[list[Triplet], list[Triplet], list[str]]:
    """Mine ``videos`` into ``folder``, or read what an earlier run mined there from the same files."""
    state = {"version": MINING_VERSION, "held_out": fraction, "scene": SCENE_THRESHOLD, "hold": HOLD_THRESHOLD,
             "inputs": [_fingerprint(v) for v in videos]}  # fmt: skip
    manifest = folder / MANIFEST
    if manifest.is_file():
        try:
            saved = json.loads(manifest.read_text())
        except ValueError:
            saved = {}
        if saved.get("state") == state:

            def load(rows: list) -> list[Triplet]:
                return [Triplet(n, *(folder / f for f in files)) for n, *files in rows]

            train, held = load(saved["train"]), load(saved["held_out"])
            if all(p.is_file() for t in train + held for p in (t.first, t.middle, t.last)):
                return train, held, saved["lines"]
    train, held, lines = [], [], []
    for video in videos:
        t, h, report = _mine_into(video, folder, fraction)
        log.info("mined %s: %s", video, report.describe())
        train += t
        held += h
        lines.append(f"{video.name}: {report.describe()}")

    def rows(triplets: list[Triplet]) -> list:
        return [[t.name, *(str(p.relative_to(folder)) for p in (t.first, t.middle, t.last))] for t in triplets]

    folder.mkdir(parents=True, exist_ok=True)
    data = {"state": state, "train": rows(train), "held_out": rows(held), "lines": lines}
    with atomic_write(manifest) as out:
        out.write(json.dumps(data, indent=1).encode())
    return train, held, lines


# ------------------------------------------------------------------------------------------------ batches


class ImageCache:
    """Decoded frames as uint8 tensors (3 x H x W); the most recently used, up to ``max_bytes``, stay in memory
    (default 1 GiB: the three sample clips' frames fit, so a run on them decodes each PNG once)."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.images: dict[Path, Tensor] = {}

    def __call__(self, path: Path) -> Tensor:
        image = self.images.pop(path, None)
        if image is None:
            from PIL import Image

            with Image.open(path) as f:
                rgb = np.asarray(f.convert("RGB"), dtype=np.uint8)
            image = torch.from_numpy(rgb.copy()).permute(2, 0, 1)
            self.size += image.numel()
            while self.images and self.size > self.max_bytes:
                self.size -= self.images.pop(next(iter(self.images))).numel()
        self.images[path] = image
        return image


def _sample_order(count: int, seed: int, position: int) -> int:
    """The triplet at ``position`` of an endless sequence of seeded shuffles of ``count`` triplets (epochs)."""
    epoch, within = divmod(position, count)
    order = np.random.default_rng([seed, 0x7121, epoch]).permutation(count)
    return int(order[within])


def augmented_batch(
    triplets: Sequence[Triplet], step: int, first: int, count: int, *, global_batch: int, crop: int, seed: int,
    images: ImageCache,
) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """Samples ``first`` .. ``first + count - 1`` of the global batch of ``step``, as float32 (img0, img1,
    gt), each N x 3 x crop x crop in [0, 1].

    Every sample is a function of (seed, step, position) only: a resumed run draws the batches the
    interrupted one would have, and processes of a distributed run draw disjoint parts of one global
    batch. The augmentations are the paper's: a random square crop, horizontal and vertical flips,
    temporal reversal (first and last swapped) and a rotation by a multiple of 90 degrees.
    """
    img0, img1, gt = [], [], []
    for j in range(first, first + count):
        position = step * global_batch + j
        t = triplets[_sample_order(len(triplets), seed, position)]
        a, m, b = images(t.first), images(t.middle), images(t.last)
        if not (a.shape == m.shape == b.shape):
            raise DataError(f"triplet {t.name}: its three frames differ in size")
        h, w = a.shape[-2:]
        if h < crop or w < crop:
            raise DataError(f"triplet {t.name} is {w}x{h}, smaller than the {crop}x{crop} crop: use a smaller crop")
        rng = np.random.default_rng([seed, 0xA06, position])
        y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        stack = torch.stack([a, m, b])[..., y : y + crop, x : x + crop]
        if rng.random() < 0.5:
            stack = stack.flip(-1)
        if rng.random() < 0.5:
            stack = stack.flip(-2)
        if rng.random() < 0.5:
            stack = stack.flip(0)  # temporal reversal: the middle stays the middle
        stack = torch.rot90(stack, int(rng.integers(0, 4)), (-2, -1))
        img0.append(stack[0])
        gt.append(stack[1])
        img1.append(stack[2])
    return tuple(torch.stack(x).float().div_(255) for x in (img0, img1, gt))  # type: ignore[return-value]


def check_crop(triplets: Sequence[Triplet], crop: int, *, limit: int = 256) -> None:
    """DataError naming a triplet whose frames are smaller than ``crop`` or cannot be read (the first
    ``limit`` triplets and the last are looked at: mined triplets share one size per video)."""
    from PIL import Image

    for t in list(triplets[:limit]) + list(triplets[-1:]):
        try:
            with Image.open(t.first) as f:
                w, h = f.size
        except OSError as e:
            raise DataError(f"triplet {t.name}: cannot read {t.first} ({e})") from e
        if h < crop or w < crop:
            raise DataError(f"triplet {t.name} is {w}x{h}, smaller than the {crop}x{crop} crop: pass a smaller crop")
