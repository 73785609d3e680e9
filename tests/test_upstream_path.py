"""The benchmarks' baseline (scripts/upstream_path.py) computes what the engine computes: the speed ratios
are only honest if both sides make the same frames."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import vsrife

from .test_networks import random_state

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from upstream_path import UpstreamPath  # noqa: E402


def test_real_weights_on_real_footage_with_and_without_the_restart(bikes, weights_40):
    """4.0 on a real pair, and on a pair 80 px apart, where block 1 sees large motion and both start over."""
    upstream = UpstreamPath("4.0")
    engine = vsrife.Interpolator("4.0", device="cpu", dtype=torch.float32)
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
    upstream = UpstreamPath(name, weights=path)
    engine = vsrife.Interpolator(name, path, device="cpu", dtype=torch.float32)
    for t in (0.25, 0.5):
        torch.testing.assert_close(upstream.interpolate(a, b, t), engine.interpolate(a, b, t), atol=1e-4, rtol=0)


def test_other_architectures_are_refused(tmp_path):
    path = tmp_path / "ifnet_m.safetensors"
    save_file(random_state("ifnet_m"), str(path))
    with pytest.raises(ValueError, match="RIFE 4.x families only"):
        UpstreamPath("ifnet_m", weights=path)
