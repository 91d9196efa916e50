"""Bridge a running ``unils serve`` to Unreal: stream a wav, send every frame to Live Link as it arrives.

    unils serve --model PATH_OR_REPO &                      # in another terminal
    python examples/serve_to_livelink.py me.wav [--partner you.wav] [--url ws://127.0.0.1:8765/ws]
        [--livelink 127.0.0.1:11111] [--subject unils] [--map my_map.npz] [--mirror]

In Unreal: Window > Live Link > Source > "Apple ARKit Face" style source listening on the port (or
the Live Link Face plugin), then pick the subject in your character's Live Link pose node.
"""

import argparse
import time

from unils.arkit import ArkitConverter, LiveLinkSender, parse_address
from unils.audio import load_audio, pad_to_same_length
from unils.serve import StreamClient


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio")
    ap.add_argument("--partner", default=None)
    ap.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    ap.add_argument("--token", default=None)
    ap.add_argument("--livelink", default="127.0.0.1:11111", help="Unreal's HOST:PORT")
    ap.add_argument("--subject", default="unils")
    ap.add_argument("--map", default=None, help="expression map file (see docs/arkit.md)")
    ap.add_argument("--mirror", action="store_true")
    ap.add_argument("--block-ms", type=float, default=40.0)
    ap.add_argument("--fast", action="store_true", help="send audio as fast as possible (tests), not at its real pace")
    args = ap.parse_args()

    host, port = parse_address(args.livelink)
    tracks = [load_audio(args.audio)]
    if args.partner:
        tracks = list(pad_to_same_length(tracks[0], load_audio(args.partner)))
    block = int(16000 * args.block_ms / 1000)
    converter = ArkitConverter(args.map)
    with StreamClient(args.url, partner=args.partner is not None, seed=0, token=args.token) as client, \
            LiveLinkSender(host, port, subject=args.subject, mirror=args.mirror) as sender:
        start = time.perf_counter()
        for i in range(0, len(tracks[0]), block):
            # Send audio at the pace it would be recorded, so frames reach Unreal as a live session's would.
            if not args.fast:
                time.sleep(max(0.0, start + i / 16000 - time.perf_counter()))
            motion = client.push(*(t[i : i + block] for t in tracks))
            sender.send(converter.push(motion))
        sender.send(converter.push(client.end()))
        print(f"sent {sender.packets_sent} frames to {host}:{port} as {args.subject!r} ({sender.errors} socket errors)")


if __name__ == "__main__":
    main()
