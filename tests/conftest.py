"""Shared fixtures (helpers live in tests/helpers/); tiny random models built in memory, never the network."""

from __future__ import annotations

import os

import pytest
import torch
from helpers import randomize_, tiny_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The suite checks exact float32 numbers on every CPU kind; the automatic precision choice is tested on
# its own with the device probe mocked (tests/test_precision.py).
os.environ.setdefault("UNILS_DTYPE", "float32")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_model():
    from unils import UniLS

    torch.manual_seed(0)
    return randomize_(UniLS(tiny_config())).eval()
