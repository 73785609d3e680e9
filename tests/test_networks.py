"""Every release builds, takes its own state dict back (with or without the DDP prefix), refuses what does
not fit, and runs on odd frame sizes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

import vsrife
from vsrife.catalogue import get_release, release_names
from vsrife.engine import SCALES, clear_model_cache
from vsrife.networks import _resize, build_network, sampled_step, warp_pair
from vsrife.weights import WeightsError, normalise_state_dict

NAMES = release_names()


def random_state(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A plausible random state dict for ``name``: small weights so the flows stay finite."""
    g = torch.Generator().manual_seed(seed)
    state = build_network(get_release(name)).state_dict()
    return {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in state.items()}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("prefix", ["", "module."])
def test_state_dict_round_trip(name, prefix):
    release = get_release(name)
    state = random_state(name)
    loaded = normalise_state_dict({prefix + k: v for k, v in state.items()}, release)
    net = build_network(release)
    net.load_state_dict(loaded, strict=True)
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k


# IFRNet's upstream files hold the network alone: it drops nothing (tests/test_ifrnet.py refuses a RIFE
# teacher key in one)
@pytest.mark.parametrize("name", [n for n in NAMES if get_release(n).family != "ifrnet"])
def test_training_only_tensors_are_dropped(name):
    release = get_release(name)
    state = {"module." + k: v for k, v in random_state(name).items()}
    state["module.block_tea.conv0.0.0.weight"] = torch.zeros(3)
    state["module.teacher.lastconv.0.bias"] = torch.zeros(3)
    assert set(normalise_state_dict(state, release)) == set(build_network(release).state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_bad_keys_and_shapes_are_named(name):
    release = get_release(name)
    state = random_state(name)
    first = next(iter(state))
    wrong = dict(state)
    wrong[first] = torch.zeros(1, 2, 3)
    with pytest.raises(WeightsError, match=rf"wrong shapes: {first} \(1, 2, 3\)"):
        normalise_state_dict(wrong, release)
    extra = dict(state, **{"block9.weight": torch.zeros(1)})
    with pytest.raises(WeightsError, match=r"unexpected keys: block9\.weight"):
        normalise_state_dict(extra, release)
    missing = dict(state)
    del missing[first]
    with pytest.raises(WeightsError, match=rf"missing keys: {first}"):
        normalise_state_dict(missing, release)


def test_prefix_is_stripped_only_when_every_key_has_it():
    release = get_release("4.6")
    state = random_state("4.6")
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(state.items())}
    with pytest.raises(WeightsError, match="unexpected keys: module."):
        normalise_state_dict(mixed, release)


def test_other_architecture_is_refused():
    with pytest.raises(WeightsError, match="do not fit model 4.25"):
        normalise_state_dict(random_state("4.0"), get_release("4.25"))


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """A safetensors file of random weights per release, as a user's own file would be."""
    folder = tmp_path_factory.mktemp("weights")

    def make(name: str):
        path = folder / f"{name}.safetensors"
        if not path.exists():
            save_file(random_state(name), str(path))
        return path

    return make


@pytest.mark.parametrize("name", NAMES)
def test_odd_sizes_come_back_at_their_own_size(name, random_weights):
    release = get_release(name)
    it = vsrife.Interpolator(name, weights=random_weights(name), device="cpu", tta=release.tta)
    img0 = torch.rand(1, 3, 17, 33)
    img1 = torch.rand(1, 3, 17, 33)
    out = it.interpolate(img0, img1, 0.5)
    assert out.shape == (1, 3, 17, 33)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("name", ["4.0", "4.17", "4.25", "ifnet_m"])
def test_every_scale_runs(name, scale, random_weights):
    it = vsrife.Interpolator(name, weights=random_weights(name), device="cpu", scale=scale)
    out = it.interpolate(torch.rand(2, 3, 40, 70), torch.rand(2, 3, 40, 70), torch.tensor([0.25, 0.75]))
    assert out.shape == (2, 3, 40, 70)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in NAMES if not get_release(n).tta])
def test_tta_is_refused_where_the_architecture_has_none(name, random_weights):
    with pytest.raises(ValueError, match=f"model {name} has no tta"):
        vsrife.Interpolator(name, weights=random_weights(name), device="cpu", tta=True)


def test_bad_arguments_are_refused_before_any_work(random_weights):
    path = random_weights("4.0")
    with pytest.raises(ValueError, match="scale must be one of"):
        vsrife.Interpolator("4.0", weights=path, scale=3)
    with pytest.raises(ValueError, match="unknown model"):
        vsrife.Interpolator("5.0", weights=path)
    with pytest.raises(ValueError, match="dtype must be"):
        vsrife.Interpolator("4.0", weights=path, dtype=torch.int8)
    with pytest.raises(ValueError, match="not a torch device name|not available"):
        vsrife.Interpolator("4.0", weights=path, device="nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            vsrife.Interpolator("4.0", weights=path, device="cuda")
    with pytest.raises(WeightsError, match="does not exist"):
        vsrife.Interpolator("4.0", weights=path.with_name("missing.pkl"))
    with pytest.raises(WeightsError, match="do not fit model 4.25"):
        vsrife.Interpolator("4.25", weights=path)


def test_bad_timesteps_and_shapes_are_refused(random_weights):
    it = vsrife.Interpolator("4.0", weights=random_weights("4.0"), device="cpu")
    a = torch.rand(1, 3, 32, 32)
    for t in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            it.interpolate(a, a, t)
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        it.interpolate(torch.rand(3, 32, 32), a, 0.5)
    with pytest.raises(ValueError, match="frames differ in size: 32x32 and 32x64"):
        it.interpolate(a, torch.rand(1, 3, 64, 32), 0.5)
    with pytest.raises(ValueError, match="3 timesteps for 2 frame pairs"):
        it.interpolate(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), torch.tensor([0.2, 0.4, 0.6]))


def test_frames_of_different_sizes_are_refused_even_where_they_pad_alike(random_weights):
    it = vsrife.Interpolator("4.0", weights=random_weights("4.0"), device="cpu")  # pads to multiples of 32
    small, large = torch.rand(1, 3, 250, 250), torch.rand(1, 3, 256, 256)
    with pytest.raises(ValueError, match=r"frames differ in size: 250x250 and 256x256"):
        it.interpolate(small, large, 0.5)
    with pytest.raises(ValueError, match=r"frames differ in size: 250x250 and 256x256"):
        it.interpolate(it.prepare(small), it.prepare(large), 0.5)
    with pytest.raises(ValueError, match=r"2 frames and 1 frame"):
        it.interpolate(torch.rand(2, 3, 32, 32), torch.rand(1, 3, 32, 32), 0.5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_timesteps_that_are_not_finite_are_refused(random_weights, bad):
    """NaN compares false both ways, so a check of t <= 0 or t >= 1 let it through to a NaN frame."""
    it = vsrife.Interpolator("4.0", weights=random_weights("4.0"), device="cpu")
    a = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        it.interpolate(a, a, bad)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        it.interpolate(a, a, torch.tensor([0.5, bad]))


def test_clear_model_cache_also_forgets_the_flow_grids():
    from vsrife.networks import _base_grid, warp

    warp(torch.rand(1, 3, 8, 8), torch.zeros(1, 2, 8, 8))
    assert _base_grid.cache_info().currsize > 0
    assert _base_grid.cache_info().maxsize is not None  # bounded: one grid per frame size and device
    clear_model_cache()
    assert _base_grid.cache_info().currsize == 0


def test_a_warp_feeding_a_coarse_block_makes_only_the_pixels_the_block_reads():
    """Reducing by 4, 8 or 16 reads 2 of every s rows and columns; warping only those and halving gives
    exactly what warping everything and reducing gives (the blocks' inputs are built this way)."""
    g = torch.Generator().manual_seed(5)
    pair = torch.rand(2, 6, 64, 96, generator=g)
    flow = torch.randn(2, 4, 64, 96, generator=g) * 6
    for s in (4.0, 8.0, 16.0):
        assert sampled_step(s, 64, 96) == int(s)
        sampled = warp_pair(pair, flow, s)
        assert sampled.shape == (2, 6, 2 * 64 // int(s), 2 * 96 // int(s))
        assert torch.equal(_resize(sampled, 0.5), _resize(warp_pair(pair, flow), 1 / s))
    # where every pixel is read (scale 1 or 2), or the map does not divide, the whole map is warped
    for s, h, w in ((1.0, 64, 96), (2.0, 64, 96), (4.0, 66, 96), (0.5, 64, 96)):
        assert sampled_step(s, h, w) is None
    assert torch.equal(warp_pair(pair, flow, 2.0), warp_pair(pair, flow))


def test_sampled_warps_carry_gradients_like_full_ones():
    """Training runs the same sampled warps: the gradient reaching the flow is the full warp's."""
    g = torch.Generator().manual_seed(6)
    pair = torch.rand(1, 6, 32, 32, generator=g)
    grads = []
    for sampled in (True, False):
        flow = (torch.randn(1, 4, 32, 32, generator=g.manual_seed(7)) * 3).requires_grad_()
        out = _resize(warp_pair(pair, flow, 4.0), 0.5) if sampled else _resize(warp_pair(pair, flow), 0.25)
        out.square().sum().backward()
        grads.append(flow.grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_a_block_given_its_flow_already_reduced_computes_the_same():
    """The 8-bit form reduces the flow to half size for its half-size warp and hands it to the block,
    which would otherwise reduce it again: the frame must be the same to the bit."""
    net = build_network(get_release("4.0"))
    net.load_state_dict(random_state("4.0", seed=3))
    block = net.blocks[2]
    g = torch.Generator().manual_seed(8)
    pair = torch.rand(1, 6, 32, 48, generator=g)
    flow = torch.randn(1, 4, 64, 96, generator=g) * 4
    mask = torch.randn(1, 1, 64, 96, generator=g)
    parts = (pair, torch.full((1, 1, 1, 1), 0.5), mask)
    with torch.inference_mode():
        own = block(parts, flow, 2.0)
        given = block(parts, flow, 2.0, _resize(flow, 0.5) * 0.5)
    for a, b in zip(own, given, strict=True):
        assert torch.equal(a, b)
    assert own[0].shape == flow.shape and own[0].abs().max() > 0
