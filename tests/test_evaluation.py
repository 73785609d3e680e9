"""Quality measures, benchmark-set loaders and the evaluation loop (vsrife.evaluation)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vsrife
from vsrife.evaluation import (
    Triplet,
    evaluate,
    evaluate_blend,
    frame_drop_triplets,
    interpolation_error,
    load_rgb,
    middlebury_other,
    psnr,
    quantize,
    ssim,
    ucf101_triplets,
    vimeo90k_triplets,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow writes the synthetic datasets: pip install pillow")


def grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(h, dtype=torch.float64).view(h, 1)
    x = torch.arange(w, dtype=torch.float64).view(1, w)
    return y, x


def scene(h: int = 24, w: int = 32) -> torch.Tensor:
    """A smooth colour test card on 8-bit levels, 1 x 3 x h x w in [0, 1]."""
    y, x = grid(h, w)
    chans = [0.5 + 0.35 * torch.sin(x / 4 + c) * torch.cos(y / 6 - c) for c in range(3)]
    return quantize(torch.stack(chans).unsqueeze(0))


def wobbled(img: torch.Tensor) -> torch.Tensor:
    """``img`` plus a deterministic high-frequency ripple of amplitude 0.06, back on 8-bit levels."""
    y, x = grid(*img.shape[-2:])
    return quantize((img + 0.06 * torch.sin(1.7 * x + 2.3 * y)).clamp(0, 1))


# ----------------------------------------------------------------------------------------------- metrics


def test_psnr_of_identical_images_is_infinite():
    x = scene()
    assert psnr(x, x.clone()) == math.inf


def test_psnr_of_a_known_mse():
    a = torch.zeros(2, 3, 8, 8)
    assert psnr(a, a + 0.1) == pytest.approx(20.0)  # MSE 0.01
    b = a.clone()
    b[0, 0, 0, 0] = 1.0  # one value off by 1: MSE = 1 / 384
    assert psnr(a, b) == pytest.approx(10 * math.log10(384))


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))
    with pytest.raises(ValueError, match="N x C x H x W"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))


@pytest.mark.parametrize("volumetric", [True, False])
def test_ssim_of_identical_images_is_one(volumetric):
    x = scene()
    assert ssim(x, x.clone(), volumetric=volumetric) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("volumetric", [True, False])
def test_ssim_falls_as_noise_grows(volumetric):
    x = scene(48, 64)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    scores = [ssim(x, (x + s * noise).clamp(0, 1), volumetric=volumetric) for s in (0.01, 0.03, 0.1, 0.3)]
    assert all(s < 1 for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < 0.5


def test_ssim_matches_the_rife_benchmark_values():
    # Reference values from the RIFE benchmark's own SSIM code (float32) on this pair: ssim_matlab 0.9475194,
    # its per-channel ssim 0.8290940. Their float32 window sums to 1 - 1e-7, hence the ~2e-6 difference.
    a = scene()
    b = wobbled(a)
    assert ssim(b, a) == pytest.approx(0.9475194, abs=1e-5)
    assert ssim(b, a, volumetric=False) == pytest.approx(0.8290940, abs=1e-5)


def test_volumetric_ssim_equals_a_direct_3d_gaussian_filter():
    """The separable filtering gives what one 11 x 11 x 11 Gaussian over (channel, y, x) gives."""
    a = scene(20, 28)
    b = wobbled(a)
    taps = torch.exp(-((torch.arange(11, dtype=torch.float64) - 5) ** 2) / (2 * 1.5**2))
    taps /= taps.sum()
    window = torch.einsum("i,j,k->ijk", taps, taps, taps).view(1, 1, 11, 11, 11)

    def mean3d(t: torch.Tensor) -> torch.Tensor:
        return F.conv3d(F.pad(t.unsqueeze(1), (5,) * 6, mode="replicate"), window)

    mx, my = mean3d(a), mean3d(b)
    vx, vy, cxy = mean3d(a * a) - mx**2, mean3d(b * b) - my**2, mean3d(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))).mean()
    assert ssim(a, b) == pytest.approx(float(expected), abs=1e-12)


def test_ssim_does_not_depend_on_channel_order():
    a = scene()
    b = wobbled(a)
    assert ssim(a.flip(1), b.flip(1)) == pytest.approx(ssim(a, b), abs=1e-12)  # BGR (cv2) or RGB alike


def test_interpolation_error():
    x = scene()
    assert interpolation_error(x, x.clone()) == 0.0
    darker = x.clamp(max=252 / 255)
    assert interpolation_error(darker + 3 / 255, darker) == pytest.approx(3.0, abs=1e-12)
    # values are rounded to whole 8-bit levels first, as the RIFE benchmark does
    assert interpolation_error(x + 0.4 / 255, x) == 0.0
    # mean absolute (not RMS) difference: one value off by 255 among 3 * 24 * 32
    y = x.clone()
    y[0, 1, 5, 7] = 1.0 - x[0, 1, 5, 7].round()
    assert interpolation_error(y, x) == pytest.approx(abs(float(y[0, 1, 5, 7] - x[0, 1, 5, 7])) * 255 / x.numel())


# ----------------------------------------------------------------------------------------------- loaders


def write_png(path: Path, value: int, size: tuple[int, int] = (16, 16), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (value, 255 - value, value // 2) if mode == "RGB" else value).save(path)


def make_vimeo(root: Path, entries: list[str], frames: str = "sequences") -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "tri_testlist.txt").write_text("\n".join(entries) + "\n\n")
    for i, entry in enumerate(e for e in entries if e.strip()):
        for j in (1, 2, 3):
            write_png(root / frames / entry.strip() / f"im{j}.png", 10 * i + j)


def test_vimeo90k_triplets(tmp_path):
    root = tmp_path / "vimeo_triplet"
    make_vimeo(root, ["00002/0010", "", "00001/0266 ", "00001/0001"])
    triplets = vimeo90k_triplets(root)
    assert [t.name for t in triplets] == ["00002/0010", "00001/0266", "00001/0001"]  # list order, blanks skipped
    seq = root / "sequences" / "00001" / "0266"
    assert triplets[1] == Triplet("00001/0266", seq / "im1.png", seq / "im2.png", seq / "im3.png")


def test_vimeo90k_interp_test_layout(tmp_path):
    root = tmp_path / "vimeo_interp_test"
    make_vimeo(root, ["00001/0389"], frames="target")  # the folder the RIFE script reads
    (t,) = vimeo90k_triplets(str(root))
    assert t.middle == root / "target" / "00001" / "0389" / "im2.png"


def test_vimeo90k_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        vimeo90k_triplets(tmp_path / "nowhere")
    root = tmp_path / "v"
    (root / "sequences").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="tri_testlist.txt"):
        vimeo90k_triplets(root)
    (root / "tri_testlist.txt").write_text("\n \n")
    with pytest.raises(ValueError, match="lists no sequences"):
        vimeo90k_triplets(root)
    (root / "sequences").rmdir()
    (root / "tri_testlist.txt").write_text("00001/0001\n")
    with pytest.raises(FileNotFoundError, match="sequences.*target"):
        vimeo90k_triplets(root)
    make_vimeo(root, ["00001/0001"])
    (root / "sequences" / "00001" / "0001" / "im2.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"00001/0001: missing .*im2\.png"):
        vimeo90k_triplets(root)


def make_ucf(root: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        for level, file in zip((0, 3, 4), ("frame_00.png", "frame_01_gt.png", "frame_02.png"), strict=True):
            write_png(root / name / file, 10 * i + level, size=(16, 16))
        write_png(root / name / "frame_01_ours.png", 0)  # other files in a folder are ignored


def test_ucf101_triplets(tmp_path):
    root = tmp_path / "ucf101_interp_ours"
    make_ucf(root, ["991", "1", "1001", "11"])
    (root / "README.txt").write_text("not a triplet")
    triplets = ucf101_triplets(root)
    assert [t.name for t in triplets] == ["1", "11", "991", "1001"]  # numeric order
    d = root / "11"
    assert triplets[1] == Triplet("11", d / "frame_00.png", d / "frame_01_gt.png", d / "frame_02.png")


def test_ucf101_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="UCF101 folder .* does not exist"):
        ucf101_triplets(tmp_path / "ucf101_interp_ours")
    with pytest.raises(ValueError, match="no triplet folders.*frame_01_gt.png"):
        ucf101_triplets(tmp_path)
    make_ucf(tmp_path, ["1", "2"])
    (tmp_path / "2" / "frame_01_gt.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"2: missing .*frame_01_gt\.png"):
        ucf101_triplets(tmp_path)


def make_middlebury(root: Path, inputs: list[str], truths: list[str]) -> None:
    for i, name in enumerate(inputs):
        write_png(root / "other-data" / name / "frame10.png", i, size=(16, 12))
        write_png(root / "other-data" / name / "frame11.png", i + 2, size=(16, 12))
    for i, name in enumerate(truths):
        write_png(root / "other-gt-interp" / name / "frame10i11.png", i + 1, size=(16, 12))


def test_middlebury_other(tmp_path):
    make_middlebury(tmp_path, ["Walking", "Beanbags", "Dimetrodon", "Army"], ["Dimetrodon", "Walking", "Beanbags"])
    triplets = middlebury_other(tmp_path)
    assert [t.name for t in triplets] == ["Beanbags", "Dimetrodon", "Walking"]  # "Army" has no ground truth
    assert triplets[2] == Triplet(
        "Walking",
        tmp_path / "other-data" / "Walking" / "frame10.png",
        tmp_path / "other-gt-interp" / "Walking" / "frame10i11.png",
        tmp_path / "other-data" / "Walking" / "frame11.png",
    )


def test_middlebury_errors_name_what_is_missing(tmp_path):
    make_middlebury(tmp_path, ["Venus"], [])
    with pytest.raises(FileNotFoundError, match="other-gt-interp"):
        middlebury_other(tmp_path)
    (tmp_path / "other-gt-interp").mkdir()
    with pytest.raises(ValueError, match="no sequence has a folder in both"):
        middlebury_other(tmp_path)
    make_middlebury(tmp_path, [], ["Venus"])
    (tmp_path / "other-data" / "Venus" / "frame11.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"Venus: missing .*frame11\.png"):
        middlebury_other(tmp_path)
    with pytest.raises(FileNotFoundError, match="other-data"):
        middlebury_other(tmp_path / "other-gt-interp")


def test_load_rgb(tmp_path):
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    Image.fromarray(pixels).save(tmp_path / "rgb.png")
    x = load_rgb(tmp_path / "rgb.png")
    assert x.shape == (1, 3, 4, 5) and x.dtype == torch.float32
    torch.testing.assert_close(x[0].permute(1, 2, 0) * 255, torch.from_numpy(pixels).float())
    write_png(tmp_path / "grey.png", 51, mode="L")
    grey = load_rgb(tmp_path / "grey.png")
    assert grey.shape == (1, 3, 16, 16)
    torch.testing.assert_close(grey, torch.full((1, 3, 16, 16), 0.2))


def test_frame_drop_triplets():
    frames = [torch.full((1, 3, 2, 2), float(i)) for i in range(14)]
    indices = [tuple(int(f[0, 0, 0, 0]) for f in t) for t in frame_drop_triplets(frames)]
    # the project's convention (tests/test_engine.py): decode indices 2k-1, 2k, 2k+1 for k = 1..
    assert indices == [(2 * k - 1, 2 * k, 2 * k + 1) for k in range(1, 7)]
    assert list(frame_drop_triplets(frames[:3])) == []
    assert len(list(frame_drop_triplets(frames[:4]))) == 1


# ----------------------------------------------------------------------------------------------- evaluation


class Blender:
    """A stand-in interpolator: the 50/50 blend, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def interpolate(self, img0: torch.Tensor, img1: torch.Tensor, timestep: float) -> torch.Tensor:
        self.calls.append(timestep)
        return ((img0 + img1) / 2).float()


def test_evaluate_reads_triplet_files(tmp_path):
    make_ucf(tmp_path, ["3", "1", "2"])
    triplets = ucf101_triplets(tmp_path)
    fake = Blender()
    result = evaluate(fake, triplets, limit=2)
    assert fake.calls == [0.5, 0.5]
    assert result["count"] == 2 and result["names"] == ["1", "2"]
    # levels (v, 255 - v, v // 2) with v = 10i, 10i + 3, 10i + 4: the blend is off by 1, 1 and 0 levels
    assert result["ie_per_item"] == pytest.approx([2 / 3, 2 / 3], abs=1e-12)
    assert result["psnr"] == pytest.approx(-10 * math.log10(2 / 3 / 255**2))
    assert result["ssim"] < 1
    for key in ("psnr", "ssim", "ie"):
        assert len(result[f"{key}_per_item"]) == 2
        assert result[key] == pytest.approx(sum(result[f"{key}_per_item"]) / 2)
    assert evaluate_blend(triplets, limit=2) == result


def test_evaluate_on_tensors_and_limits():
    a, b = scene(), wobbled(scene())
    perfect = evaluate(Blender(), [(a, a, a), (b, b, b)])
    assert perfect["names"] == ["0", "1"] and perfect["psnr"] == math.inf
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["ie"] == 0.0
    with pytest.raises(ValueError, match="no triplets"):
        evaluate_blend([(a, a, a)], limit=0)
    with pytest.raises(ValueError, match="limit"):
        evaluate_blend([(a, a, a)], limit=-1)


def test_evaluate_on_real_footage(bikes, weights_40):
    rife = evaluate(vsrife.Interpolator("4.0", device="cpu"), frame_drop_triplets(bikes), limit=6)
    blend = evaluate_blend(frame_drop_triplets(bikes), limit=6)
    assert rife["count"] == blend["count"] == 6
    assert rife["psnr"] > blend["psnr"] + 8
    assert rife["ssim"] > blend["ssim"]
    assert rife["ie"] < blend["ie"]
    # unrounded, the blend floor is the project's 29.4 dB (tests/test_engine.py)
    assert 29.2 < evaluate_blend(frame_drop_triplets(bikes), limit=6, rounded=False)["psnr"] < 29.5
