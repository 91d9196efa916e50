"""``unils serve``: streaming sessions over WebSocket, with a browser demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from ..errors import UniLSError
from . import options

__all__ = ["config_from_args", "register", "run"]


def register(sub: Any) -> None:
    """Add the ``serve`` parser to ``sub`` (the ``unils`` subparsers)."""
    p = sub.add_parser(
        "serve",
        help="streaming sessions over WebSocket, with a browser demo (needs the serve extra)",
        description="Serve streaming sessions over WebSocket (one connection = one session; protocol in "
        "docs/serve.md) and a browser demo at http://HOST:PORT/. Binds to 127.0.0.1 unless told otherwise; "
        "any other address needs a token. Clients choose the generation options per session.",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any free port)")
    p.add_argument(
        "--token",
        default=None,
        help="shared secret clients must send (?token= or Authorization: Bearer); "
        "default $UNILS_SERVE_TOKEN; required off localhost",
    )
    p.add_argument("--max-sessions", type=int, default=8, help="concurrent sessions (default 8)")
    p.add_argument(
        "--max-message-bytes", type=int, default=1 << 20, help="largest client message (default 1 MiB)"
    )
    p.add_argument(
        "--idle-timeout", type=float, default=30.0, help="close a session silent this long (s, default 30)"
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="model threads (default: max sessions with batched steps, else min(max sessions, CPUs))",
    )
    p.add_argument(
        "--no-batch-steps",
        dest="batch_steps",
        action="store_false",
        help="step every session on its own instead of batching the ready steps of all sessions",
    )
    p.add_argument("--max-batch", type=int, default=64, help="most sessions in one batched step (default 64)")
    p.add_argument(
        "--batch-gather-ms",
        type=float,
        default=4.0,
        help="how long a batched step waits for more ready sessions (ms, default 4)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (torch.set_num_threads)")
    p.add_argument(
        "--min-hop-frames",
        type=int,
        default=5,
        help="smallest low-latency hop a client may ask for (default 5)",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="a browser origin allowed besides the server's own (repeatable)",
    )
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        help="a Host name accepted besides loopback names, IP literals and --host (repeatable; '*' = any); "
        "foreign Hosts get 421 (DNS rebinding)",
    )
    p.add_argument(
        "--forwarded-allow-ips",
        default=None,
        help="comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is trusted for the "
        "client address (per-address limit, logs); '*' = any peer (default $FORWARDED_ALLOW_IPS or "
        "127.0.0.1,::1, as uvicorn/gunicorn)",
    )
    p.add_argument(
        "--max-connections-per-address",
        type=int,
        default=16,
        help="WebSocket connections per client IP (default 16)",
    )
    p.add_argument(
        "--hello-timeout", type=float, default=5.0, help="seconds to send the hello (default 5; else 4008)"
    )
    p.add_argument(
        "--send-timeout",
        type=float,
        default=20.0,
        help="close a client that leaves its frames unread this long (s, default 20; code 4009)",
    )
    p.add_argument(
        "--max-queued-audio",
        type=float,
        default=4.0,
        help="seconds of audio a session may have waiting before its sender is slowed (default 4)",
    )
    p.add_argument(
        "--max-read-ahead-bytes",
        type=int,
        default=16 << 20,
        help="audio bytes read ahead for a client that ignores the credit, before TCP slows it (default 16 MiB)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        help="on SIGTERM/SIGINT, exit within this many seconds (default 5)",
    )
    options.add_model_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``unils serve``."""
    try:
        from ..serve.server import run as serve_forever
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise UniLSError(f"{exc}") from exc
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = config_from_args(args)  # refuse an unsafe configuration before loading the model
    model = options.load_model(args)

    def ready(server: Any) -> None:
        print(
            f"unils serve: {model.config.name} on {server.url} (WebSocket {server.ws_url}), "
            f"max {config.max_sessions} sessions{', token required' if config.token else ''}; Ctrl-C stops",
            flush=True,
        )

    abandoned = serve_forever(model, config, on_ready=ready)
    if abandoned:
        # A model step outlived the drain deadline: leave without tearing the interpreter down under
        # a thread in native code (that aborts the process); the drain itself is complete.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(0)
    return 0


def config_from_args(args: argparse.Namespace) -> Any:
    """The validated `unils.serve.ServeConfig` of ``unils serve``'s arguments."""
    from ..serve.settings import ServeConfig

    forwarded = args.forwarded_allow_ips or os.environ.get("FORWARDED_ALLOW_IPS")
    config = ServeConfig(
        host=args.host,
        port=args.port,
        token=args.token or os.environ.get("UNILS_SERVE_TOKEN") or None,
        max_sessions=args.max_sessions,
        max_message_bytes=args.max_message_bytes,
        idle_timeout_s=args.idle_timeout,
        workers=args.workers,
        batch_steps=args.batch_steps,
        max_batch=args.max_batch,
        batch_gather_ms=args.batch_gather_ms,
        min_hop_frames=args.min_hop_frames,
        allowed_origins=tuple(args.allow_origin),
        allowed_hosts=tuple(args.allow_host),
        max_connections_per_address=args.max_connections_per_address,
        hello_timeout_s=args.hello_timeout,
        send_timeout_s=args.send_timeout,
        max_queued_audio_s=args.max_queued_audio,
        max_read_ahead_bytes=args.max_read_ahead_bytes,
        drain_timeout_s=args.drain_timeout,
    )
    if forwarded:
        config.forwarded_allow_ips = tuple(x.strip() for x in forwarded.split(",") if x.strip())
    return config.validate()
