"""Stream a wav file to a running ``unils serve`` and save the motion it sends back.

    unils serve --model PATH_OR_REPO &                      # in another terminal
    python examples/serve_client.py me.wav [--partner you.wav] [--url ws://127.0.0.1:8765/ws]
        [--token T] [--hop-frames 25] [--realtime] [-o me_motion.npz]

Frames are printed as they arrive. By default the file is sent as fast as the server takes it:
``StreamClient.push`` honours the server's flow control (it waits for acknowledgements once a few
seconds of audio wait for the model), so files of any length stream without losing the session.
``--realtime`` sends audio at the pace it would be recorded, so the printed lag is what a live
client sees.
"""

import argparse
import time

from unils import Motion
from unils.audio import load_audio, pad_to_same_length
from unils.serve import StreamClient


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio")
    ap.add_argument("--partner", default=None)
    ap.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    ap.add_argument("--token", default=None)
    ap.add_argument("--hop-frames", type=int, default=None, help="low-latency hop; default exact mode")
    ap.add_argument("--block-ms", type=float, default=20.0)
    ap.add_argument("--realtime", action="store_true")
    ap.add_argument("-o", "--output", default="motion.npz")
    args = ap.parse_args()

    tracks = [load_audio(args.audio)]  # 16 kHz float32; the server also accepts other rates
    if args.partner:
        tracks = pad_to_same_length(tracks[0], load_audio(args.partner))
    block = int(16000 * args.block_ms / 1000)
    parts = []
    with StreamClient(args.url, partner=args.partner is not None, seed=0, hop_frames=args.hop_frames,
                      token=args.token) as client:
        print(f"session {client.ready['session']} on {client.ready['model']}: "
              f"algorithmic latency {client.ready['algorithmic_latency_s']:.2f} s")
        start = time.perf_counter()
        for i in range(0, tracks[0].shape[0], block):
            if args.realtime:
                time.sleep(max(0.0, start + i / 16000 - time.perf_counter()))
            frames = client.push(*[t[i : i + block] for t in tracks])
            if len(frames):
                lag = (i + block) / 16000 - client.frames_received / 25
                print(f"audio {(i + block) / 16000:6.2f} s: +{len(frames)} frames "
                      f"(total {client.frames_received}, lag {lag:.2f} s)")
            parts.append(frames)
        parts.append(client.end())
        stats = client.stats
    motion = Motion.concatenate(parts)
    motion.save(args.output)
    print(f"wrote {args.output}: {len(motion)} frames; server step p50 {stats['step_p50_s'] * 1000:.0f} ms, "
          f"real-time factor {stats['real_time_factor']:.3f}")


if __name__ == "__main__":
    main()
