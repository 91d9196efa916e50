"""Turn the example dialogue into ARKit curves: Live Link Face CSV, three.js JSON and a plot.

    python examples/arkit_dialogue.py [--model demo] [--map my_map.npz] [--out-dir arkit_out]

Writes person_a.csv / .json, person_b.csv / .json and arkit_curves.png. Without ``--map`` the
model's bundled expression map is used (the demo ships one: blinks, brows, smiles and lip shapes
move); a model without one moves only jawOpen, eyeLook*, head and gaze (see docs/arkit.md).
"""

import argparse
from pathlib import Path

from unils import UniLS
from unils.arkit import expression_map_for, to_arkit
from unils.audio import load_audio, pad_to_same_length
from unils.viz import plot_arkit, speech_activity

DIALOGUE = Path(__file__).resolve().parent / "dialogue"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="demo")
    ap.add_argument("--a", default=str(DIALOGUE / "person_a.flac"))
    ap.add_argument("--b", default=str(DIALOGUE / "person_b.flac"))
    ap.add_argument("--map", default=None, help="expression map file (.npy/.npz/.safetensors)")
    ap.add_argument("--out-dir", default="arkit_out")
    args = ap.parse_args()

    model = UniLS.from_pretrained(args.model)
    expression_map = args.map or expression_map_for(model)  # None: no map (expressions stay 0)
    a, b = pad_to_same_length(load_audio(args.a), load_audio(args.b))
    out = Path(args.out_dir)
    anims, acts = [], []
    for name, me, you in (("person_a", a, b), ("person_b", b, a)):
        motion = model.generate(me, partner_audio=you, seed=0)
        anim = to_arkit(motion, expression_map=expression_map)
        anim.save(out / f"{name}.csv")
        anim.save(out / f"{name}.json")
        anims.append(anim)
        acts.append(speech_activity(me, num_frames=len(motion)))
        print(f"{name}: {anim}; jawOpen max {anim.weight('jawOpen').max():.2f}")
    plot_arkit(anims, out / "arkit_curves.png", labels=["person A", "person B"], activity=acts, dpi=80)
    print(f"wrote {out}/person_a.csv, person_a.json, person_b.csv, person_b.json, arkit_curves.png")


if __name__ == "__main__":
    main()
