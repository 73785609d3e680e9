"""The benchmarks' baseline: a RIFE 4.x network run in the order of operations of the upstream inference code.

The speed goals compare vsrife's default path with "the plain upstream fp32 path". Timing vsrife's own
network in float32 for that would move the baseline whenever the engine gets faster (its warps, upsampling
and layouts are shared by every precision), so the baseline here is the upstream sequence itself, written
from the published inference code (Practical-RIFE ``IFNet_HDv3`` and ``IFBlock``) and driven by the weights
of a vsrife network cast to float32, NCHW:

* the two frames padded on every call, as upstream's ``inference_video`` pads them: to a multiple of
  ``max(128, 128 / scale)`` (720 rows become 768; vsrife pads to the network's own multiple, 736), and
  the timestep broadcast to a full-size plane and concatenated with the frames at full size;
* per block: its inputs concatenated at full size, then downscaled (bilinear), the flow downscaled and
  divided by the scale, ``conv0``, the eight units (plus the outer residual of 4.0), ``lastconv``, the output
  upscaled to full size, and only then the flow multiplied by its factor;
* each frame warped on its own, the sampling grid built by concatenating the two normalised flow planes to a
  cached base grid and permuting it, as upstream's ``warp``;
* the 4.0/4.1 large-motion restart decided at once on the host, for the whole batch;
* the blend as ``w0 * mask + w1 * (1 - mask)``.

Padded as the engine pads (``pad_to=engine.multiple``), its frames equal the engine's in float32 to
rounding (tests/test_upstream_path.py). RIFE families only (4.0 to 4.26); IFNet_m and IFRNet have no such
baseline here.

:class:`PlainProcess` runs the baseline in a process of its own with the C library's allocator left as it
is (``VSRIFE_HOST_MEMORY=system`` in that process), as upstream's script runs: vsrife's engine keeps freed
host memory for reuse (``vsrife.engine.keep_host_memory``), which would otherwise speed the baseline up in
the same process.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time

import torch
import torch.nn.functional as F
from torch import Tensor

from vsrife.catalogue import get_release
from vsrife.engine import Interpolator, keep_host_memory
from vsrife.networks import IFNet

__all__ = ["PlainProcess", "UpstreamPath", "baseline", "upstream_multiple"]

_GRIDS: dict[tuple[str, tuple[int, ...]], Tensor] = {}


def upstream_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Backward warp as upstream writes it: base grid cached per device and flow size, flow normalised
    plane by plane, concatenated, added and permuted on every call."""
    key = (str(flow.device), tuple(flow.shape))
    if key not in _GRIDS:
        n, _, h, w = flow.shape
        xs = torch.linspace(-1.0, 1.0, w, device=flow.device).view(1, 1, 1, w).expand(n, -1, h, -1)
        ys = torch.linspace(-1.0, 1.0, h, device=flow.device).view(1, 1, h, 1).expand(n, -1, -1, w)
        _GRIDS[key] = torch.cat((xs, ys), 1)
    flow = torch.cat((flow[:, 0:1] / ((image.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((image.shape[2] - 1.0) / 2.0)), 1)
    grid = (_GRIDS[key] + flow).permute(0, 2, 3, 1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _block(block, x: Tensor, flow: Tensor | None, scale: float) -> tuple[Tensor, Tensor, Tensor]:
    size = x.shape[-2:]
    if scale != 1:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
    if flow is not None:
        flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) * (1.0 / scale)
        x = torch.cat((x, flow), 1)
    feat = block.conv0(x)
    out = block.convblock(feat)
    if block.outer_residual:
        out = out + feat
    tmp = block.lastconv(out)
    factor = scale * block.upscale
    # back to the input's size (upstream names the factor; the size is the same except where a restart's
    # coarser scales no longer divide the padded frame, where upstream's shapes would not meet)
    tmp = F.interpolate(tmp, size=size, mode="bilinear", align_corners=False)
    return tmp[:, :4] * factor, tmp[:, 4:5], tmp[:, 5:]


def upstream_multiple(scale: float) -> int:
    """What upstream's ``inference_video`` pads frames to: a multiple of ``max(128, int(128 / scale))``."""
    return max(128, int(128 / scale))


class UpstreamPath:
    """``interpolate(img0, img1, timestep)`` in the upstream order, in float32, NCHW, on ``device``; frames
    padded to a multiple of ``pad_to`` (default: upstream's, :func:`upstream_multiple`)."""

    def __init__(self, model: str, device: str | torch.device = "cpu", scale: float = 1.0, weights=None,
                 pad_to: int | None = None) -> None:  # fmt: skip
        inner = Interpolator(model, weights, device=device, dtype=torch.float32, scale=scale, channels_last=False)
        if not isinstance(inner.network, IFNet):
            raise ValueError(f"{model}: the upstream baseline covers the RIFE 4.x families only")
        self.release, self.device, self.dtype, self.scale = inner.release, inner.device, torch.float32, scale
        self.network = inner.network
        self.multiple = pad_to if pad_to is not None else upstream_multiple(scale)
        if self.multiple % inner.multiple:
            raise ValueError(f"pad_to={self.multiple} is not a multiple of the network's {inner.multiple}")

    @torch.inference_mode()
    def interpolate(self, img0: Tensor, img1: Tensor, timestep: float) -> Tensor:
        h, w = img0.shape[-2:]
        ph, pw = -h % self.multiple, -w % self.multiple
        img0 = F.pad(img0.to(self.device, torch.float32), (0, pw, 0, ph))
        img1 = F.pad(img1.to(self.device, torch.float32), (0, pw, 0, ph))
        return self._forward(img0, img1, timestep)[:, :, :h, :w]

    def _forward(self, img0: Tensor, img1: Tensor, timestep: float) -> Tensor:
        net = self.network
        traits = net.traits
        scales = [s / self.scale for s in net.scales]
        t = (img0[:, :1].clone() * 0 + 1) * timestep
        f0 = f1 = None
        if net.has_encoder:
            f0, f1 = net.encode(img0), net.encode(img1)
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        i, may_restart = 0, traits.adaptive_scale
        while i < len(net.blocks):
            block = net.blocks[i]
            if flow is None:
                parts = (img0, img1) + ((f0, f1) if f0 is not None else ()) + (t,)
                flow, mask, feat = _block(block, torch.cat(parts, 1), None, scales[i])
            else:
                wf = (upstream_warp(f0, flow[:, :2]), upstream_warp(f1, flow[:, 2:4])) if f0 is not None else ()
                extra = (feat,) if traits.pass_features else ()
                x = torch.cat((warped0, warped1, *wf, t, mask, *extra), 1)
                delta, m, feat = _block(block, x, flow, scales[i])
                if may_restart and i == 1 and delta[:, :2].abs().max() > 32 and delta[:, 2:4].abs().max() > 32:
                    scales = [s * 2 for s in scales]  # upstream: start again once, every block coarser
                    flow, i, may_restart = None, 0, False
                    continue
                flow = flow + delta
                mask = mask + m if traits.accumulate_mask else m
            warped0, warped1 = upstream_warp(img0, flow[:, :2]), upstream_warp(img1, flow[:, 2:4])
            i += 1
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


def baseline(model: str, device: str | torch.device = "cpu", scale: float = 1.0):
    """The benchmarks' plain path for ``model`` and a few words on what it is: the upstream order for the
    RIFE 4.x families; elsewhere vsrife's own network in float32, NCHW, which the engine's work also speeds
    up, so that ratios there understate the default path."""
    if get_release(model).family in ("ifnet_m", "ifrnet"):
        plain = Interpolator(model, device=device, dtype=torch.float32, scale=scale, channels_last=False)
        return plain, "vsrife's network in float32, NCHW (no upstream-order baseline for this architecture)"
    what = f"the upstream order of operations in float32, NCHW, padded to {upstream_multiple(scale)}"
    return UpstreamPath(model, device, scale), what


def _serve(conn, model: str, device: str, scale: float, threads: int) -> None:
    """The child of :class:`PlainProcess`: builds :func:`baseline` with the system's allocator and answers
    its calls, timing each one."""
    os.environ["VSRIFE_HOST_MEMORY"] = "system"  # read when the first network loads, just below
    try:
        torch.set_num_threads(threads)
        plain, what = baseline(model, device, scale)
        conn.send(("ready", (what, keep_host_memory())))  # decided (and refused) when the network loaded
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    sync = getattr(torch, plain.device.type, None) if plain.device.type != "cpu" else None
    while True:
        message = conn.recv()
        if message is None:
            return
        img0, img1, timestep = message
        usage = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), time.process_time()
        out = plain.interpolate(img0, img1, timestep)
        if sync is not None:
            sync.synchronize()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        after = resource.getrusage(resource.RUSAGE_SELF)
        conn.send((out.cpu(), {"wall": wall, "cpu": cpu, "faults": after.ru_minflt - usage.ru_minflt,
                               "peak_rss_mib": after.ru_maxrss / 1024}))  # fmt: skip


class PlainProcess:
    """:func:`baseline` in a process of its own, with the system's allocator, called like an Interpolator.

    ``interpolate`` sends the frames, the child times the call alone (wall and CPU seconds, page faults,
    its peak RSS) and returns the frame on the host; :attr:`last` holds that call's figures. The copies to
    and from the child are outside the timed part, and the parent waits meanwhile, so interleaving the
    child's calls with other paths' keeps one path running at a time.
    """

    dtype = torch.float32
    memory_format = torch.contiguous_format

    def __init__(self, model: str, device: str | torch.device = "cpu", scale: float = 1.0,
                 threads: int | None = None, start_timeout: float = 600) -> None:  # fmt: skip
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        args = (child, model, str(device), scale, threads or torch.get_num_threads())
        self._process = ctx.Process(target=_serve, args=args, daemon=True)
        self._process.start()
        child.close()
        try:
            if not self._conn.poll(start_timeout):
                raise RuntimeError(f"the baseline process did not start within {start_timeout:.0f} s")
            status, detail = self._conn.recv()
            if status != "ready":
                raise RuntimeError(f"the baseline process failed to start: {detail}")
        except EOFError as e:
            self.close()
            raise RuntimeError(f"the baseline process exited (code {self._process.exitcode}) before it started") from e
        except BaseException:
            self.close()
            raise
        what, self.host_memory_kept = detail
        self.pid = self._process.pid
        self.description = f"{what}, in its own process with the system allocator"
        self.device = torch.device(device)
        self.last: dict = {}

    def interpolate(self, img0: Tensor, img1: Tensor, timestep: float) -> Tensor:
        self._conn.send((img0.cpu(), img1.cpu(), timestep))
        try:
            out, self.last = self._conn.recv()
        except EOFError as e:
            raise RuntimeError(f"the baseline process exited (code {self._process.exitcode}) during a call") from e
        return out.to(self.device)

    def close(self) -> None:
        if self._process.is_alive():
            try:
                self._conn.send(None)
            except (BrokenPipeError, OSError):
                pass
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout=10)
        self._conn.close()
