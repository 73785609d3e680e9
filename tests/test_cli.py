"""The command line end to end: real footage, a real encoder (PyAV/FFmpeg), a real probe."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vsrife.cli import main
from vsrife.video import probe
from vsrife.weights import fetch_sample

from .conftest import INTERRUPTIBLE

av = pytest.importorskip("av", reason="the command line decodes and encodes with PyAV: pip install av")

MODEL = ["--model", "4.0", "-q"]


def frames(path: Path, count: int | None = None, size: tuple[int, int] | None = None, fmt: str = "yuv420p") -> list:
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if size:
                f = f.reformat(width=size[0], height=size[1])
            out.append(f.to_ndarray(format=fmt))
            if count and len(out) == count:
                break
    return out


def write_clip(path: Path, planes: list, rate: Fraction, tone: bool, pix_fmt: str = "yuv420p", keyint: int = 250
               ) -> None:  # fmt: skip
    """A lossless H.264 clip of the given frames, optionally with a 440 Hz AAC tone as long as it, and a
    keyframe every ``keyint`` frames."""
    h, w = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.options = {"qp": "0", "g": str(keyint)}
        a = out.add_stream("aac", rate=48000) if tone else None
        for i, p in enumerate(planes):
            f = av.VideoFrame.from_ndarray(p, format=pix_fmt)
            f.pts, f.time_base = i, 1 / rate
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        if a is not None:
            samples = int(48000 * len(planes) / rate)
            t = np.arange(samples) / 48000
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32).reshape(1, -1)
            for start in range(0, samples, 1024):
                f = av.AudioFrame.from_ndarray(wave[:, start : start + 1024], format="flt", layout="mono")
                f.sample_rate, f.pts = 48000, start
                out.mux(a.encode(f))
            out.mux(a.encode(None))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, weights_40):
    """20 real frames of carphone (176x144, 29.97 fps) with a generated tone."""
    path = tmp_path_factory.mktemp("clips") / "carphone_tone.mp4"
    write_clip(path, frames(fetch_sample("carphone", progress=False), 20), Fraction(30000, 1001), tone=True)
    return path


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory, weights_40):
    """8 frames of carphone, then 8 of bikes brought to the same size: one real cut after frame 7."""
    path = tmp_path_factory.mktemp("clips") / "cut.mp4"
    a = frames(fetch_sample("carphone", progress=False), 8)
    b = frames(fetch_sample("bikes", progress=False), 8, size=(176, 144))
    write_clip(path, a + b, Fraction(25), tone=False)
    return path


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def test_video_2x_keeps_duration_rate_and_audio(clip, tmp_path):
    out = tmp_path / "out.mp4"
    assert main(["video", str(clip), "-o", str(out), *MODEL]) == 0
    src, res = probe(clip), probe(out)
    assert res["frames"] == 40
    assert res["fps"] == Fraction(60000, 1001)
    assert res["streams"] == ["video", "audio"]
    assert abs(res["duration"] - src["duration"]) < 0.05
    assert audio_packets(out) == audio_packets(clip)  # copied, not re-encoded
    assert res["pix_fmt"] == src["pix_fmt"] and res["color"] == src["color"]
    assert not [p for p in tmp_path.iterdir() if p.name != "out.mp4"]  # no temporary file left


def test_video_to_a_target_rate(clip, tmp_path):
    out = tmp_path / "out.mp4"  # (Matroska's millisecond timestamps cannot carry 75000/1001 exactly)
    assert main(["video", str(clip), "-o", str(out), "--fps", "75000/1001", *MODEL]) == 0
    res = probe(out)
    assert res["frames"] == 50  # ceil(20 x 5/2)
    assert res["fps"] == Fraction(75000, 1001)


def test_source_frames_pass_through_and_cuts_are_not_blended(cut_clip, tmp_path):
    lossless = ["--codec", "libx264", "--crf", "0", "--preset", "ultrafast"]
    out = tmp_path / "sc.mkv"
    assert main(["video", str(cut_clip), "-o", str(out), *lossless, *MODEL]) == 0
    src, res = frames(cut_clip), frames(out)
    assert len(res) == 32
    for i in range(16):
        assert np.array_equal(res[2 * i], src[i]), f"source frame {i} changed"
    assert np.array_equal(res[15], src[8])  # t = 1/2 across the cut shows the right-hand frame
    assert not np.array_equal(res[13], src[6]) and not np.array_equal(res[13], src[7])  # interpolated inside

    blended = tmp_path / "nosc.mkv"
    assert main(["video", str(cut_clip), "-o", str(blended), "--no-sc", *lossless, *MODEL]) == 0
    assert not np.array_equal(frames(blended)[15], src[8])


def test_ten_bit_source_stays_ten_bit_and_passes_through(tmp_path, weights_40):
    clip = tmp_path / "ten.mkv"
    write_clip(clip, frames(fetch_sample("carphone", progress=False), 6, fmt="yuv420p10le"), Fraction(24), False,
               pix_fmt="yuv420p10le")  # fmt: skip
    out = tmp_path / "out.mkv"
    assert main(["video", str(clip), "-o", str(out), "-x", "qp=0", "--preset", "ultrafast", *MODEL]) == 0
    assert probe(out)["pix_fmt"] == "yuv420p10le"
    src, res = frames(clip, fmt="yuv420p10le"), frames(out, fmt="yuv420p10le")
    assert res[0].dtype == np.uint16 and len(res) == 12
    assert all(np.array_equal(res[2 * i], src[i]) for i in range(6))


def write_frames(path: Path, source: list, rate: Fraction, codec: str, pix_fmt: str, options: dict | None = None):
    """Encode decoded frames (any format, brought to ``pix_fmt`` by swscale) into a new clip."""
    with av.open(str(path), "w") as out:
        v = out.add_stream(codec, rate=rate)
        v.width, v.height, v.pix_fmt = source[0].width, source[0].height, pix_fmt
        v.options = options or {}
        for i, f in enumerate(source):
            f = f.reformat(format=pix_fmt)
            f.pts, f.time_base, f.pict_type = i, 1 / rate, 0
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def decoded(path: Path, count: int | None = None) -> list:
    with av.open(str(path)) as c:
        return [f for _, f in zip(range(count or 10**9), c.decode(video=0))]


def plane_bytes(frame) -> list[bytes]:
    """Each plane's samples without the row padding: equal for bit-identical pictures in any pixel format,
    including those PyAV cannot turn into numpy arrays (yuv444p10le, p010le, ...)."""
    planes = []
    for i, plane in enumerate(frame.planes):
        row = plane.width * sum((c.bits + 7) // 8 for c in frame.format.components if c.plane == i)
        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows[:, :row].tobytes())
    return planes


def test_ten_bit_444_source_passes_through_bit_exact(tmp_path, weights_40):
    """yuv444p10le (x264's High 4:4:4), which PyAV cannot put into numpy: source frames pass through as
    they were decoded."""
    clip, out = tmp_path / "444.mkv", tmp_path / "out.mkv"
    write_frames(clip, decoded(fetch_sample("carphone", progress=False), 6), Fraction(24), "libx264", "yuv444p10le",
                 {"qp": "0"})  # fmt: skip
    assert probe(clip)["pix_fmt"] == "yuv444p10le"
    assert main(["video", str(clip), "-o", str(out), "-x", "qp=0", "--preset", "ultrafast", *MODEL]) == 0
    src, res = decoded(clip), decoded(out)
    assert probe(out)["pix_fmt"] == "yuv444p10le" and len(res) == 12
    for i in range(6):
        assert plane_bytes(res[2 * i]) == plane_bytes(src[i]), f"source frame {i} changed"
    assert plane_bytes(res[1]) != plane_bytes(src[0]) and plane_bytes(res[1]) != plane_bytes(src[1])


def odd_clip(path: Path, size: tuple[int, int], codec: str, pix_fmt: str) -> Path:
    """Six real frames of carphone scaled to an odd ``size``, lossless."""
    source = [f.reformat(width=size[0], height=size[1]) for f in decoded(fetch_sample("carphone", progress=False), 6)]
    write_frames(path, source, Fraction(24), codec, pix_fmt, {"qp": "0"} if codec == "libx264" else None)
    return path


@pytest.mark.parametrize("size, pix_fmt, codec", [
    ((175, 144), "yuv420p", "ffv1"),  # odd width, 4:2:0: x264 refuses it, FFV1 takes it
    ((176, 143), "yuv420p", "ffv1"),  # odd height, 4:2:0
    ((175, 143), "yuv444p", "libx264"),  # both odd, 4:4:4: x264 takes it
])  # fmt: skip
def test_odd_sizes_pass_through(tmp_path, weights_40, size, pix_fmt, codec):
    clip, out = odd_clip(tmp_path / "odd.mkv", size, codec, pix_fmt), tmp_path / "out.mkv"
    encoder = ["--codec", "ffv1"] if codec == "ffv1" else ["-x", "qp=0", "--preset", "ultrafast"]
    assert main(["video", str(clip), "-o", str(out), *encoder, *MODEL]) == 0
    src, res = decoded(clip), decoded(out)
    assert len(res) == 12 and (res[0].width, res[0].height, res[0].format.name) == (*size, pix_fmt)
    for i in range(6):
        assert plane_bytes(res[2 * i]) == plane_bytes(src[i]), f"source frame {i} changed"


@pytest.mark.parametrize("size, side", [((175, 144), "width"), ((176, 143), "height")])
def test_odd_sizes_the_encoder_refuses_are_refused_up_front(tmp_path, capfd, monkeypatch, size, side):
    monkeypatch.setenv("VSRIFE_MODEL_DIR", str(tmp_path / "models"))  # before the model: none is there
    clip = odd_clip(tmp_path / "odd.mkv", size, "ffv1", "yuv420p")
    capfd.readouterr()
    assert main(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--model", "4.22", "--no-download", "-q"]) == 1
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("vsrife: error: libx264 refuses"), err
    assert f"odd {side}" in err and "--pix-fmt yuv444p" in err and "--codec ffv1" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.mkv"]


def samples16(frame) -> list[np.ndarray]:
    """The 16-bit samples of each plane of a 10-bit frame, row padding dropped, as stored (p010le keeps
    its 10 bits at the top of each 16-bit word, with U and V interleaved in plane 1)."""
    planes = []
    for i, p in enumerate(frame.planes):
        width = p.width * (2 if frame.format.name == "p010le" and i == 1 else 1)
        planes.append(np.frombuffer(memoryview(p), np.uint16).reshape(p.height, p.line_size // 2)[:, :width])
    return planes


def as_p010le_samples(planar) -> list[np.ndarray]:
    """What the p010le twin of a yuv420p10le frame holds."""
    y, u, v = samples16(planar)
    return [y << 6, np.stack([u, v], axis=-1).reshape(u.shape[0], -1) << 6]


def test_p010le_frames_convert_like_their_planar_twin():
    """p010le (semi-planar 10-bit, what hardware decoders give) reaches the network and comes back just as
    yuv420p10le with the same samples does. End to end it cannot be tested: no file FFmpeg's software
    decoders read yields p010le (FFmpeg's raw video tags have no entry for it, NUT and AVI store it as
    RGB555; only the raw demuxer with an explicit pixel_format option gives it, which `vsrife video` does
    not take)."""
    from vsrife.video import _RGB

    planar = decoded(fetch_sample("carphone", progress=False), 1)[0].reformat(format="yuv420p10le")
    semi = planar.reformat(format="p010le")
    assert semi.format.name == "p010le"
    assert all(np.array_equal(a, b) for a, b in zip(samples16(semi), as_p010le_samples(planar)))  # a true twin
    to_p010, to_planar = _RGB(av, "ITU601", "MPEG", True, "p010le"), _RGB(av, "ITU601", "MPEG", True, "yuv420p10le")
    rgb = to_p010.to_tensor(semi)
    assert rgb.shape == (1, 3, 144, 176) and torch.equal(rgb, to_planar.to_tensor(planar))
    back = to_p010.to_frame(rgb)
    assert back.format.name == "p010le"
    assert all(np.array_equal(a, b) for a, b in zip(samples16(back), as_p010le_samples(to_planar.to_frame(rgb))))


ASS = """[Script Info]
ScriptType: v4.00+
PlayResX: 176
PlayResY: 144

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, \
StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Test Sans,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:00.00,0:00:00.20,Default,,0,0,0,,Bonjour
Dialogue: 0,0:00:00.20,0:00:00.40,Default,,0,0,0,,le monde
"""
FONT = b"\x00\x01\x00\x00" + bytes(range(256)) * 4  # any bytes: the font is carried, never read


@pytest.fixture(scope="module")
def rich_mkv(tmp_path_factory, weights_40):
    """10 real frames in Matroska with everything a release carries beside the picture: tagged video,
    audio and styled-subtitle streams (forced), a font attachment, chapters and a title."""
    folder = tmp_path_factory.mktemp("rich")
    sub_file = folder / "subs.ass"
    sub_file.write_text(ASS)
    path, rate = folder / "rich.mkv", Fraction(25)
    with av.open(str(path), "w") as out, av.open(str(sub_file)) as subs:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt, v.options = 176, 144, "yuv420p", {"qp": "0"}
        v.metadata.update({"title": "Picture", "language": "jpn"})
        a = out.add_stream("aac", rate=48000)
        a.metadata.update({"title": "Stereo mix", "language": "eng"})
        a.disposition = av.stream.Disposition.default
        s = out.add_stream_from_template(subs.streams[0])
        s.metadata.update({"title": "Signs", "language": "fre"})
        s.disposition = av.stream.Disposition.forced
        out.add_attachment("TestSans.ttf", "application/x-truetype-font", FONT)
        out.metadata["title"] = "A test film"
        out.set_chapters([{"id": i + 1, "start": i * 5, "end": i * 5 + 5, "time_base": Fraction(1, 25),
                           "metadata": {"title": title}} for i, title in enumerate(("Opening", "Ending"))])  # fmt: skip
        for i, f in enumerate(decoded(fetch_sample("carphone", progress=False), 10)):
            f.pts, f.time_base, f.pict_type = i, 1 / rate, 0
            out.mux(v.encode(f))
        out.mux(v.encode(None))
        tone = (0.3 * np.sin(np.arange(19200) / 48000 * 2 * np.pi * 440)).astype(np.float32).reshape(1, -1)
        for start in range(0, tone.shape[1], 1024):
            f = av.AudioFrame.from_ndarray(tone[:, start : start + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts = 48000, start
            out.mux(a.encode(f))
        out.mux(a.encode(None))
        for packet in subs.demux():
            if packet.size:
                packet.stream = s
                out.mux(packet)
    return path


def description(path: Path) -> dict:
    """Everything but the picture, as PyAV reads it back."""
    with av.open(str(path)) as c:
        streams = []
        for s in c.streams:
            tags = {k: v for k, v in s.metadata.items() if k.upper() not in ("DURATION", "ENCODER")}
            entry = {"type": s.type, "tags": tags, "disposition": int(s.disposition)}
            if s.type == "attachment":
                entry["data"] = s.data
            elif s.type != "video":
                entry["packets"] = [bytes(p) for p in c.demux(s) if p.size]
                c.seek(0)
            streams.append(entry)
        chapters = [(float(ch["start"] * ch["time_base"]), float(ch["end"] * ch["time_base"]), ch["metadata"])
                    for ch in c.chapters()]  # fmt: skip
        title = c.metadata.get("title")
    return {"streams": streams, "chapters": chapters, "title": title}


def test_streams_tags_dispositions_chapters_and_attachments_are_kept(rich_mkv, tmp_path):
    out = tmp_path / "out.mkv"
    assert main(["video", str(rich_mkv), "-o", str(out), *MODEL]) == 0
    src, res = description(rich_mkv), description(out)
    assert [s["type"] for s in src["streams"]] == ["video", "audio", "subtitle", "attachment"]
    assert src["streams"][2]["disposition"] == int(av.stream.Disposition.forced)  # the source is what it says
    assert src["streams"][3]["tags"]["mimetype"] == "application/x-truetype-font" and src["streams"][3]["data"] == FONT
    assert res == src
    assert probe(out)["frames"] == 20


def test_a_container_that_cannot_hold_a_stream_says_so(rich_mkv, tmp_path, caplog):
    out = tmp_path / "out.mp4"
    assert main(["video", str(rich_mkv), "-o", str(out), *MODEL]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2  # once each, not again for the dry run
    assert warnings[0].startswith("stream 2 (subtitle ssa) cannot be copied into this container")
    assert warnings[1].startswith("stream 3 (attachment TestSans.ttf) is not copied: mp4 files hold no attachments")
    res = description(out)
    assert res["title"] == "A test film" and [c[2]["title"] for c in res["chapters"]] == ["Opening", "Ending"]
    assert res["streams"][1]["tags"]["language"] == "eng" and res["streams"][1]["disposition"] == 1


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_rotation_is_kept(tmp_path, weights_40, container):
    clip, out = tmp_path / "phone.mp4", tmp_path / f"out.{container}"
    with av.open(str(clip), "w") as o:
        v = o.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 176, 144, "yuv420p"
        v.set_display_rotation(90)  # a phone held upright: stored landscape, shown portrait
        for i, f in enumerate(decoded(fetch_sample("carphone", progress=False), 4)):
            f.pts, f.time_base, f.pict_type = i, Fraction(1, 30), 0
            o.mux(v.encode(f))
        o.mux(v.encode(None))
    assert [f.rotation for f in decoded(clip)] == [90] * 4
    assert main(["video", str(clip), "-o", str(out), *MODEL]) == 0
    assert [f.rotation for f in decoded(out)] == [90] * 8


def run_cli(*args: str, env: dict | None = None, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsrife", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout, **kwargs)  # fmt: skip


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The run failed with exit status 1 and said why in one line on stderr, nothing on stdout."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsrife: error: "), done.stderr
    assert done.stdout == ""
    return lines[0]


def test_a_write_failure_mid_run_stops_every_thread(clip, tmp_path):
    """The disk fills up (here: a file-size limit) while frames are in flight: decoder, placement loop and
    encoder all stop promptly, the partial file is removed and one line says why."""

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))  # Python ignores SIGXFSZ: writes fail

    out = tmp_path / "o.mkv"
    done = run_cli("video", str(clip), "-o", str(out), "-x", "qp=0", *MODEL, timeout=120, preexec_fn=small_files)
    assert "writing" in one_error_line(done) and "File too large" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_errors_are_clear_and_exit_non_zero(clip, tmp_path):
    """Every refusal: exit status 1, one line that starts with `vsrife: error:`, nothing on stdout, no file
    written, the inputs untouched."""
    out = str(tmp_path / "o.mp4")
    audio_only = tmp_path / "tone.m4a"
    with av.open(str(clip)) as c, av.open(str(audio_only), "w") as o:
        stream = o.add_stream_from_template(c.streams.audio[0])
        for p in c.demux(c.streams.audio[0]):
            if p.dts is not None:
                p.stream = stream
                o.mux(p)
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(bytes(range(256)) * 16)
    empty = tmp_path / "empty"
    empty.mkdir()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    cases = [
        (["video", str(tmp_path / "missing.mp4"), "-o", out], "does not exist"),
        (["video", str(text), "-o", out], "cannot read"),
        (["video", str(broken), "-o", out], "cannot read"),
        (["video", str(audio_only), "-o", out], "has no video stream"),
        (["video", str(clip), "-o", out, "--fps", "fast"], "not a number or a ratio"),
        (["video", str(clip), "-o", out, "--fps", "24"], "must be above the source rate"),
        (["video", str(clip), "-o", out, "--multi", "1"], "--multi must be above 1"),
        (["video", str(clip), "-o", out, "--model", "9.9"], "unknown model '9.9'"),
        (["video", str(clip), "-o", str(tmp_path / "no" / "dir" / "o.mp4")], "does not exist"),
        (["video", str(clip), "-o", str(text / "o.mp4")], "does not exist"),
        (["video", str(clip), "-o", out, "--ext", "mkv"], "--ext names the outputs written into a folder"),
        (["video", str(clip), str(broken), "-o", str(text)], "is a file; with several inputs -o names a folder"),
        (["video", str(empty), "-o", str(tmp_path / "outs")], "holds no video files"),
        (["video", str(clip), "-o", out, "-x", "qp"], "takes KEY=VALUE"),
    ]
    for args, message in cases:
        done = run_cli(args[0], *MODEL, *args[1:])  # a case's own --model comes last and wins
        assert message in one_error_line(done), (args, done.stderr)
    done = run_cli("video", str(clip), "-o", out, "--model", "4.22", "--no-download", "-q",
                   env={"VSRIFE_MODEL_DIR": str(tmp_path / "models")})  # fmt: skip
    assert "vsrife models download 4.22" in one_error_line(done)  # a several-line message, on one line
    done = run_cli("video", str(clip))  # argparse's own complaints take the same form (status 2)
    assert done.returncode == 2 and done.stderr.startswith("vsrife: error: the following arguments are required")
    assert len(done.stderr.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["empty"]


def test_an_encoder_failure_while_decoding_lags_ends_the_run(tmp_path, monkeypatch, weights_40):
    """The hang, reproduced: the decoder is slower than inference (every packet read 0.5 s late) and the
    encoder fails on its first frame, after the placement loop has emitted its frames and waits for the
    next. It used to wait forever for a frame the decoder, told to stop, never sent (the code before the
    fix hung here in every try); now every stage gives up within a poll. A watchdog bounds the wait."""
    import vsrife.video as video
    from vsrife.engine import Interpolator

    class LaggingInput:
        def __init__(self, inp):
            self._inp = inp

        def __getattr__(self, name):
            return getattr(self._inp, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._inp.close()

        def demux(self, *streams):
            for packet in self._inp.demux(*streams):
                time.sleep(0.5)
                yield packet

    class FailingEncoder:
        def __init__(self, stream):
            self._stream = stream

        def __getattr__(self, name):
            return getattr(self._stream, name)

        def encode(self, frame=None):
            time.sleep(0.2)  # as long as opening a real encoder takes
            raise RuntimeError("the encoder gave up")

    open_input, open_output = video._open_input, video._open_output
    monkeypatch.setattr(video, "_open_input", lambda av, source: LaggingInput(open_input(av, source)))

    def failing_output(*args, **kwargs):
        out = open_output(*args, **kwargs)
        out.video = FailingEncoder(out.video)
        return out

    monkeypatch.setattr(video, "_open_output", failing_output)
    outcome = []

    def job() -> None:
        try:
            video.interpolate_video(fetch_sample("carphone", progress=False), tmp_path / "o.mp4",
                                    Interpolator("4.0", device="cpu"), video.VideoJob())  # fmt: skip
        except Exception as e:  # noqa: BLE001 - the outcome is the test's subject
            outcome.append(e)

    worker = threading.Thread(target=job, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "interpolate_video hung after the encoder failed"
    assert len(outcome) == 1 and isinstance(outcome[0], video.VideoError), outcome
    assert str(outcome[0]) == "encoding failed: the encoder gave up"
    assert list(tmp_path.iterdir()) == []


def codec_available(codec: str):
    return pytest.mark.skipif(codec not in av.codecs_available, reason=f"this FFmpeg has no {codec} encoder")


@pytest.mark.parametrize("args, message", [
    (["--codec", "nope"], "unknown encoder 'nope'"),
    (["--codec", "aac"], "aac is an audio encoder"),
    (["-x", "nonsense=1"], "libx264 has no option nonsense"),
    (["-x", "crf=abc"], "crf must be a number, not 'abc'"),
    (["--crf", "52"], "crf 52 is outside libx264's range 0-51"),
    (["-x", "crf=-1"], "crf -1 is outside libx264's range 0-51"),
    pytest.param(["--codec", "libx265", "--crf", "52"], "outside libx265's range 0-51", marks=codec_available("libx265")),
    pytest.param(["--codec", "libvpx-vp9", "--crf", "64"], "outside libvpx-vp9's range 0-63",
                 marks=codec_available("libvpx-vp9")),
    pytest.param(["--codec", "libsvtav1", "--crf", "64"], "outside libsvtav1's range 0-63",
                 marks=codec_available("libsvtav1")),
    (["--codec", "ffv1", "--crf", "3"], "--crf is for libx264"),
    (["--preset", "warp"], "libx264 has no preset 'warp'"),
    (["-x", "preset=warp"], "libx264 has no preset 'warp'"),
    pytest.param(["--codec", "libvpx-vp9", "--preset", "fast"], "libvpx-vp9 has no option preset",
                 marks=codec_available("libvpx-vp9")),
    (["--pix-fmt", "nope"], "unknown pixel format 'nope'"),
    (["--pix-fmt", "p010le"], "libx264 does not take p010le"),
    (["-x", "profile=baseline", "--pix-fmt", "yuv444p"], "baseline profile doesn't support 4:4:4"),
    (["-x", "level=9x9"], "Error parsing option 'level'"),
    (["-o", "{tmp}/o.webm"], "'webm' format does not support 'libx264' codec"),
    (["-o", "{tmp}/o.unknownext"], "cannot tell the container from the name o.unknownext"),
])  # fmt: skip
def test_encoder_settings_are_refused_before_the_model_loads(clip, tmp_path, capfd, monkeypatch, args, message):
    monkeypatch.setenv("VSRIFE_MODEL_DIR", str(tmp_path / "models"))  # empty, and 4.22 may not be downloaded:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]  # so a refusal names the encoder, not the model
    capfd.readouterr()
    code = main(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--model", "4.22", "--no-download", "-q", *args])
    err = capfd.readouterr().err
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and err.startswith("vsrife: error: ") and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [["-x", "nonsense=1"], ["--preset", "warp"]])
def test_a_bad_encoder_setting_ends_the_run_at_once(clip, tmp_path, bad):
    """These used to hang forever: the encoder failed on its first frame while the placement loop waited
    for a frame from a decoder that had already given up."""
    done = run_cli("video", str(clip), "-o", str(tmp_path / "o.mkv"), *bad, *MODEL, timeout=60)
    assert bad[1].split("=")[0] in one_error_line(done)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_kept_without_overwrite(clip, tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    assert main(["video", str(clip), "-o", str(out), *MODEL]) == 1
    assert out.read_bytes() == b"precious"
    assert main(["video", str(clip), "-o", str(out), "--overwrite", *MODEL]) == 0
    assert probe(out)["frames"] == 40


def test_the_input_is_never_the_output(clip, tmp_path, capsys):
    source = tmp_path / "in.mp4"
    source.write_bytes(clip.read_bytes())
    before = (source.read_bytes(), source.stat().st_mtime_ns)
    (tmp_path / "a").mkdir()
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    spellings = [source, tmp_path / "a" / ".." / "in.mp4", Path(os.path.relpath(source)), tmp_path / "link.mp4",
                 tmp_path / "hard.mp4"]  # fmt: skip
    for output in spellings:
        for overwrite in ([], ["--overwrite"]):
            assert main(["video", str(source), "-o", str(output), *overwrite, *MODEL]) == 1
            assert "is the input" in capsys.readouterr().err
    assert (source.read_bytes(), source.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "hard.mp4", "in.mp4", "link.mp4"]


@pytest.mark.parametrize("as_folder", [True, False])
def test_a_batch_loads_the_model_once_and_goes_past_a_failure(clip, cut_clip, tmp_path, capfd, monkeypatch, as_folder):
    import vsrife.cli

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    (folder / "phone.mp4").write_bytes(clip.read_bytes())
    (folder / "cut.mp4").write_bytes(cut_clip.read_bytes())
    (folder / "broken.mkv").write_bytes(bytes(range(256)) * 16)  # not a video, though named like one
    (folder / "notes.txt").write_text("not a video, and not named like one: a folder's listing skips it")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    loads = []
    load = vsrife.cli._interpolator
    monkeypatch.setattr(vsrife.cli, "_interpolator", lambda args: loads.append(args.model) or load(args))
    if as_folder:  # the folder's video files in name order, written as .mkv
        order, inputs, ext = ["broken.mkv", "cut.mp4", "phone.mp4"], [str(folder)], ["--ext", "mkv"]
    else:  # the files named, in that order, keeping their extensions
        order, ext = ["phone.mp4", "broken.mkv", "cut.mp4"], []
        inputs = [str(folder / name) for name in order]
    outputs = {name: out / (Path(name).stem + (".mkv" if ext else Path(name).suffix)) for name in order}
    capfd.readouterr()
    assert main(["video", *inputs, "-o", f"{out}{os.sep}", *ext, *MODEL]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert loads == ["4.0"]
    summary = [line.split() for line in err if line.startswith(("vsrife: ok", "vsrife: failed"))]
    expected = [["vsrife:", "failed", f"{folder / name}:"] if name == "broken.mkv" else
                ["vsrife:", "ok", str(folder / name), "->", str(outputs[name])] for name in order]  # fmt: skip
    assert [line[: len(want)] for line, want in zip(summary, expected)] == expected
    assert "cannot read" in next(line for line in err if line.startswith("vsrife: failed"))
    assert err[-1] == "vsrife: error: 1 of 3 files failed"
    assert sorted(out.iterdir()) == sorted(o for name, o in outputs.items() if name != "broken.mkv")
    assert probe(outputs["phone.mp4"])["frames"] == 40 and probe(outputs["cut.mp4"])["frames"] == 32
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_batch_refuses_inputs_whose_outputs_collide(clip, tmp_path, capfd):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "c.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "out"
    capfd.readouterr()
    assert main(["video", str(tmp_path / "x" / "c.mp4"), str(tmp_path / "y"), "-o", str(out), *MODEL]) == 1
    err = capfd.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "would both be written to" in err and str(out / "c.mp4") in err
    assert not out.exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_no_partial_output(tmp_path, weights_40, sig, code):
    out = tmp_path / "big.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vsrife", "video", str(fetch_sample("bigbuckbunny", progress=False)),
                             "-o", str(out), "--model", "4.0"], stderr=subprocess.PIPE, text=True,
                            **INTERRUPTIBLE)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.endswith(".mp4") for p in tmp_path.iterdir()):
        time.sleep(0.2)  # wait until the temporary output exists, i.e. work has started
    time.sleep(1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "nothing was written under the output name" in err
    assert list(tmp_path.iterdir()) == []


def test_images_between_two_frames(tmp_path, bikes):
    from PIL import Image

    for name, t in (("a.png", bikes[1]), ("b.png", bikes[3])):
        Image.fromarray(t[0].permute(1, 2, 0).mul(255).round().byte().numpy()).save(tmp_path / name)
    out = tmp_path / "frames"
    assert main(["images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out), "--exp", "2", *MODEL]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["0.png", "1.png", "2.png", "3.png", "4.png"]
    assert np.array_equal(np.asarray(Image.open(out / "0.png")), np.asarray(Image.open(tmp_path / "a.png")))
    assert np.array_equal(np.asarray(Image.open(out / "4.png")), np.asarray(Image.open(tmp_path / "b.png")))
    before = (out / "2.png").read_bytes()
    assert main(["images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out), "--exp", "2", *MODEL]) == 1
    assert (out / "2.png").read_bytes() == before  # refused, nothing replaced without --overwrite
    small = tmp_path / "small.png"
    Image.new("RGB", (10, 10)).save(small)
    assert main(["images", str(tmp_path / "a.png"), str(small), "-o", str(out), *MODEL]) == 1


def test_images_never_write_through_a_planted_symlink(tmp_path, weights_40):
    """`.1.png.partial.png` was the fixed temporary name of 1.png: a symlink planted there made the command
    overwrite whatever it pointed to."""
    from PIL import Image

    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        Image.new("RGB", (64, 48), colour).save(tmp_path / name)
    out = tmp_path / "frames"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    for j in range(3):
        (out / f".{j}.png.partial.png").symlink_to(victim)
    assert main(["images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(out), *MODEL]) == 0
    assert victim.read_bytes() == b"precious"
    for j in range(3):
        assert not (out / f"{j}.png").is_symlink()
        assert Image.open(out / f"{j}.png").size == (64, 48)


def test_the_demo_picture_never_writes_through_a_planted_symlink(tmp_path):
    from vsrife.demo import comparison_image

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (tmp_path / ".comparison.png.partial.png").symlink_to(victim)
    frames = [torch.full((1, 3, 16, 16), v) for v in (0.2, 0.4, 0.6, 0.41)]
    comparison_image(*frames, "RIFE", tmp_path / "comparison.png")
    assert victim.read_bytes() == b"precious"
    assert (tmp_path / "comparison.png").read_bytes().startswith(b"\x89PNG")


def test_models_commands(weights_40, capsys):
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "4.26.heavy" in listing and "ifnet_m" in listing
    assert main(["models", "verify"]) == 0
    assert "4.0          ok" in capsys.readouterr().out


def test_demo_in_one_command(tmp_path, weights_40):
    done = run_cli("demo", "-o", str(tmp_path / "demo"), "-q")
    assert done.returncode == 0, done.stderr
    video, picture = tmp_path / "demo" / "bikes_2x.mp4", tmp_path / "demo" / "comparison.png"
    assert f"video: {video}" in done.stdout and f"comparison: {picture}" in done.stdout
    assert probe(video)["frames"] == 500 and probe(video)["fps"] == 50
    assert picture.stat().st_size > 10_000


# --- placement by time: variable frame rate, held drawings ----------------------------------------------


def write_timed(path: Path, planes: list, ticks: list[int], time_base: Fraction) -> None:
    """A lossless H.264 clip whose frame i is shown at ticks[i] x time_base: any frame rate, variable too."""
    h, w = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=Fraction(1) / time_base)
        v.width, v.height, v.pix_fmt, v.options = w, h, "yuv420p", {"qp": "0", "preset": "ultrafast"}
        v.time_base = time_base
        for p, tick in zip(planes, ticks):
            f = av.VideoFrame.from_ndarray(p, format="yuv420p")
            f.pts, f.time_base = tick, time_base
            out.mux(v.encode(f))
        out.mux(v.encode(None))


def timed_frames(path: Path) -> list[tuple[Fraction, np.ndarray]]:
    with av.open(str(path)) as c:
        return [(f.pts * Fraction(f.time_base), f.to_ndarray(format="yuv420p")) for f in c.decode(video=0)]


def test_variable_frame_rate_is_placed_by_time(tmp_path, weights_40):
    """60 frames of 1/30 s, then 20 of 1/10 s (the issue's clip): before, the output laid them out at the
    average rate, and the frame at 3.0 s showed the content of 2 s."""
    real = frames(fetch_sample("carphone", progress=False), 80)
    ticks = list(range(60)) + [60 + 3 * n for n in range(20)]  # in 1/30 s
    source = tmp_path / "vfr.mp4"
    write_timed(source, real, ticks, Fraction(1, 30))
    src = timed_frames(source)
    assert [t for t, _ in src] == [Fraction(t, 30) for t in ticks]
    out = tmp_path / "out.mp4"
    assert main(["video", str(source), "-o", str(out), "--fps", "60", "-x", "qp=0", "--preset", "ultrafast",
                 "--no-sc", *MODEL]) == 0  # fmt: skip
    rate = Fraction(60)
    res = timed_frames(out)
    assert probe(out)["fps"] == rate
    assert [t for t, _ in res] == [Fraction(k) / rate for k in range(len(res))]  # constant rate out
    duration = probe(source)["duration"]  # 3.9 s + the last frame's tick: the muxer's own account
    assert abs(len(res) / rate - Fraction(duration)) <= 1 / rate  # within one output frame
    by_time = dict(src)
    passed = [k for k, (t, _) in enumerate(res) if t in by_time]
    assert len(passed) == len(src)  # every source frame is shown, untouched, at its own time
    for k in passed:
        assert np.array_equal(res[k][1], by_time[res[k][0]]), f"output frame {k} at {res[k][0]} s"
    at_3s = next(k for k, (t, _) in enumerate(res) if t == 3)
    assert np.array_equal(res[at_3s][1], real[70])  # the frame of 3.0 s, not the 2 s one


def test_constant_rate_matroska_timestamps_keep_passing_through(tmp_path, weights_40):
    """Matroska rounds timestamps to 1 ms: 23.976 fps frames sit up to half a tick off their times, and must
    still be passed through (not interpolated at t = 0.001)."""
    real = frames(fetch_sample("carphone", progress=False), 12)
    source = tmp_path / "film.mkv"
    write_clip(source, real, Fraction(24000, 1001), tone=False)
    out = tmp_path / "out.mkv"
    assert main(["video", str(source), "-o", str(out), "-x", "qp=0", "--preset", "ultrafast", *MODEL]) == 0
    res = frames(out)
    assert len(res) == 24
    assert all(np.array_equal(res[2 * i], real[i]) for i in range(12))


def test_dedup_moves_held_frames_between_the_drawings(tmp_path, weights_40):
    """Real footage drawn on twos: with --dedup at the source rate, each held frame becomes the frame
    halfway to the next drawing, much closer to the real frame that was dropped."""
    real = frames(fetch_sample("bikes", progress=False), 17)
    source = tmp_path / "twos.mp4"
    write_clip(source, [real[j - j % 2] for j in range(17)], Fraction(25), tone=False)
    out = tmp_path / "dedup.mp4"
    lossless = ["-x", "qp=0", "--preset", "ultrafast"]
    assert main(["video", str(source), "-o", str(out), "--multi", "1", "--dedup", *lossless, *MODEL]) == 0
    res = frames(out)
    assert len(res) == 17 and probe(out)["fps"] == 25

    def psnr(a, b):
        return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))

    for j in range(0, 16, 2):
        assert np.array_equal(res[j], real[j]), f"drawing {j} changed"
    assert not any(np.array_equal(res[j], real[j - 1]) for j in range(1, 15, 2))  # no hold left
    gains = [psnr(res[j], real[j]) - psnr(real[j - 1], real[j]) for j in range(1, 15, 2)]
    assert np.mean(gains) > 3.0, gains  # the dropped frames are rebuilt far better than the hold shows them
    plain = tmp_path / "plain.mp4"
    assert main(["video", str(source), "-o", str(plain), "--multi", "2", *lossless, *MODEL]) == 0
    assert np.array_equal(frames(plain)[2], real[0])  # without --dedup the held frame stays a hold


def test_dedup_arguments(tmp_path, clip, capsys):
    assert main(["video", str(clip), "-o", str(tmp_path / "a.mp4"), "--multi", "1", *MODEL]) == 1
    assert "1 with --dedup" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["video", str(clip), "-o", str(tmp_path / "a.mp4"), "--dedup-threshold", "2", *MODEL])
