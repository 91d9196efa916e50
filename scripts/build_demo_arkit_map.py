"""Write the bundled demo model's FLAME -> ARKit expression map (``src/unils/assets/demo/arkit_map.npz``).

The demo was trained on rule-based motion whose first seven expression coefficients have known
meanings (``unils.train.corpus.channels``): 0 mouth opening, 1 lip rounding, 2 lip spreading, 3 lip
press, 4 brow raise (negative: lowered), 5 smile (negative: frown), 6 blink. The table below sends
each to the ARKit blendshapes that show it.

Gains follow the corpus' meaning of each coefficient, which the demo reproduces at about the
corpus' scale (its motion codec was trained with ``--expr-mse 4 --expr-mse-dims 7``). On the example
dialogue (``examples/dialogue``, seed 0) the demo's 95th percentiles / maxima are: mouth opening
0.56-0.66 / 0.96, rounding 0.50-0.61 / 1.32 (corpus: up to 1.4), spreading 0.35-0.56 / 0.93 (1.0),
lip press max 0.82-0.84 (1.2), brows -0.06 to 0.16 / 0.26 (bumps of 0.1-0.5, questions up to 0.9),
smile 0.05-0.35 (0-0.35 plus listener smiles), blink peaks 1.1-1.5 (1.3-1.7). A corpus-sized event
gives a weight near 1, the demo's typical one 0.3-0.7. Small negative biases keep resting noise at
weight 0. ``jawOpen`` and ``eyeLook*`` come from the jaw and eye rotations as for every model, so
the map leaves them alone.

Usage: ``python scripts/build_demo_arkit_map.py`` (rewrites the file; ``--out`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from unils.arkit import ARKIT_NAMES, load_expression_map  # noqa: E402

#: coefficient -> [(ARKit name, gain)]; weight = clip(sum(gain * coefficient) + bias, 0, 1).
TABLE: dict[int, list[tuple[str, float]]] = {
    0: [("mouthLowerDownLeft", 0.3), ("mouthLowerDownRight", 0.3), ("mouthUpperUpLeft", 0.1), ("mouthUpperUpRight", 0.1)],
    1: [("mouthPucker", 0.7), ("mouthFunnel", 0.4)],
    2: [("mouthStretchLeft", 0.6), ("mouthStretchRight", 0.6), ("mouthSmileLeft", 0.2), ("mouthSmileRight", 0.2)],
    3: [("mouthPressLeft", 0.8), ("mouthPressRight", 0.8), ("mouthRollLower", 0.25), ("mouthRollUpper", 0.15),
        ("mouthClose", 0.2)],
    4: [("browInnerUp", 2.5), ("browOuterUpLeft", 2.0), ("browOuterUpRight", 2.0),
        ("browDownLeft", -2.5), ("browDownRight", -2.5), ("eyeWideLeft", 0.5), ("eyeWideRight", 0.5)],
    5: [("mouthSmileLeft", 1.6), ("mouthSmileRight", 1.6), ("cheekSquintLeft", 0.6), ("cheekSquintRight", 0.6),
        ("mouthFrownLeft", -1.3), ("mouthFrownRight", -1.3)],
    6: [("eyeBlinkLeft", 1.0), ("eyeBlinkRight", 1.0)],
}  # fmt: skip
#: Offsets: resting noise stays at weight 0.
BIAS: dict[str, float] = {
    "eyeBlinkLeft": -0.1, "eyeBlinkRight": -0.1,
    "mouthPucker": -0.05, "mouthFunnel": -0.05, "mouthStretchLeft": -0.05, "mouthStretchRight": -0.05,
    "mouthPressLeft": -0.05, "mouthPressRight": -0.05,
    "browInnerUp": -0.05, "browOuterUpLeft": -0.05, "browOuterUpRight": -0.05,
    "browDownLeft": -0.05, "browDownRight": -0.05, "eyeWideLeft": -0.03, "eyeWideRight": -0.03,
    "mouthFrownLeft": -0.05, "mouthFrownRight": -0.05,
}  # fmt: skip


def build() -> tuple[np.ndarray, np.ndarray]:
    """The [7, 52] matrix and the [52] bias."""
    m = np.zeros((len(TABLE), len(ARKIT_NAMES)), np.float32)
    for coef, row in TABLE.items():
        for name, gain in row:
            m[coef, ARKIT_NAMES.index(name)] += gain
    bias = np.zeros(len(ARKIT_NAMES), np.float32)
    for name, b in BIAS.items():
        bias[ARKIT_NAMES.index(name)] = b
    return m, bias


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "src" / "unils" / "assets" / "demo" / "arkit_map.npz")
    args = p.parse_args()
    m, bias = build()
    np.savez(args.out, flame_to_arkit=m, bias=bias, names=np.array(ARKIT_NAMES), jaw=np.array(0))
    load_expression_map(args.out)  # the file reads back as a valid map
    print(
        f"wrote {args.out}: flame_to_arkit [{m.shape[0]}, {m.shape[1]}], {int((m != 0).sum())} non-zero gains"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
