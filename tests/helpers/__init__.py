"""Helpers shared by the tests (import ``from helpers import ...``; pytest puts tests/ on sys.path).

- :mod:`helpers.models`: ``tiny_config``, ``randomize_``
- :mod:`helpers.audio`: ``speech_like``
- :mod:`helpers.flame_synth`: a synthetic FLAME-shaped model (no FLAME data)
- :mod:`helpers.train_data`: a tiny training dataset in the unils-dataset format
- :mod:`helpers.docs_snippets`: extracting and running the code blocks of the docs
"""

from __future__ import annotations

from .audio import speech_like
from .models import randomize_, tiny_config

__all__ = ["randomize_", "speech_like", "tiny_config"]
