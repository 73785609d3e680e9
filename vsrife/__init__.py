"""vsrife: RIFE frame interpolation as a VapourSynth filter, a command line and a torch engine."""

from .catalogue import ReleaseInfo, get_release, release_names
from .engine import Interpolator
from .vs_filter import RIFE
from .weights import WeightsError, fetch_sample, fetch_weights, import_weights, model_dir

__all__ = [
    "Interpolator",
    "RIFE",
    "ReleaseInfo",
    "WeightsError",
    "fetch_sample",
    "fetch_weights",
    "get_release",
    "import_weights",
    "model_dir",
    "release_names",
]
