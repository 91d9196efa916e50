"""UniLSConfig: presets, validation and the one place where sampling defaults and ranges live."""

import math

import pytest

from unils import ConfigError, UniLSConfig
from unils.config import SAMPLING_DEFAULTS, SAMPLING_RANGES, check_sampling
from unils.options import GenerationOptions, Sampling


def test_sampling_defaults_are_the_config_defaults_and_the_options_defaults():
    cfg = UniLSConfig()
    assert SAMPLING_DEFAULTS == {"temperature": 1.0, "top_p": 0.97, "cfg_scale": 1.5}
    assert (cfg.temperature, cfg.top_p, cfg.cfg_scale) == tuple(SAMPLING_DEFAULTS.values())
    opts = GenerationOptions().sampling(cfg)
    assert (opts.temperature, opts.top_p, opts.cfg_scale, opts.use_cache) == (1.0, 0.97, 1.5, True)
    assert Sampling() == opts


def test_resolve_takes_the_config_defaults_and_overrides():
    cfg = UniLSConfig(temperature=0.8, top_p=0.9, cfg_scale=2.0)
    assert GenerationOptions().sampling(cfg) == Sampling(temperature=0.8, top_p=0.9, cfg_scale=2.0)
    got = GenerationOptions(temperature=0.5, cfg_scale=1.0, use_cache=False).sampling(cfg)
    assert got == Sampling(temperature=0.5, top_p=0.9, cfg_scale=1.0, use_cache=False)
    assert not got.guided and GenerationOptions().sampling(cfg).guided
    assert GenerationOptions.resolve(cfg, temperature=0.5, cfg_scale=1.0, use_cache=False) == got


@pytest.mark.parametrize(
    "knob, value",
    [
        ("temperature", -1e-9),
        ("temperature", 1e31),  # 1/temperature underflows float32: every bit a coin flip
        ("temperature", math.inf),
        ("temperature", math.nan),
        ("top_p", 1.5),
        ("top_p", -0.1),
        ("cfg_scale", -1),
        ("cfg_scale", 1e308),  # cfg * logits overflows
        ("cfg_scale", True),
        ("top_p", "0.5"),
    ],
)
def test_out_of_range_knobs_are_refused_everywhere(knob, value):
    lo, hi = SAMPLING_RANGES[knob]
    with pytest.raises(ConfigError, match=knob) as err:
        check_sampling(**{knob: value})
    assert isinstance(err.value, ValueError)
    with pytest.raises(ConfigError, match=knob):
        GenerationOptions(**{knob: value})
    with pytest.raises(ConfigError, match=knob):
        UniLSConfig(**{knob: value}).validate()
    check_sampling(**{knob: lo})
    check_sampling(**{knob: hi})


def test_unknown_knob_is_named():
    with pytest.raises(ConfigError, match="'tempreature'"):
        check_sampling(tempreature=1.0)


def test_derived_sizes_of_the_presets():
    for cfg in (UniLSConfig.large(), UniLSConfig.small(), UniLSConfig.demo()):
        cfg.validate()
        assert cfg.window_frames == 100 and cfg.samples_per_frame == 640 and cfg.window_samples == 64000
    assert UniLSConfig.small().codec.scales == (1, 25, 50, 100)
    assert UniLSConfig.demo().audio_encoder.type == "mel"


def test_json_round_trip_keeps_sampling_defaults(tmp_path):
    cfg = UniLSConfig.small()
    cfg.cfg_scale = 2.5
    cfg.save(tmp_path / "config.json")
    back = UniLSConfig.load(tmp_path / "config.json")
    assert back == cfg and back.cfg_scale == 2.5


@pytest.mark.parametrize("value", [0, 0.0, 1e-300, 1e-6, 1e-3, 1e30])
def test_every_finite_temperature_the_official_accepts_is_accepted(value):
    check_sampling(temperature=value)  # 0 and overflowing ones decode greedily (tests/test_sampling.py)
    assert GenerationOptions(temperature=value).sampling(UniLSConfig()).temperature == value
