"""``core.rife.RIFE`` in any script: the native VapourSynth namespace that forwards to :func:`vsrife.RIFE`.

A namespace can only come from a plugin library, so ``vsrife plugin install`` compiles a small C file
(``rife_plugin.c``, shipped with vsrife) against the user's VapourSynth headers into a folder that
VapourSynth loads by itself. Its ``RIFE`` hands the clip and the arguments to :func:`create` here, which
maps them (vsrife's own names, and RIFE-ncnn-Vulkan's so that its scripts run unchanged) onto
:func:`vsrife.RIFE` and hands the resulting clip back. Nothing here runs at import time.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .catalogue import get_release

__all__ = [
    "ARGUMENTS",
    "NCNN_MODELS",
    "PluginError",
    "build",
    "create",
    "find_installed",
    "install",
    "plugin_arguments",
    "plugin_dir",
    "remove",
]

# The function's signature as VapourSynth reads it: vsrife's own parameters, then RIFE-ncnn-Vulkan's.
ARGUMENTS = (
    "clip:vnode;multi:int:opt;factor_num:int:opt;factor_den:int:opt;fps_num:int:opt;fps_den:int:opt;"
    "scale:float:opt;fp16:int:opt;tta:int:opt;release:data:opt;weights:data:opt;sc:int:opt;"
    "sc_threshold:float:opt;dedup:int:opt;dedup_threshold:float:opt;device:data:opt;"
    "model:int:opt;model_path:data:opt;gpu_id:int:opt;gpu_thread:int:opt;uhd:int:opt;skip:int:opt;"
    "skip_threshold:float:opt;list_gpu:int:opt;"
)
SOURCE = Path(__file__).with_name("rife_plugin.c")
PREFIX = "libvsrife_"  # installed files: libvsrife_<namespace>.so
NAMESPACE_PATTERN = re.compile(r"[a-z][a-z0-9_]*\Z")

# RIFE-ncnn-Vulkan's `model` index -> (release, tta). From index 11 on, its models come in pairs exported
# without and with upstream's "ensemble" (the flows of both frame orders averaged: vsrife's tta); 4.21 and
# later have no ensemble export. Indexes 0-10 are RIFE 1.x-3.x models that vsrife does not have.
NCNN_MODELS: dict[int, tuple[str, bool]] = {}
for _first, _name in zip(range(11, 63, 2), (
    "4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8", "4.9", "4.10", "4.11", "4.12", "4.12.lite",
    "4.13", "4.13.lite", "4.14", "4.14.lite", "4.15", "4.15.lite", "4.16.lite", "4.17", "4.17.lite", "4.18",
    "4.19", "4.20",
), strict=True):  # fmt: skip
    NCNN_MODELS[_first], NCNN_MODELS[_first + 1] = (_name, False), (_name, True)
NCNN_MODELS.update({63: ("4.21", False), 64: ("4.22", False), 65: ("4.22.lite", False), 66: ("4.23", False),
                    67: ("4.24", False), 68: ("4.24", True), 69: ("4.25", False), 70: ("4.25.lite", False),
                    71: ("4.25.heavy", False), 72: ("4.26", False), 73: ("4.26.heavy", False)})  # fmt: skip
del _first, _name


class PluginError(RuntimeError):
    """The plugin cannot be built, installed or removed; the message says why and what to do."""


# --- the call: RIFE-ncnn-Vulkan's and vsrife's arguments onto vsrife.RIFE -----------------------------------


def _one(args: dict[str, list], name: str) -> Any:
    values = args.get(name)
    if values is None:
        return None
    if len(values) != 1:
        raise ValueError(f"{name} takes one value, not {len(values)}")
    return values[0]


def plugin_arguments(args: dict[str, list]) -> dict[str, Any]:
    """The keyword arguments of :func:`vsrife.RIFE` for a ``core.<namespace>.RIFE`` call.

    ``args`` holds the call's arguments as VapourSynth passes them (every value a list). ValueError says
    what is wrong. ``list_gpu`` is not mapped here (it returns a text clip instead of interpolating).
    """
    unknown = set(args) - {part.split(":")[0] for part in ARGUMENTS.split(";") if part}
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(sorted(unknown))}")
    a = {name: _one(args, name) for name in args}
    out: dict[str, Any] = {}
    if a.get("model") is not None and a.get("release") is not None:
        raise ValueError("give release (a vsrife name such as '4.25') or model (RIFE-ncnn-Vulkan's index), not both")
    if a.get("model") is not None:
        if a["model"] not in NCNN_MODELS:
            known = f"{min(NCNN_MODELS)}-{max(NCNN_MODELS)}"
            raise ValueError(f"model {a['model']} is not a RIFE 4.x model (RIFE-ncnn-Vulkan's indexes {known} are; "
                             "0-10 are RIFE 1.x-3.x, which vsrife does not have); or name one with release='4.25'")  # fmt: skip
        out["model"], ensemble = NCNN_MODELS[a["model"]]
        if ensemble:
            if a.get("tta") == 0:
                raise ValueError(f"model {a['model']} is the ensemble (tta) export of {out['model']}; tta=0 contradicts it")
            out["tta"] = True
    elif a.get("release") is not None:
        get_release(a["release"])  # ValueError with the known names
        out["model"] = a["release"]
    if a.get("model_path") is not None:
        raise ValueError("model_path names a folder of ncnn models, which vsrife cannot run; "
                         "use release='4.25' (or model=N), or weights='file.pkl' for a PyTorch checkpoint")  # fmt: skip
    if a.get("multi") is not None and (a.get("factor_num") is not None or a.get("factor_den") is not None):
        raise ValueError("give multi or factor_num/factor_den, not both")
    if a.get("factor_num") is not None or a.get("factor_den") is not None:
        num = a["factor_num"] if a.get("factor_num") is not None else 2  # RIFE-ncnn-Vulkan's defaults
        den = a["factor_den"] if a.get("factor_den") is not None else 1
        if num <= 0 or den <= 0:
            raise ValueError("factor_num and factor_den must be positive")
        factor = Fraction(num, den)
        out["multi"] = int(factor) if factor.denominator == 1 else factor
    elif a.get("multi") is not None:
        out["multi"] = a["multi"]
    for name in ("fps_num", "fps_den", "weights", "sc_threshold", "dedup_threshold"):
        if a.get(name) is not None:
            out[name] = a[name]
    for name in ("fp16", "tta", "sc", "dedup"):
        if a.get(name) is not None and name not in out:
            out[name] = bool(a[name])
    if a.get("uhd") and a.get("scale") not in (None, 0.5):
        raise ValueError(f"uhd means scale=0.5; scale={a['scale']} contradicts it")
    if a.get("scale") is not None:
        out["scale"] = a["scale"]
    elif a.get("uhd"):
        out["scale"] = 0.5
    if a.get("gpu_id") is not None and a.get("device") is not None:
        raise ValueError("give device or gpu_id, not both")
    if a.get("gpu_id") is not None:
        out["device"] = f"cuda:{a['gpu_id']}"
    elif a.get("device") is not None:
        out["device"] = a["device"]
    # gpu_thread (VapourSynth's threads supply the parallel requests), skip and skip_threshold (identical
    # neighbours are always passed through; nearly identical ones are interpolated) have no effect here.
    return out


def create(namespace: str, args: dict[str, list]) -> None:
    """Called by the plugin's ``RIFE``: take the clip, build :func:`vsrife.RIFE`, hand the result back."""
    import vapoursynth as vs

    from .vs_filter import RIFE

    plugin = getattr(vs.core, namespace)
    clip = plugin.InternalTake()
    name = f"{namespace}.RIFE"
    try:
        if _one(args, "list_gpu"):
            result = clip.text.Text(_gpu_list())
        else:
            result = RIFE(clip, **plugin_arguments(args))
    except ValueError as e:
        raise vs.Error(f"{name}: {e}") from None
    except vs.Error as e:
        message = str(e)
        raise vs.Error(name + message[len("vsrife.RIFE") :] if message.startswith("vsrife.RIFE:") else message) from None
    plugin.InternalGive(clip=result)


def _gpu_list() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device; vsrife runs on the CPU here"
    return "\n".join(f"{i}: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count()))


# --- building and installing -------------------------------------------------------------------------------


def _library_name(namespace: str) -> str:
    return f"{PREFIX}{namespace}{'.dylib' if sys.platform == 'darwin' else '.so'}"


def _core_version() -> int | None:
    try:
        import vapoursynth as vs
    except ImportError:
        return None
    return int(vs.core.core_version.release_major)


def _conf_files() -> list[Path]:
    """The vapoursynth.conf that VapourSynth R66-R73 reads on Linux and macOS, first one found wins."""
    if os.environ.get("VAPOURSYNTH_CONF_PATH"):
        return [Path(os.environ["VAPOURSYNTH_CONF_PATH"])]
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return [base / "vapoursynth" / "vapoursynth.conf"]


def _conf_value(path: Path, key: str) -> str | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip() or None
    return None


def plugin_dir() -> Path:
    """The folder VapourSynth loads plugins from by itself, for the installation Python imports.

    R74 and later: ``$VAPOURSYNTH_EXTRA_PLUGIN_PATH`` if set, else ``<site-packages>/vapoursynth/plugins``.
    R66-R73: the ``UserPluginDir`` of vapoursynth.conf, else its ``SystemPluginDir``, else the system
    folder beside the core library (``<libdir>/vapoursynth``). PluginError where none is known.
    """
    version = _core_version()
    if version is None:
        raise PluginError("VapourSynth is not importable here; install it first (pip install \"vsrife[vs]\")")
    if version >= 74:
        extra = os.environ.get("VAPOURSYNTH_EXTRA_PLUGIN_PATH", "").split(os.pathsep)[0]
        if extra:
            return Path(extra)
        import vapoursynth

        return Path(vapoursynth.__file__).parent / "plugins"
    conf = _conf_files()[0]
    for key in ("UserPluginDir", "SystemPluginDir"):
        value = _conf_value(conf, key)
        if value:
            return Path(value).expanduser()
    library = _core_library()
    if library is not None:
        return library.parent / "vapoursynth"
    raise PluginError(f"cannot tell where VapourSynth R{version} loads plugins from: set UserPluginDir in {conf} "
                      "(e.g. UserPluginDir=~/.local/lib/vapoursynth), or pass --dir")  # fmt: skip


def _include_dirs() -> list[Path]:
    found: list[Path] = []
    pkg_config = shutil.which("pkg-config")
    if pkg_config:
        done = subprocess.run([pkg_config, "--cflags-only-I", "vapoursynth"], capture_output=True, text=True)
        if done.returncode == 0:
            found += [Path(flag[2:]) for flag in done.stdout.split() if flag.startswith("-I")]
    try:
        import vapoursynth as vs

        found.append(Path(vs.__file__).parent / "include")
        vs.core  # noqa: B018 - loads the core library, whose place tells where its headers are
    except ImportError:
        pass
    library = _core_library()
    if library:  # <prefix>/lib/libvapoursynth.so -> <prefix>/include/vapoursynth
        found.append(library.parent.parent / "include" / "vapoursynth")
    found += [Path(sysconfig.get_config_var("prefix") or sys.prefix) / "include" / "vapoursynth",
              Path("/usr/local/include/vapoursynth"), Path("/usr/include/vapoursynth")]  # fmt: skip
    return [d for d in found if (d / "VapourSynth4.h").is_file()]


def _core_library() -> Path | None:
    """The VapourSynth core library this process has loaded (Linux), if any."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if re.search(r"/libvapoursynth\.(so|dylib)", path):
            return Path(path)
    return None


def _compiler() -> str:
    for candidate in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if candidate and shutil.which(candidate):
            return shutil.which(candidate)  # type: ignore[return-value]
    raise PluginError("no C compiler found (cc, gcc or clang); install one (e.g. `apt install gcc`, "
                      "`xcode-select --install`) or set CC")  # fmt: skip


def build(namespace: str, dest: Path) -> Path:
    """Compile the plugin for ``namespace`` into the folder ``dest``; return the library's path."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("vsrife")
    except PackageNotFoundError:  # a source tree on sys.path
        __version__ = "0"
    if not NAMESPACE_PATTERN.match(namespace):
        raise PluginError(f"namespace {namespace!r} must be lower-case letters, digits and _, starting with a letter")
    includes = _include_dirs()
    if not includes:
        raise PluginError("VapourSynth's C headers (VapourSynth4.h) were not found through pkg-config or beside "
                          "the vapoursynth module; install VapourSynth's development files, or point "
                          "PKG_CONFIG_PATH at the folder holding vapoursynth.pc")  # fmt: skip
    cc = _compiler()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / _library_name(namespace)
    partial = dest / f".{target.name}.{os.getpid()}.partial"
    command = [cc, "-shared", "-fPIC", "-O2", "-std=gnu11", "-Wall", f"-I{includes[0]}",
               f'-DVSRIFE_NAMESPACE="{namespace}"', f'-DVSRIFE_ARGUMENTS="{ARGUMENTS}"',
               f'-DVSRIFE_VERSION="{__version__}"', str(SOURCE), "-o", str(partial)]  # fmt: skip
    if sys.platform.startswith("linux"):
        command.append("-ldl")
    try:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise PluginError(f"compiling the plugin failed:\n{done.stderr.strip()}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


@dataclass(frozen=True)
class Installed:
    path: Path
    namespace: str


def find_installed(folders: list[Path]) -> list[Installed]:
    """vsrife's plugin libraries in ``folders``."""
    found = []
    for folder in folders:
        for path in sorted(folder.glob(f"{PREFIX}*")) if folder.is_dir() else ():
            namespace = path.name[len(PREFIX) :].split(".")[0]
            if NAMESPACE_PATTERN.match(namespace) and not path.name.startswith("."):
                found.append(Installed(path, namespace))
    return found


def _namespace_owner(namespace: str) -> str | None:
    """The file of a loaded plugin other than vsrife's that holds ``namespace``, if any."""
    try:
        import vapoursynth as vs
    except ImportError:
        return None
    for plugin in vs.core.plugins():
        if plugin.namespace == namespace and not plugin.identifier.startswith("io.github.vsrife."):
            return getattr(plugin, "plugin_path", None) or plugin.identifier
    return None


def install(namespace: str = "rife", folder: Path | None = None) -> Path:
    """Build the plugin for ``namespace`` into ``folder`` (default: :func:`plugin_dir`); return its path."""
    owner = _namespace_owner(namespace)
    if owner:
        raise PluginError(f"the namespace {namespace!r} is taken by another plugin ({owner}; RIFE-ncnn-Vulkan uses "
                          f"'rife'), and VapourSynth loads one plugin per namespace. Install under another one, "
                          f"e.g. `vsrife plugin install --namespace vsrife` (then core.vsrife.RIFE), or remove "
                          f"that plugin first")  # fmt: skip
    return build(namespace, folder if folder is not None else plugin_dir())


def remove(namespace: str | None = None, folder: Path | None = None) -> list[Path]:
    """Remove vsrife's plugin (for ``namespace``, or every one) from ``folder``; return what was removed."""
    folders = [folder] if folder is not None else [plugin_dir()]
    removed = []
    for item in find_installed(folders):
        if namespace is None or item.namespace == namespace:
            item.path.unlink()
            removed.append(item.path)
    return removed
