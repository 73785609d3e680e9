"""Fine-tuning (or training) a RIFE network as the ECCV 2022 paper trains IFNet: privileged distillation.

A teacher flow block sees what the student saw after its last block *and the true middle frame*; its
flow update makes a reconstruction far better than the student's (on the real 4.0 weights, about 7 dB on
real footage). The loss is

    L1_lap(student, gt) + L1_lap(teacher, gt) + w * distill

where ``L1_lap`` is the L1 distance of 5-level Laplacian pyramids and ``distill`` pulls every student block's
flow towards the (detached) teacher flow wherever the teacher reconstructs that pixel better, by more than
0.01 in mean absolute colour (w = 0.01; 0.005 for IFNet_m, whose paper code asks for 0.002-0.005). The
teacher's input is (img0, img1, timestep, warped img0, warped img1, mask logit, gt) and the flow, the
layout of the paper's code; the released 4.0 teacher (``block_tea``) reconstructs best with exactly this
order. Only the student is written out: the teacher is for training alone.

Schedule (the paper's, scaled): AdamW with weight decay 1e-3, a linear warm-up to the peak learning rate,
then a cosine down to 1/100 of it. The paper trains from scratch for about 240k steps at a global batch of
64: warm-up 2000 steps to 3e-4, down to 3e-6. A fine-tune starts from weights that are already good, so
its default peak is ten times lower (3e-5) and its warm-up is 5% of its steps (at most 2000); from
scratch the default peak is the paper's 3e-4. Gradients are clipped to norm 1. On a GPU the forward runs
under autocast (bfloat16 where supported, else float16 with a gradient scaler); flows, warps and blends
stay float32 as in inference.

Several processes: launch the same command with ``torchrun --nproc_per_node N`` (NCCL on GPUs, gloo on
CPUs). ``batch_size`` is per process; the effective batch is ``batch_size x N`` and the learning rate is
used as given for it (not scaled with N: pass ``--lr`` yourself for linear scaling). Every sample of a
step is a function of (seed, step, position in the global batch), so N processes draw the same global
batch that one process of batch ``batch_size x N`` would, and a resumed run draws the same batches as an
uninterrupted one. On the CPU a run is bit-for-bit reproducible; CUDA's grid-sample backward adds in
nondeterministic order.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save
from torch import Tensor, nn

from .catalogue import ReleaseInfo, get_release
from .evaluation import evaluate
from .files import atomic_write
from .networks import TRAITS, FlowBlock, _Network, build_network, warp
from .triplets import DataError, ImageCache, TripletSet, augmented_batch, check_crop, collect_triplets
from .weights import (
    WeightsError,
    fetch_teacher,
    normalise_state_dict,
    read_state_dict,
    resolve_weights,
    teacher_tensors,
)

__all__ = [
    "DataError",
    "Distillation",
    "TrainError",
    "TrainResult",
    "TrainSettings",
    "build_teacher",
    "check_settings",
    "laplacian_l1",
    "learning_rate",
    "plot_curves",
    "train",
]

log = logging.getLogger("vsrife")

FINE_TUNE_LR = 3e-5
SCRATCH_LR = 3e-4
PAPER_WARMUP = 2000
DISTILL_WEIGHT = 0.01
DISTILL_WEIGHT_M = 0.005
TEACHER_INPUT = 21  # img0, img1, timestep, warped0, warped1, mask, gt (17) + flow (4)
DISTILL_MARGIN = 0.01


class TrainError(ValueError):
    """Settings or data that cannot train; raised before any training step, with what to do instead."""


@dataclass(frozen=True)
class TrainSettings:
    """One training run. Sizes in pixels, rates per step; see the module docstring for the defaults' origin.

    ``data``: Vimeo90K-style triplet folders, videos, or folders of videos. ``weights``: start from this
    file instead of the release's weights; ``from_scratch``: from random weights. ``lr``/``warmup``: None
    picks the fine-tune or from-scratch default. ``eval_every``: steps between checkpoints and held-out
    evaluations (and at the end). ``eval_limit``: held-out triplets scored; ``eval_crop``: score a central
    square of this side instead of the whole frame (for slow devices). ``upstream_pickle``: also write
    ``flownet.pkl`` in the upstream layout (``module.`` keys, teacher included).
    """

    model: str
    data: tuple[str, ...]
    run_dir: str
    weights: str | None = None
    from_scratch: bool = False
    steps: int = 2000
    batch_size: int = 8
    crop: int = 224
    lr: float | None = None
    warmup: int | None = None
    weight_decay: float = 1e-3
    distill_weight: float | None = None
    grad_clip: float = 1.0
    seed: int = 1234
    eval_every: int = 250
    log_every: int = 10
    eval_limit: int = 16
    eval_crop: int | None = None
    held_out: float = 0.1
    device: str | None = None
    amp: bool = True
    upstream_pickle: bool = False
    keep_checkpoints: int = 3
    progress: bool = True


@dataclass
class TrainResult:
    """Where a run's files are and how the held-out PSNR moved (dB; None where nothing was evaluated)."""

    run_dir: Path
    weights: Path
    steps: int
    psnr_start: float | None
    psnr_end: float | None
    metrics: list[dict] = field(default_factory=list)
    plot: Path | None = None


# ------------------------------------------------------------------------------------------------ losses


def _gauss(channels: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    kernel = torch.outer(taps, taps) / 256
    return kernel.expand(channels, 1, 5, 5).contiguous()


def _blur(x: Tensor, kernel: Tensor) -> Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_l1(a: Tensor, b: Tensor, levels: int = 5) -> Tensor:
    """Sum over ``levels`` Laplacian-pyramid levels of the mean absolute difference of ``a`` and ``b``.

    Each level is the image minus its blurred, halved and re-expanded self (5x5 binomial kernel, reflected
    borders; expansion by zero insertion and the kernel times 4); the next level starts from the halved
    image. Sides must stay above 2 pixels at the last level (at least 48 for 5 levels).
    """
    kernel = _gauss(a.shape[1], a.device, a.dtype)
    total = a.new_zeros(())
    x = torch.cat((a, b))
    for _ in range(levels):
        low = _blur(x, kernel)[..., ::2, ::2]
        up = torch.zeros_like(x)
        up[..., ::2, ::2] = low
        band = x - _blur(up, kernel * 4)
        half = band.shape[0] // 2
        total = total + (band[:half] - band[half:]).abs().mean()
        x = low
    return total


# ------------------------------------------------------------------------------------------------ networks


def build_teacher(release: ReleaseInfo) -> FlowBlock:
    """A fresh teacher block for ``release``'s family: the last block's width, flow and mask out, and its
    last layer zero so that it starts from the student's own estimate."""
    teacher = FlowBlock(TEACHER_INPUT, release.widths[-1], 5, TRAITS[release.family])
    last = teacher.lastconv[0] if isinstance(teacher.lastconv, nn.Sequential) else teacher.lastconv
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return teacher


class Distillation(nn.Module):
    """Student and teacher as one module (one DistributedDataParallel unit): the forward returns the losses."""

    def __init__(self, student: _Network, teacher: FlowBlock, distill_l2: bool, multiple: int) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        self.distill_l2 = distill_l2
        self.multiple = multiple

    def outputs(self, img0: Tensor, img1: Tensor, gt: Tensor, timestep: Tensor) -> dict[str, Tensor]:
        """Student and teacher frames and the distillation term, cropped back to the input size."""
        h, w = img0.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            img0, img1, gt = (F.pad(x, (0, pw, 0, ph)) for x in (img0, img1, gt))
        out, steps = self.student.trace(img0, img1, timestep)
        flow, mask = steps[-1]
        warped0, warped1 = warp(img0, flow[:, :2]), warp(img1, flow[:, 2:4])
        parts = (img0, img1, timestep, warped0, warped1, mask, gt)
        delta, m, _ = self.teacher(parts, flow, 1)
        flow_t = flow + delta
        weight = torch.sigmoid(mask + m)
        teacher_out = warp(img0, flow_t[:, :2]) * weight + warp(img1, flow_t[:, 2:4]) * (1 - weight)

        def crop(x: Tensor) -> Tensor:
            return x[..., :h, :w]

        gt, target = crop(gt), crop(flow_t).detach()
        teacher_error = (crop(teacher_out) - gt).abs().mean(1, keepdim=True)
        distill = gt.new_zeros(())
        for f, mk in steps:
            wk = torch.sigmoid(mk)
            merged = crop(warp(img0, f[:, :2]) * wk + warp(img1, f[:, 2:4]) * (1 - wk))
            worse = ((merged - gt).abs().mean(1, keepdim=True) > teacher_error + DISTILL_MARGIN).float().detach()
            gap = target - crop(f)
            per_pixel = (gap.pow(2).mean(1, keepdim=True) + 1e-6).sqrt() if self.distill_l2 else gap.abs()
            distill = distill + (per_pixel * worse).mean()
        return {"student": crop(out), "teacher": crop(teacher_out), "distill": distill}

    def forward(self, img0: Tensor, img1: Tensor, gt: Tensor, timestep: Tensor) -> dict[str, Tensor]:
        o = self.outputs(img0, img1, gt, timestep)
        gt = gt.float()
        with torch.autocast(gt.device.type, enabled=False):  # the pyramid's blurs in float32, not under AMP
            return {
                "reconstruction": laplacian_l1(o["student"].float(), gt),
                "teacher": laplacian_l1(o["teacher"].float(), gt),
                "distill": o["distill"].float(),
            }


# ------------------------------------------------------------------------------------------------ schedule


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    """The paper's schedule: linear warm-up over ``warmup`` steps, then a cosine from ``peak`` to peak/100."""
    if step < warmup:
        return peak * step / warmup
    span = max(1, steps - warmup)
    progress = min(1.0, (step - warmup) / span)
    floor = peak / 100
    return floor + (peak - floor) * (0.5 + 0.5 * math.cos(math.pi * progress))


def _defaults(s: TrainSettings, release: ReleaseInfo) -> tuple[float, int, float]:
    lr = s.lr if s.lr is not None else (SCRATCH_LR if s.from_scratch else FINE_TUNE_LR)
    warmup = s.warmup if s.warmup is not None else min(PAPER_WARMUP, s.steps // 20)
    distill = s.distill_weight
    if distill is None:
        distill = DISTILL_WEIGHT_M if release.family == "ifnet_m" else DISTILL_WEIGHT
    return lr, warmup, distill


# ------------------------------------------------------------------------------------------------ checks


def check_settings(s: TrainSettings) -> ReleaseInfo:
    """The release of ``s.model`` after checking every setting; TrainError naming the first bad one."""
    try:
        release = get_release(s.model)
    except ValueError as e:
        raise TrainError(str(e)) from None
    if release.family == "ifrnet":
        raise TrainError(f"model {release.name} is an IFRNet: vsrife train fine-tunes the RIFE models (4.x and "
                         "ifnet_m) with RIFE's distillation only; train IFRNet with its authors' scripts")  # fmt: skip
    positive = {"steps": s.steps, "batch_size": s.batch_size, "crop": s.crop, "eval_every": s.eval_every,
                "log_every": s.log_every, "eval_limit": s.eval_limit, "keep_checkpoints": s.keep_checkpoints}  # fmt: skip
    for name, value in positive.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise TrainError(f"{name} must be a whole number of at least 1, not {value!r}")
    if s.crop < 64:
        raise TrainError(f"crop must be at least 64 pixels (the Laplacian loss halves it five times), not {s.crop}")
    if s.eval_crop is not None and s.eval_crop < 32:
        raise TrainError(f"eval_crop must be at least 32 pixels, not {s.eval_crop}")
    for name, value in (("lr", s.lr), ("distill_weight", s.distill_weight)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise TrainError(f"{name} must be a finite number of at least 0, not {value!r}")
    if s.lr is not None and s.lr == 0:
        raise TrainError("lr must be above 0")
    if s.warmup is not None and not 0 <= s.warmup <= s.steps:
        raise TrainError(f"warmup must lie between 0 and steps ({s.steps}), not {s.warmup}")
    if not (math.isfinite(s.grad_clip) and s.grad_clip > 0) or not (s.weight_decay >= 0):
        raise TrainError("grad_clip must be above 0 and weight_decay at least 0")
    if s.weights is not None and s.from_scratch:
        raise TrainError("weights and from_scratch exclude each other: start from a file or from random weights")
    if s.weights is not None and not Path(s.weights).expanduser().is_file():
        raise TrainError(f"weights file {s.weights} does not exist")
    if not s.data:
        raise TrainError("no training data given: pass triplet folders or videos")
    return release


# ------------------------------------------------------------------------------------------------ run folder


def _digest(s: TrainSettings) -> str:
    """What a resumed run must share with the interrupted one (the data, the model, the sampling)."""
    keep = {k: v for k, v in asdict(s).items() if k in ("model", "data", "weights", "from_scratch", "batch_size",
                                                         "crop", "seed", "held_out")}  # fmt: skip
    keep["data"] = [str(Path(p).expanduser().resolve()) for p in s.data]
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]


_CHECKPOINT = re.compile(r"step-(\d+)\.pt$")


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.search(p.name))]
    return sorted(found)


def _write_json_lines(path: Path, rows: list[dict]) -> None:
    with atomic_write(path) as out:
        out.write("".join(json.dumps(r) + "\n" for r in rows).encode())


# ------------------------------------------------------------------------------------------------ distributed


@dataclass(frozen=True)
class _World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0


def _world(requested: str | None) -> _World:
    """This process's place in a ``torchrun`` launch (one process otherwise), its process group started."""
    from .engine import default_device, parse_device

    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    try:
        device = parse_device(requested) if requested else default_device()
    except ValueError as e:
        raise TrainError(str(e)) from None
    if device.type == "cuda" and size > 1 and device.index is None:
        device = torch.device("cuda", local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if size > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _World(rank, size, local, device)


def _barrier(world: _World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def _mean_across(world: _World, values: Tensor) -> Tensor:
    if world.size > 1:
        import torch.distributed as dist

        values = values.clone()
        dist.all_reduce(values)
        values /= world.size
    return values


# ------------------------------------------------------------------------------------------------ the run


def _starting_student(s: TrainSettings, release: ReleaseInfo) -> tuple[_Network, dict[str, Tensor] | None, str]:
    """The student with its starting weights, the teacher tensors that came with them, and a description."""
    net = build_network(release)
    if s.from_scratch:
        return net, None, "random weights"
    try:
        path = resolve_weights(release.name, s.weights)
        state = read_state_dict(path)
        net.load_state_dict(normalise_state_dict(state, release), strict=True)
    except WeightsError as e:
        raise TrainError(e.offering("--weights FILE" if s.weights is None else None)) from None
    teacher = teacher_tensors(state)
    if teacher is None and s.weights is None:
        teacher = fetch_teacher(release.name, progress=s.progress)
    return net, teacher, str(path)


def _teacher(release: ReleaseInfo, tensors: dict[str, Tensor] | None) -> tuple[FlowBlock, str]:
    teacher = build_teacher(release)
    if tensors is None:
        return teacher, "fresh"
    try:
        teacher.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        log.warning("the checkpoint's teacher does not fit model %s (%s); starting a fresh one",
                    release.name, str(e).splitlines()[0])  # fmt: skip
        return build_teacher(release), "fresh"
    return teacher, "from the checkpoint"


def _held_out_items(data: TripletSet, limit: int, crop: int | None) -> list[tuple[Tensor, Tensor, Tensor]]:
    from .evaluation import load_rgb

    items = []
    for t in data.held_out[:limit]:
        frames = [load_rgb(p) for p in (t.first, t.middle, t.last)]
        if crop is not None:
            h, w = frames[0].shape[-2:]
            ch, cw = min(crop, h), min(crop, w)
            y, x = (h - ch) // 2, (w - cw) // 2
            frames = [f[..., y : y + ch, x : x + cw] for f in frames]
        items.append(tuple(frames))
    return items


def _held_out_psnr(release: ReleaseInfo, student: _Network, device: torch.device, items: list) -> float:
    from .engine import Interpolator

    it = Interpolator.wrapping(release, student, device)
    return float(evaluate(it, items)["psnr"])


def _autocast(device: torch.device, enabled: bool):
    if not enabled or device.type != "cuda":
        return torch.autocast("cpu", enabled=False), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def train(settings: TrainSettings) -> TrainResult:
    """Fine-tune (or train) ``settings.model`` on ``settings.data`` into ``settings.run_dir``; resume there if
    it holds a checkpoint of the same run. Raises TrainError (or DataError, a ValueError too) before the
    first step for anything that cannot work."""
    s = settings
    release = check_settings(s)
    lr_peak, warmup, distill_weight = _defaults(s, release)
    run = Path(s.run_dir).expanduser()
    world = _world(s.device)
    if run.exists() and not run.is_dir():
        raise TrainError(f"{run} exists and is not a folder: pass a new run folder")
    info_path = run / "run.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else None
    if info is not None and info.get("digest") != _digest(s):
        raise TrainError(f"{run} holds another run (other model, data, weights, batch, crop or seed): "
                         "pass a new run folder to start this one")  # fmt: skip
    if info is not None:  # a resumed run keeps its schedule and its global batch, or it is another run
        now = {"world_size": world.size, "steps": s.steps, "lr": lr_peak, "warmup": warmup,
               "distill_weight": distill_weight}  # fmt: skip
        changed = [f"{k} {info[k]} -> {v}" for k, v in now.items() if k in info and info[k] != v]
        if changed:
            raise TrainError(f"{run} was started with other settings ({', '.join(changed)}): resume it with the "
                             "same ones, or pass a new run folder")  # fmt: skip

    # The data, mined once by the first process; the others read what it wrote.
    if world.main:
        data = collect_triplets(s.data, run / "triplets", held_out=s.held_out, min_train=max(2, s.batch_size))
    _barrier(world)
    if not world.main:
        data = collect_triplets(s.data, run / "triplets", held_out=s.held_out, min_train=max(2, s.batch_size))
    check_crop(data.train, s.crop)

    torch.manual_seed(s.seed)
    student, teacher_state, origin = _starting_student(s, release)
    teacher, teacher_origin = _teacher(release, teacher_state)
    student.train().requires_grad_(True)
    model = Distillation(student, teacher, release.family == "ifnet_m", release.padding_multiple(1.0))
    model.to(world.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr_peak, weight_decay=s.weight_decay)
    autocast, scaler = _autocast(world.device, s.amp)

    checkpoints = run / "checkpoints"
    start = 0
    metrics: list[dict] = []
    found = _checkpoints(checkpoints)
    if found:
        step, path = found[-1]
        state = torch.load(path, map_location="cpu", weights_only=True)
        student.load_state_dict(state["student"])
        teacher.load_state_dict(state["teacher"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start = step
        metrics_path = run / "metrics.jsonl"
        if metrics_path.is_file():
            metrics = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
            metrics = [m for m in metrics if m["step"] <= start]

    global_batch = s.batch_size * world.size
    items = _held_out_items(data, s.eval_limit, s.eval_crop) if world.main else []
    psnr_start = info.get("psnr_start") if info else None
    if world.main:
        run.mkdir(parents=True, exist_ok=True)
        if psnr_start is None and items:
            student.eval()
            psnr_start = _held_out_psnr(release, student, world.device, items)
        info = {"digest": _digest(s), "model": release.name, "start": origin, "teacher": teacher_origin,
                "psnr_start": psnr_start, "train_triplets": len(data.train), "held_out_triplets": len(data.held_out),
                "data": data.summary, "world_size": world.size, "batch_size": s.batch_size,
                "effective_batch": global_batch, "lr": lr_peak, "warmup": warmup, "distill_weight": distill_weight,
                "steps": s.steps, "device": str(world.device)}  # fmt: skip
        with atomic_write(info_path) as out:
            out.write(json.dumps(info, indent=1).encode())
        log.info("training %s from %s (teacher %s) on %d triplets, %d held out; effective batch %d x %d = %d, "
                 "peak lr %g, warm-up %d steps", release.name, origin, teacher_origin, len(data.train),
                 len(data.held_out), s.batch_size, world.size, global_batch, lr_peak, warmup)  # fmt: skip
    _barrier(world)

    unit: nn.Module = model
    if world.size > 1:
        from torch.nn.parallel import DistributedDataParallel

        ids = [world.device.index] if world.device.type == "cuda" else None
        unit = DistributedDataParallel(model, device_ids=ids)

    from tqdm import tqdm

    bar = tqdm(total=s.steps, initial=start, desc=f"train {release.name}", unit="step", file=sys.stderr,
               disable=not (s.progress and world.main), dynamic_ncols=True)  # fmt: skip
    images = ImageCache()
    timestep = torch.full((s.batch_size, 1, 1, 1), 0.5, device=world.device)
    psnr = None
    busy, done = 0.0, 0  # seconds spent in training steps (not evaluation or checkpoints), steps done
    try:
        for step in range(start, s.steps):
            student.train()
            began = time.perf_counter()
            lr = learning_rate(step, s.steps, lr_peak, warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = augmented_batch(data.train, step, world.rank * s.batch_size, s.batch_size,
                                    global_batch=global_batch, crop=s.crop, seed=s.seed, images=images)  # fmt: skip
            img0, img1, gt = (x.to(world.device, non_blocking=True) for x in batch)
            with autocast:
                losses = unit(img0, img1, gt, timestep)
            loss = losses["reconstruction"] + losses["teacher"] + distill_weight * losses["distill"]
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if world.device.type == "cuda":
                torch.cuda.synchronize(world.device)
            busy += time.perf_counter() - began
            done += 1
            number = step + 1
            final = number == s.steps
            evaluate_now = number % s.eval_every == 0 or final
            if number % s.log_every == 0 or evaluate_now or number == 1:
                values = torch.stack([loss.detach(), losses["reconstruction"].detach(), losses["teacher"].detach(),
                                      losses["distill"].detach()]).float()  # fmt: skip
                values = _mean_across(world, values).tolist()
                row = {"step": number, "loss": values[0], "reconstruction": values[1], "teacher": values[2],
                       "distill": values[3], "lr": lr, "grad_norm": float(grad_norm),
                       "steps_per_s": done / busy}  # fmt: skip
                if evaluate_now and world.main:
                    student.eval()
                    psnr = _held_out_psnr(release, student, world.device, items) if items else None
                    row.update(psnr=psnr, psnr_start=psnr_start)
                if world.main:
                    metrics.append(row)
                    _write_json_lines(run / "metrics.jsonl", metrics)
                    bar.set_postfix(loss=f"{values[0]:.4f}", psnr="-" if psnr is None else f"{psnr:.2f}")
            if evaluate_now and world.main:
                _save_checkpoint(run, number, student, teacher, optimizer, scaler, s.keep_checkpoints, release)
            if evaluate_now:
                _barrier(world)
            bar.update(1)
    finally:
        bar.close()

    weights = run / "weights.safetensors"
    plot = None
    if world.main:
        if start == s.steps and not weights.is_file():
            _save_weights(weights, student, release, s.steps)
        if s.upstream_pickle:
            _save_upstream(run / "flownet.pkl", student, teacher)
        plot = plot_curves(metrics, run / "curves.png")
    _barrier(world)
    evaluated = [m["psnr"] for m in metrics if m.get("psnr") is not None]
    return TrainResult(run, weights, s.steps, psnr_start, evaluated[-1] if evaluated else None, metrics, plot)


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}


def _save_weights(path: Path, student: nn.Module, release: ReleaseInfo, step: int) -> None:
    data = save(_cpu_state(student), metadata={"vsrife_model": release.name, "step": str(step)})
    with atomic_write(path) as out:
        out.write(data)


def _save_upstream(path: Path, student: nn.Module, teacher: nn.Module) -> None:
    """The upstream pickle layout: one state dict, every key under ``module.``, the teacher as ``block_tea``."""
    state = {f"module.{k}": v for k, v in _cpu_state(student).items()}
    state.update({f"module.block_tea.{k}": v for k, v in _cpu_state(teacher).items()})
    with atomic_write(path) as out:
        torch.save(state, out)


def _save_checkpoint(run: Path, step: int, student: nn.Module, teacher: nn.Module, optimizer, scaler, keep: int,
                     release: ReleaseInfo) -> None:  # fmt: skip
    folder = run / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    state = {"step": step, "student": _cpu_state(student), "teacher": _cpu_state(teacher),
             "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler is not None else {}}  # fmt: skip
    with atomic_write(folder / f"step-{step:07d}.pt") as out:
        torch.save(state, out)
    _save_weights(run / "weights.safetensors", student, release, step)
    for _, old in _checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)


def plot_curves(metrics: Sequence[dict], path: Path) -> Path | None:
    """Loss, learning rate and held-out PSNR against the step, as a PNG; None (with a note) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no curves.png: matplotlib is not installed (pip install matplotlib, or vsrife[bench])")
        return None
    if not metrics:
        return None
    steps = [m["step"] for m in metrics]
    fig, (ax_loss, ax_lr, ax_psnr) = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in ("loss", "reconstruction", "teacher"):
        ax_loss.plot(steps, [m[key] for m in metrics], label=key)
    ax_loss.set(xlabel="step", ylabel="Laplacian L1", title="training loss")
    ax_loss.legend()
    ax_lr.plot(steps, [m["lr"] for m in metrics])
    ax_lr.set(xlabel="step", title="learning rate")
    evaluated = [m for m in metrics if m.get("psnr") is not None]
    if evaluated:
        ax_psnr.plot([m["step"] for m in evaluated], [m["psnr"] for m in evaluated], "o-", label="fine-tuned")
        start = evaluated[0].get("psnr_start")
        if start is not None:
            ax_psnr.axhline(start, color="grey", linestyle="--", label="starting weights")
        ax_psnr.legend()
    ax_psnr.set(xlabel="step", ylabel="dB", title="held-out PSNR")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as out:
        fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return path

