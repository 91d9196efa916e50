import pytest
import torch

from helpers import randomize_, tiny_config
from unils.generation import Sampling, initial_state, step
from unils.nn.codec import MotionCodec
from unils.nn.generator import Generator
from unils.sampling import make_generator


@pytest.fixture
def parts():
    cfg = tiny_config()
    codec = randomize_(MotionCodec(cfg.codec), seed=1).eval()
    gen = randomize_(Generator(cfg.generator, cfg.codec, 24), seed=2).eval()
    return codec, gen


def test_token_positions_follow_the_segment_centres(parts):
    _, gen = parts
    pos = (gen.token_pos - 200).tolist()
    assert pos[0:1] == [50]
    assert pos[1:6] == [10, 30, 50, 69, 89]
    assert pos[6:31] == [2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50, 53, 57, 61, 65, 69, 73, 77, 81, 85, 89, 93, 97]
    assert pos[31:81] == [2 * m + 1 for m in range(25)] + [2 * m for m in range(25, 50)]
    assert pos[81:181] == list(range(100))


def test_audio_positions_two_frames_per_motion_frame(parts):
    _, gen = parts
    pos = (gen.audio_positions(199, torch.device("cpu")) - 200).tolist()
    assert pos[:6] == [0, 0, 1, 1, 2, 2] and pos[-3:] == [98, 98, 99]
    assert len(pos) == 199


def test_reference_mask_is_block_causal_by_scale(parts):
    _, gen = parts
    m = gen.reference_mask(31, torch.device("cpu"))[0, 0]
    allowed = m == 0
    assert allowed[:200, :200].all() and not allowed[:200, 200:].any()  # prefix never sees current tokens
    assert allowed[200:, :200].all()
    assert allowed[201, 205] and allowed[205, 201]  # level 1 is bidirectional within itself
    assert allowed[201, 200] and not allowed[200, 201]  # level 1 sees sos, sos does not see level 1
    assert not allowed[203, 210]  # level 1 token does not see level 2


def test_cached_path_equals_full_recomputation(parts):
    codec, gen = parts
    g = torch.Generator().manual_seed(0)
    b = 3
    prefix = gen.condition_tokens(torch.randn(b, 100, 32, generator=g), torch.randn(b, 100, 32, generator=g))
    sf, of = torch.randn(b, 199, 24, generator=g), torch.randn(b, 199, 24, generator=g)
    bits = torch.randint(0, 2, (b, 181, 32), generator=g)
    inputs = codec.quantizer.accum_next_features(bits)
    audio = gen.audio_context(sf, of)
    cache = gen.prefill(prefix, audio)
    current = []
    for level in range(5):
        sl = slice(gen.offsets[level] - 1, gen.offsets[level + 1] - 1)
        tokens = gen.level_tokens(level, inputs[:, sl] if level else None, b)
        cached = gen.extend(tokens, level, cache, audio)
        current.append(tokens)
        ref = gen.forward_reference(prefix, torch.cat(current, 1), sf, of)[:, gen.offsets[level] :]
        torch.testing.assert_close(cached, ref, atol=2e-5, rtol=1e-5)
    assert cache.length == 381


@pytest.mark.parametrize("cfg_scale", [1.0, 1.5])
def test_step_cached_equals_reference_step(parts, cfg_scale):
    codec, gen = parts
    g = torch.Generator().manual_seed(5)
    sf, of = torch.randn(2, 199, 24, generator=g), torch.randn(2, 199, 24, generator=g)
    outs = {}
    for use_cache in (True, False):
        state = initial_state(codec, [make_generator(1), make_generator(2)])
        opts = Sampling(cfg_scale=cfg_scale, use_cache=use_cache)
        m1, b1, state = step(codec, gen, state, sf, of, opts)
        m2, b2, state = step(codec, gen, state, of, sf, opts)
        outs[use_cache] = (m1, b1, m2, b2)
    assert torch.equal(outs[True][1], outs[False][1]) and torch.equal(outs[True][3], outs[False][3])
    torch.testing.assert_close(outs[True][0], outs[False][0], atol=1e-5, rtol=1e-5)
    assert outs[True][0].shape == (2, 100, 108)


def test_chaining_feeds_decoded_motion_as_prev(parts):
    codec, gen = parts
    sf = torch.zeros(1, 199, 24)
    state = initial_state(codec, [make_generator(3)])
    motion, bits, new_state = step(codec, gen, state, sf, sf, Sampling())
    assert torch.equal(new_state.prev_motion, motion)
    assert new_state.windows_done == 1 and state.windows_done == 0
    torch.testing.assert_close(codec.decode(bits), motion)


def test_null_audio_context_is_cached_and_follows_weight_updates(parts):
    _, gen = parts
    a = gen.null_audio_context(2, 199, torch.device("cpu"))
    b = gen.null_audio_context(3, 199, torch.device("cpu"))
    assert torch.equal(a.self_kv[0][0][0], b.self_kv[0][0][0]) and b.self_kv[0][0].shape[0] == 3
    zeros = torch.zeros(1, 199, 24)
    fresh = gen.audio_context(zeros, zeros)
    assert torch.equal(a.other_kv[1][1][0], fresh.other_kv[1][1][0])
    with torch.no_grad():
        gen.blocks[0].self_audio_attn.k_proj.weight.add_(1.0)
    c = gen.null_audio_context(1, 199, torch.device("cpu"))
    assert not torch.equal(c.self_kv[0][0][0], a.self_kv[0][0][0])
