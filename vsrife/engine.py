"""The interpolation engine: two frames and a timestep in, the frame between out."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import queue
import sys
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from . import int8 as _int8
from .catalogue import ReleaseInfo, get_release
from .networks import _Network, clear_grid_cache
from .weights import load_network, resolve_weights, weights_digest

__all__ = ["SCALES", "Batcher", "Frame", "Interpolator", "clear_model_cache", "default_device", "default_dtype", "resolve_device"]

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


# oneDNN's instruction-set limits (ONEDNN_MAX_CPU_ISA) under which its bf16 convolutions are emulated
_NO_BF16_ISAS = {"sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni"}


def _cpu_has_native_bf16() -> bool:
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").lower() in _NO_BF16_ISAS:
        return False  # the CPU has the instructions, but the convolutions were told not to use them
    cpu = torch.cpu
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, probe, lambda: False)() for probe in probes)


def default_dtype(device: torch.device) -> torch.dtype:
    """float16 on a GPU; on the CPU bfloat16 where it has native bf16 instructions, else float32.

    On this project's reference CPU (AVX512-BF16, no AMX) bfloat16 convolutions run 2x as fast as float32
    ones, a whole interpolation about 2x the plain upstream fp32 path (scripts/bench_engine.py); without
    native instructions (or under an ONEDNN_MAX_CPU_ISA limit below them) they are emulated and slower
    than float32.
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

# glibc mallopt() parameters, the map thresholds to try (older glibc refuses more than 32 MiB on 64-bit)
# and the trim threshold
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_MAP_THRESHOLDS = (1 << 30, 32 << 20)
_TRIM_THRESHOLD = 1 << 30
_host_memory_kept: bool | None = None  # None: not decided yet


def _glibc_mallopt():
    """glibc's ``mallopt``, or None elsewhere (musl, macOS, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc"):
            return None
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError, ValueError):  # no such confstr name, or no mallopt
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return mallopt


def keep_host_memory() -> bool:
    """Let this process reuse the host memory that freed tensors leave, instead of returning it to the system.

    On the CPU every full-size tensor of a frame is a fresh allocation of several MB. glibc serves those
    with new memory maps, freed at once, so each frame pays a page fault for every 4 KiB it touches: about
    35,000 faults and 50 ms of a 340 ms frame at 720p on this project's 2-core reference CPU, 200 ms of
    840 ms at 1080p (scripts/bench_engine.py, the fault count in its JSON). Raising glibc's map threshold
    (to 1 GiB, or 32 MiB where glibc allows no more) and trim threshold, and asking for one arena (so that
    the engine's worker thread shares the main heap, where the process has not made more arenas yet),
    makes later frames reuse the same pages: no faults after the first frame. The cost: freed memory stays
    with the process, up to its peak use, until it exits (as with jemalloc or tcmalloc, which PyTorch's CPU
    guides suggest loading instead).

    Called when the first network is loaded for the CPU (never on import). Returns whether the map
    threshold was raised: not where the C library is not glibc, and not where ``VSRIFE_HOST_MEMORY=system``
    asks to leave the allocator alone.
    """
    global _host_memory_kept
    with _models_lock:
        if _host_memory_kept is None:
            _host_memory_kept = False
            mallopt = _glibc_mallopt() if os.environ.get("VSRIFE_HOST_MEMORY", "").lower() != "system" else None
            if mallopt is not None:
                if any(mallopt(_M_MMAP_THRESHOLD, t) == 1 for t in _MAP_THRESHOLDS):
                    mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
                    mallopt(_M_ARENA_MAX, 1)
                    _host_memory_kept = True
    return _host_memory_kept


def clear_model_cache() -> None:
    """Forget every loaded network (they are shared process-wide otherwise) and the warp grids, freeing
    the device memory they hold."""
    with _models_lock:
        _models.clear()
        clear_grid_cache()


def _shared_network(release: ReleaseInfo, path: os.PathLike[str], device: torch.device, dtype: torch.dtype,
                    channels_last: bool, int8_ranges: dict | None = None) -> _Network:  # fmt: skip
    key = (release.name, weights_digest(path), str(resolve_device(device)), dtype, channels_last, int8_ranges is not None)
    if device.type == "cpu":
        keep_host_memory()
    with _models_lock:
        net = _models.get(key)
        if net is None:
            net = load_network(release, path).configure(dtype, channels_last).to(device)
            if int8_ranges is not None:
                _int8.quantize_network(net, int8_ranges)
            _models[key] = net
    return net


def _int8_refusal(release: ReleaseInfo, device: torch.device, compile: bool | str) -> str | None:
    """Why ``int8=True`` cannot apply to these options (checked before any weights are fetched), or None."""
    if device.type != "cpu":
        return f"int8 runs on the CPU only, not on {device}"
    if compile:
        return "int8 and compile cannot be combined"
    if release.family != "4.0":
        return f"model {release.name} has no 8-bit form (only the 4.0/4.1 family has)"
    return None


def _int8_ranges(release: ReleaseInfo, path: os.PathLike[str]) -> dict:
    """The measured activation ranges for these weights (:mod:`vsrife.int8`); an error says why there are
    none or why they cannot be used here."""
    ranges = _int8.known_ranges(weights_digest(path))
    if ranges is None:
        raise ValueError(f"int8: no measured 8-bit ranges for these {release.name} weights (the catalogue has "
                         "them for its 4.0 weights; scripts/calibrate_int8.py measures others)")  # fmt: skip
    if not _int8.available():
        raise ValueError("int8: this PyTorch has no working oneDNN int8 convolution "
                         "(torch.ops.onednn.qconv2d_pointwise)")  # fmt: skip
    return ranges


def _int8_by_default(release: ReleaseInfo, device: torch.device, dtype: torch.dtype | None, scale: float,
                     compile: bool | str, path: os.PathLike[str]) -> dict | None:  # fmt: skip
    """The ranges that ``int8=None`` (the default) uses, or None where it stays off: only where the user left
    the precision to the engine (no dtype given) and the 8-bit form is measured for exactly this case (the
    CPU, no compile, flow scale 1 as the ranges were taken, weights with ranges, a working kernel)."""
    if dtype is not None or scale != 1.0 or _int8_refusal(release, device, compile) is not None:
        return None
    ranges = _int8.known_ranges(weights_digest(path))
    return ranges if ranges is not None and _int8.available() else None


class Interpolator:
    """Frame interpolation with one network: a RIFE release, IFNet_m or IFRNet.

    Args:
        model: release name from the catalogue (``vsrife.release_names()``), e.g. ``"4.25"``, ``"ifnet_m"`` or
            ``"ifrnet"``.
        weights: a ``.pkl``/``.pth``/``.safetensors`` file to use instead of the cached catalogue weights.
        device: torch device; default CUDA, else another available accelerator, else CPU.
        dtype: precision of the convolutions; default float16 on GPU, bfloat16 on a CPU with native bf16
            instructions, else float32. Flows, warps and blending always run in float32.
        scale: flow resolution factor, one of 0.25, 0.5, 1, 2, 4 (0.5 suits 4K; 2 suits small or
            detailed frames). Default 1. RIFE only: IFRNet refuses any other than 1.
        tta: test-time augmentation (upstream "ensemble"): twice the work for slightly steadier flows; RIFE
            4.0-4.20 and ifnet_m only.
        auto_download: fetch missing catalogue weights into the cache (default True).
        channels_last: NHWC convolutions (default True, faster on CPU and on tensor cores).
        compile: run the network through ``torch.compile`` (opt-in): ``True`` for its default mode, or a
            mode name such as ``"max-autotune-no-cudagraphs"``, or ``"reduce-overhead"`` for CUDA graphs
            (static shapes: a new frame size or batch recompiles). The first call of each shape compiles
            (tens of seconds; a C++ compiler is needed on the CPU); Inductor keeps its cache in
            ``TORCHINDUCTOR_CACHE_DIR`` (default under the system's temporary folder), so a later process
            starts faster. On this project's CPU it is slower than eager (README, Results), so it is off
            by default.
        int8: CPU only: most convolutions of the flow blocks on 8-bit integers (:mod:`vsrife.int8`), with
            fixed activation ranges measured for the weights (the catalogue has them for its 4.0 weights).
            Default None: on where it is measured to pay within a tenth of a dB, that is when ``dtype``
            is left to the engine, the device is the CPU, the flow scale is 1 and the weights have ranges;
            off otherwise. True asks for it (an error says why it cannot apply); False turns it off.
            Measured for 4.0 at 720p (README): 1.18x the float blocks' speed in bfloat16, 1.43x in float32;
            frame-drop PSNR 0.2-0.4 dB above them on average on the three sample clips.

    Networks are loaded once per process for each (model, weights digest, device, dtype, layout, int8)
    and shared by every Interpolator that asks for the same.
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
        compile: bool | str = False,  # noqa: A002 - the name torch uses
        int8: bool | None = None,
    ) -> None:
        self.release = get_release(model)
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, not {scale!r}")
        self.release.check_options(scale, tta)  # tta or a flow scale where the architecture has none
        if int8 is not None and not isinstance(int8, bool):
            raise ValueError(f"int8 must be True, False or None (where measured), not {int8!r}")
        if dtype is not None and dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, not {dtype!r}")
        self.device = resolve_device(parse_device(device))  # the network and the frames stay on one device
        self.dtype = dtype if dtype is not None else default_dtype(self.device)
        self.scale = float(scale)
        self.tta = bool(tta)
        self.multiple = self.release.padding_multiple(self.scale)
        refusal = _int8_refusal(self.release, self.device, compile) if int8 else None
        if refusal is not None:
            raise ValueError(refusal)
        self.weights = resolve_weights(self.release.name, weights, auto_download=auto_download)
        if int8 is None:
            ranges = _int8_by_default(self.release, self.device, dtype, self.scale, compile, self.weights)
        else:
            ranges = _int8_ranges(self.release, self.weights) if int8 else None
        self.int8 = ranges is not None
        self.network = _shared_network(self.release, self.weights, self.device, self.dtype, channels_last, ranges)
        self.compiled = compile
        self._forward = self.network
        if compile:
            mode = None if compile is True else str(compile)
            self._forward = torch.compile(self.network, mode=mode, dynamic=False)

    @classmethod
    def wrapping(cls, release: ReleaseInfo, network: _Network, device: torch.device,
                 dtype: torch.dtype = torch.float32) -> "Interpolator":  # fmt: skip
        """An Interpolator over a network already in memory on ``device`` (one being trained): nothing
        is resolved, loaded or shared; scale 1, no tta."""
        self = cls.__new__(cls)
        self.release, self.device, self.dtype = release, resolve_device(device), dtype
        self.scale, self.tta, self.int8 = 1.0, False, False
        self.multiple = release.padding_multiple(1.0)
        self.weights = None
        self.network = self._forward = network
        self.compiled = False
        return self

    def __repr__(self) -> str:
        return (f"Interpolator(model={self.release.name!r}, device={str(self.device)!r}, dtype={self.dtype}, "
                f"scale={self.scale}, tta={self.tta}, int8={self.int8})")  # fmt: skip

    @torch.inference_mode()
    def prepare(self, image: Tensor) -> Frame:
        """Pad ``image`` (N x 3 x H x W, float in [0, 1]) for the network and run its encoder once."""
        _check_image(image)
        h, w = image.shape[-2:]
        x = _to_device(image, self.device).to(torch.float32).clamp(0, 1)
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
        t = _to_device(t, self.device)
        batch = max(n0, t.numel())
        x0, x1, f0, f1 = a.image, b.image, a.features, b.features
        if batch != n0:
            x0, x1 = x0.expand(batch, -1, -1, -1), x1.expand(batch, -1, -1, -1)
            if f0 is not None:
                f0, f1 = f0.expand(batch, -1, -1, -1), f1.expand(batch, -1, -1, -1)
        times = t.view(-1, 1, 1, 1).expand(batch, 1, 1, 1)
        out = self._forward(x0, x1, times, f0, f1, scale=self.scale, ensemble=self.tta, size=(a.height, a.width))
        return out[:, :, : a.height, : a.width]


def _to_device(x: Tensor, device: torch.device) -> Tensor:
    """``x`` on ``device``; from the host to a CUDA device through page-locked memory, so that the copy is
    queued on the stream instead of waiting for the device to drain first."""
    if x.device == device:
        return x
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


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


class _Closed(Exception):
    """The batcher's worker is asked to stop."""


class _Request:
    """One piece of device work for the worker: a frame to prepare or a pair to interpolate."""

    __slots__ = ("interpolator", "future", "image", "ready", "pair", "timestep", "threads")

    def __init__(self, interpolator: Interpolator, *, image: Tensor | None = None, ready=None,
                 pair: tuple[Frame | Future, Frame | Future] | None = None,
                 timestep: tuple[float, ...] = (0.5,)) -> None:  # fmt: skip
        self.interpolator, self.future = interpolator, Future()
        self.image, self.ready, self.pair, self.timestep = image, ready, pair, timestep
        # torch's CPU thread count is kept per thread: the work runs with the count its caller sees, as
        # it would have in the caller's own thread (a run's pixels can depend on it)
        self.threads = torch.get_num_threads()

    def inputs_ready(self) -> bool:
        return all(not isinstance(x, Future) or x.done() for x in self.pair)

    def frames(self) -> tuple[Frame, Frame]:
        """The pair's prepared frames (raising what preparing them raised)."""
        a, b = (x.result() if isinstance(x, Future) else x for x in self.pair)
        if a.image.shape != b.image.shape or a.image.shape[0] != 1:
            raise ValueError("interpolate takes two prepared single frames of one size")
        return a, b


class Batcher:
    """The device work of every :class:`Interpolator` on one device, done by one worker thread in batches.

    Any number of threads (VapourSynth's, the video pipeline's) submit frames to prepare and pairs to
    interpolate and get futures back. The worker takes whatever has queued up: the frames first, then
    pairs of one interpolator and size, up to ``max_batch`` output frames, in one network call (parallel
    requests never queue on a lock). Only the worker touches the network, so one process never runs two
    thread teams on one CPU, nor two callers on one GPU.

    One request carries every timestep of its pair (``multi`` > 2), and those always share a call. Pairs
    are batched together only up to ``max_batch`` frames, 1 by default: a convolution's rounding can depend
    on the batch it runs in, and which requests meet in a batch depends on timing, so by default every
    output frame is the same from run to run, in the filter, in ``vsrife video`` and in a cluster's chunks.

    On a CUDA device nothing waits for the device where it need not: the calling thread uploads a frame
    through page-locked memory on its own stream; the worker queues the network behind that upload and
    queues the result's download on a third stream; a completion thread hands out results as their
    downloads finish. Results are float32 host tensors (page-locked on CUDA).

    Use :meth:`for_device` for the process-wide batcher of a device.
    """

    _shared: dict[torch.device, Batcher] = {}
    _shared_lock = threading.Lock()

    def __init__(self, device: torch.device, *, max_batch: int | None = None) -> None:
        self.device = resolve_device(device)
        self.max_batch = 1 if max_batch is None else max_batch
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")
        self._cuda = self.device.type == "cuda"
        self._queue: deque[_Request] = deque()
        self._ready = threading.Condition()
        self._done: queue.SimpleQueue = queue.SimpleQueue()  # (event, future, value) on CUDA
        self._closing = False
        if self._cuda:
            self._upload, self._compute, self._download = (torch.cuda.Stream(self.device) for _ in range(3))
        self._threads = [threading.Thread(target=self._work, name=f"vsrife-{self.device}", daemon=True)]
        if self._cuda:
            self._threads.append(threading.Thread(target=self._complete, name=f"vsrife-{self.device}-results",
                                                  daemon=True))  # fmt: skip
        for thread in self._threads:
            thread.start()
        # Daemon threads keep a waiting program from hanging at exit; but one still inside the network when
        # the interpreter tears torch down aborts the process, so the work in hand is finished first.
        atexit.register(self.close)

    def close(self) -> None:
        """Refuse new work, fail what is queued, and wait for the call in hand to finish."""
        with self._ready:
            self._closing = True
            queued, self._queue = list(self._queue), deque()
            self._ready.notify_all()
        for request in queued:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(RuntimeError("the interpolation queue was closed"))
        worker, *completer = self._threads
        if worker is not threading.current_thread():
            worker.join()
        if completer:  # after the worker: the downloads it queued last are still handed out
            self._done.put(None)
            completer[0].join()

    @classmethod
    def for_device(cls, device: torch.device) -> Batcher:
        """The one batcher of ``device`` in this process, started on first use."""
        device = resolve_device(device)
        with cls._shared_lock:
            batcher = cls._shared.get(device)
            if batcher is None:
                batcher = cls._shared[device] = cls(device)
            return batcher

    def prepare(self, interpolator: Interpolator, image: Tensor) -> Future:
        """A future :class:`Frame` of ``image`` (N x 3 x H x W in [0, 1], any float dtype, on the host or
        the device), as :meth:`Interpolator.prepare` makes it."""
        _check_image(image)
        ready = None
        if self._cuda and image.device.type == "cpu":
            with torch.cuda.stream(self._upload):
                image = image.pin_memory().to(self.device, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(self._upload)
        return self._submit(_Request(interpolator, image=image, ready=ready))

    def interpolate(self, interpolator: Interpolator, a: Frame | Future, b: Frame | Future,
                    timestep: float | tuple[float, ...]) -> Future:  # fmt: skip
        """A future host tensor (T x 3 x H x W float32) of the frames at the T timesteps ``timestep`` (a
        float, or a tuple: every slot of the pair in one call) between prepared frames ``a`` and ``b`` (one
        frame each), or the futures :meth:`prepare` returned for them."""
        times = tuple(float(t) for t in _host_timesteps(timestep).tolist())
        return self._submit(_Request(interpolator, pair=(a, b), timestep=times))

    def _submit(self, request: _Request) -> Future:
        with self._ready:
            if self._closing:
                raise RuntimeError("the interpolation queue is closed")
            self._queue.append(request)
            self._ready.notify()
        return request.future

    def _take_frames(self) -> list[_Request]:
        """Every frame to prepare that has queued up, once there is anything to do."""
        with self._ready:
            while not any(r.pair is None or r.inputs_ready() for r in self._queue):
                if self._closing:
                    raise _Closed
                self._ready.wait(None if not self._queue else 0.05)  # pairs waiting on frames from elsewhere
            frames = [r for r in self._queue if r.pair is None]
            self._queue = deque(r for r in self._queue if r.pair is not None)
        return frames

    def _take_batch(self) -> list[tuple[_Request, tuple[Frame, Frame]]]:
        """The first pairs (up to ``max_batch``) whose frames are prepared and that can share a call: one
        interpolator, one size. A pair whose frames failed gets that failure and is dropped."""
        batch, key = [], None
        with self._ready:
            for request in [r for r in self._queue if r.pair is not None and r.inputs_ready()]:
                try:
                    a, b = request.frames()
                except BaseException as e:  # noqa: BLE001 - handed to the caller, whose request it was
                    self._queue.remove(request)
                    if request.future.set_running_or_notify_cancel():
                        request.future.set_exception(e)
                    continue
                this = (id(request.interpolator), tuple(a.image.shape), a.features is None)
                rows = sum(len(r.timestep) for r, _ in batch) + len(request.timestep)
                if key is None or (this == key and rows <= self.max_batch):
                    key = this
                    batch.append((request, (a, b)))
                    self._queue.remove(request)
        return batch

    def _work(self) -> None:
        streams = torch.cuda.stream(self._compute) if self._cuda else contextlib.nullcontext()
        with streams, torch.inference_mode():
            while True:
                try:
                    for request in self._take_frames():
                        self._run(request)
                    batch = self._take_batch()
                    if batch:
                        self._run_batch(batch)
                except _Closed:
                    return
                except BaseException as e:  # noqa: BLE001 - a fault of the worker itself: no caller waits forever
                    self._fail_queued(e)

    def _fail_queued(self, error: BaseException) -> None:
        with self._ready:
            failed, self._queue = list(self._queue), deque()
        for request in failed:
            if request.future.set_running_or_notify_cancel():
                request.future.set_exception(error)

    @staticmethod
    def _threads_of(request: _Request) -> None:
        if torch.get_num_threads() != request.threads:
            torch.set_num_threads(request.threads)

    def _run(self, request: _Request) -> None:
        if not request.future.set_running_or_notify_cancel():
            return
        self._threads_of(request)
        try:
            if request.ready is not None:
                self._compute.wait_event(request.ready)
                request.image.record_stream(self._compute)
            request.future.set_result(request.interpolator.prepare(request.image))
        except BaseException as e:  # noqa: BLE001 - handed to the caller, whose request it was
            request.future.set_exception(e)

    def _run_batch(self, batch: list[tuple[_Request, tuple[Frame, Frame]]]) -> None:
        batch = [item for item in batch if item[0].future.set_running_or_notify_cancel()]
        if not batch:
            return
        self._threads_of(batch[0][0])
        try:
            self._finish(batch, self._network(batch))
        except torch.OutOfMemoryError as e:
            if len(batch) == 1:
                batch[0][0].future.set_exception(e)
                return
            _empty_cache(self.device)  # each pair alone, so that only a pair too large for the device fails
            for item in batch:
                try:
                    self._finish([item], self._network([item]))
                except BaseException as one:  # noqa: BLE001
                    item[0].future.set_exception(one)
        except BaseException as e:  # noqa: BLE001 - the download failed too: every caller hears of it
            for request, _ in batch:
                if not request.future.done():
                    request.future.set_exception(e)

    @staticmethod
    def _network(batch: list[tuple[_Request, tuple[Frame, Frame]]]) -> Tensor:
        a, b = batch[0][1]  # one pair: its frames once, with all its timesteps (the engine expands them)
        counts = [len(r.timestep) for r, _ in batch]
        if len(batch) > 1 or counts[0] == 1:  # pairs side by side, a row per timestep
            a = _stack([f[0] for (_, f), n in zip(batch, counts) for _ in range(n)])
            b = _stack([f[1] for (_, f), n in zip(batch, counts) for _ in range(n)])
        t = torch.tensor([t for r, _ in batch for t in r.timestep], dtype=torch.float32)
        return batch[0][0].interpolator.interpolate(a, b, t)

    def _finish(self, batch: list[tuple[_Request, tuple[Frame, Frame]]], out: Tensor) -> None:
        starts = [0]
        for request, _ in batch:
            starts.append(starts[-1] + len(request.timestep))
        if not self._cuda:
            for (request, _), i, j in zip(batch, starts, starts[1:]):
                request.future.set_result(out[i:j])
            return
        self._download.wait_stream(self._compute)
        with torch.cuda.stream(self._download):
            host = torch.empty(out.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(out, non_blocking=True)
            out.record_stream(self._download)
            done = torch.cuda.Event()
            done.record(self._download)
        self._done.put((done, [(r.future, host[i:j]) for (r, _), i, j in zip(batch, starts, starts[1:])]))

    def _complete(self) -> None:
        while True:
            item = self._done.get()
            if item is None:
                return
            done, results = item
            try:
                done.synchronize()
            except BaseException as e:  # noqa: BLE001 - a device fault: these callers fail, later ones still hear
                for future, _ in results:
                    future.set_exception(e)
                continue
            for future, value in results:
                future.set_result(value)


def _stack(frames: list[Frame]) -> Frame:
    if len(frames) == 1:
        return frames[0]
    features = None if frames[0].features is None else torch.cat([f.features for f in frames])
    return Frame(torch.cat([f.image for f in frames]), features, frames[0].height, frames[0].width)


def _empty_cache(device: torch.device) -> None:
    module = getattr(torch, device.type, None)
    empty = getattr(module, "empty_cache", None)
    if empty is not None:
        empty()
