"""prefetch_to_device: a bounded queue filled by a background thread."""

import threading
import time

import jax
import numpy as np
import pytest

from funcnet._src.training.data import prefetch_to_device


def prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "funcnet-prefetch"]


def wait_for(condition, seconds=5.0):
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)
    return condition()


def test_batches_arrive_in_order_on_the_device():
    out = list(prefetch_to_device([np.full(2, i) for i in range(5)], size=2))
    assert [int(b[0]) for b in out] == [0, 1, 2, 3, 4]
    assert all(isinstance(b, jax.Array) for b in out)
    assert [b.shape for b in prefetch_to_device([np.zeros(1)], size=0)] == [(1,)]


def test_the_thread_reads_at_most_size_batches_ahead():
    read = []

    def source():
        for i in range(100):
            read.append(i)
            yield np.full(1, i)

    stream = prefetch_to_device(source(), size=3)
    next(stream)
    # One consumed, three queued, and one more the thread holds waiting for room.
    assert wait_for(lambda: len(read) == 5)
    time.sleep(0.1)
    assert len(read) == 5
    stream.close()


def test_an_error_in_the_source_reaches_the_consumer_after_the_batches_before_it():
    def source():
        yield np.zeros(1)
        yield np.ones(1)
        raise KeyError("decoding failed")

    stream = prefetch_to_device(source(), size=1)
    assert [float(b[0]) for b in (next(stream), next(stream))] == [0.0, 1.0]
    with pytest.raises(KeyError, match="decoding failed"):
        next(stream)
    assert wait_for(lambda: not prefetch_threads())


def test_stopping_early_stops_the_thread():
    def endless():
        while True:
            yield np.zeros(1)

    before = len(prefetch_threads())
    stream = prefetch_to_device(endless(), size=2)
    next(stream)
    stream.close()  # what a for loop left by break, or garbage collection, does
    assert wait_for(lambda: len(prefetch_threads()) == before)
