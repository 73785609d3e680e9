"""vsrife video --montage: the source beside the result at the output rate; its size, rate and count, which
source frame each output frame is shown beside, and the same through chunks (the cluster's path)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vsrife.cli import main
from vsrife.video import VideoJob, montage, montage_size, probe

av = pytest.importorskip("av", reason="the command line decodes and encodes with PyAV: pip install av")

from tests.test_ifrnet import checkpoint, write_moving_clip  # noqa: E402, F401 - the fixture, shared


def test_montage_size_doubles_the_width_or_for_tall_video_the_height():
    assert montage_size(640, 272) == (1280, 272, True)
    assert montage_size(272, 640) == (272, 1280, False)
    assert montage_size(100, 100) == (200, 100, True)  # square: side by side
    assert montage_size(175, 144) == (350, 144, True)
    assert montage_size(176, 143) == (352, 144, True)  # an odd height is made even
    assert montage_size(143, 176) == (144, 352, False)


def test_montage_puts_the_source_first_and_pads_with_the_edge():
    source, result = torch.rand(1, 3, 5, 8), torch.rand(1, 3, 5, 8)
    joined = montage(source, result)
    assert joined.shape == (1, 3, 6, 16)
    assert torch.equal(joined[..., :5, :8], source) and torch.equal(joined[..., :5, 8:], result)
    assert torch.equal(joined[..., 5, :], joined[..., 4, :])  # the repeated edge row
    tall = montage(torch.rand(1, 3, 8, 5), torch.rand(1, 3, 8, 5))
    assert tall.shape == (1, 3, 16, 6)


def decoded_rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


LOSSLESS = ["-x", "qp=0", "--preset", "ultrafast", "--pix-fmt", "yuv444p", "-q"]


@pytest.mark.parametrize("size", [(64, 48), (48, 64)], ids=["wide", "tall"])
def test_video_montage_size_rate_count_and_pictures(checkpoint, tmp_path, size):
    clip = write_moving_clip(tmp_path / "clip.mkv", 5, size=size)
    weights = str(checkpoint("ifrnet_s"))
    plain, shown = tmp_path / "plain.mkv", tmp_path / "montage.mkv"
    common = ["--model", "ifrnet_s", "--weights", weights, *LOSSLESS]
    assert main(["video", str(clip), "-o", str(plain), *common]) == 0
    assert main(["video", str(clip), "-o", str(shown), "--montage", *common]) == 0
    w, h = size
    info, base = probe(shown), probe(plain)
    beside = w >= h
    assert (info["width"], info["height"]) == ((2 * w, h) if beside else (w, 2 * h))
    assert info["fps"] == base["fps"] == 48 and info["frames"] == base["frames"] == 10
    source, result, both = decoded_rgb(clip), decoded_rgb(plain), decoded_rgb(shown)
    for k, frame in enumerate(both):
        left, right = (frame[:, :w], frame[:, w:]) if beside else (frame[:h], frame[h:])
        # 4:4:4 lossless round trips through RGB are within a level or two
        assert np.abs(left - source[k // 2]).max() <= 2, f"frame {k}: not beside source frame {k // 2}"
        assert np.abs(right - result[k]).max() <= 2, f"frame {k}: the result differs from the plain run"


def test_montage_through_chunks_equals_one_piece(checkpoint, tmp_path):
    """The cluster's path (index, chunks, join), run here without Ray: the same frames as one piece."""
    import vsrife
    from vsrife.video import index_source, interpolate_chunk, interpolate_video, join_chunks, plan_chunks

    clip = write_moving_clip(tmp_path / "clip.mkv", 8)
    job = VideoJob(multi=Fraction(2), encoder_options={"qp": "0"}, preset="ultrafast", pix_fmt="yuv444p",
                   montage=True, progress=False)  # fmt: skip
    it = vsrife.Interpolator("ifrnet_s", weights=checkpoint("ifrnet_s"), device="cpu")
    whole = tmp_path / "whole.mkv"
    interpolate_video(clip, whole, it, job)
    index = index_source(clip, job)
    chunks = plan_chunks(index, [0, 3, 6], job)
    parts = []
    for chunk in chunks:
        part = tmp_path / f"part{chunk.index}.mkv"
        interpolate_chunk(clip, part, it, job, chunk)
        parts.append((chunk, part))
    joined = tmp_path / "joined.mkv"
    assert join_chunks(clip, joined, parts, job) == 16
    a, b = decoded_rgb(whole), decoded_rgb(joined)
    assert len(a) == len(b) == 16 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert probe(joined)["width"] == 128
