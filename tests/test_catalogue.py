import pytest

from vsrife.catalogue import get_release, get_sample, release_names, releases

UPSTREAM_NAMES = (
    "4.0 4.1 4.2 4.3 4.4 4.5 4.6 4.7 4.8 4.9 4.10 4.11 4.12 4.12.lite 4.13 4.13.lite 4.14 4.14.lite 4.15 "
    "4.15.lite 4.16.lite 4.17 4.17.lite 4.18 4.19 4.20 4.21 4.22 4.22.lite 4.23 4.24 4.25 4.25.lite "
    "4.25.heavy 4.26 4.26.heavy"
).split()
NO_TTA = {"4.21", "4.22", "4.22.lite", "4.23", "4.25", "4.25.lite", "4.25.heavy", "4.26", "4.26.heavy"}
IFRNET_NAMES = ["ifrnet", "ifrnet_l", "ifrnet_s", "ifrnet_gopro", "ifrnet_l_gopro", "ifrnet_s_gopro"]


def test_every_upstream_name_ifnet_m_and_ifrnet():
    assert sorted(release_names()) == sorted(UPSTREAM_NAMES + ["ifnet_m"] + IFRNET_NAMES)


@pytest.mark.parametrize("name", release_names())
def test_release_row_is_consistent(name):
    r = get_release(name)
    assert r.tta == (name not in NO_TTA and r.family != "ifrnet")
    assert r.flow_scale == (r.family != "ifrnet")
    assert len(r.widths) == len(r.scales)
    assert r.modulo in (16, 32, 64, 128)
    if r.family == "ifrnet":  # the padded size must divide through the encoder's coarsest level (stride 16)
        assert r.padding_multiple(1.0) % r.scales[-1] == 0 and r.side > 0
    else:  # the padded size must divide exactly through the coarsest block (scale ÷ 4 in its first convs)
        assert r.padding_multiple(1.0) % (4 * r.scales[0]) == 0
    for source in r.sources:
        assert (source.url is None) != (source.wheel is None)
        assert source.sha256 is None or len(source.sha256) == 64


def test_names_are_forgiving_but_unknown_ones_are_refused():
    assert get_release("v4.25").name == "4.25"
    assert get_release("IFNET_M").name == "ifnet_m"
    with pytest.raises(ValueError, match="unknown model '4.99'.*4.25"):
        get_release("4.99")


def test_padding_multiple_grows_for_small_scales():
    r = get_release("4.25")
    assert r.padding_multiple(1.0) == 64
    assert r.padding_multiple(0.5) == 128
    assert r.padding_multiple(0.25) == 256
    assert r.padding_multiple(4.0) == 64


def test_the_40_weights_have_a_verified_registry_source():
    wheel_sources = [s for s in get_release("4.0").sources if s.wheel]
    assert wheel_sources and wheel_sources[0].sha256 and wheel_sources[0].size == 35037125


def test_samples():
    assert set(releases()) >= {"4.0"}
    assert get_sample("bikes").source.size == 509868
    with pytest.raises(ValueError, match="unknown sample"):
        get_sample("nope")


# sha256 of the flownet_v{name}.pkl release assets of HolyWu/vs-rife, as public code that downloads them pins
# them (a Nix expression for vsrife 5.7.0; efschu/htsglang's rife.py). Not re-checked here: no download.
PUBLISHED = {
    "4.6": "008646e761f0e67cb77f0c6c44cfe3c3e5a05d9d9465311b9681ca650ce030db",
    "4.15": "bf969affb3f6e9a09eea8c1da6c51bb22d6da45e92cafb9273689d05e2360dd2",
    "4.15.lite": "54fe3fb51efb880f64ffe2048a88220ad2b0b3d03f7cb800742e90821dcfb24f",
    "4.16.lite": "290cf343fb5a933f4503920ca07826c4d30561bd9b573b11b054b33ea0dee642",
    "4.17": "b1ee3186270312a38316e4d53c77b31a60062cfa5636e13d6f0a1dd89bb7b128",
    "4.17.lite": "9303f59001bc40e801273828cc0da84b8f7696a9485cd7c45e7796f20ed2f086",
    "4.18": "955fc8b552417ae4808999f5d671d024438e904c0bebf766ae6fb61806ce021c",
    "4.25": "6615790efd627772917205db291f51cd392528a157ecbb2ecaeec3bff8eb6de2",
    "4.26": "45c7f74156704769dc9f85cfcaf8552e1e926f9399dcfa3a553dee88fac6f53f",
}


@pytest.mark.parametrize("name", release_names())
def test_published_hashes_are_pinned_on_the_github_sources(name):
    github = [s for s in get_release(name).sources if s.url and s.url.startswith("https://github.com/HolyWu/")]
    if get_release(name).family in ("ifnet_m", "ifrnet"):  # published elsewhere (Google Drive, Dropbox)
        assert not github
        return
    [source] = github
    assert source.url.endswith(f"/flownet_v{name}.pkl")
    assert source.sha256 == PUBLISHED.get(name)  # None (trusted on first use) where nothing is published
