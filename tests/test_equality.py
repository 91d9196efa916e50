"""What equals what, bit for bit, at the default precision (forced bfloat16, so it holds on every CPU kind)
as well as float32: generate vs stream, generate_both vs stream(both), batched calls vs themselves,
sessions stepped in a group vs alone, rows with different options in one step vs each alone."""

import numpy as np
import pytest
import torch

from helpers import randomize_, speech_like, tiny_config
from unils import GenerationOptions, Motion, UniLS

PRECISIONS = ["float32", "bfloat16"]


@pytest.fixture(params=PRECISIONS)
def model(request):
    torch.manual_seed(0)
    m = randomize_(UniLS(tiny_config())).eval()
    return m.set_precision(request.param)


def run_stream(session, a, b=None, block=4000):
    out = []
    for i in range(0, a.shape[0], block):
        out.append(session.push(a[i : i + block], *(() if b is None else (b[i : i + block],))))
    out.append(session.flush())
    if isinstance(out[0], tuple):
        return tuple(Motion.concatenate([o[j] for o in out]) for j in range(2))
    return Motion.concatenate(out)


def same(x: Motion, y: Motion) -> bool:
    return len(x) == len(y) and np.array_equal(x.to_array(), y.to_array())


def test_generate_and_stream_agree_bit_for_bit(model):
    a, b = speech_like(9.3, seed=1), speech_like(9.3, seed=2)
    offline = model.generate(a, b, seed=7)
    assert same(offline, model.generate(a, b, seed=7))  # determinism
    with model.stream(seed=7) as session:
        assert same(run_stream(session, a, b), offline)
    alone = model.generate(a, seed=3, smooth=False)
    with model.stream(partner=False, seed=3, smooth=False) as session:
        assert same(run_stream(session, a, block=999), alone)


def test_generate_both_and_stream_both_agree_bit_for_bit(model):
    a, b = speech_like(8.2, seed=1), speech_like(8.2, seed=2)
    first, second = model.generate_both(a, b, seed=10)
    with model.stream(both=True, seed=10) as session:
        s1, s2 = run_stream(session, a, b)
    assert same(s1, first) and same(s2, second)


def test_batched_entry_points_equal_themselves_and_singles(model):
    items = [(speech_like(5.0, seed=1), speech_like(5.0, seed=2)), speech_like(3.0, seed=3)]
    batch = model.generate_batch(items, seed=4)
    again = model.generate_batch(items, seed=4)
    assert all(same(x, y) for x, y in zip(batch, again))
    singles = [model.generate(*items[0], seed=4), model.generate(items[1], seed=5)]
    if model.precision.name == "float32":
        # float32 on CPU: the kernels do not depend on the batch size, so batching changes nothing.
        assert all(same(x, y) for x, y in zip(batch, singles))
    else:
        # Other precisions: within the drift of the precision (benchmarks page, drift table).
        for x, y in zip(batch, singles):
            assert np.abs(x.to_array() - y.to_array()).max() < 1.0


def test_sessions_in_a_group_equal_sessions_alone(model):
    audio = [(speech_like(6.0, seed=i), speech_like(6.0, seed=10 + i)) for i in range(3)]
    opts = [
        GenerationOptions(seed=1),
        GenerationOptions(seed=2, temperature=0.5, top_p=0.9),
        GenerationOptions(seed=3, cfg_scale=1.0),  # no guidance beside guided rows
    ]
    alone = []
    for (a, b), o in zip(audio, opts):
        with model.stream(options=o, hop_frames=25) as s:
            alone.append(run_stream(s, a, b, block=1280))
    with model.stream_group(max_batch=2) as group:
        sessions = [group.open(options=o, hop_frames=25) for o in opts]
        got = [[] for _ in sessions]
        for i in range(0, audio[0][0].shape[0], 1280):
            for s, (a, b) in zip(sessions, audio):
                s.feed(a[i : i + 1280], b[i : i + 1280])
            for s, frames in group.step().items():
                got[sessions.index(s)].append(frames)
        assert group.steps_run > 0 and group.rows_stepped > group.steps_run  # batches held several sessions
        for k, s in enumerate(sessions):
            got[k].append(s.flush())
    grouped = [Motion.concatenate(g) for g in got]
    for x, y in zip(grouped, alone):
        if model.precision.name == "float32":
            assert same(x, y)
        else:
            assert len(x) == len(y) and np.abs(x.to_array() - y.to_array()).max() < 1.0


def test_rows_with_their_own_options_in_one_step_equal_each_alone():
    torch.manual_seed(0)
    m = randomize_(UniLS(tiny_config())).eval()
    engine = m.engine
    feats = engine.encode(torch.from_numpy(np.stack([speech_like(4.0, seed=s) for s in range(3)])))
    opts = [
        GenerationOptions(temperature=t, cfg_scale=c, top_p=p)
        for t, c, p in [(1.0, 1.5, 0.97), (0.0, 2.0, 0.5), (0.6, 1.0, 0.0)]
    ]
    samplings = [o.sampling(m.config) for o in opts]
    states = [engine.start([s]) for s in (1, 2, 3)]
    together = engine.step_many(
        states, [feats[i : i + 1] for i in range(3)], [feats[[2 - i]] for i in range(3)], samplings
    )
    states = [engine.start([s]) for s in (1, 2, 3)]
    for i in range(3):
        motion, state = engine.step(states[i], feats[i : i + 1], feats[[2 - i]], samplings[i])
        assert torch.equal(together[i][0], motion) and state.windows_done == together[i][1].windows_done == 1
