"""`vsrife app`'s checks that need no browser and no Gradio: names, uploads, the page's arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from vsrife.app import App, safe_name
from vsrife.cli import CommandError


@pytest.mark.parametrize(
    "name, expected",
    [
        ("holiday.mp4", "holiday"),
        ("../../etc/passwd", "passwd"),
        ("..\\windows\\evil.mkv", "evil"),
        (".hidden.mp4", "hidden"),
        ("über café (1).mov", "ber_caf_1"),
        ("...", "video"),
        ("", "video"),
        ("a" * 200 + ".mp4", "a" * 60),
    ],
)
def test_a_file_name_never_becomes_a_path(name, expected):
    got = safe_name(name, "video")
    assert got == expected
    assert "/" not in got and "\\" not in got and not got.startswith(".")


@pytest.fixture
def app(tmp_path):
    return App(tmp_path / "root", max_upload_mb=1)


def test_uploads_must_be_the_apps_own_and_within_the_limit(app, tmp_path):
    job = app._job("session")
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x")
    with pytest.raises(CommandError, match="not an upload of this page"):
        app.upload(job, str(outside), "a video")
    with pytest.raises(CommandError, match="upload a video first"):
        app.upload(job, None, "a video")
    big = app.root / "upload" / "big.mp4"
    big.parent.mkdir()
    big.write_bytes(bytes(2**20 + 1))
    with pytest.raises(CommandError, match=r"big.mp4 is 1.0 MiB; this app takes uploads up to 1 MiB"):
        app.upload(job, str(big), "a video")
    small = big.with_name("small.mp4")
    small.write_bytes(b"x")
    assert app.upload(job, str(small), "a video") == small.resolve()


def test_the_page_runs_the_command_lines_own_arguments(app):
    args = app.video_args(Path("in.mp4"), Path("out.mp4"), model="4.0", rate="target fps", multi="2",
                          fps=" 60000/1001 ", scale="0.5", precision="fp32", tta=True, scenes=False,
                          scene_threshold=0.2, dedup=True, dedup_threshold=0.01)  # fmt: skip
    assert args.run.__name__ == "run_video"
    assert (args.fps, args.multi, args.scale, args.fp32, args.tta, args.no_sc, args.dedup) == (
        "60000/1001", "2", 0.5, True, True, True, True)  # fmt: skip
    assert (args.sc_threshold, args.dedup_threshold, args.model) == (0.2, 0.01, "4.0")


def test_a_failed_job_removes_its_folder_and_its_message_names_no_server_path(app, weights_40):
    fake = app.root / "upload" / "holiday.mp4"
    fake.parent.mkdir()
    fake.write_text("not a video")
    options = dict(model="4.0", rate="multiply", multi="2", fps="60", scale="1", precision="auto", tta=False,
                   scenes=True, scene_threshold=0.13, dedup=False, dedup_threshold=0.003)  # fmt: skip
    with pytest.raises(CommandError) as failure:
        app.run_video("s", str(fake), options, lambda *a, **k: None)
    message = failure.value.page_message
    assert message.startswith("vsrife: error: cannot read holiday.mp4:"), message
    assert str(app.root) not in message
    assert list(app.jobs.iterdir()) == []


def test_cancel_before_the_job_starts_stops_it_before_any_work(app, weights_40):
    from vsrife.app import JobCancelled
    from vsrife.weights import fetch_sample

    clip = app.root / "upload" / "carphone.mp4"
    clip.parent.mkdir()
    clip.write_bytes(fetch_sample("carphone", progress=False).read_bytes())
    options = dict(model="4.0", rate="multiply", multi="2", fps="60", scale="1", precision="auto", tta=False,
                   scenes=True, scene_threshold=0.13, dedup=False, dedup_threshold=0.003)  # fmt: skip
    app.arm("s")
    app.cancel("s")  # pressed while the job waits in the queue
    with pytest.raises(JobCancelled):
        app.run_video("s", str(clip), options, lambda *a, **k: None)
    assert list(app.jobs.iterdir()) == []


def test_cancel_reaches_the_running_job_and_the_ones_queued_behind_it(app):
    """Two jobs asked for in one session (Interpolate clicked twice): Cancel stops both, and a job asked
    for afterwards starts uncancelled."""
    app.arm("s")
    app.arm("s")
    first = app._job("s")  # the first one starts; the second waits in the queue
    app.cancel("s")
    second = app._job("s")
    assert first.cancelled.is_set() and second.cancelled.is_set() and first.cancelled is not second.cancelled
    app._finish(first)
    app._finish(second)
    app.arm("s")
    third = app._job("s")
    assert not third.cancelled.is_set()
    app._finish(third)
    assert app._cancel == {} and app._started == set()
