"""IFRNet as a second model family: checkpoints in the upstream layout (ltkong218/IFRNet) load strictly and
are refused by name where they do not fit, the forward matches a plain functional reading of upstream's
``Model.inference``, and the model works wherever a RIFE release does. Random weights throughout: the
published files are on Dropbox only."""

from __future__ import annotations

import hashlib
import json
import struct
from fractions import Fraction
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import vsrife
from vsrife.catalogue import get_release, release_names
from vsrife.cli import main
from vsrife.engine import Batcher, clear_model_cache
from vsrife.networks import build_network, warp
from vsrife.weights import WeightsError, normalise_state_dict

IFRNET = [n for n in release_names() if get_release(n).family == "ifrnet"]

# The upstream modules' channels, as written in models/IFRNet.py, IFRNet_L.py and IFRNet_S.py: the
# encoder's four levels, the first kernel, the residual blocks' side channels, and each decoder's
# (input, width, output) channels.
UPSTREAM = {
    "": ((32, 48, 72, 96), 3, 32, {4: (193, 192, 76), 3: (220, 216, 52), 2: (148, 144, 36), 1: (100, 96, 8)}),
    "_l": ((64, 96, 144, 192), 7, 64, {4: (385, 384, 148), 3: (436, 432, 100), 2: (292, 288, 68), 1: (196, 192, 8)}),
    "_s": ((24, 36, 54, 72), 3, 24, {4: (145, 144, 58), 3: (166, 162, 40), 2: (112, 108, 28), 1: (76, 72, 8)}),
}


def size_of(name: str) -> str:
    return name.removeprefix("ifrnet").removesuffix("_gopro")


def upstream_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Every tensor of an upstream IFRNet checkpoint of ``name``'s size, written out from upstream's modules
    (not from vsrife's): what a file saved by its ``torch.save(model.state_dict())`` holds."""
    levels, stem, side, decoders = UPSTREAM[size_of(name)]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_prelu(prefix: str, cin: int, cout: int, k: int = 3) -> None:
        shapes.update({f"{prefix}.0.weight": (cout, cin, k, k), f"{prefix}.0.bias": (cout,), f"{prefix}.1.weight": (cout,)})

    cin = 3
    for i, c in enumerate(levels, 1):
        conv_prelu(f"encoder.pyramid{i}.0", cin, c, stem if i == 1 else 3)
        conv_prelu(f"encoder.pyramid{i}.1", c, c)
        cin = c
    for d, (cin, width, cout) in decoders.items():
        block = f"decoder{d}.convblock"
        conv_prelu(f"{block}.0", cin, width)
        for n, ch in ((1, width), (2, side), (3, width), (4, side)):
            conv_prelu(f"{block}.1.conv{n}", ch, ch)
        shapes.update({f"{block}.1.conv5.weight": (width, width, 3, 3), f"{block}.1.conv5.bias": (width,),
                       f"{block}.1.prelu.weight": (width,), f"{block}.2.weight": (width, cout, 4, 4),
                       f"{block}.2.bias": (cout,)})  # fmt: skip
    return shapes


def upstream_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights in the upstream layout: small convolutions so the flows stay small, PReLU slopes as
    upstream initialises them (0.25)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in upstream_shapes(name).items():
        if len(shape) == 1 and (key.endswith(".1.weight") or key.endswith("prelu.weight")):
            state[key] = torch.full(shape, 0.25)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.03
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``IFRNet*_Vimeo90K.pth``-like files: upstream's layout, saved with torch.save as upstream saves it."""
    folder = tmp_path_factory.mktemp("ifrnet")

    def make(name: str) -> Path:
        path = folder / f"{name}.pth"
        if not path.exists():
            torch.save(upstream_state(name), path)
        return path

    return make


# --- the catalogue and the layout -------------------------------------------------------------------------


def test_three_sizes_and_their_gopro_variants_are_rows_of_the_catalogue():
    assert sorted(IFRNET) == sorted(["ifrnet", "ifrnet_l", "ifrnet_s", "ifrnet_gopro", "ifrnet_l_gopro", "ifrnet_s_gopro"])
    for name in IFRNET:
        r = get_release(name)
        assert r.modulo == 16 and r.padding_multiple(1.0) == 16  # four stride-2 levels
        assert not r.tta and not r.flow_scale and not r.sources
        data = "GoPro" if name.endswith("_gopro") else "Vimeo90K"
        assert "dropbox.com" in r.note and f"_{data}.pth" in r.note and f"--model {name}`" in r.note


@pytest.mark.parametrize("name", IFRNET)
def test_the_network_has_exactly_the_upstream_tensors(name):
    ours = {k: tuple(v.shape) for k, v in build_network(get_release(name)).state_dict().items()}
    assert ours == upstream_shapes(name)


def test_parameter_counts_are_the_papers():
    """IFRNet's paper gives 5.0 M, 19.7 M and 2.8 M parameters for IFRNet, IFRNet-L and IFRNet-S."""
    counts = {n: sum(p.numel() for p in build_network(get_release(n)).parameters()) / 1e6 for n in ("ifrnet", "ifrnet_l", "ifrnet_s")}
    assert counts["ifrnet"] == pytest.approx(5.0, abs=0.05)
    assert counts["ifrnet_l"] == pytest.approx(19.7, abs=0.05)
    assert counts["ifrnet_s"] == pytest.approx(2.8, abs=0.05)


@pytest.mark.parametrize("name", IFRNET)
def test_an_upstream_file_imports_strictly_with_its_sha256_recorded(name, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VSRIFE_MODEL_DIR", str(tmp_path / "models"))
    path = checkpoint(name)
    assert main(["models", "import", str(path), "--model", name]) == 0
    cached = Path(capsys.readouterr().out.split(": ", 1)[1].strip())
    assert cached == tmp_path / "models" / f"rife-{name}.safetensors"
    header = cached.read_bytes()
    meta = json.loads(header[8 : 8 + struct.unpack("<Q", header[:8])[0]])["__metadata__"]
    assert meta["origin_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["vsrife_model"] == name
    clear_model_cache()
    it = vsrife.Interpolator(name, device="cpu", dtype=torch.float32, auto_download=False)  # from the cache
    for key, value in it.network.state_dict().items():
        assert torch.equal(value, upstream_state(name)[key]), key


def test_a_file_of_another_size_is_refused_by_name(checkpoint):
    with pytest.raises(WeightsError, match=r"do not fit model ifrnet: wrong shapes: decoder1\.convblock\.0\.0\.bias \(192,\) "
                                           r"\(expected \(96,\)\).*They fit model ifrnet_l / ifrnet_l_gopro"):  # fmt: skip
        normalise_state_dict(upstream_state("ifrnet_l"), get_release("ifrnet"))
    state = upstream_state("ifrnet_s")
    del state["decoder2.convblock.1.conv4.1.weight"]
    state["decoder5.convblock.0.0.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"missing keys: decoder2\.convblock\.1\.conv4\.1\.weight; "
                                           r"unexpected keys: decoder5\.convblock\.0\.0\.weight"):  # fmt: skip
        normalise_state_dict(state, get_release("ifrnet_s"))
    teacher = dict(upstream_state("ifrnet"), **{"block_tea.conv0.0.0.weight": torch.zeros(1)})  # a RIFE key
    with pytest.raises(WeightsError, match=r"unexpected keys: block_tea\.conv0\.0\.0\.weight"):
        normalise_state_dict(teacher, get_release("ifrnet"))
    with pytest.raises(WeightsError, match="do not fit model ifrnet"):
        vsrife.Interpolator("ifrnet", weights=checkpoint("ifrnet_s"), device="cpu")


def test_without_weights_the_error_says_where_they_are(tmp_path, monkeypatch):
    monkeypatch.setenv("VSRIFE_MODEL_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match=r"model ifrnet_gopro has no download source.*dropbox\.com.*"
                                           r"IFRNet_GoPro\.pth --model ifrnet_gopro"):  # fmt: skip
        vsrife.fetch_weights("ifrnet_gopro")


# --- the forward against upstream's ------------------------------------------------------------------------


def _conv_prelu(x, state, prefix, stride=1):
    w = state[f"{prefix}.0.weight"]
    return F.prelu(F.conv2d(x, w, state[f"{prefix}.0.bias"], stride, w.shape[-1] // 2), state[f"{prefix}.1.weight"])


def _decoder(x, state, d, side):
    p = f"decoder{d}.convblock"
    x = _conv_prelu(x, state, f"{p}.0")
    y = _conv_prelu(x, state, f"{p}.1.conv1")
    y = torch.cat((y[:, :-side], _conv_prelu(y[:, -side:], state, f"{p}.1.conv2")), 1)
    y = _conv_prelu(y, state, f"{p}.1.conv3")
    y = torch.cat((y[:, :-side], _conv_prelu(y[:, -side:], state, f"{p}.1.conv4")), 1)
    x = F.prelu(x + F.conv2d(y, state[f"{p}.1.conv5.weight"], state[f"{p}.1.conv5.bias"], 1, 1), state[f"{p}.1.prelu.weight"])
    return F.conv_transpose2d(x, state[f"{p}.2.weight"], state[f"{p}.2.bias"], 2, 1)


def upstream_inference(state, img0, img1, embt, side):
    """upstream ``Model.inference(img0, img1, embt)`` at scale_factor 1, written out functionally."""
    mean = torch.cat([img0, img1], 2).mean(1, keepdim=True).mean(2, keepdim=True).mean(3, keepdim=True)
    img0, img1 = img0 - mean, img1 - mean

    def encode(x):
        levels = []
        for i in range(1, 5):
            x = _conv_prelu(_conv_prelu(x, state, f"encoder.pyramid{i}.0", 2), state, f"encoder.pyramid{i}.1")
            levels.append(x)
        return levels

    f0, f1 = encode(img0), encode(img1)
    up = lambda x: 2.0 * F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
    out = _decoder(torch.cat([f0[3], f1[3], embt.repeat(1, 1, *f0[3].shape[-2:])], 1), state, 4, side)
    flow0, flow1 = out[:, 0:2], out[:, 2:4]
    for d, level in ((3, 2), (2, 1), (1, 0)):
        x = torch.cat([out[:, 4:], warp(f0[level], flow0), warp(f1[level], flow1), flow0, flow1], 1)
        out = _decoder(x, state, d, side)
        flow0, flow1 = out[:, 0:2] + up(flow0), out[:, 2:4] + up(flow1)
    mask = torch.sigmoid(out[:, 4:5])
    merged = mask * warp(img0, flow0) + (1 - mask) * warp(img1, flow1) + mean
    return torch.clamp(merged + out[:, 5:], 0, 1)


@pytest.mark.parametrize("name", ["ifrnet", "ifrnet_l", "ifrnet_s"])
def test_the_forward_is_upstreams(name):
    state = upstream_state(name, seed=1)
    net = build_network(get_release(name))
    net.load_state_dict(state, strict=True)
    g = torch.Generator().manual_seed(2)
    img0, img1 = torch.rand(2, 3, 48, 64, generator=g), torch.rand(2, 3, 48, 64, generator=g)
    t = torch.tensor([0.3, 0.7]).view(2, 1, 1, 1)
    with torch.inference_mode():
        ours = net(img0, img1, t)
        reference = upstream_inference(state, img0, img1, t, UPSTREAM[size_of(name)][2])
    assert (ours - reference).abs().max() < 1e-5
    assert (ours - (img0 + img1) / 2).abs().mean() > 1e-3  # the random network does something


def test_padding_stays_out_of_the_mean_and_the_result(checkpoint):
    """Frames that are not multiples of 16 are padded inside; the normalisation is upstream's mean of the
    frames themselves, and a frame whose sides are multiples of 16 comes out as upstream's."""
    it = vsrife.Interpolator("ifrnet", weights=checkpoint("ifrnet"), device="cpu", dtype=torch.float32)
    img0, img1 = torch.rand(1, 3, 37, 50), torch.rand(1, 3, 37, 50)
    out = it.interpolate(img0, img1, 0.5)
    assert out.shape == (1, 3, 37, 50) and torch.isfinite(out).all()
    padded = [F.pad(x, (0, 14, 0, 11)) for x in (img0, img1)]
    t = torch.full((1, 1, 1, 1), 0.5)
    with torch.inference_mode():
        with_own_mean = it.network(*padded, t, size=(37, 50))[..., :37, :50]
        with_padding_mean = it.network(*padded, t)[..., :37, :50]
    assert torch.equal(out, with_own_mean)
    assert not torch.equal(out, with_padding_mean)
    square = torch.rand(1, 3, 32, 48), torch.rand(1, 3, 32, 48)
    state = upstream_state("ifrnet")
    with torch.inference_mode():
        expected = upstream_inference(state, *square, torch.full((1, 1, 1, 1), 0.25), 32)
    assert (it.interpolate(*square, 0.25) - expected).abs().max() < 1e-4  # channels-last convolutions here


def test_every_timestep_of_a_pair_in_one_call_is_each_alone(checkpoint):
    """8x: the seven frames between two in one batch (the pair encoded once) equal seven single calls."""
    it = vsrife.Interpolator("ifrnet_s_gopro", weights=checkpoint("ifrnet_s_gopro"), device="cpu", dtype=torch.float32)
    a, b = it.prepare(torch.rand(1, 3, 40, 56)), it.prepare(torch.rand(1, 3, 40, 56))
    times = torch.arange(1, 8) / 8
    together = it.interpolate(a, b, times)
    alone = torch.cat([it.interpolate(a, b, float(t)) for t in times])
    assert together.shape == (7, 3, 40, 56)
    assert (together - alone).abs().max() < 1e-5
    assert (together[0] - together[6]).abs().mean() > 1e-4  # the time matters


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_reduced_precision_stays_close(checkpoint, dtype):
    full = vsrife.Interpolator("ifrnet", weights=checkpoint("ifrnet"), device="cpu", dtype=torch.float32)
    low = vsrife.Interpolator("ifrnet", weights=checkpoint("ifrnet"), device="cpu", dtype=dtype)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    assert (full.interpolate(a, b, 0.5) - low.interpolate(a, b, 0.5)).abs().mean() < 0.02


# --- everywhere a RIFE release works -----------------------------------------------------------------------


def test_tta_and_scale_are_refused_at_creation_naming_the_model(checkpoint):
    path = checkpoint("ifrnet")
    with pytest.raises(ValueError, match="model ifrnet has no tta: test-time augmentation is an option of the RIFE"):
        vsrife.Interpolator("ifrnet", weights=path, device="cpu", tta=True)
    with pytest.raises(ValueError, match="model ifrnet takes no scale"):
        vsrife.Interpolator("ifrnet", weights=path, device="cpu", scale=0.5)
    with pytest.raises(ValueError, match="scale must be one of"):
        vsrife.Interpolator("ifrnet", weights=path, device="cpu", scale=3)


def test_the_batcher_runs_it_unchanged(checkpoint):
    it = vsrife.Interpolator("ifrnet_l", weights=checkpoint("ifrnet_l"), device="cpu", dtype=torch.float32)
    img0, img1 = torch.rand(1, 3, 30, 44), torch.rand(1, 3, 30, 44)
    batcher = Batcher(torch.device("cpu"))
    try:
        a, b = batcher.prepare(it, img0), batcher.prepare(it, img1)
        out = batcher.interpolate(it, a, b, (0.25, 0.5)).result(timeout=60)
    finally:
        batcher.close()
    assert torch.equal(out, it.interpolate(img0, img1, torch.tensor([0.25, 0.5])))


def test_the_command_line_refuses_rife_options_before_anything_else(checkpoint, tmp_path, capfd):
    missing = str(tmp_path / "missing.mkv")
    for extra, message in ((["--tta"], "model ifrnet has no tta"), (["--scale", "0.5"], "model ifrnet takes no scale"),
                           (["--tta", "--cluster", "auto"], "model ifrnet has no tta")):  # fmt: skip
        assert main(["video", missing, "-o", str(tmp_path / "o.mkv"), "--model", "ifrnet", *extra]) == 1
        err = capfd.readouterr().err
        assert err.startswith("vsrife: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert main(["images", missing, missing, "-o", str(tmp_path / "f"), "--model", "ifrnet_s", "--tta"]) == 1
    assert "model ifrnet_s has no tta" in capfd.readouterr().err
    assert not (tmp_path / "f").exists()


def test_train_says_in_one_line_that_it_trains_rife(tmp_path, capfd):
    assert main(["train", "--model", "ifrnet", "--data", str(tmp_path), "-o", str(tmp_path / "run")]) == 1
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model ifrnet is an IFRNet: vsrife train fine-tunes the RIFE models" in err
    assert not (tmp_path / "run").exists()


def test_the_vapoursynth_filter_takes_it(checkpoint):
    vs = pytest.importorskip("vapoursynth", reason="no VapourSynth core here (DEVELOPERS.md says how to build one)")

    def flat(v: float):
        return vs.core.std.BlankClip(width=48, height=32, format=vs.RGBS, length=1, fpsnum=24, fpsden=1, color=[v] * 3)

    clip = flat(0.2) + flat(0.25) + flat(0.3)  # frames that differ (identical ones pass through)
    with pytest.raises(vs.Error, match="vsrife.RIFE: model ifrnet has no tta"):
        vsrife.RIFE(clip, model="ifrnet", weights=str(checkpoint("ifrnet")), tta=True)
    with pytest.raises(vs.Error, match="vsrife.RIFE: model ifrnet takes no scale"):
        vsrife.RIFE(clip, model="ifrnet", weights=str(checkpoint("ifrnet")), scale=0.5)
    out = vsrife.RIFE(clip, model="ifrnet", weights=str(checkpoint("ifrnet")), multi=2, sc=False, device="cpu")
    assert out.num_frames == 6 and out.get_frame(1).props["RIFE_Model"] == "ifrnet"


def write_moving_clip(path: Path, count: int, size: tuple[int, int] = (64, 48), rate: Fraction = Fraction(24)) -> Path:
    """A lossless clip of a bright square moving right over a gradient, ``count`` frames."""
    av = pytest.importorskip("av", reason="the command line decodes and encodes with PyAV: pip install av")
    w, h = size
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt, v.options = w, h, "yuv444p", {"qp": "0", "preset": "ultrafast"}
        for i in range(count):
            rgb = torch.linspace(40, 160, w).view(1, w, 1).expand(h, w, 3).clone()
            rgb[h // 4 : h // 4 + h // 3, 4 + 3 * i : 4 + 3 * i + w // 5] = 230
            f = av.VideoFrame.from_ndarray(rgb.byte().numpy(), format="rgb24").reformat(format="yuv444p")
            f.pts, f.time_base = i, 1 / rate
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    return path


def test_vsrife_video_with_ifrnet_and_dedup(checkpoint, tmp_path):
    from vsrife.video import probe

    clip = write_moving_clip(tmp_path / "clip.mkv", 6)
    weights = str(checkpoint("ifrnet_s"))
    out = tmp_path / "out.mkv"
    assert main(["video", str(clip), "-o", str(out), "--model", "ifrnet_s", "--weights", weights, "-q"]) == 0
    info = probe(out)
    assert info["frames"] == 12 and Fraction(info["fps"]) == 48
    held = tmp_path / "held.mkv"
    assert main(["video", str(clip), "-o", str(held), "--multi", "1", "--dedup", "--model", "ifrnet_s",
                 "--weights", weights, "-q"]) == 0  # fmt: skip
    assert probe(held)["frames"] == 6
