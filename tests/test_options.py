"""The options object, typed errors for bad arguments, and the one precision record."""

import dataclasses

import numpy as np
import pytest
import torch

from helpers import speech_like
from unils import ConfigError, GenerationOptions, StreamError
from unils.options import merge_options, option_fields
from unils.precision import Precision


def test_options_merge_and_validate():
    base = GenerationOptions(temperature=0.7, seed=3)
    assert merge_options(base, {"seed": 4}) == GenerationOptions(temperature=0.7, seed=4)
    assert merge_options({"top_p": 0.5}, {}) == GenerationOptions(top_p=0.5)
    assert merge_options(None, {}) == GenerationOptions()
    with pytest.raises(ConfigError, match="unknown option.*tempreature"):
        merge_options(None, {"tempreature": 1.0})
    with pytest.raises(ConfigError, match="options must be"):
        merge_options(3, {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.seed = 1  # type: ignore[misc]
    assert {f.name for f in option_fields()} == {f.name for f in dataclasses.fields(GenerationOptions)}
    flags = {f.name: f.flag for f in option_fields()}
    assert flags["smooth"] == "--no-smooth" and flags["use_cache"] == "--no-cache" and flags["top_p"] == "--top-p"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"seed": "x"}, "seed must be an int"),
        ({"seed": True}, "seed must be an int"),
        ({"seed": -1}, "seed must be between"),
        ({"seed": (1, "a")}, "seed must be an int"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 1e308}, "temperature"),
        ({"top_p": 2}, "top_p"),
        ({"cfg_scale": "big"}, "cfg_scale"),
        ({"smooth": "yes"}, "smooth must be True or False"),
        ({"use_cache": 1}, "use_cache must be True or False"),
    ],
)
def test_bad_options_raise_config_errors(tiny_model, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        GenerationOptions(**kwargs)
    with pytest.raises(ConfigError, match=match):
        tiny_model.generate(speech_like(0.5), **kwargs)
    with pytest.raises(ConfigError, match=match):
        tiny_model.stream(**kwargs)


def test_bad_stream_and_precision_arguments_are_typed(tiny_model):
    with pytest.raises(ConfigError, match="hop_frames"):
        tiny_model.stream(hop_frames=0)
    with pytest.raises(ConfigError, match="hop_frames"):
        tiny_model.stream(hop_frames=2.5)
    with pytest.raises(ConfigError, match="partner=True"):
        tiny_model.stream(both=True, partner=False)
    with pytest.raises(ConfigError, match="sample_rate"):
        tiny_model.stream(sample_rate=0)
    with pytest.raises(ConfigError, match="float64"):
        tiny_model.set_precision("float64")
    with pytest.raises(ConfigError, match="not supported"):
        tiny_model.set_precision(torch.float64)
    with pytest.raises(ConfigError, match="float64 is not a unils precision"):
        tiny_model.double()
    with pytest.raises(ConfigError, match="seeds"):
        tiny_model.generate_both(speech_like(0.5), speech_like(0.5), seed=(1, 2, 3))


def test_torch_casts_go_through_the_one_precision_decision(tiny_model):
    assert tiny_model.half() is tiny_model
    assert tiny_model.precision.name == "float16" and tiny_model.precision.reason == "requested"
    assert tiny_model.generator.sos_embed.dtype == torch.float16
    assert tiny_model.codec.motion_mean.dtype == torch.float32  # the codec stays exact
    tiny_model.to(torch.bfloat16)
    assert tiny_model.precision.name == "bfloat16" and tiny_model.audio_encoder.feature_projection.projection.weight.dtype == torch.bfloat16
    tiny_model.float()
    assert tiny_model.precision.exact and tiny_model.generator.sos_embed.dtype == torch.float32
    tiny_model.to("cpu", torch.float32)
    assert tiny_model.precision.name == "float32"
    assert isinstance(tiny_model.precision, Precision)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tiny_model.precision.name = "bfloat16"  # type: ignore[misc]


def test_precision_changes_are_refused_while_sessions_are_open(tiny_model):
    session = tiny_model.stream(seed=0)
    for change in (lambda: tiny_model.set_precision("bfloat16"), tiny_model.half,
                   lambda: tiny_model.set_audio_autocast("bfloat16"), tiny_model.compile):
        with pytest.raises(StreamError, match="1 open streaming session"):
            change()
    assert tiny_model.precision.name == "float32" and tiny_model.generator.sos_embed.dtype == torch.float32
    session.close()
    tiny_model.set_audio_autocast("bfloat16")
    assert tiny_model.precision.audio_autocast == "bfloat16" and tiny_model.audio_autocast == torch.bfloat16
    tiny_model.set_precision("float32")  # keeps the autocast choice: one record, replaced whole
    assert tiny_model.precision.audio_autocast == "bfloat16"
    tiny_model.set_audio_autocast(None)
    assert tiny_model.precision.audio_autocast is None
    with pytest.raises(ConfigError, match="bfloat16 or float16"):
        tiny_model.set_audio_autocast("int8")


def test_a_garbage_collected_session_does_not_block_precision_changes(tiny_model):
    import gc

    s = tiny_model.stream(seed=0)
    s.push(np.zeros(640, np.float32), np.zeros(640, np.float32))
    del s
    gc.collect()
    tiny_model.set_precision("bfloat16")
    assert tiny_model.precision.name == "bfloat16"


def test_a_deep_copy_has_its_own_engine_state(tiny_model):
    import copy

    session = tiny_model.stream(seed=0)
    twin = copy.deepcopy(tiny_model)
    assert twin.engine.codec is twin.codec and twin.engine.generator is twin.generator
    assert twin.engine.open_sessions == 0 and tiny_model.engine.open_sessions == 1
    twin.set_precision("bfloat16")  # the copy's precision is its own
    assert tiny_model.precision.name == "float32" and twin.precision.name == "bfloat16"
    session.close()
