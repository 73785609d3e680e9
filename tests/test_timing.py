"""Frame arithmetic and scene-change decisions, without VapourSynth."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
import torch

from vsrife.timing import (
    SCENE_THRESHOLD,
    as_fraction,
    frame_position,
    luma_thumbnail,
    output_count,
    plan_frame,
    rate_factor,
    scene_difference,
)


def test_positions_of_2x():
    m = Fraction(2)
    assert [frame_position(k, m) for k in range(5)] == [
        (0, 0), (0, Fraction(1, 2)), (1, 0), (1, Fraction(1, 2)), (2, 0)
    ]  # fmt: skip


def test_film_to_ntsc_60():
    m = rate_factor(Fraction(24000, 1001), Fraction(60000, 1001))
    assert m == Fraction(5, 2)
    assert [frame_position(k, m) for k in range(6)] == [
        (0, 0), (0, Fraction(2, 5)), (0, Fraction(4, 5)), (1, Fraction(1, 5)), (1, Fraction(3, 5)), (2, 0)
    ]  # fmt: skip


def test_no_drift_at_a_million_frames():
    m = Fraction(60000, 1001) / Fraction(24000, 1001)
    k = 10**6
    i, t = frame_position(k, m)
    assert Fraction(i) + t == Fraction(k) / m  # exact, not approximately
    assert (i, t) == (400000, 0)
    i, t = frame_position(k + 1, m)
    assert (i, t) == (400000, Fraction(2, 5))


def test_output_count_keeps_duration():
    assert output_count(100, Fraction(2)) == 200
    assert output_count(101, Fraction(5, 2)) == 253  # ceil(252.5)
    for n, m in itertools.product((2, 3, 7, 24), (Fraction(2), Fraction(5, 2), Fraction(1001, 1000))):
        count = output_count(n, m)
        assert count / m >= n > (count - 1) / m


def test_rate_factor_errors():
    with pytest.raises(ValueError, match="must be above the source rate"):
        rate_factor(Fraction(30), Fraction(24))
    with pytest.raises(ValueError, match="variable frame rate"):
        rate_factor(Fraction(0), Fraction(60))


def test_as_fraction():
    assert as_fraction("60000/1001") == Fraction(60000, 1001)
    assert as_fraction(59.94) == Fraction(5994, 100)
    assert as_fraction(2) == 2
    for bad in ("sixty", "1/0", float("nan"), True, None):
        with pytest.raises(ValueError):
            as_fraction(bad)


def test_plan_passes_sources_through_and_repeats_the_last():
    m = Fraction(2)
    assert plan_frame(0, m, 3).source == 0
    assert plan_frame(1, m, 3).interpolated and plan_frame(1, m, 3).timestep == Fraction(1, 2)
    assert plan_frame(4, m, 3).source == 2
    assert plan_frame(5, m, 3) == plan_frame(4, m, 3)  # after the last source frame: repeat it


def test_across_a_cut_the_nearer_frame_is_shown():
    m = Fraction(4)
    shown = [plan_frame(k, m, 10, cut_after=True).source for k in range(4, 8)]
    assert shown == [1, 1, 2, 2]  # t = 0 (itself), 1/4 -> left, 1/2 and 3/4 -> right
    m = Fraction(5, 2)
    plans = [plan_frame(k, m, 10, cut_after=True) for k in range(1, 3)]
    assert [p.source for p in plans] == [0, 1]  # t = 2/5 -> left, 4/5 -> right


def test_scene_difference_separates_a_cut_from_motion():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 3, 64, 96, generator=g)
    moved = torch.roll(a, shifts=2, dims=3)
    other = torch.rand(1, 3, 64, 96, generator=g) * 0.2 + 0.7
    ta, tm, to = luma_thumbnail(a), luma_thumbnail(moved), luma_thumbnail(other)
    assert ta.shape == (1, 1, 8, 12)
    assert scene_difference(ta, ta) == 0
    assert scene_difference(ta, tm) < SCENE_THRESHOLD < scene_difference(ta, to)


def test_real_cuts_of_bikes_are_found_and_nothing_else():
    av = pytest.importorskip("av", reason="PyAV decodes the test footage: pip install av")
    from vsrife.weights import fetch_sample

    thumbs = []
    with av.open(str(fetch_sample("bikes", progress=False))) as container:
        for frame in container.decode(video=0):
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1).unsqueeze(0).float() / 255
            thumbs.append(luma_thumbnail(rgb))
    found = [i for i, (a, b) in enumerate(itertools.pairwise(thumbs)) if scene_difference(a, b) > SCENE_THRESHOLD]
    assert found == [29, 75, 136, 186, 241]  # the clip's own cuts, checked by eye
