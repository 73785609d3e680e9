"""Parts of the VapourSynth filter that need no VapourSynth core."""

import numpy as np

import vsrife


def test_prepared_frames_are_bounded(weights_40):
    from vsrife.vs_filter import _CACHE, _Source

    source = _Source(vsrife.Interpolator("4.0"))

    class FakeFrame:  # planes as a VapourSynth frame exposes them
        def __getitem__(self, p):
            return np.zeros((32, 48), np.float32)

    for i in range(3 * _CACHE):
        source.get(i, FakeFrame())
    assert len(source.frames) == _CACHE and min(source.frames) == 2 * _CACHE
