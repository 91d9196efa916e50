"""Offline generation: frame counts, chunk chaining, seeds, both people, bad input."""

import numpy as np
import pytest
import torch

from helpers import speech_like
from unils import AudioError, AudioFileError, ConfigError, UniLS, UniLSConfig
from unils.audio import save_audio
from unils.motion import Motion
from unils.sampling import official_skipped_draws
from unils.smoothing import savgol_filter


@pytest.mark.parametrize("seconds, frames", [(0.3, 8), (4.0, 100), (9.0, 225), (61.0, 1525)])
def test_exact_frame_counts(tiny_model, seconds, frames):
    audio = speech_like(seconds)
    motion = tiny_model.generate(audio, seed=0, cfg_scale=1.0 if seconds > 30 else 1.5)
    assert isinstance(motion, Motion)
    assert len(motion) == frames == -(-audio.shape[0] // 640)
    assert motion.fps == 25.0
    assert np.isfinite(motion.to_array()).all()


def test_frame_count_for_odd_sample_counts(tiny_model):
    assert len(tiny_model.generate(np.full(641, 0.1, np.float32), seed=0)) == 2


def test_seed_reproducibility(tiny_model):
    audio = speech_like(5.0)
    a = tiny_model.generate(audio, seed=3)
    b = tiny_model.generate(audio, seed=3)
    c = tiny_model.generate(audio, seed=4)
    assert a == b
    assert not a.allclose(c)


def test_windows_are_chained_through_previous_motion(tiny_model):
    # Window 2 is generated from window 1's decoded motion, not from zeros.
    audio = speech_like(8.0, seed=1)
    full = tiny_model.generate(audio, seed=1, smooth=False, cfg_scale=1.0).to_array()
    feats = tiny_model.engine.encode(torch.from_numpy(audio).view(2, 64000))
    silence = tiny_model.engine.silence()[None]
    opts = tiny_model.options(cfg_scale=1.0)
    state = tiny_model.engine.start([1])
    w1, state = tiny_model.engine.step(state, feats[:1], silence, opts)
    rng_after_w1 = state.generators[0].get_state()
    w2, state = tiny_model.engine.step(state, feats[1:], silence, opts)
    np.testing.assert_allclose(full, torch.cat([w1, w2], 1)[0].numpy(), atol=1e-5)
    unchained = tiny_model.engine.start([1])
    unchained.generators[0].set_state(rng_after_w1)  # same draws as window 2, zero prev
    w2_zero, _ = tiny_model.engine.step(unchained, feats[1:], silence, opts)
    assert not torch.allclose(w2, w2_zero, atol=1e-3)


def test_cached_and_reference_paths_agree(tiny_model):
    audio, partner = speech_like(6.0, seed=1), speech_like(6.0, seed=2)
    fast = tiny_model.generate(audio, partner, seed=5, smooth=False)
    ref = tiny_model.generate(audio, partner, seed=5, smooth=False, use_cache=False)
    assert fast.allclose(ref, atol=1e-4)


def test_smoothing_is_the_savgol_of_the_raw_output(tiny_model):
    audio = speech_like(3.0)
    raw = tiny_model.generate(audio, seed=2, smooth=False)
    smooth = tiny_model.generate(audio, seed=2, smooth=True)
    np.testing.assert_allclose(smooth.to_array(), savgol_filter(raw.to_array()), atol=1e-6)
    assert (
        np.abs(np.diff(smooth.to_array(), 2, axis=0)).mean()
        < np.abs(np.diff(raw.to_array(), 2, axis=0)).mean()
    )


def test_no_partner_means_a_silent_partner(tiny_model):
    audio = speech_like(4.5)
    alone = tiny_model.generate(audio, seed=9)
    silent = tiny_model.generate(audio, np.zeros_like(audio), seed=9)
    assert alone.allclose(silent, atol=1e-5)


def test_partner_audio_matters(tiny_model):
    audio = speech_like(4.0, seed=1)
    a = tiny_model.generate(audio, speech_like(4.0, seed=2), seed=1, smooth=False)
    b = tiny_model.generate(audio, np.sin(np.arange(64000) * 0.05).astype(np.float32), seed=1, smooth=False)
    assert not a.allclose(b)


def test_both_people_in_one_pass_equal_two_single_passes(tiny_model):
    a, b = speech_like(6.0, seed=1), speech_like(5.0, seed=2)
    first, second = tiny_model.generate_both(a, b, seed=11)
    single_a = tiny_model.generate(a, b, seed=11)
    single_b = tiny_model.generate(b, a, seed=12)
    assert first.allclose(single_a, atol=1e-4)
    assert second.allclose(single_b, atol=1e-4)
    assert len(first) == len(second) == 150  # partner padded to the longer track, as the official code


def test_sample_rate_and_stereo_inputs(tiny_model, tmp_path):
    audio16 = speech_like(2.0)
    stereo8 = np.stack([audio16[::2], audio16[::2]], axis=1)  # [N, 2] at 8 kHz
    path = tmp_path / "a.wav"
    save_audio(path, stereo8, 8000)
    m = tiny_model.generate(path, seed=0)
    assert len(m) == 50
    m2 = tiny_model.generate(torch.from_numpy(stereo8.T.copy()), sample_rate=8000, seed=0)
    assert m == m2


def test_three_line_usage(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "ckpt")
    save_audio(tmp_path / "me.wav", speech_like(1.0), 16000)
    model = UniLS.from_pretrained(tmp_path / "ckpt")
    motion = model.generate(tmp_path / "me.wav", seed=0)
    motion.save(tmp_path / "out.npz")
    assert Motion.load(tmp_path / "out.npz") == motion and len(motion) == 25


def test_style_and_prev_conditioning_change_the_result(tiny_model):
    audio = speech_like(4.0)
    base = tiny_model.generate(audio, seed=1, smooth=False)
    style = Motion.from_array(np.random.default_rng(0).normal(size=(120, 108)).astype(np.float32))
    styled = tiny_model.generate(audio, seed=1, smooth=False, style=style)
    prev = tiny_model.generate(audio, seed=1, smooth=False, prev_motion=style[:30])
    assert not base.allclose(styled) and not base.allclose(prev)
    with pytest.raises(ValueError, match="at least 100 frames"):
        tiny_model.generate(audio, style=style[:50])


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (np.zeros(0, np.float32), AudioError, "empty"),
        (np.full(16000, np.nan, np.float32), AudioError, "NaN"),
        (np.zeros(100, np.float32), AudioError, "short"),
        (np.zeros((2, 3, 16000), np.float32), AudioError, "shape|dimension"),
    ],
)
def test_bad_audio_is_refused(tiny_model, bad, error, message):
    with pytest.raises(error, match=message):
        tiny_model.generate(bad)


def test_unreadable_files(tiny_model, tmp_path):
    with pytest.raises(AudioFileError):
        tiny_model.generate(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all" * 100)
    with pytest.raises(FileNotFoundError):
        tiny_model.generate(junk)


def test_bad_sampling_knobs(tiny_model):
    for bad in (-1.0, float("nan"), float("inf"), 1e308, "1"):
        with pytest.raises(ConfigError, match="temperature"):
            tiny_model.generate(speech_like(1.0), temperature=bad)
    with pytest.raises(ConfigError, match="top_p"):
        tiny_model.generate(speech_like(1.0), top_p=1.5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_temperatures_decode_greedily_and_zero_is_greedy(tiny_model, dtype):
    tiny_model.set_precision(dtype)
    audio = speech_like(4.5, seed=3)
    greedy = tiny_model.generate(audio, temperature=0, seed=1, smooth=False)
    # Greedy decoding does not depend on the seed; a temperature whose scaled logits overflow float32
    # (the official sampler fails there on NaN probabilities) gives the same argmax decoding.
    assert greedy == tiny_model.generate(audio, temperature=0, seed=2, smooth=False)
    assert greedy == tiny_model.generate(audio, temperature=1e-300, seed=3, smooth=False)
    assert greedy == tiny_model.generate(audio, temperature=1e-45, seed=4, smooth=False)
    # A near-greedy temperature that stays finite samples as the official code (and lands on argmax).
    near = tiny_model.generate(audio, temperature=1e-6, seed=5, smooth=False)
    assert np.isfinite(near.to_array()).all()
    assert near == tiny_model.generate(audio, temperature=1e-6, seed=5, smooth=False)
    # ...while temperature 1 samples.
    assert tiny_model.generate(audio, temperature=1.0, seed=5, smooth=False) != greedy


def test_batch_of_independent_inputs_equals_single_calls(tiny_model):
    items = [
        speech_like(2.5, seed=1),
        (speech_like(5.0, seed=2), speech_like(4.0, seed=3)),
        (speech_like(1.0, seed=4), None),
    ]
    batch = tiny_model.generate_batch(items, seed=7)
    singles = [
        tiny_model.generate(items[0], seed=7),
        tiny_model.generate(*items[1], seed=8),
        tiny_model.generate(items[2][0], seed=9),
    ]
    assert [len(m) for m in batch] == [63, 125, 25]
    for got, want in zip(batch, singles):
        assert got.allclose(want, atol=1e-4)
    assert tiny_model.generate_batch([]) == []
    with pytest.raises(ValueError, match="seeds"):
        tiny_model.generate_batch(items, seed=[1, 2])
    with pytest.warns(DeprecationWarning, match="seed="):
        old = tiny_model.generate_batch(items[:1], seeds=[7])
    assert old[0] == batch[0]


def test_official_rng_emulation_skips_the_pinned_wav2vec2_draws(tiny_model):
    # The official pinned environment draws once per wav2vec2 layer per encoded window before
    # sampling: 2 channels x 2 windows x 1 layer here. Emulating it equals skipping those draws.
    audio = speech_like(5.0)
    emulated = tiny_model.generate(audio, seed=5, official_rng=True)
    assert emulated == tiny_model.generate(audio, seed=5, official_rng=True)
    assert not emulated.allclose(tiny_model.generate(audio, seed=5))
    engine = tiny_model.engine
    raw = engine.run([audio], [(0, None)], engine.start([5], skip_draws=4), tiny_model.options())
    manual = Motion.from_array(savgol_filter(raw[0, : len(emulated)]))
    assert manual == emulated
    with pytest.raises(ConfigError, match="official_rng"):
        mel = UniLS(UniLSConfig.demo())
        mel.generate(audio, official_rng=True)


def test_official_rng_skips_draws_only_where_the_official_samples_on_the_cpu():
    # transformers 5.3's LayerDrop check is torch.rand([]): the CPU generator, whatever the device.
    # On CUDA the official samples from the CUDA generator, which those draws never touch.
    assert official_skipped_draws("cpu", 5, 24) == 240
    assert official_skipped_draws(torch.device("cpu"), 1, 3) == 6
    assert official_skipped_draws("cuda", 5, 24) == 0
    assert official_skipped_draws(torch.device("cuda", 1), 5, 24) == 0
    assert official_skipped_draws("mps", 5, 24) == 0


@pytest.mark.slow
def test_compiled_model_equals_eager(tiny_model):
    """torch.compile (optional speed-up) keeps the numbers and the parameter names."""
    a, b = speech_like(5.0), speech_like(5.0, seed=1)
    eager = tiny_model.generate(a, b, seed=0, smooth=False).to_array()
    keys = list(tiny_model.state_dict())
    tiny_model.compile()
    compiled = tiny_model.generate(a, b, seed=0, smooth=False).to_array()
    np.testing.assert_allclose(compiled, eager, atol=1e-4)
    assert list(tiny_model.state_dict()) == keys
