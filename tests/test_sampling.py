import torch

from unils.sampling import apply_top_p, guided_logits, make_generator, sample_bits


def official_sample(logits_BLCV, top_p=0.97):
    """The official sampler, re-typed from the spec, drawing from the global RNG."""
    B, L, C, V = logits_BLCV.shape
    x = logits_BLCV.reshape(B, -1, V).clone()
    sorted_logits, sorted_idx = x.sort(dim=-1, descending=False)
    remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
    remove[..., -1:] = False
    x.masked_fill_(remove.scatter(sorted_idx.ndim - 1, sorted_idx, remove), -torch.inf)
    idx = torch.multinomial(x.softmax(dim=-1).view(-1, V), num_samples=1, replacement=True)
    return idx.reshape(B, L, C)


def test_top_p_drops_unlikely_bit_values():
    # p(low) = sigmoid(-4) ~ 0.018 <= 0.03 -> dropped; sigmoid(-3) ~ 0.047 -> kept
    logits = torch.tensor([[0.0, 4.0], [3.0, 0.0], [0.0, 0.0]])
    out = apply_top_p(logits, 0.97)
    assert out[0, 0] == float("-inf") and out[0, 1] == 4.0
    assert torch.isfinite(out[1]).all()
    assert torch.isfinite(out[2]).all()  # a tie keeps both


def test_cfg_scale_one_is_the_conditional_branch():
    logits = torch.randn(4, 5, 32, 2)
    out = guided_logits(logits, 2, 1.0, 1.0)
    assert torch.equal(out, logits[:2])
    g1 = [make_generator(7)]
    g2 = [make_generator(7)]
    cond_only = sample_bits(logits[:1], g1)
    assert torch.equal(sample_bits(guided_logits(logits[[0, 2]], 1, 1.0, 1.0), g2), cond_only)


def test_cfg_and_temperature_formula():
    logits = torch.randn(2, 3, 4, 2)
    out = guided_logits(logits, 1, 0.5, 2.0)
    expected = 2.0 * logits[:1] * 2 + (1 - 2.0) * logits[1:] * 2
    torch.testing.assert_close(out, expected)


def test_low_temperature_is_greedy():
    logits = torch.randn(1, 50, 32, 2, generator=torch.Generator().manual_seed(0))
    bits = sample_bits(guided_logits(logits, 1, 1e-4, 1.0), [make_generator(0)])
    assert torch.equal(bits, logits.argmax(-1))


def test_seeded_rows_reproduce_the_official_global_rng_draws():
    logits = torch.randn(1, 25, 32, 2)
    torch.manual_seed(123)
    expected = official_sample(logits.clone())
    got = sample_bits(logits, [make_generator(123)])
    assert torch.equal(got, expected)


def test_rows_use_their_own_generators():
    logits = torch.zeros(2, 10, 32, 2)  # fair coins
    a = sample_bits(logits, [make_generator(1), make_generator(2)])
    b = sample_bits(logits[:1], [make_generator(1)])
    c = sample_bits(logits[1:], [make_generator(2)])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], c[0])
    assert not torch.equal(a[0], a[1])


def test_bit_probabilities_greedy_where_scaled_logits_overflow():
    from unils.sampling import RowKnobs, bit_probabilities

    logits = torch.tensor(
        [[[[2.0, 1.0], [0.5, 3.0]]], [[[1.0, 1.5], [4.0, -4.0]]]]
    )  # [2 (cond, uncond), 1, 2, 2]
    # Temperature 1e-6 stays finite: the official arithmetic (scale, guide, top-p, softmax), a one-hot.
    near = bit_probabilities(logits, 1, RowKnobs.of([1e-6], [1.5], [0.97]))
    official = apply_top_p(guided_logits(logits, 1, 1e-6, 1.5), 0.97).softmax(-1)
    assert torch.equal(near, official)
    # 0 and 1e-300 overflow: greedy on the guided logits at temperature 1 (1.5*c - 0.5*u).
    guided = 1.5 * logits[:1] - 0.5 * logits[1:]
    want = torch.nn.functional.one_hot(guided.argmax(-1), 2).float()
    for t in (0.0, 1e-300, 1e-40):
        got = bit_probabilities(logits, 1, RowKnobs.of([t], [1.5], [0.97]))
        assert torch.equal(got, want), t
    # Drawing from a one-hot consumes the generator exactly as sampling does.
    g1, g2 = make_generator(3), make_generator(3)
    sample_bits(None, [g1], probs=want)
    sample_bits(guided_logits(logits, 1, 1.0, 1.5), [g2])
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_row_knobs_per_row_equal_each_row_alone():
    from unils.sampling import RowKnobs, bit_probabilities

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 5, 4, 2, generator=g) * 3  # 3 conditional rows, then their 3 unconditional rows
    temps, cfgs, tops = [0.7, 1.0, 0.0], [2.0, 1.0, 1.5], [0.9, 0.97, 0.0]
    together = bit_probabilities(logits, 3, RowKnobs.of(temps, cfgs, tops))
    for i in range(3):
        rows = logits[[i, 3 + i]] if cfgs[i] > 1 else logits[[i]]
        alone = bit_probabilities(rows, 1, RowKnobs.of([temps[i]], [cfgs[i]], [tops[i]]))
        assert torch.equal(together[i : i + 1], alone), i
