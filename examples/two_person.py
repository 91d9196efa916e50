"""Both people of a conversation in one batched pass; writes two motion files and a CSV.

    python examples/two_person.py a.wav b.wav --out-dir out/ [--model PATH_OR_REPO]
"""

import argparse
from pathlib import Path

from unils import UniLS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("audio_a")
    ap.add_argument("audio_b")
    ap.add_argument("--model", default="demo", help="checkpoint folder, Hub repo id or bundled name")
    ap.add_argument("--out-dir", default="conversation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = UniLS.from_pretrained(args.model)
    a, b = model.generate_both(args.audio_a, args.audio_b, seed=args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a.save(out / "a.npz")
    b.save(out / "b.npz")
    a.save(out / "a.csv")
    print(f"A: {a}  head-pose std {a.head_pose.std(axis=0).round(4).tolist()}")
    print(f"B: {b}  head-pose std {b.head_pose.std(axis=0).round(4).tolist()}")


if __name__ == "__main__":
    main()
