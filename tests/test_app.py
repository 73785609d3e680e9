"""`vsrife app` in a real browser: the real page served by the real program, driven by headless Chromium.

Chromium comes from the system (Debian's `chromium` package; `.ci/run` installs it where apt works, or
set VSRIFE_CHROMIUM to a Chromium binary); the tests skip, saying why, where no browser can start.
VSRIFE_SCREENSHOT=PATH keeps the screenshot of the finished video job there (README's docs/app.png).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from vsrife.video import probe
from vsrife.weights import fetch_sample

from .conftest import INTERRUPTIBLE

pytest.importorskip("gradio", reason='the app needs Gradio: pip install "vsrife[app]"')
pytest.importorskip("av", reason="the app decodes and encodes with PyAV: pip install av")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests drive Chromium with Playwright")

TIMEOUT_MS = 120_000


def _chromium() -> str | None:
    for candidate in (os.environ.get("VSRIFE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if candidate and (found := shutil.which(candidate)):
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set VSRIFE_CHROMIUM to one)")
    try:
        pw = sync_api.sync_playwright().start()
    except Exception as e:  # noqa: BLE001 - whatever stops the driver, the reason is the skip's
        pytest.skip(f"Playwright's driver cannot start: {e}")
    try:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
    except Exception as e:  # noqa: BLE001
        pw.stop()
        pytest.skip(f"Chromium ({exe}) cannot start here: {str(e).splitlines()[0]}")
    yield browser
    browser.close()
    pw.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, url: str, tmp: Path):
        self.proc, self.url, self.tmp = proc, url, tmp

    @property
    def root(self) -> Path:
        """The app's own temporary folder."""
        (root,) = self.tmp.glob("vsrife-app-*")
        return root

    def job_files(self) -> set[Path]:
        """What jobs wrote: their folders and files, and any temporary output anywhere in the app's folder.
        (Besides these it holds Gradio's copies of the uploads, which stay while the page shows them.)"""
        return set((self.root / "jobs").rglob("*")) | set(self.root.rglob("*.partial*"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, weights_40):
    """`vsrife app` as a user starts it, on a free port, with its temporary folder under the test's."""
    tmp = tmp_path_factory.mktemp("app")
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONUNBUFFERED="1")
    log = open(tmp.parent / "app-stderr.txt", "w")  # noqa: SIM115 - the server's terminal, for failures
    proc = subprocess.Popen([sys.executable, "-m", "vsrife", "app", "--port", str(_free_port()), "--max-upload-mb", "3"],
                            stdout=subprocess.PIPE, stderr=log, text=True, env=env, **INTERRUPTIBLE)  # fmt: skip
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("vsrife app: http://127.0.0.1:"):
        proc.kill()
        pytest.fail(f"the app did not start: {line!r} {Path(log.name).read_text()[-2000:]}")
    yield Server(proc, line.split()[2], tmp)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app; every request it makes off this machine is refused and recorded."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 1100})
    outside: list[str] = []

    def route(r):
        if r.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url)
    page.wait_for_selector("#run-video")
    yield page
    context.close()
    assert outside == [], "the page needs nothing from outside this machine"


def _upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.locator(f"#{elem_id}").get_by_text(path.name).first.wait_for()


def _choose_model(page, name: str) -> None:
    page.locator("#model input").click()
    page.get_by_role("option", name=f"{name} (cached)").click()


def test_the_page_interpolates_a_real_clip_2x(page, server, tmp_path):
    clip = fetch_sample("carphone", progress=False)  # 120 real frames, 176x144, 29.97 fps
    source = probe(clip)
    assert page.title() == "vsrife"
    _upload(page, "video-in", clip)
    _choose_model(page, "4.0")
    page.click("#run-video")
    status = page.locator("#video-status")
    status.get_by_text("frames at").wait_for()
    assert "240 frames at 59.94 fps (60000/1001)" in status.inner_text()
    page.locator("#video-out video").wait_for()
    with page.expect_download() as download:
        page.locator("#video-download a").first.click()
    got = tmp_path / download.value.suggested_filename
    download.value.save_as(got)
    assert got.name == "carphone_pristine_2x.mp4"
    info = probe(got)
    assert info["frames"] == 2 * source["frames"]
    assert info["fps"] == Fraction(60000, 1001)
    assert abs(info["duration"] - source["duration"]) < 0.05
    shot = Path(os.environ.get("VSRIFE_SCREENSHOT") or tmp_path / "app.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_a_text_file_named_mp4_shows_the_command_lines_error(page, server, tmp_path):
    fake = tmp_path / "holiday.mp4"
    fake.write_text("this is not a video\n" * 50)
    _upload(page, "video-in", fake)
    before = server.job_files()
    page.click("#run-video")
    status = page.locator("#video-status")
    status.get_by_text("vsrife: error:").wait_for()
    text = status.inner_text()
    assert text.startswith("vsrife: error: cannot read holiday.mp4"), text
    assert "Traceback" not in page.content() and str(server.root) not in text
    assert server.job_files() == before  # the job left nothing


def test_cancel_stops_the_job_and_leaves_nothing(page, server):
    clip = fetch_sample("bigbuckbunny", progress=False)  # 720p: about a minute of work on two cores
    _upload(page, "video-in", clip)
    _choose_model(page, "4.0")
    before = server.job_files()
    page.click("#run-video")
    page.get_by_text("fps, ETA").first.wait_for()  # frames are being written
    partial = [p for p in server.root.rglob("*") if ".partial" in p.name]
    assert partial, "a running job writes its output to a temporary file"
    page.click("#cancel-video")
    page.locator("#video-status").get_by_text("Cancelled").wait_for()
    assert server.job_files() == before


def test_an_upload_over_the_limit_is_refused_before_it_is_stored(page, server, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(4 * 2**20))  # the app was started with --max-upload-mb 3
    page.locator("#video-in input[type=file]").set_input_files(str(big))
    page.get_by_text("exceed the maximum allowed size of 3.0 Mb").first.wait_for()
    assert not [p for p in server.root.rglob("*") if p.is_file() and p.stat().st_size > 3 * 2**20]


def test_compare_shows_the_pair_and_the_picture_vsrife_demo_draws(page, server):
    _upload(page, "video-in", fetch_sample("carphone", progress=False))
    _choose_model(page, "4.0")
    page.get_by_role("tab", name="Compare").click()
    page.locator("#frame input").fill("10")
    page.click("#run-compare")
    status = page.locator("#compare-status")
    status.get_by_text("PSNR against the real frame").wait_for()
    rife, blend = (float(x) for x in re.findall(r"([0-9.]+) dB", status.inner_text()))
    assert rife > blend  # carphone's frame 11 from frames 10 and 12, as the engine's tests measure
    picture = page.locator("#comparison img")
    picture.wait_for()
    assert picture.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [3 * 176, 144 + 20]


def test_images_tab_gives_frames_a_preview_and_a_zip(page, server, tmp_path, bikes):
    from PIL import Image

    names = []
    for i, frame in ((0, bikes[0]), (1, bikes[2])):
        path = tmp_path / f"bikes{i}.png"
        Image.fromarray(frame[0].permute(1, 2, 0).mul(255).round().byte().numpy()).save(path)
        names.append(path)
    page.get_by_role("tab", name="Images").click()
    _choose_model(page, "4.0")
    _upload(page, "image-a", names[0])
    _upload(page, "image-b", names[1])
    page.locator("#amount input").fill("2")
    page.click("#run-images")
    page.locator("#images-status").get_by_text("5 frames").wait_for()
    assert page.locator("#gallery img").count() >= 5
    with page.expect_download() as download:
        page.locator("#images-zip a").first.click()
    got = tmp_path / "frames.zip"
    download.value.save_as(got)
    import zipfile

    assert sorted(zipfile.ZipFile(got).namelist()) == ["0.png", "1.png", "2.png", "3.png", "4.png"]


def test_ctrl_c_stops_the_app_and_removes_its_files(server):
    root = server.root
    server.proc.send_signal(signal.SIGINT)
    out, _ = server.proc.communicate(timeout=60)
    assert server.proc.returncode == 0
    assert "stopped" in out
    assert not root.exists()


def test_another_address_is_served_only_when_asked_with_a_warning_and_sigterm_stops_it(tmp_path, weights_40):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "vsrife", "app", "--host", "127.0.0.2", "--port", str(_free_port())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith("vsrife app: http://127.0.0.2:"), line
        assert len(list(tmp_path.glob("vsrife-app-*"))) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "anyone who can reach this address can upload files and run jobs" in err
    assert list(tmp_path.glob("vsrife-app-*")) == []


def test_a_taken_port_is_one_line_and_leaves_no_folder(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "vsrife", "app", "--port", str(port)], capture_output=True,
                              text=True, env=dict(os.environ, TMPDIR=str(tmp_path)), timeout=180)  # fmt: skip
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("vsrife: error:")]
    assert errors == [f"vsrife: error: cannot serve on 127.0.0.1:{port}: the port is taken or the address is not "
                      "this machine's; pick another with --port or --host"], done.stderr  # fmt: skip
    assert list(tmp_path.iterdir()) == []
