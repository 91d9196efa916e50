"""unils: audio-driven 3D avatars that listen and speak (UniLS, CVPR 2026) as an installable SDK."""

from __future__ import annotations

import logging

from ._version import __version__
from .config import UniLSConfig
from .errors import (
    AmbiguousCheckpointError,
    ArkitError,
    AudioError,
    AudioFileError,
    CheckpointError,
    CheckpointNotFoundError,
    ConfigError,
    DatasetError,
    EvaluationError,
    FlameError,
    FormatError,
    ManifestError,
    ManifestFilesNotFoundError,
    MissingDependencyError,
    MotionError,
    ProtocolError,
    StreamError,
    UniLSError,
)
from .model import UniLS
from .motion import Motion
from .options import GenerationOptions
from .streaming import LatencyStats, SessionGroup, StreamSession

logging.getLogger("unils").addHandler(logging.NullHandler())

__all__ = [
    "UniLS",
    "Motion",
    "StreamSession",
    "SessionGroup",
    "LatencyStats",
    "GenerationOptions",
    "UniLSConfig",
    "UniLSError",
    "ConfigError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "AudioError",
    "AudioFileError",
    "MotionError",
    "StreamError",
    "ProtocolError",
    "FlameError",
    "EvaluationError",
    "FormatError",
    "MissingDependencyError",
    "DatasetError",
    "AmbiguousCheckpointError",
    "ArkitError",
    "ManifestError",
    "ManifestFilesNotFoundError",
    "__version__",
]
