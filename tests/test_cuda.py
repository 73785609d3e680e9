"""On a CUDA GPU: the filter's frames match the CPU's, memory stays flat, out-of-memory fails one frame.

Skipped, saying why, where torch sees no CUDA device (this project's development machines have none: see
README, "What has never run on a GPU").
"""

from __future__ import annotations

import pytest
import torch

import vsrife
from vsrife.engine import Batcher

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


def test_the_batcher_on_cuda_matches_the_cpu_within_fp16_tolerance(bikes, weights_40):
    gpu = vsrife.Interpolator("4.0", device="cuda", dtype=torch.float16)
    cpu = vsrife.Interpolator("4.0", device="cpu", dtype=torch.float32)
    batcher = Batcher.for_device(gpu.device)
    frames = [batcher.prepare(gpu, f) for f in bikes[:4]]
    futures = [batcher.interpolate(gpu, frames[i], frames[i + 1], (0.25, 0.5, 0.75)) for i in range(3)]
    for i, future in enumerate(futures):
        got = future.result()
        assert got.device.type == "cpu" and got.is_pinned() and got.shape[0] == 3
        want = cpu.interpolate(bikes[i], bikes[i + 1], torch.tensor([0.25, 0.5, 0.75]))
        assert (got - want).abs().mean() < 2e-3 and (got - want).abs().max() < 0.1


def test_filter_frames_on_cuda_match_the_cpu(bikes, weights_40):
    vs = pytest.importorskip("vapoursynth", reason="the VapourSynth binding is not importable")
    import numpy as np

    core = vs.core
    h, w = bikes[0].shape[-2:]
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=6, fpsnum=24, fpsden=1)

    def fill(n, f):
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), bikes[n][0, p].numpy())
        return out

    src = core.std.ModifyFrame(blank, blank, fill)
    on_gpu = vsrife.RIFE(core.resize.Point(src, format=vs.RGBH), model="4.0", fp16=True, device="cuda")
    on_cpu = vsrife.RIFE(src, model="4.0", device="cpu")
    for n in (1, 5, 9):
        a, b = on_gpu.get_frame(n), on_cpu.get_frame(n)
        diff = max(np.abs(np.asarray(a[p], dtype=np.float32) - np.asarray(b[p])).max() for p in range(3))
        assert diff < 0.1 and a.props["RIFE_Timestep"] == b.props["RIFE_Timestep"] == 0.5


def test_a_thousand_frames_without_growth_of_device_memory(bikes, weights_40):
    it = vsrife.Interpolator("4.0", device="cuda", dtype=torch.float16)
    batcher = Batcher.for_device(it.device)
    small = [f[..., :128, :192] for f in bikes[:2]]

    def run(n: int) -> None:
        a, b = (batcher.prepare(it, f) for f in small)
        for future in [batcher.interpolate(it, a, b, 0.5) for _ in range(n)]:
            future.result()

    run(20)  # warm-up: the network, the grids, the allocator's pools
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    run(1000)
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before + (1 << 20)


def test_out_of_memory_fails_that_frame_only(bikes, weights_40):
    it = vsrife.Interpolator("4.0", device="cuda", dtype=torch.float16)
    batcher = Batcher.for_device(it.device)
    total = torch.cuda.get_device_properties(it.device).total_memory
    side = int((total / 4 / 3) ** 0.5) // 64 * 64  # one float32 frame a quarter of the device: cannot fit
    huge = torch.zeros(1, 3, side, side).pin_memory()
    a, b = batcher.prepare(it, huge), batcher.prepare(it, huge)
    with pytest.raises(torch.OutOfMemoryError):
        batcher.interpolate(it, a, b, 0.5).result()
    del a, b
    torch.cuda.empty_cache()
    x, y = (batcher.prepare(it, f) for f in bikes[:2])
    assert batcher.interpolate(it, x, y, 0.5).result().shape == bikes[0].shape
