"""Replay a wav through a streaming session at real-time pace; print latency and real-time factor.

    python examples/stream_from_file.py me.wav [--partner you.wav] [--model PATH_OR_REPO]
        [--block-ms 20] [--hop-frames 25] [--fast]

Frames are printed as they become final. ``--hop-frames`` switches to the low-latency mode;
``--fast`` pushes as fast as possible instead of at real-time pace.
"""

import argparse
import time

from unils import UniLS
from unils.audio import load_audio, pad_to_same_length


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio")
    ap.add_argument("--partner", default=None)
    ap.add_argument("--model", default="demo", help="checkpoint folder, Hub repo id or bundled name")
    ap.add_argument("--block-ms", type=float, default=20.0)
    ap.add_argument("--hop-frames", type=int, default=None)
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args()

    model = UniLS.from_pretrained(args.model)
    tracks = [load_audio(args.audio)]
    if args.partner:
        tracks = pad_to_same_length(tracks[0], load_audio(args.partner))
    block = int(16000 * args.block_ms / 1000)

    with model.stream(partner=args.partner is not None, seed=0, hop_frames=args.hop_frames) as session:
        print(f"algorithmic latency: {session.algorithmic_latency_s:.2f} s")
        start = time.perf_counter()
        for i in range(0, tracks[0].shape[0], block):
            if not args.fast:  # wait until this block would have been recorded
                time.sleep(max(0.0, start + i / 16000 - time.perf_counter()))
            frames = session.push(*[t[i : i + block] for t in tracks])
            if len(frames):
                audio_time = (i + block) / 16000
                print(f"audio {audio_time:6.2f} s: +{len(frames)} frames (total {session.frames_emitted})")
        rest = session.flush()
        stats = session.stats()
    print(f"flush: +{len(rest)} frames, total {session.frames_emitted}")
    print(f"per-step compute p50 {stats.step_p50_s * 1000:.0f} ms, p95 {stats.step_p95_s * 1000:.0f} ms, "
          f"real-time factor {stats.real_time_factor:.3f}")


if __name__ == "__main__":
    main()
