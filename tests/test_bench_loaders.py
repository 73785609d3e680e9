"""The SNU-FILM, HD and GoPro loaders of vsrife.evaluation, each on a tiny synthetic folder laid out exactly
like the real set, and the protocols they are scored with (padding, luma PSNR, many frames between)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vsrife.evaluation import (
    HD_PAD,
    SNU_FILM_LEVELS,
    FrameSet,
    evaluate,
    evaluate_blend,
    evaluate_many,
    evaluate_many_blend,
    gopro_sets,
    hd_triplets,
    luma_psnr,
    read_yuv420_frame,
    snu_film_triplets,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow writes the synthetic datasets: pip install pillow")


def write_png(path: Path, value: int, size: tuple[int, int] = (40, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    x = np.arange(w, dtype=np.int32).reshape(1, w, 1)
    Image.fromarray(((x * 3 + value + np.arange(3) * 20) % 256).repeat(h, 0).astype(np.uint8)).save(path)


def write_bar_png(path: Path, left: int, size: tuple[int, int] = (40, 24)) -> None:
    """A dark frame with a bright vertical bar 12 pixels wide from column ``left``: motion, not a fade."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    image = np.full((h, w, 3), 30, np.uint8)
    image[:, left : left + 12] = 220
    Image.fromarray(image).save(path)


class Recorder:
    """An interpolator that returns the linear blend and remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], list[float]]] = []

    def interpolate(self, a, b, t):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1)
        self.calls.append((tuple(a.shape), t.tolist()))
        w = t.view(-1, 1, 1, 1)
        return (1 - w) * a.double() + w * b.double()


# --- SNU-FILM ------------------------------------------------------------------------------------------------


@pytest.fixture
def snu_film(tmp_path):
    """SNU-FILM as distributed: the four lists (paths with CAIN's data/SNU-FILM/ prefix) and test/."""
    root = tmp_path / "SNU-FILM"
    gopro, youtube = "test/GOPRO_test/GOPR0384_11_00", "test/YouTube_test/0001"
    for n in range(1, 18):
        write_png(root / gopro / f"{n:06d}.png", n)
    for n in range(9):
        write_png(root / youtube / f"{n:05d}.png", 100 + n)
    for level, gap in zip(SNU_FILM_LEVELS, (1, 2, 4, 8)):
        lines = [" ".join(f"data/SNU-FILM/{gopro}/{1 + i * gap:06d}.png" for i in range(3)),
                 " ".join(f"data/SNU-FILM/{youtube}/{i * (gap // 2 or 1):05d}.png" for i in range(3))]  # fmt: skip
        (root / f"test-{level}.txt").write_text("\n".join(lines) + "\n\n")
    return root


def test_snu_film_reads_each_level_from_the_lists(snu_film):
    extreme = snu_film_triplets(snu_film, "extreme")
    assert [t.name for t in extreme] == ["test/GOPRO_test/GOPR0384_11_00/000009.png", "test/YouTube_test/0001/00004.png"]
    assert extreme[0].first == snu_film / "test/GOPRO_test/GOPR0384_11_00/000001.png"
    assert extreme[0].last == snu_film / "test/GOPRO_test/GOPR0384_11_00/000017.png"
    assert [t.middle.name for t in snu_film_triplets(snu_film, "easy")] == ["000002.png", "00001.png"]
    result = evaluate(Recorder(), extreme)
    assert result["count"] == 2 and result == evaluate_blend(extreme)


def test_snu_film_paths_as_written_are_taken_first(snu_film):
    (snu_film / "test-medium.txt").write_text(" ".join(str(snu_film / "test/GOPRO_test/GOPR0384_11_00" / f"{n:06d}.png")
                                                       for n in (1, 2, 3)))  # fmt: skip
    [triplet] = snu_film_triplets(snu_film, "medium")
    assert triplet.middle == snu_film / "test/GOPRO_test/GOPR0384_11_00/000002.png"


def test_snu_film_errors_name_what_is_wrong(snu_film, tmp_path):
    with pytest.raises(ValueError, match="no level 'insane'.*easy, medium, hard, extreme"):
        snu_film_triplets(snu_film, "insane")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        snu_film_triplets(tmp_path / "nowhere", "easy")
    (snu_film / "test-hard.txt").unlink()
    with pytest.raises(FileNotFoundError, match="test-hard.txt is missing"):
        snu_film_triplets(snu_film, "hard")
    (snu_film / "test-easy.txt").write_text("a.png b.png\n")
    with pytest.raises(ValueError, match="line 1 of .*test-easy.txt has 2 paths, not 3"):
        snu_film_triplets(snu_film, "easy")
    (snu_film / "test-easy.txt").write_text("data/SNU-FILM/test/GOPRO_test/x/1.png data/SNU-FILM/test/GOPRO_test/x/2.png "
                                            "data/SNU-FILM/test/GOPRO_test/x/3.png\n")  # fmt: skip
    with pytest.raises(FileNotFoundError, match=r"missing .*test/GOPRO_test/x/1\.png"):
        snu_film_triplets(snu_film, "easy")
    (snu_film / "test-easy.txt").write_text("\n")
    with pytest.raises(ValueError, match="lists no triplets"):
        snu_film_triplets(snu_film, "easy")


# --- RIFE's HD set -------------------------------------------------------------------------------------------


def write_yuv(path: Path, width: int, height: int, lumas: list[int], u: int = 128, v: int = 128) -> None:
    """A raw 8-bit YUV 4:2:0 file: one flat frame per luma value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chroma = (height // 2) * (width // 2)
    with open(path, "wb") as f:
        for y in lumas:
            f.write(bytes([y]) * (width * height) + bytes([u]) * chroma + bytes([v]) * chroma)


def test_yuv_frames_are_read_as_rifes_script_reads_them(tmp_path):
    path = tmp_path / "colour.yuv"
    write_yuv(path, 16, 8, [120, 60], u=90, v=200)
    rgb = read_yuv420_frame(path, 1, 8, 16)
    assert rgb.shape == (1, 3, 8, 16)
    # skimage's YUV: R = Y + 1.13983 V, G = Y - 0.39465 U - 0.58060 V, B = Y + 2.03211 U (U, V centred)
    y, u, v = 60 / 255, 90 / 255 - 0.5, 200 / 255 - 0.5
    expected = [y + 1.13983 * v, y - 0.39465 * u - 0.58060 * v, y + 2.03211 * u]
    levels = [math.floor(255 * min(max(c, 0.0), 1.0)) for c in expected]  # cut to whole levels, not rounded
    assert (rgb[0, :, 3, 5] * 255).round().tolist() == pytest.approx(levels, abs=1)
    with pytest.raises(ValueError, match="has no frame 2"):
        read_yuv420_frame(path, 2, 8, 16)


@pytest.fixture
def hd(tmp_path):
    """RIFE's HD_dataset with two of its sequences, at their real sizes: 544p with 5 frames, 720p with 3."""
    root = tmp_path / "HD_dataset"
    write_yuv(root / "HD544p_GT/Sintel_Alley2_1280x544.yuv", 1280, 544, [20, 40, 60, 80, 100])
    write_yuv(root / "HD720p_GT/parkrun_1280x720_50.yuv", 1280, 720, [30, 90, 150])
    return root


def test_hd_triplets_by_resolution_with_upstreams_pads(hd, caplog):
    with caplog.at_level(logging.WARNING, logger="vsrife"):
        sets = hd_triplets(hd)
    assert "9 of 11 sequences are missing" in caplog.text and "HD1080p_GT/BlueSky.yuv" in caplog.text
    assert list(sets) == ["544p", "720p"]
    assert [s.name for s in sets["544p"]] == ["Sintel_Alley2_1280x544/1", "Sintel_Alley2_1280x544/3"]
    assert {s.pad for s in sets["544p"]} == {HD_PAD[544]} == {16} and sets["720p"][0].pad == 24
    first, middle, last = sets["544p"][1].load()  # frames 2, 3, 4
    assert [round(float(x.mean()) * 255) for x in (first, middle, last)] == pytest.approx([60, 80, 100], abs=1)


def test_hd_scoring_pads_crops_and_averages_sequences_first(hd):
    sets = hd_triplets(hd)
    items = sets["544p"] + sets["720p"]
    recorder = Recorder()
    result = evaluate(recorder, items)
    assert [shape[-2:] for shape, _ in recorder.calls] == [(576, 1280), (576, 1280), (768, 1280)]
    # flat frames: the blend is exact (but for float32 ground truth against float64 levels), so every
    # score is perfect; by hand, one item's luma PSNR
    assert result["count"] == 3 and result["psnr"] > 100 and result["psnr_y"] > 100 and result["ie"] == 0
    gt = torch.full((1, 3, 4, 4), 0.5)
    assert luma_psnr(gt + 0.01, gt) == pytest.approx(40.0)


def test_hd_luma_psnr_is_the_mean_of_sequence_means():
    flat = lambda v: torch.full((1, 3, 8, 8), v)  # noqa: E731
    a = FrameSet("a/1", lambda: (flat(0.0), flat(0.1), flat(0.1)), group="a")
    b = FrameSet("a/3", lambda: (flat(0.0), flat(0.2), flat(0.2)), group="a")
    c = FrameSet("b/1", lambda: (flat(0.0), flat(0.3), flat(0.3)), group="b")
    result = evaluate_blend([a, b, c], rounded=False)
    per_item = result["psnr_y_per_item"]
    assert result["psnr_y"] == pytest.approx(((per_item[0] + per_item[1]) / 2 + per_item[2]) / 2)


def test_hd_without_any_sequence_says_what_is_expected(tmp_path):
    (tmp_path / "HD").mkdir()
    with pytest.raises(FileNotFoundError, match="no sequence of RIFE's HD set.*HD720p_GT"):
        hd_triplets(tmp_path / "HD")


# --- GoPro 8x --------------------------------------------------------------------------------------------------


@pytest.fixture
def gopro(tmp_path):
    """GOPRO_Large's test folder: a folder of numbered frames per video (17 frames, and 10)."""
    root = tmp_path / "GOPRO"
    for n in range(1, 18):
        write_bar_png(root / "test/GOPR0384_11_00" / f"{n:06d}.png", 2 * (n - 1))
    for n in range(1, 11):
        write_bar_png(root / "test/GOPR0385_11_01" / f"{n:06d}.png", 3 * (n - 1))
    (root / "train/GOPR0372_07_00").mkdir(parents=True)
    return root


def test_gopro_sets_of_nine_every_eight_frames(gopro):
    sets = gopro_sets(gopro)
    assert [s.name for s in sets] == ["GOPR0384_11_00/000001", "GOPR0384_11_00/000009", "GOPR0385_11_01/000001"]
    frames = sets[1].load()
    assert len(frames) == 9 and frames[0].shape == (1, 3, 24, 40)  # smaller than 512: kept whole
    assert [s.name for s in gopro_sets(gopro / "test")] == [s.name for s in sets]  # the test folder itself too
    cropped = gopro_sets(gopro, crop=16)[0].load()
    whole = sets[0].load()
    assert cropped[4].shape == (1, 3, 16, 16) and torch.equal(cropped[4], whole[4][..., 4:20, 12:28])


def test_gopro_rebuilds_frames_one_to_seven_from_the_first_and_last(gopro):
    sets = gopro_sets(gopro)
    recorder = Recorder()
    result = evaluate_many(recorder, sets)
    assert [t for _, t in recorder.calls] == [[j / 8 for j in range(1, 8)]] * 3  # one call per set
    assert result["count"] == 3 and result["frames"] == 21
    assert result["timesteps"] == [j / 8 for j in range(1, 8)] and len(result["psnr_per_position"]) == 7
    assert result == evaluate_many_blend(sets)
    # the middle of a set is the worst rebuilt of a blend, and the frames next to the inputs the best
    assert result["psnr_per_position"][3] < min(result["psnr_per_position"][0], result["psnr_per_position"][6])


def test_gopro_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gopro_sets(tmp_path / "nowhere")
    short = tmp_path / "short" / "GOPR0000_00_00"
    for n in range(8):
        write_png(short / f"{n:06d}.png", n)
    with pytest.raises(ValueError, match="no video folder .* holds 9 frames"):
        gopro_sets(tmp_path / "short")
    with pytest.raises(ValueError, match="between must be at least 1"):
        gopro_sets(tmp_path / "short", between=0)
