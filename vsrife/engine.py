"""The interpolation engine: two frames and a timestep in, the frame between out."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .catalogue import ReleaseInfo, get_release
from .networks import _Network, clear_grid_cache
from .weights import load_network, resolve_weights, weights_digest

__all__ = ["SCALES", "Frame", "Interpolator", "clear_model_cache", "default_device", "default_dtype", "resolve_device"]

SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)
_GPU_TYPES = ("cuda", "xpu", "mps", "hip")


def default_device() -> torch.device:
    """CUDA if available, else another available torch accelerator, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None and accelerator.is_available():
        found = accelerator.current_accelerator()
        if found is not None:
            return torch.device(found)
    return torch.device("cpu")


def _cpu_has_native_bf16() -> bool:
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, probe, lambda: False)() for probe in probes)


def default_dtype(device: torch.device) -> torch.dtype:
    """float16 on a GPU; on the CPU bfloat16 where it has native bf16 instructions, else float32.

    On this project's reference CPU (AVX512-BF16, no AMX) bfloat16 convolutions run 2.2x as fast as
    float32 ones, a whole interpolation about 1.6x (scripts/bench_engine.py); without native instructions
    they are emulated and slower than float32.
    """
    if device.type in _GPU_TYPES:
        return torch.float16
    return torch.bfloat16 if _cpu_has_native_bf16() else torch.float32


def parse_device(device: str | torch.device | None) -> torch.device:
    """``device`` checked against what this torch build can reach; ValueError with advice otherwise."""
    if device is None:
        return default_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a torch device name such as 'cpu', 'cuda' or 'cuda:1'") from e
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: CUDA is not available in this torch build or machine; use 'cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    module = getattr(torch, dev.type, None)
    if module is None or not getattr(module, "is_available", lambda: False)():
        raise ValueError(f"device {device!r} is not available here; use 'cpu' or leave device unset")
    return dev


def resolve_device(device: torch.device) -> torch.device:
    """``device`` with its index made explicit, so that one device has one name: ``cuda`` becomes
    ``cuda:N`` for the current device N of its type (index 0 where the type has no notion of a current
    device); every CPU is ``cpu``."""
    if device.type == "cpu":
        return torch.device("cpu")
    if device.index is not None:
        return device
    current = getattr(getattr(torch, device.type, None), "current_device", None)
    return torch.device(device.type, current() if current is not None else 0)


@dataclass(frozen=True)
class Frame:
    """A source frame ready for the network: clamped, padded, on the device, with encoder features.

    Make one with :meth:`Interpolator.prepare` and pass it to :meth:`Interpolator.interpolate` as often as
    needed: several timesteps, or the next pair, reuse it instead of padding and encoding again.
    """

    image: Tensor  # N x 3 x PH x PW, float32
    features: Tensor | None
    height: int
    width: int


_models: dict[tuple, _Network] = {}
_models_lock = threading.Lock()


def clear_model_cache() -> None:
    """Forget every loaded network (they are shared process-wide otherwise) and the warp grids, freeing
    the device memory they hold."""
    with _models_lock:
        _models.clear()
        clear_grid_cache()


def _shared_network(release: ReleaseInfo, path: os.PathLike[str], device: torch.device, dtype: torch.dtype,
                    channels_last: bool) -> _Network:  # fmt: skip
    key = (release.name, weights_digest(path), str(resolve_device(device)), dtype, channels_last)
    with _models_lock:
        net = _models.get(key)
        if net is None:
            net = load_network(release, path).configure(dtype, channels_last).to(device)
            _models[key] = net
    return net


class Interpolator:
    """Frame interpolation with one RIFE network.

    Args:
        model: release name from the catalogue (``vsrife.release_names()``), e.g. ``"4.25"`` or ``"ifnet_m"``.
        weights: a ``.pkl``/``.pth``/``.safetensors`` file to use instead of the cached catalogue weights.
        device: torch device; default CUDA, else another available accelerator, else CPU.
        dtype: precision of the convolutions; default float16 on GPU, bfloat16 on a CPU with native bf16
            instructions, else float32. Flows, warps and blending always run in float32.
        scale: flow resolution factor, one of 0.25, 0.5, 1, 2, 4 (0.5 suits 4K; 2 suits small or
            detailed frames). Default 1.
        tta: test-time augmentation (upstream "ensemble"): twice the work for slightly steadier flows.
        auto_download: fetch missing catalogue weights into the cache (default True).
        channels_last: NHWC convolutions (default True, faster on CPU and on tensor cores).

    Networks are loaded once per process for each (model, weights digest, device, dtype, layout) and
    shared by every Interpolator that asks for the same.
    """

    def __init__(
        self,
        model: str = "4.25",
        weights: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        scale: float = 1.0,
        tta: bool = False,
        *,
        auto_download: bool = True,
        channels_last: bool = True,
    ) -> None:
        self.release = get_release(model)
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, not {scale!r}")
        if tta and not self.release.tta:
            raise ValueError(f"model {self.release.name} has no tta (ensemble) path; use tta=False or a model up to 4.20")
        if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, not {dtype!r}")
        self.device = resolve_device(parse_device(device))  # the network and the frames stay on one device
        self.dtype = dtype if dtype is not None else default_dtype(self.device)
        self.scale = float(scale)
        self.tta = bool(tta)
        self.multiple = self.release.padding_multiple(self.scale)
        self.weights = resolve_weights(self.release.name, weights, auto_download=auto_download)
        self.network = _shared_network(self.release, self.weights, self.device, self.dtype, channels_last)

    @classmethod
    def wrapping(cls, release: ReleaseInfo, network: _Network, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> "Interpolator":  # fmt: skip
        """An Interpolator over a network already in memory on ``device`` (one being trained): nothing
        is resolved, loaded or shared; scale 1, no tta."""
        self = cls.__new__(cls)
        self.release, self.device, self.dtype = release, resolve_device(device), dtype
        self.scale, self.tta = 1.0, False
        self.multiple = release.padding_multiple(1.0)
        self.weights = None
        self.network = network
        return self

    def __repr__(self) -> str:
        return (f"Interpolator(model={self.release.name!r}, device={str(self.device)!r}, dtype={self.dtype}, "
                f"scale={self.scale}, tta={self.tta})")  # fmt: skip

    @torch.inference_mode()
    def prepare(self, image: Tensor) -> Frame:
        """Pad ``image`` (N x 3 x H x W, float in [0, 1]) for the network and run its encoder once."""
        _check_image(image)
        h, w = image.shape[-2:]
        x = image.to(self.device, torch.float32, non_blocking=True).clamp(0, 1)
        ph, pw = -h % self.multiple, -w % self.multiple
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return Frame(x, self.network.features(x), h, w)

    @torch.inference_mode()
    def interpolate(self, img0: Tensor | Frame, img1: Tensor | Frame, timestep: float | Tensor) -> Tensor:
        """The frame(s) at ``timestep`` between ``img0`` (t=0) and ``img1`` (t=1).

        ``img0``/``img1`` are N x 3 x H x W float tensors in [0, 1] of the same size, any size, or prepared
        :class:`Frame`s. ``timestep`` is a float in (0, 1) or a tensor of N (or of T when both frames have
        N = 1, which gives T frames between one pair in one batch). Returns float32 on the interpolator's
        device. Every argument is checked on the host before any work reaches the device.
        """
        n0, h0, w0 = _frame_size(img0)
        n1, h1, w1 = _frame_size(img1)
        if (h0, w0) != (h1, w1):
            raise ValueError(f"frames differ in size: {w0}x{h0} and {w1}x{h1}")
        if n0 != n1:
            raise ValueError(f"frames differ in number: {_frames(n0)} and {_frames(n1)}")
        t = _host_timesteps(timestep)
        if t.numel() not in (1, n0) and n0 != 1:
            raise ValueError(f"{t.numel()} timesteps for {n0} frame pairs")
        a = img0 if isinstance(img0, Frame) else self.prepare(img0)
        b = img1 if isinstance(img1, Frame) else self.prepare(img1)
        if a.image.shape != b.image.shape:
            raise ValueError(f"frames padded differently ({tuple(a.image.shape)} and {tuple(b.image.shape)}): "
                             "prepare both with the same Interpolator")  # fmt: skip
        t = t.to(self.device)
        batch = max(n0, t.numel())
        x0, x1, f0, f1 = a.image, b.image, a.features, b.features
        if batch != n0:
            x0, x1 = x0.expand(batch, -1, -1, -1), x1.expand(batch, -1, -1, -1)
            if f0 is not None:
                f0, f1 = f0.expand(batch, -1, -1, -1), f1.expand(batch, -1, -1, -1)
        times = t.view(-1, 1, 1, 1).expand(batch, 1, 1, 1)
        out = self.network(x0, x1, times, f0, f1, scale=self.scale, ensemble=self.tta)
        return out[:, :, : a.height, : a.width]


def _check_image(image: Tensor) -> None:
    if image.ndim != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an N x 3 x H x W tensor, got shape {tuple(image.shape)}")


def _frame_size(x: Tensor | Frame) -> tuple[int, int, int]:
    """(N, H, W) of a frame as given, before any padding."""
    if isinstance(x, Frame):
        return x.image.shape[0], x.height, x.width
    _check_image(x)
    n, _, h, w = x.shape
    return n, h, w


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _host_timesteps(timestep: float | Tensor) -> Tensor:
    """``timestep`` as a flat float32 CPU tensor, each value checked to lie in (0, 1); NaN and inf do not."""
    t = torch.as_tensor(timestep).detach().to("cpu", torch.float32).reshape(-1)
    if t.numel() == 0:
        raise ValueError("no timestep given")
    bad = t[~((t > 0) & (t < 1))]  # NaN compares false both ways, so it lands here too
    if bad.numel():
        shown = ", ".join(str(v) for v in bad[:3].tolist()) + (" ..." if bad.numel() > 3 else "")
        raise ValueError(f"timestep must lie strictly between 0 and 1, not {shown}")
    return t
