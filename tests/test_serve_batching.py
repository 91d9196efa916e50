"""Continuous batching in `unils serve`: concurrent sessions stepped in batches get exactly the frames of the
same sessions stepped in turn, the metrics count the batches, and the settings are checked."""

from __future__ import annotations

import threading
import urllib.request

import numpy as np
import pytest
import torch

pytest.importorskip("websockets")

from helpers import randomize_, speech_like, tiny_config

from unils import Motion, UniLS
from unils.cli.serve import config_from_args
from unils.errors import ConfigError
from unils.serve import ServeConfig, ServerThread, StreamClient

WAIT = 60.0  # upper bound of any single wait, never an assertion on speed

# Per-session options differ, so each row of a batch carries its own.
SESSIONS = [
    {"seed": 0},
    {"seed": 1, "temperature": 0.5, "top_p": 0.8},
    {"seed": 2, "cfg_scale": 1.0, "smooth": False},
    {"seed": 3, "temperature": 0.0},
    {"seed": 4, "use_cache": False, "cfg_scale": 2.5},
    {"seed": 5, "both": True},
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval()


def run_clients(srv: ServerThread, audio: list[np.ndarray]) -> list:
    """All sessions at once, each from its own thread, sending its audio in 0.4 s blocks."""
    out: list = [None] * len(SESSIONS)
    errors: list[BaseException] = []
    start = threading.Barrier(len(SESSIONS))

    def one(i: int) -> None:
        try:
            kw = dict(SESSIONS[i])
            both = kw.pop("both", False)
            a = audio[i]
            with StreamClient(srv.ws_url, partner=True, both=both, hop_frames=10, **kw) as c:
                start.wait(WAIT)
                got = [c.push(a[j : j + 6400], a[::-1][j : j + 6400]) for j in range(0, len(a), 6400)]
                got.append(c.end(timeout=WAIT))
            if both:
                out[i] = tuple(Motion.concatenate([g[k] for g in got]) for k in range(2))
            else:
                out[i] = Motion.concatenate(got)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(SESSIONS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not errors, errors
    return out


def metrics(srv: ServerThread) -> dict[str, float]:
    with urllib.request.urlopen(srv.url + "metrics", timeout=WAIT) as r:
        text = r.read().decode()
    return {
        line.split()[0]: float(line.split()[1])
        for line in text.splitlines()
        if line and not line.startswith("#") and "{" not in line
    }


def test_batched_sessions_get_the_frames_of_sessions_stepped_in_turn(model):
    audio = [speech_like(2.4, seed=10 + i) for i in range(len(SESSIONS))]
    config = {"port": 0, "max_sessions": len(SESSIONS)}
    with ServerThread(model, ServeConfig(**config, batch_steps=False)) as srv:
        alone = run_clients(srv, audio)
        assert srv.server.batcher is None
        assert "unils_serve_batches_total" not in metrics(srv)
    # A long gather, so that the sessions' windows meet in batches even on a busy machine.
    with ServerThread(model, ServeConfig(**config, batch_steps=True, batch_gather_ms=50.0)) as srv:
        batched = run_clients(srv, audio)
        m = metrics(srv)
        assert srv.server.closed_by_code == {1000: len(SESSIONS)}
    for i, (a, b) in enumerate(zip(alone, batched)):
        if isinstance(a, tuple):
            assert len(a[0]) == 60 and a[0] == b[0] and a[1] == b[1], i  # bit for bit, both people
        else:
            assert len(a) == 60 and a == b, i  # bit for bit
    assert alone[0] != alone[1]  # the sessions differ: their own options and seeds reached the rows
    assert m["unils_serve_batches_total"] >= 1
    assert m["unils_serve_batched_rows_total"] > m["unils_serve_batches_total"]  # batches of several rows
    assert m["unils_serve_batch_size_max"] >= 2
    # Every window of every session went through the batcher (flushes run alone).
    assert m["unils_serve_batched_rows_total"] <= m["unils_serve_steps_total"]


def test_batching_settings_are_checked():
    assert ServeConfig().batch_steps is True and ServeConfig().max_batch == 64
    for bad, needle in [
        ({"max_batch": 0}, "max_batch"),
        ({"max_batch": True}, "max_batch"),
        ({"batch_gather_ms": -1.0}, "batch_gather_ms"),
        ({"batch_gather_ms": 5000.0}, "batch_gather_ms"),
        ({"batch_steps": "yes"}, "batch_steps"),
    ]:
        with pytest.raises(ConfigError, match=needle):
            ServeConfig(**bad).validate()


def test_batching_flags():
    from unils.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["serve", "--no-batch-steps", "--max-batch", "16", "--batch-gather-ms", "2.5"])
    config = config_from_args(args)
    assert (config.batch_steps, config.max_batch, config.batch_gather_ms) == (False, 16, 2.5)
    config = config_from_args(parser.parse_args(["serve"]))
    assert (config.batch_steps, config.max_batch, config.batch_gather_ms) == (True, 64, 4.0)
    with pytest.raises(ConfigError, match="max_batch"):
        config_from_args(parser.parse_args(["serve", "--max-batch", "0"]))
