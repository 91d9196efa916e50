"""`"arkit": true` in the hello: ARKit frames beside FLAME, JSON and binary, equal to unils.arkit offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("websockets")

from helpers import randomize_, speech_like, tiny_config
from websockets.sync.client import connect

from unils import Motion, ProtocolError, UniLS
from unils.arkit import ARKIT_NAMES, to_arkit
from unils.serve import ServeConfig, ServerThread, StreamClient
from unils.serve import protocol as P


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval()


@pytest.mark.parametrize("fmt", ["binary", "json"])
def test_arkit_frames_equal_to_arkit_of_the_motion(model, fmt):
    a, b = speech_like(5.0, seed=1), speech_like(5.0, seed=2)
    with ServerThread(model, ServeConfig(port=0)) as srv:
        with StreamClient(srv.ws_url, both=True, seed=3, format=fmt, arkit=True, hop_frames=25) as client:
            parts = [client.push(a[i : i + 1600], b[i : i + 1600]) for i in range(0, len(a), 1600)]
            parts.append(client.end())
            first, second = client.receive_arkit()
            assert client.ready["arkit_names"] == list(ARKIT_NAMES)
    motions = [Motion.concatenate([p[k] for p in parts]) for k in (0, 1)]
    assert len(first) == len(second) == len(motions[0]) == 125
    for got, motion in zip((first, second), motions):
        want = to_arkit(motion)
        atol = 1e-6 if fmt == "json" else 1e-5  # binary carries rotations divided by pi in float32
        np.testing.assert_allclose(got.weights, want.weights, atol=atol)
        np.testing.assert_allclose(got.head, want.head, atol=atol)
        np.testing.assert_allclose(got.eyes, want.eyes, atol=atol)


def test_without_arkit_nothing_extra_is_sent(model):
    with ServerThread(model, ServeConfig(port=0)) as srv, connect(srv.ws_url) as ws:
        ws.send(json.dumps({"type": "hello", "sample_rate": 16000, "format": "binary"}))
        ready = json.loads(ws.recv(timeout=30))
        assert "arkit_names" not in ready and ready["hello"]["arkit"] is False
        hello = P.Hello(sample_rate=16000, encoding=ready["hello"]["encoding"], format="binary")
        ws.send(P.encode_audio(hello, speech_like(4.0)))
        ws.send(json.dumps({"type": "end"}))
        kinds = []
        while True:
            msg = ws.recv(timeout=30)
            kinds.append(msg[:4] if isinstance(msg, bytes) else json.loads(msg)["type"])
            if kinds[-1] == "end":
                break
        assert P.BINARY_MAGIC in kinds and P.ARKIT_MAGIC not in kinds


def test_bad_arkit_value_is_refused():
    with pytest.raises(ProtocolError, match="arkit"):
        P.parse_hello(json.dumps({"type": "hello", "sample_rate": 16000, "arkit": "yes"}))
