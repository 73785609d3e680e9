"""vsrife.RIFE against a real VapourSynth core, on clips built from real footage.

Skipped, with the reason, where ``import vapoursynth`` fails (the core is not on the package index; see
DEVELOPERS.md). The frame arithmetic it relies on is tested without VapourSynth in test_timing.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import numpy as np
import pytest
import torch

try:
    import vapoursynth as vs
except ImportError as e:  # pragma: no cover - depends on the machine
    pytest.skip(f"VapourSynth is not importable ({e}); the filter's tests need a real core", allow_module_level=True)

import vsrife
from vsrife.weights import fetch_sample

from .conftest import decode_rgb

MODEL = {"model": "4.0"}


@pytest.fixture()
def core():
    c = vs.core
    yield c
    c.num_threads = 0  # back to the default


def clip_from(core, frames: list[torch.Tensor], fps=Fraction(24000, 1001)) -> vs.VideoNode:
    """An RGBS clip holding the given 1 x 3 x H x W frames."""
    h, w = frames[0].shape[-2:]
    blank = core.std.BlankClip(format=vs.RGBS, width=w, height=h, length=len(frames),
                               fpsnum=fps.numerator, fpsden=fps.denominator)  # fmt: skip

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n][0, p].numpy())
        out.props["SourceIndex"] = n
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def planes(frame: vs.VideoFrame) -> np.ndarray:
    """All planes of a frame, flattened one after another (planes may differ in size)."""
    return np.concatenate([np.asarray(frame[p]).ravel() for p in range(frame.format.num_planes)])


@pytest.fixture(scope="module")
def bikes12():
    return decode_rgb(fetch_sample("bikes", progress=False), 12)


@pytest.fixture(scope="module")
def cut_frames():
    """6 frames of bikes, then 6 of carphone at the same size: a real cut after source frame 5."""
    a = decode_rgb(fetch_sample("bikes", progress=False), 6)
    b = decode_rgb(fetch_sample("carphone", progress=False), 6)
    b = [torch.nn.functional.interpolate(f, size=a[0].shape[-2:], mode="bilinear", align_corners=False) for f in b]
    return a + b


def test_2x_timing_passthrough_and_props(core, bikes12, weights_40):
    clip = clip_from(core, bikes12)
    out = vsrife.RIFE(clip, **MODEL)
    assert out.num_frames == 24
    assert out.fps == Fraction(48000, 1001)
    assert out.format.id == vs.RGBS
    for k in range(24):
        f = out.get_frame(k)
        assert (f.props["_DurationNum"], f.props["_DurationDen"]) == (1001, 48000)
        if k % 2 == 0 and k < 22:
            assert np.array_equal(planes(f), planes(clip.get_frame(k // 2))), k
            assert f.props["SourceIndex"] == k // 2 and "RIFE_Timestep" not in f.props
        elif k < 22:
            assert f.props["RIFE_Timestep"] == 0.5 and f.props["SourceIndex"] == k // 2
        else:  # after the last source frame: repeated
            assert np.array_equal(planes(f), planes(clip.get_frame(11)))


def test_interpolated_frames_are_the_engines(core, bikes12, weights_40):
    out = vsrife.RIFE(clip_from(core, bikes12), **MODEL)
    engine = vsrife.Interpolator("4.0", dtype=torch.float32)
    expected = engine.interpolate(bikes12[2], bikes12[3], 0.5)[0].numpy().ravel()
    assert np.abs(planes(out.get_frame(5)) - expected).max() < 1e-5


def test_the_slots_of_a_pair_are_made_in_one_call(core, bikes12, weights_40):
    """multi=4: asking for any slot of a pair makes all three in one batch (once, whichever thread asks
    first), and each is the engine's frame at its timestep."""
    out = vsrife.RIFE(clip_from(core, bikes12), multi=4, **MODEL)
    engine = vsrife.Interpolator("4.0", dtype=torch.float32)
    batches = []
    hook = engine.network.block0.register_forward_hook(lambda m, args, o: batches.append(len(args[0][0])))
    try:
        frames = {n: planes(out.get_frame(n)) for n in (6, 5, 7)}  # the slots between source frames 1 and 2
    finally:
        hook.remove()
    assert batches == [3]  # the network is shared by every Interpolator of this model, so the hook sees it
    expected = engine.interpolate(bikes12[1], bikes12[2], torch.tensor([0.25, 0.5, 0.75]))
    for n, row in ((5, 0), (6, 1), (7, 2)):
        assert np.abs(frames[n] - expected[row].numpy().ravel()).max() < 1e-5


def test_film_to_60(core, bikes12, weights_40):
    out = vsrife.RIFE(clip_from(core, bikes12), fps_num=60000, fps_den=1001, **MODEL)
    assert out.fps == Fraction(60000, 1001) and out.num_frames == 30
    times = [out.get_frame(k).props.get("RIFE_Timestep", 0.0) for k in range(6)]
    assert times == pytest.approx([0, 0.4, 0.8, 0.2, 0.6, 0])
    assert out.get_frame(5).props["SourceIndex"] == 2


def test_fractional_multi_and_variable_frame_rate(core, bikes12, weights_40):
    clip = clip_from(core, bikes12)
    assert vsrife.RIFE(clip, multi=Fraction(5, 2), **MODEL).num_frames == 30
    vfr = core.std.Splice([clip[:6], clip[6:].std.AssumeFPS(fpsnum=30, fpsden=1)], mismatch=True)
    assert vfr.fps == 0
    out = vsrife.RIFE(vfr, **MODEL)
    assert out.num_frames == 24
    first, later = out.get_frame(1).props, out.get_frame(13).props
    assert (first["_DurationNum"], first["_DurationDen"]) == (1001, 48000)  # each source duration split in 2
    assert (later["_DurationNum"], later["_DurationDen"]) == (1, 60)


def test_yuv_input_keeps_its_format_and_sources(core, bikes12, weights_40):
    yuv = core.resize.Bicubic(clip_from(core, bikes12), format=vs.YUV420P8, matrix_s="170m")
    out = vsrife.RIFE(yuv, **MODEL)
    assert out.format.id == vs.YUV420P8
    for k in (0, 2, 4):
        assert np.array_equal(planes(out.get_frame(k)), planes(yuv.get_frame(k // 2)))
    middle = planes(out.get_frame(3)).astype(np.int16)
    truth = planes(yuv.get_frame(1)).astype(np.int16)
    assert np.abs(middle - truth).mean() < 6  # a real in-between frame
    assert out.get_frame(3).props["_Matrix"] == 6


def test_scene_cut_shows_the_nearer_frame(core, cut_frames, weights_40):
    clip = clip_from(core, cut_frames)
    out = vsrife.RIFE(clip, multi=4, **MODEL)
    for k, source in ((21, 5), (22, 6), (23, 6)):  # slots at t = 1/4, 1/2, 3/4 between frames 5 and 6
        assert np.array_equal(planes(out.get_frame(k)), planes(clip.get_frame(source))), k
    assert "RIFE_Timestep" in out.get_frame(9).props  # inside the shot: interpolated
    blended = vsrife.RIFE(clip, multi=4, sc=False, **MODEL)
    assert "RIFE_Timestep" in blended.get_frame(22).props


def test_upstream_scene_change_props_are_honoured(core, bikes12, weights_40):
    clip = clip_from(core, bikes12)
    marked = core.std.ModifyFrame(clip, clip, lambda n, f: _mark(f, n == 3))
    out = vsrife.RIFE(marked, **MODEL)
    assert np.array_equal(planes(out.get_frame(7)), planes(clip.get_frame(4)))
    assert "RIFE_Timestep" in out.get_frame(5).props


def _mark(f: vs.VideoFrame, cut: bool) -> vs.VideoFrame:
    g = f.copy()
    if cut:
        g.props["_SceneChangeNext"] = 1
    return g


@pytest.mark.parametrize("threads", [1, 4, 16])
def test_threads_and_out_of_order_requests_give_the_same_frames(core, bikes12, weights_40, threads):
    core.num_threads = threads
    out = vsrife.RIFE(clip_from(core, bikes12), multi=3, **MODEL)
    sequential = [planes(out.get_frame(k)) for k in range(out.num_frames)]
    again = vsrife.RIFE(clip_from(core, bikes12), multi=3, **MODEL)
    order = list(range(again.num_frames))[::-1]
    with ThreadPoolExecutor(8) as pool:
        shuffled = dict(zip(order, pool.map(lambda k: planes(again.get_frame(k)), order)))
    for k in range(out.num_frames):
        assert np.array_equal(sequential[k], shuffled[k]), k
    futures = [again.get_frame_async(k) for k in order]
    for k, fut in zip(order, futures):
        assert np.array_equal(planes(fut.result()), sequential[k]), k


def test_bad_input_is_refused_when_the_filter_is_created(core, bikes12, weights_40, tmp_path):
    clip = clip_from(core, bikes12)
    gray = core.std.BlankClip(format=vs.GRAY8, length=4)
    varfmt = core.std.Splice([clip, core.std.BlankClip(clip, format=vs.YUV420P8)], mismatch=True)
    varsize = core.std.Splice([clip, core.std.BlankClip(clip, width=64)], mismatch=True)
    vfr = core.std.Splice([clip[:6], clip[6:].std.AssumeFPS(fpsnum=30, fpsden=1)], mismatch=True)
    truncated = tmp_path / "short.pkl"
    truncated.write_bytes(b"\x80\x02trunc")
    cases = [
        (lambda: vsrife.RIFE("clip"), "must be a video clip"),
        (lambda: vsrife.RIFE(clip[0]), "at least 2 frames"),
        (lambda: vsrife.RIFE(varfmt), "variable-format"),
        (lambda: vsrife.RIFE(varsize), "variable-size"),
        (lambda: vsrife.RIFE(gray), "gray clips are not supported"),
        (lambda: vsrife.RIFE(clip, model="9.9"), "unknown model"),
        (lambda: vsrife.RIFE(clip, scale=3.0, **MODEL), "scale must be one of"),
        (lambda: vsrife.RIFE(clip, multi=1, **MODEL), "multi must be at least 2"),
        (lambda: vsrife.RIFE(clip, multi=2.5, **MODEL), "int or a fractions.Fraction"),
        (lambda: vsrife.RIFE(clip, multi=Fraction(1, 2), **MODEL), "multi must be at least 2"),
        (lambda: vsrife.RIFE(clip, fps_num=60000, **MODEL), "both fps_num and fps_den"),
        (lambda: vsrife.RIFE(clip, fps_num=12, fps_den=1, **MODEL), "must be above the source rate"),
        (lambda: vsrife.RIFE(vfr, fps_num=60, fps_den=1, **MODEL), "no constant frame rate"),
        (lambda: vsrife.RIFE(clip, model="4.25", tta=True), "has no tta"),
        (lambda: vsrife.RIFE(clip, weights=tmp_path / "missing.pkl", **MODEL), "does not exist"),
        (lambda: vsrife.RIFE(clip, weights=truncated, **MODEL), "truncated"),
        (lambda: vsrife.RIFE(clip, model="4.25", weights=weights_40), "do not fit model 4.25"),
        (lambda: vsrife.RIFE(clip, device="cuda:7", **MODEL), "device"),
    ]
    for make, message in cases:
        with pytest.raises(vs.Error, match=rf"^vsrife\.RIFE: .*{message}"):
            make()


def test_stdout_stays_clean(core, bikes12, weights_40, capfd):
    out = vsrife.RIFE(clip_from(core, bikes12), **MODEL)
    out.get_frame(1)
    assert capfd.readouterr().out == ""


def test_vspipe_streams_clean_y4m(tmp_path, weights_40):
    """The filter inside a real vspipe run: stdout carries exactly the y4m stream, logs go elsewhere."""
    import os
    import shutil
    import subprocess
    import sysconfig

    vspipe = shutil.which("vspipe")
    if vspipe is None:
        pytest.skip("vspipe is not on PATH")
    script = tmp_path / "two_x.vpy"
    site = sysconfig.get_paths()["purelib"]  # vspipe embeds its own interpreter: show it this environment
    script.write_text(
        f"import site\nsite.addsitedir({site!r})\nimport vapoursynth as vs\nimport vsrife\n"
        "clip = vs.core.std.BlankClip(format=vs.YUV420P8, width=64, height=48, length=5, color=[40, 128, 128])\n"
        "clip = vsrife.RIFE(clip, model='4.0')\nclip.set_output()\n"
    )
    env = {**os.environ, "PYTHONPATH": site}  # for the vapoursynth module itself, before the script runs
    done = subprocess.run([vspipe, "-c", "y4m", str(script), "-"], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert b"still exist" not in done.stderr, done.stderr.decode()  # every filter freed with the core
    header, _, body = done.stdout.partition(b"\n")
    assert header.startswith(b"YUV4MPEG2 ") and b" W64 H48 F48:1 " in header  # BlankClip's 24 fps, doubled
    frame = 64 * 48 * 3 // 2
    assert body.count(b"FRAME\n") == 10 and len(body) == 10 * (len(b"FRAME\n") + frame)


@pytest.mark.parametrize("fmt", ["RGBH", "RGB24", "RGB48", "YUV444PS", "YUV422P10"])
def test_other_formats_come_back_in_their_own_format(core, bikes12, weights_40, fmt):
    src = clip_from(core, bikes12[:4])
    fmt_id = getattr(vs, fmt)
    clip = core.resize.Bicubic(src, format=fmt_id, matrix_s=None if fmt.startswith("RGB") else "709")
    out = vsrife.RIFE(clip, **MODEL)
    assert out.format.id == fmt_id and out.num_frames == 8
    assert np.array_equal(planes(out.get_frame(2)), planes(clip.get_frame(1)))
    assert out.get_frame(3).props["RIFE_Timestep"] == 0.5


def test_out_of_memory_fails_that_frame_only(core, bikes12, weights_40, monkeypatch):
    out = vsrife.RIFE(clip_from(core, bikes12), **MODEL)
    real = vsrife.Interpolator.interpolate
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(vsrife.Interpolator, "interpolate", flaky)
    with pytest.raises(vs.Error, match="vsrife.RIFE: out of memory at frame 3"):
        out.get_frame(3)
    assert out.get_frame(5).props["RIFE_Timestep"] == 0.5  # later frames still work


# --- one planner: any rate pair, variable frame rate, colour, held drawings (issue: correct on every clip) ---


def indexed(core, length: int, fps: Fraction) -> vs.VideoNode:
    """A tiny clip of ``length`` distinct frames; frame n carries SourceIndex = n (computed when asked)."""
    blank = core.std.BlankClip(format=vs.RGBS, width=32, height=32, length=length,
                               fpsnum=fps.numerator, fpsden=fps.denominator)  # fmt: skip

    def mark(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        g = _with(f, SourceIndex=n)
        np.asarray(g[0])[n % 32, :] = 1.0  # a bar that moves: no two neighbours are identical
        return g

    return core.std.ModifyFrame(blank, blank, mark)


def _with(f: vs.VideoFrame, **props) -> vs.VideoFrame:
    g = f.copy()
    for k, v in props.items():
        g.props[k] = v
    return g


@pytest.mark.parametrize("src, dst", [(Fraction(24), Fraction(60000, 1001)), (Fraction(2997, 125), Fraction(60000, 1001))])
def test_a_million_frames_at_any_rate_pair(core, weights_40, src, dst):
    """Before, the filter interleaved the clip m.numerator times: 2997/125 -> 60000/1001 failed at 1000
    frames, 24 -> 60000/1001 at a million. Now the graph is the same at any pair of rates."""
    from vsrife.timing import output_count, plan_frame

    n = 10**6
    clip = indexed(core, n, src)
    out = vsrife.RIFE(clip, fps_num=dst.numerator, fps_den=dst.denominator, sc=False, **MODEL)
    m = dst / src
    count = output_count(n, m)
    assert out.num_frames == count and out.fps == dst
    for k in (0, 1, 2, count // 2, count - 4, count - 3, count - 2, count - 1):
        plan, f = plan_frame(k, m, n), out.get_frame(k)
        if plan.source is not None:
            assert f.props["SourceIndex"] == plan.source and "RIFE_Timestep" not in f.props, k
        else:
            assert f.props["SourceIndex"] == plan.left, k
            assert f.props["RIFE_Timestep"] == pytest.approx(float(plan.timestep)), k
    assert out.get_frame(count - 1).props["SourceIndex"] == n - 1


def vfr_clip(core, frames, durations):
    """An RGBS clip of variable frame rate (fps 0/1) whose frames last ``durations`` (Fractions of a second)."""
    clip = clip_from(core, frames)
    vfr = core.std.Splice([clip[:1], clip[1:].std.AssumeFPS(fpsnum=30, fpsden=1)], mismatch=True)
    assert vfr.fps == 0

    def stamp(n, f):
        d = durations[n]
        return _with(f, _DurationNum=d.numerator, _DurationDen=d.denominator)

    return core.std.ModifyFrame(vfr, vfr, stamp)


def _durations(clip):
    return [Fraction(f.props["_DurationNum"], f.props["_DurationDen"]) for f in clip.frames()]


@pytest.mark.parametrize("multi", [2, Fraction(5, 2), Fraction(3, 2)])
@pytest.mark.parametrize("with_cut", [False, True], ids=["no-cut", "cut"])
def test_variable_frame_rate_durations_add_up(core, cut_frames, weights_40, multi, with_cut):
    frames = cut_frames[2:10] if with_cut else cut_frames[:4] * 2  # 8 frames; a real cut after the 4th
    durations = [Fraction(1, 24), Fraction(3, 24)] * 4
    clip = vfr_clip(core, frames, durations)
    out = vsrife.RIFE(clip, multi=multi, **MODEL)
    got = _durations(out)
    assert sum(got) == sum(durations) == Fraction(2, 3)
    assert got[0] == durations[0] / multi
    if with_cut:  # across the cut the slots show source frames, and still take their own share of time
        shown = [f.props.get("RIFE_Timestep") is None for f in out.frames()]
        assert any(shown)


@pytest.mark.parametrize("fmt, siting", [("YUV420P8", 2), ("YUV420P10", 0), ("YUV422P8", 2), ("YUV444P16", None)])
def test_colour_range_siting_and_tags_are_kept(core, bikes12, weights_40, fmt, siting):
    """Full-range YUV with its own chroma siting: the interpolated frame is the engine's frame converted
    back with exactly the source's range, siting, matrix, transfer and primaries (before, full range
    came back limited and the siting was ignored: 17 code values off in U)."""
    rgb = clip_from(core, bikes12[2:4])
    kw = {"chromaloc": siting} if siting is not None else {}
    clip = core.resize.Bicubic(rgb, format=getattr(vs, fmt), matrix_s="709", range_s="full", **kw)
    clip = core.std.SetFrameProps(clip, _Transfer=1, _Primaries=1)
    middle = vsrife.RIFE(clip, **MODEL).get_frame(1)
    source = clip.get_frame(0)
    for prop in ("_ColorRange", "_ChromaLocation", "_Matrix", "_Transfer", "_Primaries"):
        assert middle.props.get(prop) == source.props.get(prop), prop
    assert middle.props["_ColorRange"] == 0  # full
    as_rgb = core.resize.Bicubic(clip, format=vs.RGBS, matrix_in=1, range_in=1, **{f"{k}_in": v for k, v in kw.items()})
    frames = [torch.from_numpy(np.stack([np.asarray(f[p]) for p in range(3)])).unsqueeze(0) for f in as_rgb.frames()]
    engine = vsrife.Interpolator("4.0", dtype=torch.float32)
    expected = core.resize.Bicubic(clip_from(core, [engine.interpolate(frames[0], frames[1], 0.5)] * 2),
                                   format=getattr(vs, fmt), matrix=1, range=1, **kw)  # fmt: skip
    diff = np.abs(planes(middle).astype(np.int64) - planes(expected.get_frame(0)).astype(np.int64))
    assert diff.max() <= 1


def test_flat_full_range_round_trips_within_a_code_value(core, weights_40):
    """Flat Y=200 (full range) next to Y=201: limited range came back as 188 before."""
    a = core.std.BlankClip(format=vs.YUV420P8, width=64, height=64, length=1, color=[200, 100, 150])
    b = core.std.BlankClip(a, color=[201, 101, 151])
    clip = core.std.SetFrameProps(a + b + a + b, _ColorRange=0, _Matrix=1, _ChromaLocation=2)
    middle = vsrife.RIFE(clip, **MODEL).get_frame(1)
    assert "RIFE_Timestep" in middle.props and middle.props["_ColorRange"] == 0
    for p, (lo, hi) in enumerate(((200, 201), (100, 101), (150, 151))):
        values = np.asarray(middle[p])
        assert lo <= values.min() and values.max() <= hi, p


def test_static_content_is_passed_through_exactly(core, bikes12, weights_40):
    still = core.resize.Bicubic(clip_from(core, [bikes12[3]] * 4), format=vs.YUV420P10, matrix_s="709",
                                range_s="full", chromaloc=2)  # fmt: skip
    out = vsrife.RIFE(still, multi=Fraction(5, 2), **MODEL)
    for k in range(out.num_frames):
        f = out.get_frame(k)
        assert "RIFE_Timestep" not in f.props and np.array_equal(planes(f), planes(still.get_frame(0))), k


def test_a_passed_through_frame_asks_for_its_source_frame_only(core, bikes12, weights_40):
    asked = []

    def note(n, f):
        asked.append(n)
        return f

    clip = clip_from(core, bikes12)
    counted = core.std.ModifyFrame(clip, clip, note)
    for sc in (False, True):
        asked.clear()
        out = vsrife.RIFE(counted, sc=sc, **MODEL)
        out.get_frame(4)  # t = 0: source frame 2 itself
        assert asked == [2], sc


def on_twos(core, frames):
    """Real footage drawn on twos: every second frame holds the one before it."""
    return clip_from(core, [frames[j - j % 2] for j in range(len(frames))])


def test_dedup_puts_motion_on_held_frames(core, bikes12, weights_40):
    clip = on_twos(core, bikes12)
    out = vsrife.RIFE(clip, multi=1, dedup=True, **MODEL)
    assert out.num_frames == 12 and out.fps == clip.fps
    engine = vsrife.Interpolator("4.0", dtype=torch.float32)
    held = out.get_frame(3)  # was a copy of frame 2; now halfway from drawing 2 to drawing 4
    assert held.props["RIFE_Timestep"] == 0.5
    expected = engine.interpolate(bikes12[2], bikes12[4], 0.5)[0].numpy().ravel()
    assert np.abs(planes(held) - expected).max() < 1e-5
    assert np.array_equal(planes(out.get_frame(4)), planes(clip.get_frame(4)))  # a drawing: untouched
    # at 2x, the slots between drawings 2 and 4 step by a quarter
    doubled = vsrife.RIFE(clip, multi=2, dedup=True, **MODEL)
    assert [doubled.get_frame(k).props.get("RIFE_Timestep", 0.0) for k in range(4, 9)] == [0, 0.25, 0.5, 0.75, 0]
    plain = vsrife.RIFE(clip, multi=2, **MODEL)
    assert plain.get_frame(6).props.get("RIFE_Timestep") is None  # without dedup the hold stays


@pytest.mark.parametrize("threads", [1, 4])
def test_dedup_is_thread_safe(core, bikes12, weights_40, threads):
    core.num_threads = threads
    clip = on_twos(core, bikes12)
    sequential = [planes(f) for f in vsrife.RIFE(clip, multi=2, dedup=True, **MODEL).frames()]
    again = vsrife.RIFE(clip, multi=2, dedup=True, **MODEL)
    order = list(range(again.num_frames))[::-1]
    with ThreadPoolExecutor(8) as pool:
        shuffled = dict(zip(order, pool.map(lambda k: planes(again.get_frame(k)), order)))
    for k in range(again.num_frames):
        assert np.array_equal(sequential[k], shuffled[k]), k


def test_dedup_arguments_are_checked(core, bikes12, weights_40):
    clip = clip_from(core, bikes12)
    with pytest.raises(vs.Error, match="dedup_threshold must lie between 0 and 1"):
        vsrife.RIFE(clip, dedup=True, dedup_threshold=2.0, **MODEL)
    with pytest.raises(vs.Error, match="1 with dedup=True"):
        vsrife.RIFE(clip, multi=1, **MODEL)
