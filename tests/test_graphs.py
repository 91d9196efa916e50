"""Recorded window steps (unils.graphs): the same numbers as eager steps, one traceable graph per window,
the bookkeeping of buckets and recordings, and typed refusals. The CUDA capture itself runs in the
``gpu`` tests; on a CPU the recordings run eagerly over the same static buffers (``capture=False``)."""

import numpy as np
import pytest
import torch

from helpers import randomize_, speech_like, tiny_config
from unils import GenerationOptions, Motion, UniLS
from unils.errors import ConfigError, StreamError
from unils.graphs import StepGraphs, bucket_rows
from unils.levels import WindowInputs, noise_shapes, window
from unils.sampling import RowKnobs, draw_noise

PRECISIONS = ["float32", "bfloat16"]


def make_model(precision, device="cpu"):
    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval().to(device).set_precision(precision)


@pytest.fixture(params=PRECISIONS)
def model(request):
    return make_model(request.param)


def same(x: Motion, y: Motion) -> bool:
    return len(x) == len(y) and np.array_equal(x.to_array(), y.to_array())


def group_run(model, audio, opts):
    group = model.stream_group()
    sessions = [group.open(options=o, hop_frames=25) for o in opts]
    out = {s: [] for s in sessions}
    block = 1280
    for i in range(0, audio[0][0].shape[0], block):
        for s, (a, b) in zip(sessions, audio):
            s.feed(a[i : i + block], b[i : i + block])
        for s, m in group.step().items():
            out[s].append(m)
    result = [Motion.concatenate(out[s]) for s in sessions]
    group.close()
    return result


def test_bucket_rows():
    assert [bucket_rows(n, 256) for n in (1, 2, 3, 4, 5, 9, 200, 256)] == [1, 2, 4, 4, 8, 16, 256, 256]
    assert bucket_rows(257, 256) is None
    assert bucket_rows(5, 6) == 6  # the largest bucket is max_rows itself


def test_recorded_steps_equal_eager_steps(model):
    a, b = speech_like(6.3, seed=1), speech_like(6.3, seed=2)
    eager = model.generate(a, b, seed=7)
    eager_both = model.generate_both(a, b, seed=3, temperature=0.6)
    audio = [(speech_like(5.0, seed=i), speech_like(5.0, seed=10 + i)) for i in range(3)]
    opts = [
        GenerationOptions(seed=1),
        GenerationOptions(seed=2, temperature=0.5, top_p=0.9),
        GenerationOptions(seed=3, cfg_scale=1.0),
    ]
    eager_group = group_run(model, audio, opts)

    model.engine.use_graphs(capture=False)
    graphs = model.engine.graphs
    assert isinstance(graphs, StepGraphs)
    # One row (guided twins are not counted) and two rows: buckets filled exactly, the same numbers.
    assert same(model.generate(a, b, seed=7), eager)
    both = model.generate_both(a, b, seed=3, temperature=0.6)
    assert all(same(x, y) for x, y in zip(both, eager_both))
    # Three sessions in one step run in the bucket of four (one padding row).
    recorded_group = group_run(model, audio, opts)
    if model.precision.name == "float32":
        assert all(same(x, y) for x, y in zip(recorded_group, eager_group))
    else:  # a padded batch: within the precision's drift, as any batching
        for x, y in zip(recorded_group, eager_group):
            assert len(x) == len(y) and np.abs(x.to_array() - y.to_array()).max() < 1.0
    stats = graphs.stats()
    assert sorted(r for r, _, _ in stats.buckets) == [1, 2, 4]
    assert stats.encoder_buckets  # the audio windows of the steps were recorded too
    assert stats.captures == 3 + len(stats.encoder_buckets) and stats.eager == 0


def test_rows_over_the_largest_bucket_run_eagerly():
    model = make_model("float32")
    a, b = speech_like(4.0, seed=1), speech_like(4.0, seed=2)
    eager = model.generate_both(a, b, seed=5)
    model.engine.use_graphs(max_rows=1, capture=False)
    both = model.generate_both(a, b, seed=5)  # two rows > max_rows
    assert all(same(x, y) for x, y in zip(both, eager))
    stats = model.engine.graphs.stats()
    assert stats.buckets == () and stats.eager >= 1  # two rows > max_rows: the step ran eagerly


def test_recordings_are_dropped_when_the_weights_move():
    model = make_model("float32")
    a = speech_like(4.0, seed=1)
    model.engine.use_graphs(capture=False)
    first = model.generate(a, seed=1)
    graphs = model.engine.graphs
    captures = graphs.stats().captures
    model.set_precision("bfloat16")  # the generator's weights get new storage
    eager_bf16 = make_model("bfloat16").generate(a, seed=1)
    assert same(model.generate(a, seed=1), eager_bf16)
    assert graphs.stats().captures == 2 * captures
    assert not same(first, eager_bf16)
    with torch.no_grad():  # an in-place write (e.g. load_state_dict) records again too
        model.generator.sos_embed.add_(1.0)
    model.generate(a, seed=1)
    assert graphs.stats().captures == 3 * captures


def test_window_traces_as_one_graph_without_host_syncs():
    """The recorded function has no graph break: no value read back to the host, no branch on data."""
    model = make_model("float32")
    codec, gen = model.codec, model.generator
    rows, w = 2, codec.window
    feats = model.engine.encode(torch.from_numpy(np.stack([speech_like(4.0, seed=s) for s in (1, 2)])))
    zero = codec.sum_features(torch.zeros(rows, w, 108))
    inputs = WindowInputs(
        torch.randn(rows, w, 108) * 0.1, zero, zero, torch.tensor([True, False]), feats, feats.flip(0)
    )
    knobs = RowKnobs(
        inv_temperature=torch.tensor([1.0, 2.0]).view(-1, 1, 1, 1),
        cfg=torch.tensor([1.5, 1.0]).view(-1, 1, 1, 1),
        one_minus_cfg=torch.tensor([-0.5, 0.0]).view(-1, 1, 1, 1),
        threshold=torch.tensor([0.03, -float("inf")]).view(-1, 1, 1, 1),
        guided=True,
    )
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    noise = [draw_noise(gens, n, c, torch.device("cpu")) for n, c in noise_shapes(gen)]

    null = gen.null_audio_context(rows, feats.shape[1], feats.device)  # host-side cache: looked up before

    def fn(inp, kn, nz):
        return window(codec, gen, inp, kn, nz, True, torch.float32, null)

    torch._dynamo.reset()
    with torch.inference_mode():
        eager_motion, eager_bits = fn(inputs, knobs, noise)
        traced = torch.compile(fn, fullgraph=True, backend="eager", dynamic=False)
        motion, bits = traced(inputs, knobs, noise)
    torch._dynamo.reset()
    assert torch.equal(bits, eager_bits) and torch.equal(motion, eager_motion)


def test_window_touches_no_host_tensor_and_reads_nothing_back():
    """What a CUDA capture forbids, checked on the meta device: after one warm-up run (which fills the
    host-side caches, as the recording's warm-up does), the window neither builds, reads nor copies a
    host tensor (0-d scalars aside) and never reads a value back (``.item()``)."""
    from torch.utils._pytree import tree_leaves

    torch.manual_seed(0)
    model = randomize_(UniLS(tiny_config())).eval().to("meta")
    codec, gen = model.codec, model.generator
    rows, w, c = 2, codec.window, codec.config.code_dim
    meta = torch.device("meta")

    def zeros(*shape):
        return torch.zeros(*shape, device=meta)

    inputs = WindowInputs(
        zeros(rows, w, 108), zeros(rows, w, c), zeros(rows, w, c), torch.ones(rows, dtype=torch.bool, device=meta),
        zeros(rows, 200, gen.audio_dim), zeros(rows, 200, gen.audio_dim),
    )  # fmt: skip
    knobs = RowKnobs(*(zeros(rows, 1, 1, 1) for _ in range(4)), guided=True)
    noise = [zeros(rows, n * ch, 2) for n, ch in noise_shapes(gen)]
    null = gen.null_audio_context(rows, 200, meta)

    class Watch(torch.utils._python_dispatch.TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.host = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            leaves = tree_leaves((args, kwargs, out))
            if "_local_scalar_dense" in str(func) or any(
                isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.numel() > 1 for t in leaves
            ):
                self.host.append(str(func))
            return out

    def run():
        with torch.inference_mode():
            return window(codec, gen, inputs, knobs, noise, True, torch.float32, null)

    run()  # warm-up
    with Watch() as watch:
        motion, bits = run()
    assert watch.host == [] and motion.shape == (rows, w, 108) and bits.device.type == "meta"
    gen.__dict__.pop("_audio_positions")  # an uncached host-built tensor is seen
    with Watch() as watch:
        run()
    assert "aten.linspace.default" in watch.host


def test_typed_refusals():
    model = make_model("float32")
    with pytest.raises(ConfigError, match="CUDA device"):
        model.cuda_graphs()
    with pytest.raises(ConfigError, match="max_rows"):
        model.engine.use_graphs(max_rows=0, capture=False)
    with model.stream(seed=0):
        with pytest.raises(StreamError, match="open streaming session"):
            model.engine.use_graphs(capture=False)
    model.engine.use_graphs(capture=False)
    model.engine.use_graphs(False)
    assert model.engine.graphs is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", PRECISIONS)
def test_cuda_graphs_replay_the_eager_numbers(precision):
    model = make_model(precision, "cuda")
    a, b = speech_like(6.3, seed=1), speech_like(6.3, seed=2)
    eager = model.generate(a, b, seed=7)
    eager_both = model.generate_both(a, b, seed=3)
    audio = [(speech_like(5.0, seed=i), speech_like(5.0, seed=10 + i)) for i in range(3)]
    opts = [GenerationOptions(seed=i, temperature=0.5 + 0.2 * i) for i in range(3)]
    eager_group = group_run(model, audio, opts)
    model.cuda_graphs()
    assert model.engine.graphs.capture
    assert same(model.generate(a, b, seed=7), eager)  # a full bucket: the eager kernels
    assert all(same(x, y) for x, y in zip(model.generate_both(a, b, seed=3), eager_both))
    for x, y in zip(group_run(model, audio, opts), eager_group):  # padded: within drift
        assert len(x) == len(y) and np.abs(x.to_array() - y.to_array()).max() < 1.0
    assert [r for r, _, _ in model.engine.graphs.stats().buckets] == [1, 2, 4]
