"""Generate a two-person conversation, export it every way, and look at it (needs unils[viz]).

    python examples/export_and_preview.py examples/dialogue/person_a.flac examples/dialogue/person_b.flac \
        --out-dir preview/ [--model PATH_OR_REPO] [--size 320]

Writes, for both people: motion as .npz, .json, .csv and JSON lines (one per-frame dict per line,
as a streaming consumer would receive them); then preview.mp4 (side by side, with the
conversation's sound), preview.gif, a still at the middle (still.png) and the coefficient plot
(curves.png).
"""

import argparse
import json
from pathlib import Path

from unils import UniLS
from unils.viz import plot_motion, render_preview, speech_activity


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio_a")
    ap.add_argument("audio_b")
    ap.add_argument("--model", default="demo", help="checkpoint folder, Hub repo id or bundled name")
    ap.add_argument("--out-dir", default="preview")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=320, help="panel size in pixels")
    args = ap.parse_args()

    model = UniLS.from_pretrained(args.model)
    me, you = model.generate_both(args.audio_a, args.audio_b, seed=args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    for name, motion in (("me", me), ("you", you)):
        motion.save(out / f"{name}.npz")
        motion.save(out / f"{name}.json")
        motion.save(out / f"{name}.csv")
        with open(out / f"{name}.jsonl", "w", encoding="utf-8") as fh:
            for frame in motion.frames():  # {"index", "time", "expression", "head_pose", "jaw", "eyes"}
                fh.write(json.dumps(frame) + "\n")

    voices = [args.audio_a, args.audio_b]
    video = render_preview([me, you], out / "preview.mp4", audio=voices, labels=["me", "you"], size=args.size)
    print(video.summary())
    print(render_preview([me, you], out / "preview.gif", audio=voices, labels=["me", "you"], size=args.size // 2,
                         fps=12.5).summary())
    print(render_preview([me, you], out / "still.png", audio=voices, labels=["me", "you"], size=args.size).summary())

    activity = [speech_activity(v, num_frames=len(me)) for v in voices]
    plot_motion([me, you], out / "curves.png", activity=activity, labels=["me", "you"])
    for label, act in zip(("me", "you"), activity):
        print(f"{label}: speaks in {act.mean():.0%} of the frames")
    print(f"wrote {out}/curves.png")


if __name__ == "__main__":
    main()
