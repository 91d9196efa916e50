"""Reading a raw WebSocket session of ``unils serve`` the way a non-Python client does."""

from __future__ import annotations

import json

import numpy as np

from unils.serve import protocol as P


def read_all_frames(ws, timeout: float) -> tuple[list[np.ndarray], dict | None]:
    """Read a raw binary-format session to its end: frames per message (person 0) and the end message."""
    frames, last = [], None
    while True:
        msg = ws.recv(timeout=timeout)
        if isinstance(msg, bytes):
            start, arr = P.decode_frames_binary(msg)
            assert start == sum(len(f) for f in frames)  # in order, none missing
            frames.append(arr[0])
        elif json.loads(msg)["type"] == "end":
            last = json.loads(msg)
            break
    return frames, last
