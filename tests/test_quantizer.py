import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unils.nn.quantizer import MultiScaleBSQ, bsq_aux_loss


@pytest.fixture
def q():
    return MultiScaleBSQ((1, 5, 25, 50, 100), 32)


def test_layout(q):
    assert q.num_tokens == 181
    assert q.level_slice(2) == slice(6, 31)
    assert q.window == 100


def test_bits_roundtrip_matches_quantized_sum(q):
    feats = torch.randn(3, 100, 32, generator=torch.Generator().manual_seed(1))
    quantized, bits = q.quantize(feats)
    assert bits.shape == (3, 181, 32)
    assert set(bits.unique().tolist()) <= {0, 1}
    # The decoder input rebuilt from the bits equals the straight-through sum of the forward pass.
    torch.testing.assert_close(q.bits_to_features(bits), quantized, atol=1e-6, rtol=0)
    # Re-quantizing the sum feature of the bits reproduces the same bits (codes are self-consistent).
    _, again = q.quantize(q.bits_to_features(bits))
    assert (again == bits).float().mean() > 0.97


def test_first_level_is_sign_of_time_mean(q):
    feats = torch.randn(2, 100, 32, generator=torch.Generator().manual_seed(2))
    _, bits = q.quantize(feats)
    expected = (feats.mean(dim=1) > 0).int()
    assert torch.equal(bits[:, 0], expected)


def test_code_values(q):
    bits = torch.tensor([[[0, 1]]])
    codes = MultiScaleBSQ((1,), 2).bits_to_codes(bits)
    torch.testing.assert_close(codes, torch.tensor([[[-1.0, 1.0]]]) / 2**0.5)


def test_accum_next_matches_incremental(q):
    bits = torch.randint(0, 2, (2, 181, 32), generator=torch.Generator().manual_seed(3))
    full = q.accum_next_features(bits)
    assert full.shape == (2, 180, 32)
    acc = None
    pieces = []
    for level in range(4):
        acc = q.accumulate(acc, bits[:, q.level_slice(level)])
        pieces.append(q.next_level_inputs(acc, level + 1))
    assert torch.equal(torch.cat(pieces, 1), full)
    # prefix: levels 0..1 give inputs for levels 1..2 only
    assert q.accum_next_features(bits, last_level=1).shape == (2, 30, 32)
    # Hand check of level-1 inputs: level-0 code broadcast then pooled to 5 is the code itself.
    c0 = q.bits_to_codes(bits[:, :1])
    torch.testing.assert_close(full[:, :5], c0.expand(2, 5, 32))


def test_area_and_linear_are_the_documented_resamplers(q):
    x = torch.arange(100, dtype=torch.float32).view(1, 100, 1)
    pooled = F.interpolate(x.permute(0, 2, 1), size=5, mode="area").permute(0, 2, 1)
    assert pooled.flatten().tolist() == [9.5, 29.5, 49.5, 69.5, 89.5]


def test_flip_quantize_without_flips_equals_quantize(q):
    feats = torch.randn(2, 100, 32, generator=torch.Generator().manual_seed(4))
    _, bits = q.quantize(feats)
    true, flipped = q.flip_quantize(feats, 0.0, np.random.default_rng(0))
    assert torch.equal(true, bits) and torch.equal(flipped, bits)


def test_flip_quantize_flips_only_coarse_levels(q):
    feats = torch.randn(4, 100, 32, generator=torch.Generator().manual_seed(5))
    true, flipped = q.flip_quantize(feats, 0.3, np.random.default_rng(1), torch.Generator().manual_seed(0))
    assert torch.equal(true[:, 81:], flipped[:, 81:])  # last level never flipped
    rate = (true[:, :81] != flipped[:, :81]).float().mean().item()
    assert 0.0 < rate <= 0.3


def test_aux_loss_is_finite_and_differentiable():
    feats = torch.randn(2, 100, 32, requires_grad=True)
    loss = bsq_aux_loss(feats, (1, 5, 25, 50, 100), 32)
    loss.backward()
    assert torch.isfinite(loss) and feats.grad is not None and feats.grad.abs().sum() > 0
