"""The engine's batcher: the one thread that runs the network for every caller on a device.

Everything here runs on the CPU with the real 4.0 weights and real footage; the batcher's logic (who
shares a call, what a failure reaches, what a cancelled request costs) is the same on a GPU, where the
streams and page-locked copies are added around it.
"""

from __future__ import annotations

import threading

import pytest
import torch

import vsrife
from vsrife.engine import Batcher, Frame
from vsrife.networks import HostCopy


@pytest.fixture()
def it(weights_40):
    return vsrife.Interpolator("4.0", device="cpu", dtype=torch.float32)


@pytest.fixture()
def calls(it):
    """The batch size of every network call, in order."""
    seen: list[int] = []
    hook = it.network.block0.register_forward_hook(lambda m, args, out: seen.append(len(args[0][0])))
    yield seen
    hook.remove()


def test_requests_from_many_threads_give_the_frames_of_one_at_a_time(it, bikes):
    batcher = Batcher(it.device, max_batch=3)
    frames = [batcher.prepare(it, image).result() for image in bikes[:7]]
    times = [0.5, 0.25, 0.75, 0.5, 0.1, 0.9]
    alone = [it.interpolate(frames[i], frames[i + 1], t) for i, t in enumerate(times)]
    results: list = [None] * len(times)
    start = threading.Barrier(len(times))

    def ask(i: int) -> None:
        start.wait()
        results[i] = batcher.interpolate(it, frames[i], frames[i + 1], times[i]).result()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(times))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, alone, strict=True):
        assert got.shape == want.shape and got.device.type == "cpu"
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)  # fp32 convolutions batched: rounding only


def test_requests_queued_together_share_a_call(it, bikes, calls):
    """A stream that submits without waiting (as `vsrife video` does) gets batches of max_batch."""
    batcher = Batcher(it.device, max_batch=2)
    block = threading.Event()
    batcher.prepare(it, bikes[0]).add_done_callback(lambda f: block.wait())  # holds the worker
    prepared = [batcher.prepare(it, image) for image in bikes[1:6]]
    futures = [batcher.interpolate(it, prepared[i], prepared[i + 1], 0.5) for i in range(4)]
    block.set()
    out = [f.result() for f in futures]
    assert calls == [2, 2]  # four pairs in two calls of two, none alone
    torch.testing.assert_close(out[3], it.interpolate(prepared[3].result(), prepared[4].result(), 0.5),
                               atol=1e-4, rtol=0)  # fmt: skip


def test_frames_of_another_size_or_model_are_not_mixed_into_a_batch(it, bikes, calls):
    small = [b[..., :64, :96] for b in bikes[:2]]
    batcher = Batcher(it.device, max_batch=4)
    block = threading.Event()
    batcher.prepare(it, bikes[0]).add_done_callback(lambda f: block.wait())
    big = [batcher.prepare(it, b) for b in bikes[:2]]
    little = [batcher.prepare(it, s) for s in small]
    futures = [batcher.interpolate(it, *big, 0.5), batcher.interpolate(it, *little, 0.5),
               batcher.interpolate(it, *big, 0.25)]  # fmt: skip
    block.set()
    shapes = [tuple(f.result().shape) for f in futures]
    assert shapes == [(1, 3, *bikes[0].shape[-2:]), (1, 3, 64, 96), (1, 3, *bikes[0].shape[-2:])]
    assert sorted(calls) == [1, 2]  # the two big pairs together, the small one alone


def test_a_failing_request_fails_alone(it, bikes):
    batcher = Batcher(it.device, max_batch=4)
    a, b = (batcher.prepare(it, x) for x in bikes[:2])
    with pytest.raises(ValueError, match="N x 3 x H x W"):
        batcher.prepare(it, torch.rand(3, 8, 8))  # not an image: refused at once, in the caller's thread
    mismatched = batcher.interpolate(it, a, batcher.prepare(it, bikes[2][..., :64, :64]), 0.5)
    fine = batcher.interpolate(it, a, b, 0.5)
    with pytest.raises(ValueError, match="one size"):
        mismatched.result()
    assert fine.result().shape == bikes[0].shape
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        batcher.interpolate(it, a, b, 1.5)


def test_out_of_memory_fails_only_the_pair_that_does_not_fit(it, bikes, monkeypatch):
    """A batch that runs out of device memory is retried pair by pair, so the error reaches only the
    frame whose own interpolation does not fit (here: the one at t = 0.7, as if it alone were too big)."""
    real = type(it).interpolate

    def tight(self, a, b, t):
        times = torch.as_tensor(t).reshape(-1)
        if len(times) > 1 or abs(float(times[0]) - 0.7) < 1e-6:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, a, b, t)

    monkeypatch.setattr(type(it), "interpolate", tight)
    batcher = Batcher(it.device, max_batch=3)
    block = threading.Event()
    batcher.prepare(it, bikes[0]).add_done_callback(lambda f: block.wait())
    a, b = (batcher.prepare(it, x) for x in bikes[:2])
    futures = {t: batcher.interpolate(it, a, b, t) for t in (0.3, 0.7, 0.5)}
    block.set()
    with pytest.raises(torch.OutOfMemoryError):
        futures[0.7].result()
    assert futures[0.3].result().shape == futures[0.5].result().shape == bikes[0].shape


def test_cancelled_requests_cost_nothing(it, bikes, calls):
    batcher = Batcher(it.device)
    block = threading.Event()
    batcher.prepare(it, bikes[0]).add_done_callback(lambda f: block.wait())
    a, b = (batcher.prepare(it, x) for x in bikes[:2])
    dropped = [batcher.interpolate(it, a, b, 0.5) for _ in range(3)]
    assert all(f.cancel() for f in dropped)
    kept = batcher.interpolate(it, a, b, 0.25)
    block.set()
    assert kept.result().shape == bikes[0].shape
    assert calls == [1]


def test_a_frame_that_failed_to_prepare_fails_its_pairs(it, bikes):
    batcher = Batcher(it.device)
    a = batcher.prepare(it, bikes[0])
    bad = batcher.prepare(it, torch.empty(1, 3, 8, 8, device="meta"))  # no data to copy: fails in the worker
    pair = batcher.interpolate(it, a, bad, 0.5)
    with pytest.raises(Exception) as raised:
        bad.result()
    with pytest.raises(type(raised.value)):
        pair.result()


def test_every_timestep_of_a_pair_in_one_call(it, bikes, calls):
    """multi > 2: the slots of one pair are one request and one batch, whatever max_batch says."""
    batcher = Batcher(it.device)
    a, b = (batcher.prepare(it, x) for x in bikes[:2])
    out = batcher.interpolate(it, a, b, (0.25, 0.5, 0.75)).result()
    assert out.shape == (3, *bikes[0].shape[1:]) and calls == [3]
    torch.testing.assert_close(out, it.interpolate(a.result(), b.result(), torch.tensor([0.25, 0.5, 0.75])))


def test_by_default_a_frame_never_depends_on_what_else_was_asked(it, bikes, calls):
    """Pairs are not batched together by default, so the timing of requests cannot change a pixel."""
    batcher = Batcher(it.device)
    block = threading.Event()
    batcher.prepare(it, bikes[0]).add_done_callback(lambda f: block.wait())
    frames = [batcher.prepare(it, x) for x in bikes[:4]]
    futures = [batcher.interpolate(it, frames[i], frames[i + 1], 0.5) for i in range(3)]
    block.set()
    results = [f.result() for f in futures]
    assert calls == [1, 1, 1]
    for i, got in enumerate(results):
        assert torch.equal(got, it.interpolate(frames[i].result(), frames[i + 1].result(), 0.5))


def test_one_batcher_per_device():
    assert Batcher.for_device(torch.device("cpu")) is Batcher.for_device(torch.device("cpu", 0))


def test_the_large_motion_decision_is_read_after_every_block_is_queued(it, bikes, monkeypatch):
    """4.0 reads its restart decision on the host; on a GPU that read waits for the device, so it comes
    only once the remaining blocks are queued behind it (the device never idles while the host decides)."""
    order: list[str] = []
    for i, block in enumerate(it.network.blocks):
        block.register_forward_hook(lambda m, args, out, i=i: order.append(f"block{i}"))
    real = HostCopy.result
    monkeypatch.setattr(HostCopy, "result", lambda self: (order.append("read"), real(self))[1])
    fast = bikes[4], torch.roll(bikes[4], shifts=80, dims=-1)
    it.interpolate(*fast, 0.5)
    assert order[:5] == ["block0", "block1", "block2", "block3", "read"]
    assert order[5:] == ["block0", "block1", "block2", "block3"]  # the restart, coarser, for this pair
    order.clear()
    it.interpolate(bikes[0], bikes[2], 0.5)
    assert order == ["block0", "block1", "block2", "block3", "read"]  # no restart: nothing more


def test_prepared_frames_are_frames(it, bikes):
    batcher = Batcher(it.device)
    frame = batcher.prepare(it, bikes[0].half()).result()  # RGBH planes as the filter hands them over
    assert isinstance(frame, Frame) and frame.image.dtype == torch.float32
    torch.testing.assert_close(frame.image, it.prepare(bikes[0].half()).image)


def test_closing_fails_what_is_queued_and_refuses_more(it, bikes):
    """At exit the batcher finishes the call in hand (a thread torn down inside torch aborts the
    process), fails what is still queued and takes nothing new."""
    batcher = Batcher(it.device)
    block, entered = threading.Event(), threading.Event()
    busy = batcher.prepare(it, bikes[0])
    busy.add_done_callback(lambda f: (entered.set(), block.wait()))
    assert entered.wait(timeout=60)  # the worker is in hand (held in the callback)
    queued = batcher.prepare(it, bikes[1])
    closer = threading.Thread(target=batcher.close)
    closer.start()
    block.set()
    closer.join(timeout=60)
    assert not closer.is_alive()
    assert isinstance(busy.result(), Frame)
    with pytest.raises(RuntimeError, match="closed"):
        queued.result()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.prepare(it, bikes[2])


def test_the_work_runs_with_the_callers_thread_count(it, bikes):
    """torch keeps its CPU thread count per thread; the worker takes the caller's, as if it ran there."""
    batcher = Batcher(it.device)
    seen = []
    hook = it.network.block0.register_forward_hook(lambda m, a, o: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    try:
        a, b = (batcher.prepare(it, x) for x in bikes[:2])
        torch.set_num_threads(1)
        batcher.interpolate(it, a, b, 0.5).result()
        torch.set_num_threads(2)
        batcher.interpolate(it, a, b, 0.5).result()
    finally:
        torch.set_num_threads(before)
        hook.remove()
    assert seen == [1, 2]
