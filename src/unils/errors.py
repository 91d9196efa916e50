"""Exception types raised by unils.

Every error subclasses a builtin (``ValueError``, ``FileNotFoundError``...) so callers can catch
either the precise unils type or the builtin they already handle. Messages say what to do.
"""

from __future__ import annotations

__all__ = [
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
]


class UniLSError(Exception):
    """Base class of every error raised on purpose by unils."""


class ConfigError(UniLSError, ValueError):
    """A configuration is malformed: unknown field, wrong type, inconsistent sizes."""


class CheckpointError(UniLSError, ValueError):
    """A checkpoint does not match the model: missing, unexpected or misshapen tensors."""


class CheckpointNotFoundError(UniLSError, FileNotFoundError):
    """A checkpoint (folder, file or Hub repo) could not be found."""


class AudioError(UniLSError, ValueError):
    """Audio that cannot be used: empty, NaN/inf, too short, wrong shape or dtype."""


class AudioFileError(UniLSError, FileNotFoundError):
    """An audio file does not exist or cannot be decoded."""


class MotionError(UniLSError, ValueError):
    """A motion array has the wrong shape, dtype, frame rate or non-finite values."""


class StreamError(UniLSError, RuntimeError):
    """A streaming session was used in a way its state does not allow (e.g. after close)."""


class ProtocolError(UniLSError, ValueError):
    """A ``unils serve`` client or server broke the wire protocol (bad hello, undecodable audio...).

    ``code`` is the WebSocket close code the server ends the session with (see ``docs/serve.md``).
    """

    def __init__(self, message: str, code: int = 4000) -> None:
        super().__init__(message)
        self.code = code


class FlameError(UniLSError, ValueError):
    """A FLAME model file is unreadable, misshapen or not a FLAME model (unils never ships FLAME)."""


class EvaluationError(UniLSError, ValueError):
    """Evaluation inputs do not fit together: no matching files, mismatched lengths or rates."""


class FormatError(UniLSError, ValueError):
    """A file whose suffix or format unils cannot read or write for this purpose (e.g. a preview to .avi)."""


class MissingDependencyError(UniLSError, ImportError):
    """An optional dependency is not installed; the message names the extra to install (``unils[viz]``)."""


class DatasetError(UniLSError, ValueError):
    """The training data folder is missing, malformed or holds nothing to train on."""


class AmbiguousCheckpointError(CheckpointError):
    """Several official checkpoints could be the model; ``candidates`` and ``calls`` list them.

    ``calls`` holds, for each candidate, the exact ``UniLS.from_pretrained(...)`` call that picks it.
    """

    def __init__(self, message: str, candidates: list[str], calls: list[str]) -> None:
        super().__init__(message)
        self.candidates = candidates
        self.calls = calls


class ArkitError(UniLSError, ValueError):
    """ARKit / Live Link input that cannot be used: a misshapen expression map, an unknown blendshape name,
    a bad Live Link host or port, or a packet Unreal would reject."""


class ManifestError(UniLSError, ValueError):
    """A batch manifest (``unils generate --batch``) is malformed: columns, values or duplicate outputs.

    ``problems`` lists every problem found (the message shows them too), so all can be fixed at once.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems or [])


class ManifestFilesNotFoundError(UniLSError, FileNotFoundError):
    """Files named by a batch manifest do not exist; ``missing`` lists every one (row, column, path)."""

    def __init__(self, message: str, missing: list[tuple[int, str, str]] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
