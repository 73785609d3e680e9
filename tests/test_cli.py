"""The command line end to end: real footage, a real encoder (PyAV/FFmpeg), a real probe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vsrife.cli import main
from vsrife.video import probe
from vsrife.weights import fetch_sample

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


def write_clip(path: Path, planes: list, rate: Fraction, tone: bool, pix_fmt: str = "yuv420p") -> None:
    """A lossless H.264 clip of the given frames, optionally with a 440 Hz AAC tone as long as it."""
    h, w = planes[0].shape[0] * 2 // 3, planes[0].shape[1]
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        v.options = {"qp": "0"}
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


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vsrife", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)  # fmt: skip


def test_errors_are_clear_and_exit_non_zero(clip, tmp_path):
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
    cases = [
        (["video", str(tmp_path / "missing.mp4"), "-o", out], "does not exist"),
        (["video", str(text), "-o", out], "cannot read"),
        (["video", str(audio_only), "-o", out], "has no video stream"),
        (["video", str(clip), "-o", out, "--fps", "fast"], "not a number or a ratio"),
        (["video", str(clip), "-o", out, "--fps", "24"], "must be above the source rate"),
        (["video", str(clip), "-o", out, "--multi", "1"], "--multi must be above 1"),
        (["video", str(clip), "-o", out, "--model", "9.9"], "unknown model '9.9'"),
        (["video", str(clip), "-o", str(tmp_path / "no" / "dir" / "o.mp4")], "does not exist"),
        (["video", str(clip), "-o", str(text / "o.mp4")], "does not exist"),
    ]
    for args, message in cases:
        done = run_cli(args[0], *MODEL, *args[1:])  # a case's own --model comes last and wins
        assert done.returncode == 1, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert done.stdout == ""
    done = run_cli("video", str(clip), "-o", out, "--model", "4.22", "--no-download", "-q",
                   env={"VSRIFE_MODEL_DIR": str(tmp_path / "empty")})  # fmt: skip
    assert done.returncode == 1 and "vsrife models download 4.22" in done.stderr
    assert not Path(out).exists()


def test_existing_output_is_kept_without_overwrite(clip, tmp_path):
    out = tmp_path / "keep.mp4"
    out.write_bytes(b"precious")
    assert main(["video", str(clip), "-o", str(out), *MODEL]) == 1
    assert out.read_bytes() == b"precious"
    assert main(["video", str(clip), "-o", str(out), "--overwrite", *MODEL]) == 0
    assert probe(out)["frames"] == 40


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_leaves_no_partial_output(tmp_path, weights_40, sig, code):
    out = tmp_path / "big.mp4"
    proc = subprocess.Popen([sys.executable, "-m", "vsrife", "video", str(fetch_sample("bigbuckbunny", progress=False)),
                             "-o", str(out), "--model", "4.0"], stderr=subprocess.PIPE, text=True)  # fmt: skip
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
