"""Training: the traced forward, the teacher's premise, a real fine-tune, exact resume, DDP under torchrun,
and clear errors for bad data. CPU only, 64-pixel crops and a few steps each."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import vsrife
from vsrife.catalogue import get_release, release_names
from vsrife.evaluation import evaluate, psnr
from vsrife.networks import build_network
from vsrife.training import (
    Distillation,
    TrainError,
    TrainSettings,
    build_teacher,
    laplacian_l1,
    learning_rate,
    train,
)
from vsrife.triplets import DataError, ImageCache, augmented_batch, collect_triplets
from vsrife.weights import fetch_sample, fetch_teacher, import_weights, load_network, read_state_dict

from .test_networks import random_state

av = pytest.importorskip("av", reason="PyAV decodes the training footage: pip install av")


def settings(data, run, **kw) -> TrainSettings:
    base = dict(model="4.0", data=tuple(str(d) for d in data), run_dir=str(run), steps=4, batch_size=2, crop=64,
                eval_every=2, eval_limit=2, eval_crop=64, log_every=1, device="cpu", progress=False)  # fmt: skip
    base.update(kw)
    return TrainSettings(**base)


@pytest.fixture(scope="session")
def carphone():
    return fetch_sample("carphone", progress=False)


@pytest.fixture(scope="session")
def triplet_folder(tmp_path_factory, carphone):
    """Vimeo90K-style triplet folders (``<n>/im1.png, im2.png, im3.png``) of real carphone frames."""
    from PIL import Image

    from vsrife.video import frames_of

    root = tmp_path_factory.mktemp("triplets")
    frames = frames_of(carphone, 40)
    for n in range(12):
        for name, frame in zip(("im1.png", "im2.png", "im3.png"), frames[3 * n : 3 * n + 3]):
            (root / f"{n:02d}").mkdir(exist_ok=True)
            rgb = frame[0].mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(rgb).save(root / f"{n:02d}" / name)
    return root


# ------------------------------------------------------------------------------------------------ networks


@pytest.mark.parametrize("name", ["4.0", "4.6", "4.9", "4.25", "ifnet_m"])
def test_the_traced_forward_gives_the_inference_output(name):
    release = get_release(name)
    net = build_network(release)
    net.load_state_dict(random_state(name), strict=True)
    g = torch.Generator().manual_seed(1)
    img0, img1 = torch.rand(2, 1, 3, 64, 64, generator=g)
    t = torch.full((1, 1, 1, 1), 0.5)
    with torch.no_grad():
        inference = net(img0, img1, t)
        traced, steps = net.trace(img0, img1, t)
    assert torch.equal(inference, traced)
    assert len(steps) == len(release.widths)
    assert all(f.shape == (1, 4, 64, 64) and m.shape == (1, 1, 64, 64) for f, m in steps)


@pytest.mark.parametrize("name", ["4.0", "4.25", "ifnet_m"])
def test_gradients_reach_every_trained_tensor(name):
    release = get_release(name)
    student = build_network(release).train().requires_grad_(True)
    student.load_state_dict(random_state(name), strict=True)
    teacher = build_teacher(release)
    model = Distillation(student, teacher, name == "ifnet_m", release.padding_multiple(1.0))
    g = torch.Generator().manual_seed(2)
    img0, img1, gt = torch.rand(3, 2, 3, 64, 64, generator=g)
    losses = model(img0, img1, gt, torch.full((2, 1, 1, 1), 0.5))
    sum(losses.values()).backward()
    missing = [k for k, p in student.named_parameters() if p.grad is None]
    assert not missing
    assert all(p.grad is not None for p in teacher.parameters())


def test_the_teacher_with_the_true_middle_frame_beats_the_student(weights_40, bikes):
    """The method's premise, on the real 4.0 weights and teacher and real triplets: the teacher, which also
    sees the ground truth, reconstructs far better, so the distillation term has somewhere to pull to."""
    release = get_release("4.0")
    tensors = fetch_teacher("4.0", progress=False)
    assert tensors is not None, "the 4.0 release carries block_tea"
    teacher = build_teacher(release)
    teacher.load_state_dict(tensors, strict=True)
    model = Distillation(load_network(release, weights_40), teacher, False, 32)
    student_db, teacher_db, distill = [], [], []
    with torch.no_grad():
        for k in range(1, 13, 3):
            a, gt, b = (f[..., :256, 64:576] for f in bikes[k - 1 : k + 2])
            out = model.outputs(a, b, gt, torch.full((1, 1, 1, 1), 0.5))
            student_db.append(psnr(out["student"], gt))
            teacher_db.append(psnr(out["teacher"], gt))
            distill.append(float(out["distill"]))
    assert np.mean(teacher_db) > np.mean(student_db) + 3, (student_db, teacher_db)
    assert min(distill) > 0
    # A fresh teacher starts from the student's own estimate: the same frame (only the student's earlier,
    # coarser blocks are pulled towards it at first).
    fresh = Distillation(model.student, build_teacher(release), False, 32)
    with torch.no_grad():
        out = fresh.outputs(a, b, gt, torch.full((1, 1, 1, 1), 0.5))
    assert torch.allclose(out["teacher"], out["student"], atol=1e-6)


def test_laplacian_loss_and_schedule():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 2, 3, 64, 64, generator=g)
    assert float(laplacian_l1(a, a)) == 0
    assert float(laplacian_l1(a, b)) > float(laplacian_l1(a, (a + b) / 2)) > 0
    # Every level is a band-pass (as upstream's pyramid, which keeps no low-pass residual): blind to an offset.
    assert float(laplacian_l1(a, a + 0.1)) < 1e-5
    assert learning_rate(0, 1000, 3e-4, 100) == 0
    assert learning_rate(50, 1000, 3e-4, 100) == pytest.approx(1.5e-4)
    assert learning_rate(100, 1000, 3e-4, 100) == pytest.approx(3e-4)
    assert learning_rate(1000, 1000, 3e-4, 100) == pytest.approx(3e-6)


# ------------------------------------------------------------------------------------------------ data


def test_mining_skips_cuts_holds_and_static_frames(tmp_path, carphone):
    from vsrife.triplets import MiningReport, mine_video
    from vsrife.video import frames_of

    live = frames_of(carphone, 12)
    report = MiningReport()
    assert mine_video(live, lambda i, x: tmp_path / f"{i}.png", report) == [(i, i + 1, i + 2) for i in range(10)]
    # Animation on twos: every drawing held for two frames gives triplets of drawings two frames apart.
    twos = [f for f in live[:6] for _ in range(2)]
    report = MiningReport()
    assert mine_video(twos, lambda i, x: tmp_path / f"{i}.png", report) == [(0, 2, 4), (2, 4, 6), (4, 6, 8), (6, 8, 10)]
    assert report.held == 6
    # A still shot gives nothing; a cut breaks the chain.
    report = MiningReport()
    assert mine_video([live[0]] * 8, lambda i, x: tmp_path / f"{i}.png", report) == []
    assert report.held == 7
    joined = live[:3] + [1 - f for f in live[3:6]]  # the negative: another scene, with the same motion
    report = MiningReport()
    assert mine_video(joined, lambda i, x: tmp_path / f"{i}.png", report) == [(0, 1, 2), (3, 4, 5)]
    assert report.cuts == 1


def test_batches_depend_only_on_seed_step_and_position(triplet_folder):
    data = collect_triplets([triplet_folder], triplet_folder / "unused")
    whole = augmented_batch(data.train, 5, 0, 4, global_batch=4, crop=64, seed=7, images=ImageCache())
    halves = [augmented_batch(data.train, 5, r * 2, 2, global_batch=4, crop=64, seed=7, images=ImageCache())
              for r in range(2)]  # fmt: skip
    for i in range(3):
        assert torch.equal(whole[i], torch.cat([halves[0][i], halves[1][i]]))
    other = augmented_batch(data.train, 6, 0, 4, global_batch=4, crop=64, seed=7, images=ImageCache())
    assert not torch.equal(whole[0], other[0])


def test_bad_data_is_refused_before_training(tmp_path, carphone):
    empty = tmp_path / "empty"
    empty.mkdir()
    one_frame = tmp_path / "one.mp4"
    with av.open(str(carphone)) as c, av.open(str(one_frame), "w") as out:
        frame = next(c.decode(video=0))
        v = out.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = frame.width, frame.height, "yuv420p"
        frame.pts = 0
        out.mux(v.encode(frame))
        out.mux(v.encode(None))
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(4096))
    cases = {empty: "empty folder", one_frame: "too few triplets", garbage: "not a readable video",
             tmp_path / "missing.mp4": "does not exist"}  # fmt: skip
    for data, message in cases.items():
        run = tmp_path / f"run-{data.name}"
        with pytest.raises(DataError, match=message):
            train(settings([data], run))
        assert not (run / "checkpoints").exists() and not (run / "weights.safetensors").exists()
    with pytest.raises(DataError, match="smaller than the 256x256 crop"):
        train(settings([carphone], tmp_path / "big-crop", crop=256))
    with pytest.raises(TrainError, match="exclude each other"):
        train(settings([carphone], tmp_path / "both", weights=str(carphone), from_scratch=True))
    # The command line says the same in one line, exit status 1.
    done = subprocess.run([sys.executable, "-m", "vsrife", "train", "--model", "4.0", "--data", str(garbage),
                           "-o", str(tmp_path / "cli-run"), "-q"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vsrife: error: ") and "not a readable video" in lines[0]


# ------------------------------------------------------------------------------------------------ runs


def test_fine_tuning_the_real_40_on_a_real_clip(tmp_path, weights_40, carphone, monkeypatch):
    run = tmp_path / "run"
    result = train(settings([carphone], run, steps=8, eval_every=4, eval_limit=4, eval_crop=None,
                            upstream_pickle=True))  # fmt: skip
    info = json.loads((run / "run.json").read_text())
    assert info["teacher"] == "from the checkpoint" and info["train_triplets"] > 50
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert {"loss", "reconstruction", "teacher", "distill", "lr", "psnr"} <= set(rows[-1])
    # The loss goes down: on the batch of the first step, the trained networks do better than the start.
    data = collect_triplets([carphone], run / "triplets")
    batch = augmented_batch(data.train, 0, 0, 2, global_batch=2, crop=64, seed=1234, images=ImageCache())
    release = get_release("4.0")
    student = build_network(release)
    student.load_state_dict(load_file(run / "weights.safetensors"))
    teacher = build_teacher(release)
    teacher.load_state_dict(torch.load(run / "checkpoints" / "step-0000008.pt", weights_only=True)["teacher"])
    with torch.no_grad():
        after = Distillation(student, teacher, False, 32)(*batch, torch.full((2, 1, 1, 1), 0.5))
    assert float(after["reconstruction"] + after["teacher"] + 0.01 * after["distill"]) < rows[0]["loss"]
    # Held-out PSNR at least the starting weights'.
    assert result.psnr_start is not None and result.psnr_end >= result.psnr_start
    # The weights load as they are, in the engine, the filter's loader and the cache import.
    it = vsrife.Interpolator(model="4.0", weights=run / "weights.safetensors", device="cpu", dtype=torch.float32)
    # (channels-last convolutions in the engine: the same up to rounding)
    assert evaluate(it, data.held_out[:4])["psnr"] == pytest.approx(result.psnr_end, abs=1e-3)
    monkeypatch.setenv("VSRIFE_MODEL_DIR", str(tmp_path / "models"))
    import_weights(run / "weights.safetensors", "4.0")
    upstream = read_state_dict(run / "flownet.pkl")
    assert all(k.startswith("module.") for k in upstream) and any(k.startswith("module.block_tea.") for k in upstream)
    import_weights(run / "flownet.pkl", "4.0")


def test_a_resumed_run_continues_exactly(tmp_path, weights_40, triplet_folder, monkeypatch):
    whole = train(settings([triplet_folder], tmp_path / "whole"))
    import vsrife.training as training

    real = training.augmented_batch

    def interrupted(triplets, step, *args, **kwargs):
        if step == 2:
            raise KeyboardInterrupt
        return real(triplets, step, *args, **kwargs)

    monkeypatch.setattr(training, "augmented_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(settings([triplet_folder], tmp_path / "resumed"))
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-0000002.pt"]
    monkeypatch.setattr(training, "augmented_batch", real)
    resumed = train(settings([triplet_folder], tmp_path / "resumed"))
    assert [m["step"] for m in resumed.metrics] == [1, 2, 3, 4]
    for key in ("loss", "lr", "reconstruction", "distill"):
        assert resumed.metrics[2][key] == whole.metrics[2][key], key
    a, b = load_file(tmp_path / "whole" / "weights.safetensors"), load_file(tmp_path / "resumed" / "weights.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(TrainError, match="holds another run"):
        train(settings([triplet_folder], tmp_path / "resumed", seed=5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_under_torchrun_match_one_process_on_the_whole_batch(tmp_path, weights_40, triplet_folder):
    common = ["--model", "4.0", "--data", str(triplet_folder), "--steps", "2", "--crop", "64", "--device", "cpu",
              "--eval-limit", "1", "--eval-crop", "64", "--lr", "1e-4", "-q"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(_free_port()), "-m", "vsrife", "train"]  # fmt: skip
    done = subprocess.run([*launch, *common, "--batch-size", "1", "-o", str(tmp_path / "ddp")], env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    info = json.loads((tmp_path / "ddp" / "run.json").read_text())
    assert info["world_size"] == 2 and info["effective_batch"] == 2
    single = train(settings([triplet_folder], tmp_path / "single", steps=2, eval_limit=1, lr=1e-4, batch_size=2))
    half = train(settings([triplet_folder], tmp_path / "half", steps=2, eval_limit=1, lr=1e-4, batch_size=1))
    start = {k: v.float() for k, v in read_state_dict(weights_40).items()}
    ddp = load_file(tmp_path / "ddp" / "weights.safetensors")
    one = load_file(single.weights)
    other = load_file(half.weights)

    def distance(x, y) -> float:
        return float(torch.sqrt(sum(((x[k] - y[k]) ** 2).sum() for k in x)))

    moved = distance(one, start)
    assert moved > 0
    assert distance(ddp, one) < 1e-3 * moved, (distance(ddp, one), moved)
    assert distance(other, one) > 0.1 * moved  # one process on half the batch is not the same run
