"""Frame arithmetic and scene-change decisions, without VapourSynth."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest
import torch

from vsrife.timing import (
    MAX_HOLD,
    SCENE_THRESHOLD,
    FramePlan,
    SlotPlanner,
    as_fraction,
    chunk_feed,
    frame_position,
    frame_time,
    luma_thumbnail,
    output_count,
    plan_frame,
    rate_factor,
    scene_difference,
    slot_duration,
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
    with pytest.raises(ValueError, match="must be above the source rate"):
        rate_factor(Fraction(24), Fraction(24))
    assert rate_factor(Fraction(24), Fraction(24), same_rate=True) == 1  # dedup at the source rate
    with pytest.raises(ValueError, match="must be above the source rate"):
        rate_factor(Fraction(24), Fraction(12), same_rate=True)


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
    shown = [plan_frame(k, m, 10, cut=lambda j: True).source for k in range(4, 8)]
    assert shown == [1, 1, 2, 2]  # t = 0 (itself), 1/4 -> left, 1/2 and 3/4 -> right
    m = Fraction(5, 2)
    plans = [plan_frame(k, m, 10, cut=lambda j: True) for k in range(1, 3)]
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


# --- held frames (dedup) ---------------------------------------------------------------------------------


def on(step: int):
    """hold(j) of a clip drawn on ``step``s: each drawing shown for ``step`` frames."""
    return lambda j: j % step != 0


def test_on_twos_slots_move_between_drawings():
    plans = [plan_frame(k, Fraction(1), 10, hold=on(2)) for k in range(6)]
    # the held frames 1, 3, 5 become the midpoints between the drawings 0, 2, 4, 6
    assert plans[0] == FramePlan(0, 2, Fraction(0), 0)
    assert plans[1] == FramePlan(0, 2, Fraction(1, 2), None)
    assert plans[2] == FramePlan(2, 4, Fraction(0), 2)
    assert plans[3] == FramePlan(2, 4, Fraction(1, 2), None)


def test_on_threes_at_twice_the_rate():
    plans = [plan_frame(k, Fraction(2), 12, hold=on(3)) for k in range(7)]
    assert [p.timestep for p in plans] == [Fraction(j % 6, 6) for j in range(7)]
    assert [(p.left, p.right) for p in plans] == [(0, 3)] * 6 + [(3, 6)]
    assert plans[0].source == 0 and plans[6].source == 3 and all(p.interpolated for p in plans[1:6])


def test_without_holds_dedup_changes_nothing():
    for m in (Fraction(2), Fraction(5, 2)):
        for k in range(30):
            assert plan_frame(k, m, 12, hold=lambda j: False) == plan_frame(k, m, 12)


def test_a_long_run_is_a_still_and_stays_still():
    still = lambda j: 1 <= j <= MAX_HOLD  # frames 0 .. MAX_HOLD show one picture: longer than a drawing
    for k in range(2 * (MAX_HOLD + 2)):
        assert plan_frame(k, Fraction(2), 12, hold=still) == plan_frame(k, Fraction(2), 12)
    # one frame shorter is a drawing on MAX_HOLDs
    short = lambda j: 1 <= j < MAX_HOLD
    assert plan_frame(1, Fraction(2), 12, hold=short) == FramePlan(0, MAX_HOLD, Fraction(1, 2 * MAX_HOLD), None)


def test_a_cut_wins_over_a_hold():
    cut_at_2 = lambda j: j == 2
    # frames 0, 1 are one drawing, a cut follows: nothing is blended with frame 2
    plans = [plan_frame(k, Fraction(2), 6, cut=cut_at_2, hold=lambda j: j == 1) for k in range(5)]
    assert [p.source for p in plans] == [0, 0, 1, 2, 2]  # t = 1/2 across the cut shows the right frame
    assert not any(p.interpolated for p in plans)


def test_a_drawing_held_to_the_end_stays():
    plans = [plan_frame(k, Fraction(2), 4, hold=lambda j: j == 3) for k in range(8)]
    assert [p.source for p in plans[4:]] == [2, 2, 3, 3]


def test_look_ahead_is_bounded():
    asked = []

    def hold(j):
        asked.append(j)
        return j % 3 != 0

    for k in range(0, 200, 7):
        asked.clear()
        i, _ = frame_position(k, Fraction(5, 2))
        plan_frame(k, Fraction(5, 2), 100, hold=hold)
        assert all(i - MAX_HOLD <= j <= i + MAX_HOLD + 1 for j in asked)


# --- very long clips and variable frame rate in the filter ----------------------------------------------


@pytest.mark.parametrize("src, dst", [(Fraction(24), Fraction(60000, 1001)), (Fraction(2997, 125), Fraction(60000, 1001))])
def test_a_million_frames_plan_as_exactly_as_one(src, dst):
    m = rate_factor(src, dst)
    n = 10**6
    count = output_count(n, m)
    last = plan_frame(count - 1, m, n)
    assert last.source == n - 1
    k = count - 3
    plan = plan_frame(k, m, n)
    i, t = frame_position(k, m)
    assert (plan.left, plan.timestep) == (i, t) and Fraction(i) + t == Fraction(k) / m
    assert Fraction(k) / m < n - 1 or plan.source == n - 1


@pytest.mark.parametrize("m", [Fraction(2), Fraction(5, 2), Fraction(3, 2), Fraction(7, 3)])
def test_variable_rate_durations_add_up(m):
    durations = [Fraction(1), Fraction(3), Fraction(1), Fraction(3)]
    slots = [slot_duration(k, m, 4, durations.__getitem__) for k in range(output_count(4, m))]
    assert sum(slots) == 8
    assert all(d > 0 for d in slots)
    # a slot inside one source frame lasts that frame's duration / m
    assert slots[0] == durations[0] / m


# --- placement by time (vsrife video) -------------------------------------------------------------------


def run_planner(times, rate, end):
    planner = SlotPlanner(rate)
    plans = []
    for time in times:
        plans += planner.push(time)
    plans += planner.finish(end)
    assert [k for k, _ in plans] == list(range(len(plans)))
    return [p for _, p in plans]


def test_constant_rate_by_time_is_the_index_placement():
    for m in (Fraction(2), Fraction(5, 2), Fraction(60000, 1001) / 25):
        times = [Fraction(j, 25) for j in range(20)]
        plans = run_planner(times, 25 * m, Fraction(20, 25))
        assert len(plans) == output_count(20, m)
        assert plans == [plan_frame(k, m, 20) for k in range(len(plans))]


def test_variable_rate_is_placed_by_time():
    # the clip: 60 frames of 1/30 s, then 20 of 1/10 s: 4 s, 80 frames, 20 fps on average
    times = [Fraction(j, 30) for j in range(60)] + [2 + Fraction(j, 10) for j in range(20)]
    plans = run_planner(times, Fraction(40), Fraction(4))
    assert len(plans) == 160  # 4 s at 40 fps: the duration is kept
    assert plans[120].source == 70  # t = 3.0 s shows the frame of 3.0 s, not the one of 2 s
    assert plans[121] == FramePlan(70, 71, Fraction(1, 4), None)  # 3.025 s between 3.0 and 3.1
    assert plans[1] == FramePlan(0, 1, Fraction(3, 4), None)  # 1/40 s between 0 and 1/30
    for k, plan in enumerate(plans):
        time = Fraction(k, 40)
        if plan.source is not None and time in times:
            assert times[plan.source] == time


def test_streaming_keeps_a_bounded_window():
    planner = SlotPlanner(Fraction(50), holds=True)
    for j in range(500):
        planner.push(Fraction(j, 25), hold=j % 2 == 1)
        assert len(planner.times) <= 2 * MAX_HOLD + 4
    plans = [p for _, p in planner.finish(Fraction(20))]
    assert plans[-1].source == 499


def test_streaming_matches_random_access_with_holds_and_cuts():
    hold, cut = on(3), (lambda j: j == 31)
    planner = SlotPlanner(Fraction(60), holds=True)
    plans = []
    for j in range(50):
        plans += planner.push(Fraction(j, 24), cut=cut(j), hold=hold(j) and not cut(j))
    plans += planner.finish(Fraction(50, 24))
    m = Fraction(60, 24)
    assert [p for _, p in plans] == [
        plan_frame(k, m, 50, cut=cut, hold=lambda j: hold(j) and not cut(j)) for k in range(output_count(50, m))
    ]


def test_frame_times_snap_to_the_grid_only_within_a_tick():
    rate, tb = Fraction(24000, 1001), Fraction(1, 1000)  # Matroska rounds timestamps to 1 ms
    for j in (1, 7, 1000, 12345):
        pts = round(Fraction(j, 1) / rate / tb)
        assert frame_time(pts, tb, j, Fraction(0), rate) == Fraction(j) / rate
    assert frame_time(500, tb, 3, Fraction(0), rate) == Fraction(1, 2)  # far from the grid: taken as is
    assert frame_time(None, tb, 3, Fraction(1), rate) == 1 + 3 / rate
    with pytest.raises(ValueError):
        frame_time(None, tb, 3, Fraction(0), None)


def test_timestamps_must_increase():
    planner = SlotPlanner(Fraction(50))
    planner.push(Fraction(0))
    with pytest.raises(ValueError, match="not later"):
        planner.push(Fraction(0))


def test_slots_between_identical_frames_are_that_frame():
    same = lambda j: j == 2
    plans = [plan_frame(k, Fraction(2), 5, same=same) for k in range(6)]
    assert plans[3] == FramePlan(1, 2, Fraction(1, 2), 1) and plans[1].interpolated and plans[5].interpolated
    # a cut still decides first; with dedup the drawings around a hold are interpolated as before
    assert plan_frame(3, Fraction(2), 5, same=same, cut=same).source == 2
    planner = SlotPlanner(Fraction(2))
    plans = planner.push(Fraction(0)) + planner.push(Fraction(1), same=True) + planner.push(Fraction(2))
    plans += planner.finish(Fraction(3))
    assert [p.source for _, p in plans] == [0, 0, 1, None, 2, 2]


# --- chunks (vsrife video --cluster) ---------------------------------------------------------------------


def random_clip(seed: int, count: int):
    """Frame times with variable-rate stretches, and cut, hold and identical flags as a decoder would see them."""
    import random

    rng = random.Random(seed)
    times, t = [], Fraction(rng.randrange(0, 5), 24)
    for _ in range(count):
        times.append(t)
        t += Fraction(1, 24) if rng.random() < 0.7 else Fraction(rng.choice((1, 2, 3, 5)), 60)
    flags = []
    for j in range(count):
        cut = j > 0 and rng.random() < 0.08
        hold = j > 0 and not cut and rng.random() < 0.4
        flags.append({"cut": cut, "hold": hold, "same": hold and rng.random() < 0.5})
    return times, flags, t


def chunked(times, flags, end, rate, bounds, holds):
    """What the chunks return together: each planned apart, fed only what chunk_feed names."""
    count, out = len(times), []
    for a, b in itertools.pairwise(bounds):
        lo, hi = chunk_feed(a, b, count, holds=holds)
        planner = SlotPlanner(rate, holds=holds, start=times[0], first_index=lo, keep=(a, b))
        for j in range(lo, hi):  # the first frame fed has no previous one: its flags are unknown (False)
            out += planner.push(times[j], **(flags[j] if j > lo else {}))
        if hi == count:  # the feed reaches the clip's end: only then is the end known
            out += planner.finish(end)
    return out


@pytest.mark.parametrize("holds", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_chunks_together_plan_the_whole_clip(seed, holds):
    times, flags, end = random_clip(seed, 80)
    rate = Fraction(60000, 1001) if seed % 2 else Fraction(50)
    whole = SlotPlanner(rate, holds=holds)
    expected = [pair for j in range(80) for pair in whole.push(times[j], **flags[j])] + whole.finish(end)
    for bounds in ([0, 80], [0, 1, 80], [0, 7, 8, 30, 31, 79, 80], list(range(0, 80, 9)) + [80], [0, 40, 80]):
        assert chunked(times, flags, end, rate, bounds, holds) == expected, bounds


def test_a_chunk_feed_is_the_chunk_and_one_frame_more():
    assert chunk_feed(10, 20, 100, holds=False) == (9, 21)
    assert chunk_feed(0, 20, 20, holds=False) == (0, 20)
    assert chunk_feed(10, 20, 100, holds=True) == (10 - MAX_HOLD - 1, 21 + MAX_HOLD)
    with pytest.raises(ValueError, match="not a part"):
        chunk_feed(5, 5, 10, holds=False)
