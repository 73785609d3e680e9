"""The networks: five configurable RIFE 4.x families, the paper's IFNet_m, and IFRNet (CVPR 2022).

A network is built from a :class:`~vsrife.catalogue.ReleaseInfo`; attribute names follow the upstream
checkpoints so that their state dicts load with ``strict=True``. All networks take padded N x 3 x H x W
float32 frames in [0, 1] and the timestep as N x 1 x 1 x 1 (or a full N x 1 x H x W map), and return the
frame at that time; ``size`` is the frames' size before padding (IFRNet normalises by the mean of the
frames themselves, not of their padding; the RIFE networks do not need it).

Precision: the convolutions run in whatever dtype the module was cast to (bfloat16 or float16 for speed),
while flows, masks, warps and the final blend stay in float32. A flow is measured in pixels and may reach
hundreds, where a 16-bit float would lose whole fractions of a pixel at every block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .catalogue import EncoderSpec, ReleaseInfo

__all__ = [
    "FamilyTraits",
    "HostCopy",
    "TRAITS",
    "TRAINING_ONLY_PREFIXES",
    "IFNet",
    "IFNetM",
    "IFRNet",
    "build_network",
    "clear_grid_cache",
    "warp",
]


@dataclass(frozen=True)
class FamilyTraits:
    """What distinguishes one architecture family from another."""

    prelu: bool  # PReLU activations (else LeakyReLU 0.2)
    residual_units: bool  # the 8 units of a block are ResConv (conv * beta + x)
    outer_residual: bool  # the 8 units as a whole are residual
    pixel_shuffle: bool  # the last layer is deconv + PixelShuffle, output at the block's input size
    accumulate_mask: bool  # each block adds to the mask logit (else replaces it)
    pass_features: bool  # each block hands 8 feature channels to the next
    adaptive_scale: bool  # re-run coarser when block 1 sees motion over 32 px (4.0/4.1)


TRAITS: dict[str, FamilyTraits] = {
    "4.0": FamilyTraits(True, False, True, False, True, False, True),
    "4.2": FamilyTraits(False, False, False, False, True, False, False),
    "4.5": FamilyTraits(False, True, False, True, True, False, False),
    "4.7": FamilyTraits(False, True, False, True, False, False, False),
    "4.21": FamilyTraits(False, True, False, True, False, True, False),
    "ifnet_m": FamilyTraits(True, False, True, False, True, False, False),
}

# Tensors that upstream checkpoints carry for training only (distillation teacher, the refinement nets
# that 4.x dropped, a timestep predictor). Anything else that does not fit is an error.
TRAINING_ONLY_PREFIXES: dict[str, tuple[str, ...]] = {
    family: ("block_tea.", "teacher.", "caltime.", "contextnet.", "unet.") for family in TRAITS
}
TRAINING_ONLY_PREFIXES["ifnet_m"] = ("block_tea.", "teacher.")
TRAINING_ONLY_PREFIXES["ifrnet"] = ()  # its losses hold no tensors: upstream files are the network alone


def _conv(cin: int, cout: int, stride: int, prelu: bool) -> nn.Sequential:
    act = nn.PReLU(cout) if prelu else nn.LeakyReLU(0.2, inplace=True)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), act)


class ResConv(nn.Module):
    """``leaky_relu(conv(x) * beta + x)`` with a learned per-channel ``beta``."""

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=groups)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.conv(x) * self.beta + x)


def _resize(x: Tensor, factor: float) -> Tensor:
    if factor == 1:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def sampled_step(scale: float, height: int, width: int) -> int | None:
    """``s`` where reducing a ``height`` x ``width`` map by ``scale`` reads only a few of its pixels, in a
    pattern :func:`sampled_pixels` takes out; else None.

    Bilinear reduction (no antialiasing) by an even integer ``s`` >= 4 puts output pixel ``y`` at source
    row ``s * y + s / 2 - 0.5``, halfway between two rows: it reads 2 rows of every ``s`` (and likewise
    columns), a quarter of the pixels at ``s = 4``. Those pixels, taken in order, are a map that halving
    reduces to the same values; so a warp that feeds such a block need only produce them."""
    if scale < 4 or scale != int(scale) or int(scale) % 2 or height % int(scale) or width % int(scale):
        return None
    return int(scale)


def sampled_pixels(x: Tensor, step: int) -> Tensor:
    """The pixels of ``x`` (... x H x W) that a reduction by ``step`` reads (:func:`sampled_step`), in order:
    rows and columns ``step * i + step / 2 - 1`` and the next, ... x 2H/step x 2W/step. (Whole rows are
    copied first, then columns; a view of both at once ran several times slower in the arithmetic on it.)"""
    k = step // 2 - 1
    rows = torch.stack((x[..., k::step, :], x[..., k + 1 :: step, :]), dim=-2).flatten(-3, -2)
    return torch.stack((rows[..., k::step], rows[..., k + 1 :: step]), dim=-1).flatten(-2)


def _reduce(part: Tensor, scale: float, size: torch.Size) -> Tensor:
    """A block's input part at its working size (see :meth:`FlowBlock.forward`)."""
    if part.shape[-2:] == (1, 1) or part.shape[-2:] == (int(size[0] / scale), int(size[1] / scale)):
        return part  # a constant map, or a part made at the working size (IFNet.reduced_warps)
    if part.shape[-2:] == size:
        return _resize(part, 1 / scale)
    return _resize(part, 0.5)  # already only the pixels that the reduction reads: halving gives the same


def _enlarge(x: Tensor, size: torch.Size) -> Tensor:
    """``x`` bilinearly enlarged to ``size`` (align_corners=False), as ``F.interpolate`` does it.

    On the CPU, where both sides grow by the same whole factor ``k``, it is done one axis at a time: each
    row is widened first (at the small height), then each of the ``k`` output rows between two of those
    rows is one ``lerp`` of them. The same weights, so the same values up to rounding; at 720p a flow
    block's 5 maps came out in 1.5-2.8 ms instead of 3.4 (the larger ``k``, the larger the saving)."""
    n, c, h, w = x.shape
    k = size[0] // h
    if (x.device.type != "cpu" or k < 2 or size[0] != k * h or size[1] != k * w
            or (torch.is_grad_enabled() and x.requires_grad)):  # fmt: skip
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    wide = F.interpolate(x.reshape(n, c * h, w), size=size[1], mode="linear", align_corners=False)
    wide = wide.view(n, c, h, size[1])
    out = torch.empty((n, c, h, k, size[1]), dtype=x.dtype, device=x.device)
    above, below = wide[:, :, :-1], wide[:, :, 1:]
    for p in range(k):
        # Output row i * k + p lies (p + 0.5) / k - 0.5 rows after input row i; beyond the first and the
        # last input row it is clamped to that row, as F.interpolate clamps it.
        offset = (p + 0.5) / k - 0.5
        if offset < 0:
            torch.lerp(above, below, 1 + offset, out=out[:, :, 1:, p])
            out[:, :, 0, p] = wide[:, :, 0]
        else:
            torch.lerp(above, below, offset, out=out[:, :, :-1, p])
            out[:, :, -1, p] = wide[:, :, -1]
    return out.view(n, c, h * k, size[1])


class FlowBlock(nn.Module):
    """One coarse-to-fine step: sees its inputs at 1/scale and returns a flow update at full size."""

    def __init__(self, cin: int, width: int, outputs: int, traits: FamilyTraits, groups: int = 1) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv(cin, width // 2, 2, traits.prelu), _conv(width // 2, width, 2, traits.prelu))
        units = [ResConv(width, groups) if traits.residual_units else _conv(width, width, 1, traits.prelu) for _ in range(8)]
        self.convblock = nn.Sequential(*units)
        if traits.pixel_shuffle:
            self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * outputs, 4, 2, 1), nn.PixelShuffle(2))
            self.upscale = 1
        else:
            self.lastconv = nn.ConvTranspose2d(width, outputs, 4, 2, 1)
            self.upscale = 2
        self.outer_residual = traits.outer_residual
        self.quantized: nn.Module | None = None  # an 8-bit form of conv0[1] and the units (vsrife.int8)

    def forward(
        self, parts: Sequence[Tensor], flow: Tensor | None, scale: float, low_flow: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``parts`` are the block's inputs at full size, concatenated in order after scaling (which is
        the same as scaling their concatenation, without copying it at full size); an N x C x 1 x 1 part
        is a constant map, such as the timestep, and a part of another size holds only the pixels that
        the scaling reads (:func:`sampled_step`). ``low_flow``, where the caller has it already, is
        ``flow`` at the working size in its pixels (``_resize(flow, 1 / scale) / scale``, the same
        values), which spares reducing it again."""
        size = flow.shape[-2:] if flow is not None else parts[0].shape[-2:]
        low = [_reduce(part, scale, size) for part in parts]
        n, _, h, w = next(t for t in low if t.shape[-2:] != (1, 1)).shape
        if low_flow is not None:
            low.append(low_flow)
        elif flow is not None:
            low.append(_resize(flow, 1 / scale) / scale if scale != 1 else flow)
        # Each part goes straight into its channels of the convolutions' input, cast in the same copy, in
        # the convolutions' own layout; except for bfloat16 on the CPU, where oneDNN takes NCHW planes to
        # its layout faster than that copy does (block 3's input and first convolution at 720p, alone:
        # bf16 9.4 ms from NCHW against 11.6 from channels-last; float32 44 against 28 the other way,
        # though within a whole frame the float32 difference was only ~2 ms).
        weight = self.conv0[0][0].weight
        device = low[0].device
        fmt = torch.contiguous_format
        if weight.is_contiguous(memory_format=torch.channels_last) and not (
            device.type == "cpu" and weight.dtype == torch.bfloat16
        ):
            fmt = torch.channels_last
        x = torch.empty((n, sum(t.shape[1] for t in low), h, w), dtype=weight.dtype, device=device,
                        memory_format=fmt)  # fmt: skip
        c = 0
        for part in low:
            x[:, c : c + part.shape[1]].copy_(part.expand(-1, -1, h, w))
            c += part.shape[1]
        if self.quantized is not None:
            feat, out = self.quantized(self.conv0[0](x))
        else:
            feat = self.conv0(x)
            out = self.convblock(feat)
        if self.outer_residual:
            out = out + feat
        # Back to float32 before upsampling: the flow is multiplied by up to 64. The flow is scaled here, at
        # the block's own resolution (upsampling is linear, so it is the same as scaling after it, on a
        # fraction of the pixels), and the maps leave the convolutions' channels-last layout: upsampling
        # and every full-size step after it run several times faster on plain NCHW planes.
        # (In place: no step before needs its own output for backward.)
        out = self._last(out.to(weight.dtype))
        out[:, :4] *= scale * self.upscale
        out = _enlarge(out, size)
        return out[:, :4], out[:, 4:5], out[:, 5:]

    def _last(self, x: Tensor) -> Tensor:
        """The last layer (a 4 x 4 stride-2 transposed convolution) on ``x``, float32, NCHW.

        On the CPU, for inference, it runs as its four output phases: each output pixel of parity (py, px)
        is a 2 x 2 convolution of the input, so one ordinary 2 x 2 convolution with 4x the output channels
        (over the input padded by 1) computes all of them, and each phase is copied to its pixels. The same
        products and sums; oneDNN runs that convolution faster than the transposed one, whose few output
        channels (5 for 4.0) it uses poorly: at 720p, 6.4 ms instead of 10.5 for the finest block (float32,
        AVX512; 5.4 against 10.5 under AVX2; bfloat16 3.5 against 5.6)."""
        deconv = self.lastconv
        if (x.device.type != "cpu" or not isinstance(deconv, nn.ConvTranspose2d)
                or (deconv.kernel_size, deconv.stride, deconv.padding) != ((4, 4), (2, 2), (1, 1))
                or (torch.is_grad_enabled() and deconv.weight.requires_grad)):  # fmt: skip
            return deconv(x).float().contiguous()
        weight, bias = self._phases(x.dtype)
        y = F.conv2d(x, weight, bias, padding=1)  # N x 4C x (H + 1) x (W + 1)
        n, _, h, w = x.shape
        c = deconv.out_channels
        out = torch.empty((n, c, h, 2, w, 2), dtype=torch.float32, device=x.device)
        for i, (py, px) in enumerate(_PHASES):
            out[:, :, :, py, :, px] = y[:, i * c : (i + 1) * c, py : py + h, px : px + w]
        return out.view(n, c, 2 * h, 2 * w)

    def _phases(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """The last layer's weights as the 2 x 2 convolution of :meth:`_last`, kept until they change."""
        weight = self.lastconv.weight
        # (inference tensors keep no version: they are changed only by their creator, inside inference mode)
        key = (weight.data_ptr(), None if weight.is_inference() else weight._version, weight.device, dtype)
        if getattr(self, "_phase_key", None) != key:
            with torch.no_grad():
                # Output row 2m takes input rows m - 1 and m through kernel rows 3 and 1; row 2m + 1 takes
                # rows m and m + 1 through kernel rows 2 and 0. Over the input padded by one row, those are
                # the 2 x 2 windows at m and at m + 1 (hence the phase's offset in _last); columns alike.
                taps = ([3, 1], [2, 0])
                phases = [weight[:, :, taps[py]][:, :, :, taps[px]].transpose(0, 1) for py, px in _PHASES]
                bias = self.lastconv.bias
                if bias is None:
                    bias = torch.zeros(weight.shape[1], device=weight.device)
                self._phase_weights = (torch.cat(phases).to(dtype).contiguous(), bias.repeat(4).to(dtype))
            self._phase_key = key
        return self._phase_weights


_PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))


class Head(nn.Module):
    """The per-frame encoder of 4.13 and later (``encode.cnn0`` .. ``encode.cnn3``)."""

    def __init__(self, width: int, channels: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, width, 3, 2, 1)
        self.cnn1 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn2 = nn.Conv2d(width, width, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(width, channels, 4, 2, 1)
        self.relu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.cnn0(x))
        x = self.relu(self.cnn1(x))
        x = self.relu(self.cnn2(x))
        return self.cnn3(x)


def _encoder(spec: EncoderSpec) -> nn.Module:
    w, e = spec.width, spec.channels
    if spec.layout == "pair":  # 4.7-4.9: no activation between the two layers
        return nn.Sequential(nn.Conv2d(3, w, 3, 2, 1), nn.ConvTranspose2d(w, e, 4, 2, 1))
    if spec.layout == "sequential":
        act = nn.LeakyReLU(0.2, inplace=True)
        return nn.Sequential(
            nn.Conv2d(3, w, 3, 2, 1), act, nn.Conv2d(w, w, 3, 1, 1), act, nn.Conv2d(w, w, 3, 1, 1), act,
            nn.ConvTranspose2d(w, e, 4, 2, 1),
        )  # fmt: skip
    if spec.layout == "named":
        return Head(w, e)
    raise ValueError(f"unknown encoder layout {spec.layout!r}")


@lru_cache(maxsize=16)  # a few frame sizes per device; clear_grid_cache() frees them
def _base_grid(height: int, width: int, device: torch.device) -> Tensor:
    """The identity sampling grid in [-1, 1] units as two planes, x then y: 1 x 2 x H x W."""
    ys = torch.linspace(-1.0, 1.0, height, device=device)
    xs = torch.linspace(-1.0, 1.0, width, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx, gy)).unsqueeze(0)


def clear_grid_cache() -> None:
    """Forget the sampling grids that :func:`warp` keeps on each device."""
    _base_grid.cache_clear()
    _sampled_base_grid.cache_clear()
    _grid_units.cache_clear()


@lru_cache(maxsize=16)
def _sampled_base_grid(step: int, height: int, width: int, device: torch.device) -> Tensor:
    return sampled_pixels(_base_grid(height, width, device), step).contiguous()


@lru_cache(maxsize=16)
def _grid_units(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """One pixel in [-1, 1] units along x and along y, shaped to scale a flow's two planes."""
    return torch.tensor([2 / (width - 1), 2 / (height - 1)], dtype=dtype, device=device).view(1, 2, 1, 1)


def warp(image: Tensor, flow: Tensor, sampled_for: float | None = None) -> Tensor:
    """Backward warp: ``out(p) = image(p + flow(p))``, bilinear, border-replicated, in float32.

    ``flow`` is N x 2 x H x W in pixels, (x, y) order, the size of ``image``. With ``sampled_for=s``
    where :func:`sampled_step` finds a pattern for ``s``, only those pixels are warped (the same values),
    and the result is N x C x 2H/s x 2W/s.
    """
    h, w = flow.shape[-2:]
    step = sampled_step(sampled_for, h, w) if sampled_for is not None else None
    if step is not None:  # the same arithmetic on the picked pixels
        base = _sampled_base_grid(step, h, w, flow.device)
        flow = sampled_pixels(flow, step)
    else:
        base = _base_grid(h, w, flow.device)
    # The grid in one pass over the flow's own planes (pixels to [-1, 1] units, plus the identity), handed
    # to the sampler as an N x H x W x 2 view of them: the sampler reads it through its strides at the same
    # speed, and building it in that layout instead cost a second pass (about 1 ms a 720p pair here).
    units = _grid_units(h, w, flow.device, flow.dtype)
    if torch.is_grad_enabled() and flow.requires_grad:  # training: autograd keeps it, so not a cached one
        units = units.clone()
    grid = torch.addcmul(base, flow, units).permute(0, 2, 3, 1)
    return F.grid_sample(image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)


def warp_pair(pair: Tensor, flow: Tensor, sampled_for: float | None = None) -> Tensor:
    """Both halves of ``pair`` (N x 2C x H x W: frame 0's channels, then frame 1's) warped in one call,
    the first by ``flow[:, :2]``, the second by ``flow[:, 2:4]``; N x 2C x H' x W', in that order
    (H' x W' = H x W, or the pixels that ``sampled_for`` picks: see :func:`warp`).

    One sampling call over 2N images is about a third cheaper than two over N on the CPU, and the result
    is already the concatenation that the next block reads."""
    n, _, h, w = flow.shape
    c = pair.shape[1] // 2
    out = warp(pair.reshape(2 * n, c, h, w), flow[:, :4].reshape(2 * n, 2, h, w), sampled_for)
    return out.view(n, 2 * c, *out.shape[-2:])


def _swap(flow: Tensor) -> Tensor:
    return torch.cat((flow[:, 2:4], flow[:, :2]), 1)


def _swap_halves(pair: Tensor) -> Tensor:
    """N x 2C x H x W with its two halves exchanged (frame 1's channels first)."""
    c = pair.shape[1] // 2
    return torch.cat((pair[:, c:], pair[:, :c]), 1)


class HostCopy:
    """A device tensor's copy to the host, started now and waited for only when :meth:`result` is called.

    On a CUDA device the copy goes to page-locked memory behind the work already queued, and an event
    marks its end, so the host blocks only when it reads; elsewhere the tensor is simply moved."""

    def __init__(self, tensor: Tensor) -> None:
        self._event = None
        if tensor.device.type == "cuda":
            self._host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self._host.copy_(tensor, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._host = tensor.cpu()

    def result(self) -> Tensor:
        if self._event is not None:
            self._event.synchronize()
        return self._host


class _Network(nn.Module):
    """What the engine relies on: optional per-frame features, precision and memory format set once."""

    has_encoder = False

    def __init__(self) -> None:
        super().__init__()
        self.memory_format = torch.contiguous_format

    def configure(self, dtype: torch.dtype, channels_last: bool) -> "_Network":
        """Cast the weights to ``dtype`` and choose the memory format of the convolutions."""
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        return self.to(dtype=dtype, memory_format=self.memory_format)

    def features(self, image: Tensor) -> Tensor | None:
        """Per-frame encoder features, or None where the architecture has no encoder."""
        return None


class IFNet(_Network):
    """The RIFE 4.x networks (families 4.0, 4.2, 4.5, 4.7 and 4.21)."""

    def __init__(self, release: ReleaseInfo) -> None:
        super().__init__()
        self.traits = traits = TRAITS[release.family]
        self.scales = release.scales
        enc = release.encoder.channels if release.encoder else 0
        first = 7 + 2 * enc
        later = 12 + 2 * enc + (8 if traits.pass_features else 0)
        for i, width in enumerate(release.widths):
            block = FlowBlock(first if i == 0 else later, width, release.block_outputs, traits, release.groups)
            self.add_module(f"block{i}", block)
        self.blocks = [getattr(self, f"block{i}") for i in range(len(release.widths))]
        if release.encoder:
            self.encode = _encoder(release.encoder)
            self.has_encoder = True
        # Where True, a block working at half size (scale 2) reads the pair warped at that size from the
        # images and flow reduced to it, instead of warped at full size and then reduced: a quarter of
        # the sampling (at 720p on the CPU, ~10 ms of a 4.0 frame's 13 ms warp). Not the same numbers, so
        # off in the float network, which reproduces upstream; the 8-bit form turns it on (vsrife.int8,
        # where its effect on frame-drop PSNR is measured).
        self.reduced_warps = False

    def features(self, image: Tensor) -> Tensor | None:
        """Per-frame features (float32, N x E x H x W), or None for releases without an encoder."""
        if not self.has_encoder:
            return None
        weight = next(self.encode.parameters())
        x = image.to(weight.dtype).contiguous(memory_format=self.memory_format)
        return self.encode(x).float()

    def forward(
        self,
        img0: Tensor,
        img1: Tensor,
        timestep: Tensor,
        feat0: Tensor | None = None,
        feat1: Tensor | None = None,
        scale: float = 1.0,
        ensemble: bool = False,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        scales = [s / scale for s in self.scales]
        if self.has_encoder and feat0 is None:
            feat0, feat1 = self.features(img0), self.features(img1)
        restart = self.traits.adaptive_scale
        return self._estimate(img0, img1, timestep, feat0, feat1, scales, ensemble, ensemble, restart)

    def trace(self, img0: Tensor, img1: Tensor, timestep: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """The training forward: the output frame and, after every block, its (flow, mask logit).

        Scale 1, no tta and no 4.0/4.1 large-motion restart, so that every block's flow is one estimate of
        the same pair (what the distillation compares). The output is computed exactly as :meth:`forward`
        computes it on that path.
        """
        feat0, feat1 = (self.features(img0), self.features(img1)) if self.has_encoder else (None, None)
        steps: list[tuple[Tensor, Tensor]] = []
        out = self._estimate(img0, img1, timestep, feat0, feat1, list(self.scales), False, False, False, steps)
        return out, steps

    def _estimate(
        self,
        img0: Tensor,
        img1: Tensor,
        timestep: Tensor,
        feat0: Tensor | None,
        feat1: Tensor | None,
        scales: list[float],
        ensemble: bool,
        first_both_ways: bool,
        may_restart: bool,
        steps: list[tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """The blocks in turn, then the blend. ``first_both_ways`` runs the first block on the pair and on
        the swapped pair (tta); ``may_restart`` allows the 4.0/4.1 large-motion restart. Where ``steps`` is
        a list, each block's (flow, mask logit) is appended to it (training)."""
        traits = self.traits
        images = torch.cat((img0, img1), 1)  # the pair side by side: each warp is then one call for both
        feats = torch.cat((feat0, feat1), 1) if feat0 is not None else None
        firsts = (images,) if feats is None else (images, feats)
        flow, mask, carried = self.blocks[0]((*firsts, timestep), None, scales[0])
        if first_both_ways:
            swapped = tuple(_swap_halves(t) for t in firsts)
            f, m, _ = self.blocks[0]((*swapped, 1 - timestep), None, scales[0])
            flow, mask = (flow + _swap(f)) / 2, (mask - m) / 2
        if steps is not None:
            steps.append((flow, mask))
        decision = None  # the 4.0/4.1 large-motion test, read on the host only after every block is queued
        for i in range(1, len(self.blocks)):
            block = self.blocks[i]
            small = None
            if self.reduced_warps and scales[i] == 2:
                small = _resize(flow[:, :4], 0.5) * 0.5  # the flow at half size, in half-size pixels
                warped = warp_pair(_resize(images, 0.5), small)
                wfeats = (warp_pair(_resize(feats, 0.5), small),) if feats is not None else ()
            else:
                # warped at only the pixels the block's reduction reads, where that is a fraction of them
                warped = warp_pair(images, flow, scales[i])
                wfeats = (warp_pair(feats, flow, scales[i]),) if feats is not None else ()
            extra = (carried,) if traits.pass_features else ()
            # (``small`` is also the block's own reduction of the flow: x * 0.5 and x / 2 are the same)
            delta, m, carried = block((warped, *wfeats, timestep, mask, *extra), flow, scales[i], small)
            if i == 1 and may_restart:
                # Large motion: a pair whose block-1 update exceeds 32 px in both flows starts again from a
                # coarser first block, with every later block coarser too (upstream 4.0/4.1). Each pair
                # decides for itself. Upstream reads the decision at once, leaving a GPU idle while the host
                # waits; here its copy to the host is started now and read once the remaining blocks are
                # queued behind it, so the device always has work. Pairs that restart run those blocks too
                # (wasted, but rare); the others never wait for them.
                large = (delta[:, :2].abs().amax((1, 2, 3)) > 32) & (delta[:, 2:4].abs().amax((1, 2, 3)) > 32)
                decision = HostCopy(large)
            if ensemble:
                rx = (_swap_halves(warped), *(_swap_halves(t) for t in wfeats), 1 - timestep, -mask)
                d, mr, _ = block(rx, _swap(flow), scales[i])
                delta, m = (delta + _swap(d)) / 2, (m - mr) / 2
            # Into the block's fresh output, which nothing else holds (the same sums, one full-size map fewer)
            flow = delta.add_(flow)
            mask = m.add_(mask) if traits.accumulate_mask else m
            if steps is not None:
                steps.append((flow, mask))
        warped = warp_pair(images, flow)
        out = torch.lerp(warped[:, 3:], warped[:, :3], torch.sigmoid(mask))  # w0 * weight + w1 * (1 - weight)
        rows = None if decision is None else decision.result()
        if rows is None or not rows.any():
            return out
        redo = rows.nonzero()[:, 0].to(out.device)
        coarse = [s * 2 for s in scales]
        picked = [None if t is None else t[redo] for t in (img0, img1, timestep, feat0, feat1)]
        return out.index_copy(0, redo, self._estimate(*picked, coarse, ensemble, False, False))


class _Conv2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = _conv(cin, cout, stride, True)
        self.conv2 = _conv(cout, cout, 1, True)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv2(self.conv1(x))


def _deconv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.PReLU(cout))


class ContextNet(nn.Module):
    """Four-level image features, each backward-warped to the intermediate time."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = _Conv2(3, 16)
        self.conv2 = _Conv2(16, 32)
        self.conv3 = _Conv2(32, 64)
        self.conv4 = _Conv2(64, 128)

    def forward(self, x: Tensor, flow: Tensor) -> list[Tensor]:
        levels = []
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x)
            flow = _resize(flow, 0.5) * 0.5
            levels.append(warp(x, flow).to(x.dtype))
        return levels


class FusionUNet(nn.Module):
    """The refinement U-Net of the paper (``unet`` in the checkpoint); returns a residual in (0, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.down0 = _Conv2(17, 32)
        self.down1 = _Conv2(64, 64)
        self.down2 = _Conv2(128, 128)
        self.down3 = _Conv2(256, 256)
        self.up0 = _deconv(512, 128)
        self.up1 = _deconv(256, 64)
        self.up2 = _deconv(128, 32)
        self.up3 = _deconv(64, 16)
        self.conv = nn.Conv2d(16, 3, 3, 1, 1)

    def forward(self, x: Tensor, c0: list[Tensor], c1: list[Tensor]) -> Tensor:
        s0 = self.down0(x)
        s1 = self.down1(torch.cat((s0, c0[0], c1[0]), 1))
        s2 = self.down2(torch.cat((s1, c0[1], c1[1]), 1))
        s3 = self.down3(torch.cat((s2, c0[2], c1[2]), 1))
        y = self.up0(torch.cat((s3, c0[3], c1[3]), 1))
        y = self.up1(torch.cat((y, s2), 1))
        y = self.up2(torch.cat((y, s1), 1))
        y = self.up3(torch.cat((y, s0), 1))
        return torch.sigmoid(self.conv(y))


class IFNetM(_Network):
    """IFNet_m of the ECCV 2022 paper: three flow blocks, then context features and a fusion U-Net."""

    def __init__(self, release: ReleaseInfo) -> None:
        super().__init__()
        traits = TRAITS[release.family]
        self.scales = release.scales
        w = release.widths
        self.block0 = FlowBlock(7, w[0], 5, traits)
        self.block1 = FlowBlock(18, w[1], 5, traits)
        self.block2 = FlowBlock(18, w[2], 5, traits)
        self.contextnet = ContextNet()
        self.unet = FusionUNet()

    def _once(
        self, img0: Tensor, img1: Tensor, timestep: Tensor, scale: float, steps: list[tuple[Tensor, Tensor]] | None = None
    ) -> Tensor:
        fmt = self.memory_format
        scales = [s / scale for s in self.scales]
        images = torch.cat((img0, img1), 1)
        flow, mask, _ = self.block0((images, timestep), None, scales[0])
        if steps is not None:
            steps.append((flow, mask))
        warped = warp_pair(images, flow)
        for block, s in ((self.block1, scales[1]), (self.block2, scales[2])):
            delta, m, _ = block((images, timestep, warped, mask), flow, s)
            flow, mask = flow + delta, mask + m
            if steps is not None:
                steps.append((flow, mask))
            warped = warp_pair(images, flow)
        merged = torch.lerp(warped[:, 3:], warped[:, :3], torch.sigmoid(mask))
        dtype = self.unet.conv.weight.dtype

        def low(t: Tensor) -> Tensor:
            return t.to(dtype).contiguous(memory_format=fmt)

        c0 = self.contextnet(low(img0), flow[:, :2])
        c1 = self.contextnet(low(img1), flow[:, 2:4])
        x = low(torch.cat((images, warped, mask, flow), 1))
        residual = self.unet(x, c0, c1).float() * 2 - 1
        return torch.clamp(merged + residual, 0, 1)

    def forward(
        self,
        img0: Tensor,
        img1: Tensor,
        timestep: Tensor,
        feat0: Tensor | None = None,
        feat1: Tensor | None = None,
        scale: float = 1.0,
        ensemble: bool = False,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        out = self._once(img0, img1, timestep, scale)
        if ensemble:  # the paper's TTA: the same pair flipped both ways, averaged
            dims = (2, 3)
            flipped = self._once(img0.flip(dims), img1.flip(dims), timestep.flip(dims), scale)
            out = (out + flipped.flip(dims)) / 2
        return out

    def trace(self, img0: Tensor, img1: Tensor, timestep: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """The training forward: the refined output frame and, after every flow block, its (flow, mask
        logit); scale 1, no tta."""
        steps: list[tuple[Tensor, Tensor]] = []
        return self._once(img0, img1, timestep, 1.0, steps), steps


# --- IFRNet ---------------------------------------------------------------------------------------------
#
# One encoder-decoder: a four-level feature pyramid of each frame (strides 2 to 16), then four decoders from
# the coarsest level up. Each decoder refines both intermediate flows and an intermediate feature map
# together; the first one sees the timestep as an extra input channel, so any time between the frames can
# be asked for. The last decoder also gives the blend mask and a residual. The three sizes differ only in
# widths (and the first kernel of the large one). Module names follow the upstream checkpoints:
# ``encoder.pyramid{1..4}.{0,1}.{0: conv, 1: PReLU}`` and ``decoder{4..1}.convblock.{0: conv + PReLU,
# 1: residual block, 2: transposed conv}``.


def _conv_prelu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.PReLU(cout))


class SideResidual(nn.Module):
    """IFRNet's residual block: two full convolutions, each followed by one on the last ``side`` channels
    alone, then a closing convolution added to the input."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.conv1 = _conv_prelu(channels, channels)
        self.conv2 = _conv_prelu(side, side)
        self.conv3 = _conv_prelu(channels, channels)
        self.conv4 = _conv_prelu(side, side)
        self.conv5 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.prelu = nn.PReLU(channels)

    def _side(self, x: Tensor, conv: nn.Module) -> Tensor:
        return torch.cat((x[:, : -self.side], conv(x[:, -self.side :])), 1)

    def forward(self, x: Tensor) -> Tensor:
        y = self._side(self.conv1(x), self.conv2)
        y = self._side(self.conv3(y), self.conv4)
        return self.prelu(x + self.conv5(y))


class PyramidEncoder(nn.Module):
    """Four levels of features, each at half the size of the one before (strides 2, 4, 8, 16)."""

    def __init__(self, widths: Sequence[int], stem_kernel: int) -> None:
        super().__init__()
        cin = 3
        for level, width in enumerate(widths, 1):
            kernel = stem_kernel if level == 1 else 3
            self.add_module(f"pyramid{level}", nn.Sequential(_conv_prelu(cin, width, kernel, 2), _conv_prelu(width, width)))
            cin = width

    def forward(self, x: Tensor) -> list[Tensor]:
        levels = []
        for level in (self.pyramid1, self.pyramid2, self.pyramid3, self.pyramid4):
            x = level(x)
            levels.append(x)
        return levels


class FeatureDecoder(nn.Module):
    """One decoder: its input through a convolution and a residual block, then doubled in size by a
    transposed convolution into 4 flow channels and ``cout - 4`` feature (or mask and residual) channels."""

    def __init__(self, cin: int, width: int, side: int, cout: int) -> None:
        super().__init__()
        self.convblock = nn.Sequential(_conv_prelu(cin, width), SideResidual(width, side), nn.ConvTranspose2d(width, cout, 4, 2, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.convblock(x)


class IFRNet(_Network):
    """IFRNet (Kong et al., CVPR 2022): the network of ``ltkong218/IFRNet`` at any of its three sizes.

    Upstream's normalisation is kept exactly: both frames minus the mean of all their pixels and channels
    (one value per pair, taken over the frames' own size, not their padding), added back after the blend.
    The sides must be multiples of 16 (the coarsest level's stride); the engine pads them. There is no tta
    and no flow scale (the catalogue says so, and the engine refuses them).
    """

    def __init__(self, release: ReleaseInfo) -> None:
        super().__init__()
        c1, c2, c3, c4 = release.widths
        side = release.side
        self.encoder = PyramidEncoder(release.widths, release.stem_kernel)
        self.decoder4 = FeatureDecoder(2 * c4 + 1, 2 * c4, side, 4 + c3)
        self.decoder3 = FeatureDecoder(3 * c3 + 4, 3 * c3, side, 4 + c2)
        self.decoder2 = FeatureDecoder(3 * c2 + 4, 3 * c2, side, 4 + c1)
        self.decoder1 = FeatureDecoder(3 * c1 + 4, 3 * c1, side, release.block_outputs)
        self.multiple = release.modulo

    def _pyramid(self, image: Tensor) -> list[Tensor]:
        weight = self.encoder.pyramid1[0][0].weight
        return self.encoder(image.to(weight.dtype).contiguous(memory_format=self.memory_format))

    def forward(
        self,
        img0: Tensor,
        img1: Tensor,
        timestep: Tensor,
        feat0: Tensor | None = None,
        feat1: Tensor | None = None,
        scale: float = 1.0,
        ensemble: bool = False,
        size: tuple[int, int] | None = None,
    ) -> Tensor:
        if scale != 1 or ensemble:
            raise ValueError("IFRNet has no flow scale and no tta; use scale=1 and ensemble=False")
        n, _, height, width = img0.shape
        if height % self.multiple or width % self.multiple:
            raise ValueError(f"IFRNet needs sides that are multiples of {self.multiple}, not {width}x{height}")
        h, w = size if size is not None else (height, width)
        # A batch that repeats one pair (every timestep of a pair: the engine expands it) encodes it once.
        repeated = n > 1 and img0.stride(0) == 0 and img1.stride(0) == 0
        a, b = (img0[:1], img1[:1]) if repeated else (img0, img1)
        mean = torch.cat((a[..., :h, :w], b[..., :h, :w]), 2).float().mean((1, 2, 3), keepdim=True)
        a, b = a.float() - mean, b.float() - mean
        pyramid0, pyramid1 = self._pyramid(a), self._pyramid(b)
        if repeated:
            a, b, mean = (t.expand(n, -1, -1, -1) for t in (a, b, mean))
            pyramid0 = [f.expand(n, -1, -1, -1) for f in pyramid0]
            pyramid1 = [f.expand(n, -1, -1, -1) for f in pyramid1]
        return self._decode(a, b, mean, pyramid0, pyramid1, timestep)

    def _decode(self, img0: Tensor, img1: Tensor, mean: Tensor, pyramid0: list[Tensor], pyramid1: list[Tensor],
                timestep: Tensor) -> Tensor:  # fmt: skip
        """The decoders from the coarsest level up; flows, mask, warps and blend in float32."""
        fmt = self.memory_format
        coarse0 = pyramid0[3]
        dtype = coarse0.dtype
        h, w = coarse0.shape[-2:]
        t = timestep.expand(-1, -1, h, w) if timestep.shape[-2:] == (1, 1) else _resize_to(timestep, (h, w))
        out = self.decoder4(torch.cat((coarse0, pyramid1[3], t.to(dtype)), 1).contiguous(memory_format=fmt))
        flow0, flow1 = out[:, 0:2].float(), out[:, 2:4].float()
        for decoder, level in ((self.decoder3, 2), (self.decoder2, 1), (self.decoder1, 0)):
            warped0 = warp(pyramid0[level], flow0).to(dtype)
            warped1 = warp(pyramid1[level], flow1).to(dtype)
            x = torch.cat((out[:, 4:], warped0, warped1, flow0.to(dtype), flow1.to(dtype)), 1)
            out = decoder(x.contiguous(memory_format=fmt))
            flow0 = out[:, 0:2].float() + 2 * _resize(flow0, 2)
            flow1 = out[:, 2:4].float() + 2 * _resize(flow1, 2)
        mask = torch.sigmoid(out[:, 4:5].float())
        residual = out[:, 5:8].float()
        merged = mask * warp(img0, flow0) + (1 - mask) * warp(img1, flow1) + mean
        return torch.clamp(merged + residual, 0, 1)


def _resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)


_ARCHITECTURES: dict[str, type[_Network]] = {"ifnet_m": IFNetM, "ifrnet": IFRNet}


def build_network(release: ReleaseInfo) -> _Network:
    """An untrained network of ``release``'s architecture, in float32 on the CPU, in eval mode."""
    net = _ARCHITECTURES.get(release.family, IFNet)(release)
    return net.eval().requires_grad_(False)
