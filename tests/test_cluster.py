"""vsrife video --cluster on a real local Ray cluster (a head and two worker processes on 127.0.0.1), with
real footage, real weights and a real encoder: the joined output is the one-machine output."""

from __future__ import annotations

import os
import re
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vsrife.cli import main
from vsrife.cluster import EngineOptions, chunk_starts, run_batch
from vsrife.video import VideoJob, index_source, probe
from vsrife.weights import fetch_sample

av = pytest.importorskip("av", reason="the cluster runs vsrife video, which decodes and encodes with PyAV")
try:
    import ray
except ImportError:  # pragma: no cover - CI installs it with the [test] extra
    ray = None
needs_ray = pytest.mark.skipif(ray is None, reason='Ray is not installed: pip install "vsrife[cluster]"')

from tests.test_cli import frames, write_clip  # noqa: E402

LOSSLESS = ["-x", "qp=0", "--preset", "ultrafast", "--model", "4.0", "-q"]
JOB = VideoJob(multi=Fraction(2), codec="libx264", encoder_options={"qp": "0"}, preset="ultrafast")  # as LOSSLESS
ENGINE = EngineOptions(model="4.0")


# --- where chunks start (no Ray needed) ------------------------------------------------------------------


def test_chunks_start_at_cuts_else_keyframes_and_stay_bounded():
    assert chunk_starts(100, (0,), (), 200) == [0]  # short enough: one piece
    assert chunk_starts(100, (0,), (), 40) == [0, 40]  # no keyframe or cut in reach: exactly the length
    assert chunk_starts(100, (0, 30, 45, 90), (), 40) == [0, 45]  # the keyframe nearest 40, then the rest
    assert chunk_starts(100, (0, 30, 45, 90), (33,), 40) == [0, 33, 90]  # a scene cut first
    starts = chunk_starts(1000, tuple(range(0, 1000, 37)), (101, 620), 100)
    assert 101 in starts and 620 in starts
    sizes = np.diff([*starts, 1000])
    assert sizes.max() <= 150 and sizes[:-1].min() >= 50
    with pytest.raises(ValueError):
        chunk_starts(0, (0,), (), 10)


# --- a real cluster --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker processes on 127.0.0.1, kept small: no dashboard, a 100 MB object store."""
    if ray is None:
        pytest.skip('Ray is not installed: pip install "vsrife[cluster]"')
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)  # fmt: skip
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clips(tmp_path_factory, weights_40):
    """Two real clips with keyframes every 4 frames: carphone with a tone (29.97 fps), and carphone cut
    into bikes (25 fps, a scene cut after frame 7)."""
    folder = tmp_path_factory.mktemp("cluster-clips")
    carphone = frames(fetch_sample("carphone", progress=False), 16)
    bikes = frames(fetch_sample("bikes", progress=False), 8, size=(176, 144))
    write_clip(folder / "tone.mp4", carphone, Fraction(30000, 1001), tone=True, keyint=4)
    write_clip(folder / "cut.mp4", carphone[:8] + bikes, Fraction(25), tone=False, keyint=4)
    return [folder / "tone.mp4", folder / "cut.mp4"]


@pytest.fixture(scope="module")
def one_machine(clips, tmp_path_factory):
    """The same clips by plain `vsrife video`, with torch on one thread as each CPU task runs it (CPU float
    results depend on the thread count)."""
    out = tmp_path_factory.mktemp("one-machine")
    threads = torch.get_num_threads()
    torch.set_num_threads(ENGINE.threads)
    try:
        assert main(["video", *map(str, clips), "-o", f"{out}/", "--ext", "mkv", *LOSSLESS]) == 0
    finally:
        torch.set_num_threads(threads)
    return {p.stem: out / f"{p.stem}.mkv" for p in clips}


def assert_same_video(a: Path, b: Path) -> None:
    with av.open(str(a)) as x, av.open(str(b)) as y:
        assert [s.type for s in x.streams] == [s.type for s in y.streams]
        sa, sb = x.streams.video[0], y.streams.video[0]
        stamps = [(p.pts, p.duration) for p in x.demux(sa) if p.size]
        assert stamps == [(p.pts, p.duration) for p in y.demux(sb) if p.size]
    fa, fb = frames(a), frames(b)
    assert len(fa) == len(fb)
    for k, (u, v) in enumerate(zip(fa, fb)):
        assert np.array_equal(u, v), f"frame {k} differs"
    if "audio" in probe(a)["streams"]:
        with av.open(str(a)) as x, av.open(str(b)) as y:
            assert [bytes(p) for p in x.demux(audio=0)] == [bytes(p) for p in y.demux(audio=0)]


@needs_ray
def test_the_chunks_of_a_clip_start_at_its_cut_and_keyframes(clips):
    index = index_source(clips[1], JOB)
    assert index.cuts == (8,) and index.keyframes == (0, 4, 8, 12) and index.regular
    assert chunk_starts(index.count, index.keyframes, index.cuts, 6) == [0, 8]


@needs_ray
def test_a_batch_on_the_cluster_is_the_one_machine_output(cluster, clips, one_machine, tmp_path, capfd):
    out = tmp_path / "out"
    code = main(["video", *map(str, clips), "-o", f"{out}/", "--ext", "mkv", "--cluster", "auto",
                 "--chunk-seconds", "0.15", *LOSSLESS])  # fmt: skip
    err = capfd.readouterr().err
    assert code == 0, err
    for name, reference in one_machine.items():
        assert_same_video(reference, out / f"{name}.mkv")
    assert err.count("in 4 chunk(s)") == 2 and err.count("vsrife: ok") == 2  # each cut in four
    assert not (out / ".vsrife-work").exists()  # joined: nothing left behind
    assert sorted(p.name for p in out.iterdir()) == ["cut.mkv", "tone.mkv"]


@needs_ray
def test_a_worker_killed_while_it_works_leaves_a_correct_output(cluster, clips, one_machine, tmp_path):
    killed: list[int] = []

    def kill_once(made, pids):  # the worker that reported last on the second chunk, while it is unfinished
        for key, pid in pids.items():
            if not killed and key.endswith("chunk-00001.mkv") and not list(tmp_path.glob("*/*/chunk-00001*.json")):
                os.kill(pid, signal.SIGKILL)  # a worker of this test's cluster
                killed.append(pid)

    out = tmp_path / "tone.mkv"  # two chunks of 8 source frames: long enough to be caught at work
    results = run_batch([(clips[0], out)], JOB, ENGINE, chunk_seconds=0.3, on_progress=kill_once)
    assert killed, "no worker was killed"
    assert results[0].error is None, results[0].error
    assert_same_video(one_machine["tone"], out)


@needs_ray
def test_a_chunk_that_keeps_failing_fails_its_file_only(cluster, clips, one_machine, tmp_path):
    killed: list[int] = []

    def kill_the_only_try(made, pids):  # with retries=0 one death is a chunk that keeps failing
        for key, pid in pids.items():
            if not killed and key.startswith("cut.mkv") and key.endswith("chunk-00000.mkv"):
                os.kill(pid, signal.SIGKILL)  # a worker of this test's cluster
                killed.append(pid)

    outs = [tmp_path / "tone.mkv", tmp_path / "cut.mkv"]
    results = run_batch(list(zip(clips, outs)), JOB, ENGINE, chunk_seconds=0.3, retries=0,
                        on_progress=kill_the_only_try)  # fmt: skip
    assert killed
    assert results[0].error is None
    assert_same_video(one_machine["tone"], outs[0])
    assert re.fullmatch(r"chunk [01] \(source frames \d+-\d+\) failed: its worker died.*", results[1].error or "")
    assert not outs[1].exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cut")]  # no temporary output either


@needs_ray
def test_a_rerun_after_an_interrupted_batch_reuses_the_finished_chunks(cluster, clips, one_machine, tmp_path):
    work = tmp_path / "work"

    def interrupt_after_a_chunk(made, pids):
        if list(work.glob("*/chunk-*.json")):
            raise KeyboardInterrupt

    out = tmp_path / "cut.mkv"
    with pytest.raises(KeyboardInterrupt):
        run_batch([(clips[1], out)], JOB, ENGINE, work_dir=work, chunk_seconds=0.15,
                  on_progress=interrupt_after_a_chunk)  # fmt: skip
    assert not out.exists()
    finished = sorted(p.name for p in work.glob("*/chunk-*.json"))
    assert finished
    results = run_batch([(clips[1], out)], JOB, ENGINE, work_dir=work, chunk_seconds=0.15)
    assert results[0].error is None, results[0].error
    assert results[0].reused >= len(finished) and results[0].reused < results[0].chunks
    assert_same_video(one_machine["cut"], out)
    assert not work.exists()


@needs_ray
def test_a_video_shorter_than_a_chunk_runs_whole_on_one_worker(cluster, clips, one_machine, tmp_path):
    out = tmp_path / "tone.mkv"
    results = run_batch([(clips[0], out)], JOB, ENGINE, chunk_seconds=60)
    assert results[0].error is None and results[0].chunks == 1, results[0]
    assert_same_video(one_machine["tone"], out)  # audio and all: made by interpolate_video itself
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.mkv"]


def test_cluster_options_are_checked_before_anything_runs(clips, tmp_path, capfd):
    assert main(["video", str(clips[0]), "-o", str(tmp_path / "a.mkv"), "--chunk-seconds", "5", "-q"]) == 1
    assert "options of --cluster" in capfd.readouterr().err
    assert main(["video", str(clips[0]), "-o", str(tmp_path / "a.mkv"), "--cluster", "auto", "--device", "cpu"]) == 1
    assert "--device picks a device" in capfd.readouterr().err
    assert not list(tmp_path.iterdir())
