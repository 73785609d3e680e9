"""vsrife: RIFE frame interpolation as a VapourSynth filter, a command line and a torch engine.

The public names below are loaded when first used, so ``import vsrife`` stays cheap and loads no torch
until something needs it (the ``vsrife`` program sets torch's threading up before that).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalogue import ReleaseInfo, get_release, release_names
    from .engine import Interpolator
    from .vs_filter import RIFE
    from .weights import WeightsError, fetch_sample, fetch_weights, import_weights, model_dir

_HOME = {
    "Interpolator": "engine",
    "RIFE": "vs_filter",
    "ReleaseInfo": "catalogue",
    "WeightsError": "weights",
    "fetch_sample": "weights",
    "fetch_weights": "weights",
    "get_release": "catalogue",
    "import_weights": "weights",
    "model_dir": "weights",
    "release_names": "catalogue",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'vsrife' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
