"""``unils serve``: streaming sessions over WebSocket, a browser demo, and Python clients.

Needs the ``serve`` extra (``pip install "unils[serve]"``). The names below are imported lazily so
that :mod:`unils.serve.protocol` stays usable without ``websockets``.

* :class:`UniLSServer` / :class:`ServerThread` - the server (``server.py``); :class:`ServeConfig` its settings.
* :class:`StreamClient` (blocking) / :class:`AsyncStreamClient` (asyncio) - clients (``client.py``).
* :mod:`unils.serve.protocol` - the wire format, documented in ``docs/serve.md``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["UniLSServer", "ServerThread", "ServeConfig", "StreamClient", "AsyncStreamClient"]

_WHERE = {
    "UniLSServer": "server",
    "ServerThread": "server",
    "ServeConfig": "settings",
    "StreamClient": "client",
    "AsyncStreamClient": "client",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
