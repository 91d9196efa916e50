"""``unils serve``: streaming sessions over WebSocket, a browser demo, and Python clients.

Needs the ``serve`` extra (``pip install "unils[serve]"``). The names below are imported lazily so
that [`unils.serve.protocol`][unils.serve.protocol] stays usable without ``websockets``.

* `UniLSServer` / `ServerThread` - the server (``server.py``); `ServeConfig` its settings.
* `StreamClient` (blocking) / `AsyncStreamClient` (asyncio) - clients (``client.py``).
* [`unils.serve.protocol`][unils.serve.protocol] - the wire format, documented in ``docs/serve.md``.
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
