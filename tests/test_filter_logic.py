"""Parts of the VapourSynth filter that need no VapourSynth core."""

import threading

from vsrife.vs_filter import _Bounded


def test_caches_are_bounded_and_keep_the_recent():
    computed = []

    def square(k):
        computed.append(k)
        return k * k

    cache = _Bounded(4)
    for i in range(12):
        assert cache.get(i, square) == i * i
    assert list(cache.items) == [8, 9, 10, 11]
    cache.get(8, square)  # recently used: kept, not computed again
    cache.get(12, square)
    assert list(cache.items) == [10, 11, 8, 12] and computed.count(8) == 1


def test_a_computation_runs_outside_the_lock():
    """A value whose computation waits on another thread's lookup must not deadlock (the filter fetches
    frames while computing, and the core may run that fetch on a thread that looks up the same cache)."""
    cache = _Bounded(4)
    inner_done = threading.Event()

    def compute(k):
        if k == 0:
            t = threading.Thread(target=lambda: (cache.get(1, compute), inner_done.set()))
            t.start()
            t.join(timeout=5)
        return k

    assert cache.get(0, compute) == 0
    assert inner_done.is_set()
