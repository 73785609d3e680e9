"""The 8-bit flow blocks (vsrife.int8): oneDNN's integer convolutions against the same arithmetic in float,
the catalogue's ranges against a fresh calibration, and the quality on real footage with the real 4.0
weights (footage that the calibration never saw)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tests.conftest import decode_rgb, psnr
from vsrife import int8
from vsrife.engine import Interpolator
from vsrife.weights import fetch_sample, weights_digest

needs_int8 = pytest.mark.skipif(not int8.available(),
                                reason="this PyTorch has no working oneDNN int8 convolution (torch.ops.onednn)")


def _layers(widths: list[int], strides: list[int], seed: int = 0) -> list[tuple[nn.Conv2d, nn.PReLU]]:
    g = torch.Generator().manual_seed(seed)
    layers = []
    for cin, cout, stride in zip(widths, widths[1:], strides):
        conv, act = nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) / (3 * cin**0.5))
            conv.bias.copy_(torch.randn(cout, generator=g) * 0.05)
            act.weight.copy_(torch.rand(cout, generator=g) * 0.4)
        layers.append((conv, act))
    return layers


def _tuned(weights: Path, folder: Path) -> Path:
    """Weights the ranges were not measured for: the 4.0 weights with one bias changed."""
    tensors = load_file(weights)
    name = next(k for k in tensors if k.endswith("bias"))
    tensors[name] = tensors[name] + 0.01
    other = folder / "tuned.safetensors"
    save_file(tensors, other)
    return other


@needs_int8
@pytest.mark.parametrize("fused", [True, False], ids=["fused-quantise", "int16-quantise"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_integer_convolutions_compute_the_quantised_arithmetic(channels_last, fused, monkeypatch):
    """Three layers (one of them stride 2) through oneDNN agree with quantise -> dequantise -> float conv
    -> PReLU, layer by layer, including the scale that each layer's output carries for the next and the
    zero point taken out of the sums (inputs padded with it), by either way of re-quantising."""
    if fused and not int8._fused_quantize():
        pytest.skip("this PyTorch has no usable torch.quantize_per_tensor: the int16 path is the one in use")
    monkeypatch.setattr(int8, "_fused_quantize", lambda: fused)
    layers = _layers([16, 32, 32, 32], [2, 1, 1])
    x = torch.randn(2, 16, 24, 40, generator=torch.Generator().manual_seed(1))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y, ranges = x, []
        for conv, act in layers:  # ranges as calibration would find them, some values then saturate
            ranges.append((float(y.min()) * 0.8, float(y.max()) * 0.8))
            y = act(conv(y))
    chain = int8._Chain(layers, ranges, margin=1.0)
    with torch.inference_mode():
        first, out = chain(x)
        want_first, want_out = chain.reference(x)
    assert first.shape == (2, 32, 12, 20) and out.shape == (2, 32, 12, 20)
    # The same integers in, the same sums: only float rounding differs (and, rarely, a value that lands
    # on a rounding boundary and moves one step), so the difference is far below one activation step.
    step = min(layer.scale for layer in chain.layers)
    assert (first - want_first).abs().max() < 1e-3 * step * 255
    assert (out - want_out).abs().mean() < 1e-3 * float(want_out.abs().mean())
    with torch.no_grad():  # and the whole is near the float layers (7-bit weights, 8-bit activations)
        want = x
        for conv, act in layers:
            want = act(conv(want))
    assert psnr(out / want.abs().max(), want / want.abs().max()) > 30


def _wide_channel_layers() -> tuple[list[tuple[nn.Conv2d, nn.PReLU]], torch.Tensor, list]:
    """Three layers whose inputs each have one channel 40x wider than the rest (as the finest 4.0 block's
    first unit has), an input, and every layer's per-channel input range (lows, highs) as measured."""
    layers = _layers([16, 24, 24, 24], [2, 1, 1], seed=4)
    with torch.no_grad():
        for conv, _ in layers:  # each layer makes its output channel 0 wide, and reads it back 40x smaller
            conv.weight[0] *= 40
            conv.bias[0] *= 40
        for conv, _ in layers[1:]:
            conv.weight[:, 0] /= 40
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 16, 24, 40, generator=g)
    x[:, 0] *= 40
    ranges, y = [], x
    with torch.no_grad():
        for conv, act in layers:
            ranges.append((y.amin((0, 2, 3)), y.amax((0, 2, 3))))
            y = act(conv(y))
    return layers, x.contiguous(memory_format=torch.channels_last), ranges


@needs_int8
def test_equalized_channels_compute_the_same_arithmetic_and_lose_less():
    """With per-channel ranges the chain equalizes its channels (vsrife.int8._equalizer): oneDNN still
    computes what the float reference of those numbers does (the factors folded into the weights, each
    layer's output scales and the way in), and where one channel is far wider than the rest the result
    lies much nearer the float layers than with one range for the whole tensor."""
    layers, x, ranges = _wide_channel_layers()
    equalized = int8._Chain(layers, ranges, margin=1.0)
    whole = int8._Chain(layers, [(float(lo.min()), float(hi.max())) for lo, hi in ranges], margin=1.0)
    assert not torch.allclose(equalized.layers[1].input_factor, equalized.layers[1].input_factor[:, :1])
    with torch.inference_mode():
        first, out = equalized(x)
        want_first, want_out = equalized.reference(x)
        assert (first - want_first).abs().max() < 1e-3 * float(want_first.abs().max())
        assert (out - want_out).abs().mean() < 1e-3 * float(want_out.abs().mean())
        truth = x
        for conv, act in layers:
            truth = act(conv(truth))
        err_equalized = float((out - truth).abs().mean())
        err_whole = float((whole(x)[1] - truth).abs().mean())
    assert err_equalized < 0.5 * err_whole, (err_equalized, err_whole)
    # where the first layer's output is not wanted as it is, it comes out in the next layer's units (no
    # pass to convert it): the same last output, and its reference agrees
    lean = int8._Chain(layers, ranges, margin=1.0, keep_first=False)
    with torch.inference_mode():
        none, lean_out = lean(x)
        assert none is None
        assert (lean_out - out).abs().mean() < 1e-3 * float(out.abs().mean())
        assert (lean_out - lean.reference(x)[1]).abs().mean() < 1e-3 * float(out.abs().mean())
    # without any spread to take out, the factors are all one: the same chain as with one range
    flat = [(torch.full((lo.numel(),), -1.0), torch.full((lo.numel(),), 1.0)) for lo, _ in ranges]
    layers_alike = _layers([16, 24, 24, 24], [2, 1, 1])
    with torch.no_grad():
        for conv, _ in layers_alike:  # every input channel's weights equally large
            conv.weight.copy_(conv.weight.sign() * 0.05)
    chain = int8._Chain(layers_alike, flat, margin=1.0)
    assert all(torch.allclose(layer.input_factor, layer.input_factor.flatten()[0]) for layer in chain.layers)


@needs_int8
def test_weights_are_packed_for_each_input_size_and_give_the_same_arithmetic():
    """oneDNN chooses its kernel (and the weights' layout) by input size, so each layer keeps its weights
    packed per size, a bounded number of sizes; every size computes what the float reference does."""
    layers = _layers([8, 16, 16], [2, 1])
    chain = int8._Chain(layers, [(-1.0, 1.0), (-0.5, 1.5)], margin=1.0)
    g = torch.Generator().manual_seed(2)
    for h, w in ((12, 20), (34, 60), (12, 20)):
        x = (torch.rand(1, 8, h, w, generator=g) * 2 - 1).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            first, out = chain(x)
            want_first, want_out = chain.reference(x)
        assert (first - want_first).abs().max() < 1e-3 and (out - want_out).abs().mean() < 1e-3
    layer = chain.layers[1]
    assert sorted(layer._packed) == [(1, 16, 8, 12), (1, 16, 19, 32)]  # padded inputs of the two sizes
    for k in range(int8._PACKED_SIZES):  # many new sizes: the oldest are let go
        layer.packed((1, 16, 8 + k, 40))
    assert len(layer._packed) <= int8._PACKED_SIZES


def test_which_layers_run_on_8_bits_and_the_float_network_is_untouched(weights_40):
    if not int8.available():
        pytest.skip("this PyTorch has no working oneDNN int8 convolution (torch.ops.onednn)")
    quantised = Interpolator("4.0", weights=weights_40, device="cpu", int8=True)
    plain = Interpolator("4.0", weights=weights_40, device="cpu", int8=False)
    assert quantised.int8 and not plain.int8
    bodies = [b.quantized for b in quantised.network.blocks]
    assert all(body is not None for body in bodies)
    # the coarser blocks from their second stride-2 convolution on, the finest from its FINEST_START'th layer
    assert [body.start for body in bodies] == [0, 0, 0, int8.FINEST_START]
    finest = quantised.network.blocks[-1]
    assert bodies[-1].before == ([finest.conv0[1]] + list(finest.convblock))[: int8.FINEST_START]
    assert len(bodies[-1].chain.layers) == 9 - int8.FINEST_START
    assert all(b.quantized is None for b in plain.network.blocks)  # its own network, not the shared float one
    assert quantised.network.reduced_warps and not plain.network.reduced_warps
    assert "int8=True" in repr(quantised)


@needs_int8
def test_int8_is_on_by_default_only_where_it_is_measured(weights_40, tmp_path):
    """The default (None) takes the 8-bit blocks where the engine chooses the precision, on the CPU at flow
    scale 1 with weights whose ranges are known; any explicit choice, another scale or other weights keep
    the float network."""
    assert Interpolator("4.0", weights=weights_40, device="cpu").int8
    assert not Interpolator("4.0", weights=weights_40, device="cpu", dtype=torch.float32).int8
    assert not Interpolator("4.0", weights=weights_40, device="cpu", dtype=torch.bfloat16).int8
    assert not Interpolator("4.0", weights=weights_40, device="cpu", scale=0.5).int8
    assert not Interpolator("4.0", weights=weights_40, device="cpu", int8=False).int8
    other = _tuned(weights_40, tmp_path)  # weights without measured ranges: float, and no error
    assert not Interpolator("4.0", weights=other, device="cpu").int8
    # an explicit int8=True applies to an explicit dtype and another scale too
    assert Interpolator("4.0", weights=weights_40, device="cpu", dtype=torch.float32, scale=0.5, int8=True).int8


def test_int8_is_refused_with_the_reason(weights_40, tmp_path):
    with pytest.raises(ValueError, match="no 8-bit form"):
        Interpolator("4.25", device="cpu", int8=True, auto_download=False)  # refused before any download
    with pytest.raises(ValueError, match="compile"):
        Interpolator("4.0", weights=weights_40, device="cpu", int8=True, compile=True)
    with pytest.raises(ValueError, match="True, False or None"):
        Interpolator("4.0", weights=weights_40, device="cpu", int8="yes")
    other = _tuned(weights_40, tmp_path)
    with pytest.raises(ValueError, match="no measured 8-bit ranges"):
        Interpolator("4.0", weights=other, device="cpu", int8=True)


@needs_int8
def test_int8_keeps_frame_drop_quality_on_real_footage(weights_40):
    """Frame 2k+2 of bigbuckbunny (720p; not calibration footage) from frames 2k+1 and 2k+3: the 8-bit
    blocks stay within 0.1 dB of the same path in float on average, and close to its frames."""
    frames = decode_rgb(fetch_sample("bigbuckbunny", progress=False), 14)
    quantised = Interpolator("4.0", weights=weights_40, device="cpu", int8=True)
    plain = Interpolator("4.0", weights=weights_40, device="cpu", int8=False)
    loss, closeness = [], []
    for k in range(6):
        a, b, truth = frames[2 * k + 1], frames[2 * k + 3], frames[2 * k + 2]
        out_q, out_f = quantised.interpolate(a, b, 0.5), plain.interpolate(a, b, 0.5)
        loss.append(psnr(out_f, truth) - psnr(out_q, truth))
        closeness.append(psnr(out_q, out_f))
    assert sum(loss) / len(loss) <= 0.1, loss
    assert min(closeness) > 40, closeness


def test_reduced_warps_change_frames_little_on_real_footage(weights_40):
    """The half-size block's input warped at half size (what the 8-bit form does), in the float network on
    bigbuckbunny: frames within 40 dB of the full-size warp's, frame-drop PSNR within 0.05 dB of it on
    average; the full warp comes back when it is turned off (the same frames as a fresh float network)."""
    frames = decode_rgb(fetch_sample("bigbuckbunny", progress=False), 10)
    interp = Interpolator("4.0", weights=weights_40, device="cpu", dtype=torch.float32, int8=False)
    network = interp.network
    assert not network.reduced_warps
    changes, closeness = [], []
    try:
        for k in range(4):
            a, b, truth = frames[2 * k + 1], frames[2 * k + 3], frames[2 * k + 2]
            full = interp.interpolate(a, b, 0.5)
            network.reduced_warps = True
            reduced = interp.interpolate(a, b, 0.5)
            network.reduced_warps = False
            again = interp.interpolate(a, b, 0.5)
            assert torch.equal(full, again)
            assert not torch.equal(full, reduced)
            changes.append(psnr(reduced, truth) - psnr(full, truth))
            closeness.append(psnr(reduced, full))
    finally:
        network.reduced_warps = False  # the network is shared within the process
    assert abs(sum(changes) / len(changes)) <= 0.05, changes
    assert min(closeness) > 40, closeness


@needs_int8
def test_a_larger_frame_saturates_instead_of_failing(weights_40):
    """Input far outside the calibrated ranges (a flat frame against noise) saturates: finite frames in
    [0, 1], no error."""
    quantised = Interpolator("4.0", weights=weights_40, device="cpu", int8=True)
    g = torch.Generator().manual_seed(3)
    a = torch.zeros(1, 3, 96, 160)
    b = torch.rand(1, 3, 96, 160, generator=g)
    out = quantised.interpolate(a, b, 0.5)
    assert out.shape == (1, 3, 96, 160) and torch.isfinite(out).all()
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_the_catalogue_ranges_are_what_the_calibration_script_measures(tmp_path, weights_40, monkeypatch):
    """scripts/calibrate_int8.py, run on these weights into a copy of models/int8.json, writes the numbers
    the catalogue holds: the weights as fetched here have the digest they are kept under, and the numbers
    were measured, not edited by hand (within float rounding, which differs between CPUs)."""
    pytest.importorskip("av", reason="PyAV decodes the calibration footage: pip install av")
    known = int8.known_ranges(weights_digest(weights_40))
    assert known is not None, "the catalogue has no 8-bit ranges for the 4.0 weights as fetched here"
    script = Path(__file__).resolve().parent.parent / "scripts" / "calibrate_int8.py"
    spec = importlib.util.spec_from_file_location("calibrate_int8", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = tmp_path / "int8.json"
    shutil.copy(module.TABLE, table)
    monkeypatch.setattr(module, "TABLE", table)
    monkeypatch.setattr("sys.argv", ["calibrate_int8.py", "--weights", str(weights_40)])
    module.main()
    measured = json.loads(table.read_text("utf-8"))["weights"][weights_digest(weights_40)]["ranges"]
    assert measured.keys() == known.keys()
    for b in known:
        assert len(measured[b]) == len(known[b]) == 9, b
        for k, (got, want) in enumerate(zip(measured[b], known[b])):  # lows and highs of each input channel
            assert torch.allclose(torch.tensor(got), torch.tensor(want), rtol=1e-3, atol=1e-4), (b, k)
