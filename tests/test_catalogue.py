import pytest

from vsrife.catalogue import get_release, get_sample, release_names, releases

UPSTREAM_NAMES = (
    "4.0 4.1 4.2 4.3 4.4 4.5 4.6 4.7 4.8 4.9 4.10 4.11 4.12 4.12.lite 4.13 4.13.lite 4.14 4.14.lite 4.15 "
    "4.15.lite 4.16.lite 4.17 4.17.lite 4.18 4.19 4.20 4.21 4.22 4.22.lite 4.23 4.24 4.25 4.25.lite "
    "4.25.heavy 4.26 4.26.heavy"
).split()
NO_TTA = {"4.21", "4.22", "4.22.lite", "4.23", "4.25", "4.25.lite", "4.25.heavy", "4.26", "4.26.heavy"}


def test_every_upstream_name_and_ifnet_m():
    assert sorted(release_names()) == sorted(UPSTREAM_NAMES + ["ifnet_m"])


@pytest.mark.parametrize("name", release_names())
def test_release_row_is_consistent(name):
    r = get_release(name)
    assert r.tta == (name not in NO_TTA)
    assert len(r.widths) == len(r.scales)
    assert r.modulo in (32, 64, 128)
    # the padded size must divide exactly through the coarsest block (scale ÷ 4 in its first convs)
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
