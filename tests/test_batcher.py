"""Continuous batching: sessions pushed from their own worker threads are stepped together, and give
exactly the frames they give alone (float32, CPU)."""

import threading

import numpy as np
import pytest

from helpers import speech_like
from unils import Motion, StreamError
from unils.serve.batcher import StepBatcher


def test_concurrent_sessions_are_batched_and_equal_their_solo_runs(tiny_model):
    n, block = 4, 1280
    audio = [(speech_like(2.0, seed=i), speech_like(2.0, seed=20 + i)) for i in range(n)]
    solo = []
    for i, (a, b) in enumerate(audio):
        with tiny_model.stream(seed=i, hop_frames=10) as s:
            parts = [s.push(a[k : k + block], b[k : k + block]) for k in range(0, a.shape[0], block)]
            solo.append(Motion.concatenate([*parts, s.flush()]))
    batcher = StepBatcher(tiny_model.engine, max_batch=8, gather_s=0.05)
    sessions = [tiny_model.stream(seed=i, hop_frames=10) for i in range(n)]
    results: list = [None] * n
    start = threading.Barrier(n)

    def worker(i):
        a, b = audio[i]
        start.wait()
        parts = [batcher.push(sessions[i], a[k : k + block], b[k : k + block]) for k in range(0, a.shape[0], block)]
        results[i] = Motion.concatenate([*parts, sessions[i].flush()])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    stats = batcher.stats()
    batcher.close()
    for got, want in zip(results, solo):
        assert got is not None and len(got) == len(want) == 50
        assert np.array_equal(got.to_array(), want.to_array())
    # 4 sessions x 5 hops: fewer batches than steps, several rows in some.
    assert stats.rows == 4 * 5 and stats.batches < stats.rows and stats.largest > 1
    with pytest.raises(StreamError, match="shutting down"):
        batcher.step(sessions[0])


def test_a_failing_session_fails_alone(tiny_model):
    batcher = StepBatcher(tiny_model.engine, gather_s=0.2)
    good, bad = tiny_model.stream(seed=1, hop_frames=25), tiny_model.stream(seed=2, hop_frames=25)
    a = speech_like(1.0, seed=1)
    for s in (good, bad):
        s.feed(a, a)

    def broken(*args):
        raise RuntimeError("boom")

    bad.step_inputs = broken  # this session's step fails, in the batch and alone
    errors = {}

    def run(name, s):
        try:
            batcher.step(s)
        except RuntimeError as exc:
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(n, s)) for n, s in (("good", good), ("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert list(errors) == ["bad"] and "boom" in str(errors["bad"])
    assert good.frames_committed == 25 and len(good.take()) == 21  # 4 frames held for smoothing
    assert batcher.stats().largest == 2
    batcher.close()
