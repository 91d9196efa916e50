"""Generate a person's motion from their voice (and optionally their partner's) and save it.

    python examples/generate_from_file.py me.wav [--partner you.wav] [-o motion.npz] [--model PATH_OR_REPO]
"""

import argparse

from unils import UniLS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio")
    ap.add_argument("--partner", default=None)
    ap.add_argument("--model", default="demo", help="checkpoint folder, Hub repo id or bundled name")
    ap.add_argument("-o", "--output", default="motion.npz")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = UniLS.from_pretrained(args.model)
    motion = model.generate(args.audio, partner_audio=args.partner, seed=args.seed)
    motion.save(args.output)
    print(f"{motion} -> {args.output}")
    print(f"jaw opening: mean {motion.jaw.mean():.4f} rad, max {motion.jaw.max():.4f} rad")


if __name__ == "__main__":
    main()
