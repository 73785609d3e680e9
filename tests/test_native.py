"""core.rife.RIFE's argument mapping, without VapourSynth (the plugin itself: test_native_plugin.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from vsrife.catalogue import get_release
from vsrife.native import ARGUMENTS, NCNN_MODELS, plugin_arguments

# RIFE-ncnn-Vulkan's own signature (its plugin.cpp): every parameter must stand in ours, with its type.
NCNN_SIGNATURE = ("clip:vnode;model:int:opt;factor_num:int:opt;factor_den:int:opt;fps_num:int:opt;fps_den:int:opt;"
                  "model_path:data:opt;gpu_id:int:opt;gpu_thread:int:opt;tta:int:opt;uhd:int:opt;sc:int:opt;"
                  "skip:int:opt;skip_threshold:float:opt;list_gpu:int:opt;")  # fmt: skip


def call(**kwargs):
    return plugin_arguments({k: [v] for k, v in kwargs.items()})


def test_every_ncnn_parameter_is_accepted_with_its_type():
    ours = set(ARGUMENTS.split(";"))
    assert {part for part in NCNN_SIGNATURE.split(";") if part} <= ours


def test_ncnn_model_indexes_map_to_releases():
    assert sorted(NCNN_MODELS) == list(range(11, 74))
    for index, (name, tta) in NCNN_MODELS.items():
        release = get_release(name)
        assert not tta or release.tta, index  # an ensemble export only where the release has tta
    assert NCNN_MODELS[23] == ("4.6", False) and NCNN_MODELS[24] == ("4.6", True)
    assert NCNN_MODELS[69] == ("4.25", False) and NCNN_MODELS[72] == ("4.26", False)
    assert call(model=24) == {"model": "4.6", "tta": True}
    assert call(model=63) == {"model": "4.21"}
    for bad in (0, 5, 10, 74, -1):
        with pytest.raises(ValueError, match="11-73"):
            call(model=bad)


@pytest.mark.parametrize("given, expected", [
    ({"factor_num": 5, "factor_den": 2}, {"multi": Fraction(5, 2)}),
    ({"factor_num": 4, "factor_den": 2}, {"multi": 2}),
    ({"factor_num": 3}, {"multi": 3}),
    ({"multi": 3}, {"multi": 3}),
    ({"fps_num": 60000, "fps_den": 1001}, {"fps_num": 60000, "fps_den": 1001}),
    ({"uhd": 1}, {"scale": 0.5}),
    ({"uhd": 0}, {}),
    ({"uhd": 1, "scale": 0.5}, {"scale": 0.5}),
    ({"gpu_id": 1}, {"device": "cuda:1"}),
    ({"device": "cpu"}, {"device": "cpu"}),
    ({"tta": 1, "sc": 0, "fp16": 1, "dedup": 1}, {"tta": True, "sc": False, "fp16": True, "dedup": True}),
    ({"release": "ifnet_m", "weights": "w.pkl"}, {"model": "ifnet_m", "weights": "w.pkl"}),
    ({"sc_threshold": 0.2, "dedup_threshold": 0.01}, {"sc_threshold": 0.2, "dedup_threshold": 0.01}),
    ({"gpu_thread": 4, "skip": 1, "skip_threshold": 50.0}, {}),  # accepted, no effect (see the README)
])  # fmt: skip
def test_arguments_map_as_documented(given, expected):
    assert call(**given) == expected


@pytest.mark.parametrize("given, message", [
    ({"model": 11, "release": "4.0"}, "not both"),
    ({"model_path": "/models/rife-v4.6"}, "ncnn models"),
    ({"uhd": 1, "scale": 1.0}, "uhd means scale=0.5"),
    ({"gpu_id": 0, "device": "cpu"}, "device or gpu_id"),
    ({"multi": 2, "factor_num": 5}, "multi or factor_num"),
    ({"factor_num": 0}, "positive"),
    ({"model": 12, "tta": 0}, "contradicts"),
    ({"release": "9.9"}, "unknown model"),
])  # fmt: skip
def test_contradictions_are_refused(given, message):
    with pytest.raises(ValueError, match=message):
        call(**given)


def test_arrays_and_unknown_names_are_refused():
    with pytest.raises(ValueError, match="one value"):
        plugin_arguments({"multi": [2, 3]})
    with pytest.raises(ValueError, match="unknown argument"):
        plugin_arguments({"speed": [1]})


def test_a_missing_compiler_or_missing_headers_say_what_to_do(tmp_path, monkeypatch):
    from vsrife import native

    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run here
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(native.PluginError, match="no C compiler found .* install one"):
        native._compiler()
    monkeypatch.setattr(native, "_include_dirs", lambda: [])
    with pytest.raises(native.PluginError, match="VapourSynth4.h.*PKG_CONFIG_PATH"):
        native.build("rife", tmp_path)
    with pytest.raises(native.PluginError, match="lower-case letters"):
        native.build("Bad-Name", tmp_path)
    assert list(tmp_path.iterdir()) == []
