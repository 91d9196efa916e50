"""Does a model speak with its own voice and move while listening? Figures on held-out conversations.

For every conversation of a dataset folder (unils-dataset format, e.g. a held-out synthetic corpus)
both people are generated from the two tracks (``generate_both``) and compared with what the audio
and the ground truth say:

* ``jaw_vs_own_energy``: Pearson correlation of the jaw opening with the person's own log frame
  energy (speaking means the jaw follows it), next to the same figure for the ground truth;
* ``jaw_vs_partner_energy``: the same against the partner's voice (should be low or negative);
* ``jaw_speaking`` / ``jaw_listening``: mean jaw opening (rad) on speaking / listening frames;
* ``head_speed_listening`` / ``head_speed_speaking``: mean head rotation speed (rad/s, sum of the
  three axes) on listening / speaking frames: a listener that nods and sways is not frozen;
* ``blinks_per_minute``: blinks (peaks of expression coefficient 6, the corpus' blink channel, above
  ``BLINK_PEAK``) per minute; the corpus (version 2) blinks about 19 times a minute, in the pause after
  every sentence of either person plus spontaneous blinks in long gaps;
* ``blink_peak``: mean height of those blink peaks (corpus: 1.3-1.7 at 100 Hz, a little less per frame);
* ``blinks_after_speech``: share of those blinks that peak within ``BLINK_AFTER_SPEECH`` frames after
  speech of either person stops (a fall of either speech mask): blinks the audio announces;
* ``press_speaking`` / ``press_listening``: fraction of speaking / listening frames with a lip press
  (coefficient 3) above ``PRESS_ON`` (the corpus presses the lips on p, b, m, so only while speaking);
* the paper's coefficient metrics (``S_PDD``, ``S_JDD``, ``L_PDD``, ``L_JDD``) from :mod:`unils.metrics`.

Usage::

    python benchmarks/demo_quality.py --model demo --data HELDOUT_DIR --json benchmarks/results/demo_quality.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from unils import UniLS
from unils.metrics import evaluate_sequence


def log_energy(audio: np.ndarray, frames: int, spf: int = 640) -> np.ndarray:
    padded = np.zeros(frames * spf, np.float32)
    n = min(len(audio), frames * spf)
    padded[:n] = audio[:n]
    return np.log10(np.mean(padded.reshape(frames, spf) ** 2, axis=1) + 1e-8)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-12 or b.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def head_speed(motion: np.ndarray, mask: np.ndarray, fps: float = 25.0) -> float:
    vel = np.abs(np.diff(motion[:, 100:103], axis=0)).sum(1) * fps
    sel = mask[1:] & mask[:-1]
    return float(vel[sel].mean()) if sel.any() else float("nan")


#: A blink is a local maximum of coefficient 6 above this (half the corpus' smallest blink, 1.3).
BLINK_PEAK = 0.65
#: A lip press is coefficient 3 above this (half the corpus' full press, 1.2).
PRESS_ON = 0.6


#: A blink "follows speech" when it peaks at most this many frames after a speech mask falls.
BLINK_AFTER_SPEECH = 10


def blink_figures(motion: np.ndarray, masks: np.ndarray, fps: float = 25.0) -> tuple[float, float, float]:
    """(blinks per minute, mean blink peak, share after speech) of ``motion`` [T, 108].

    Blinks are local maxima of coefficient 6 above ``BLINK_PEAK``; ``masks`` [2, T] are both people's
    speech masks.
    """
    b = motion[:, 6]
    mid = b[1:-1]
    at = np.flatnonzero((mid > BLINK_PEAK) & (mid >= b[:-2]) & (mid > b[2:])) + 1
    falls = np.flatnonzero((masks[:, :-1] & ~masks[:, 1:]).any(axis=0)) + 1
    after = np.zeros(len(at), dtype=bool)
    if len(falls):
        last = np.searchsorted(falls, at, side="right") - 1  # the latest fall at or before each blink
        after = (last >= 0) & (at - falls[np.maximum(last, 0)] <= BLINK_AFTER_SPEECH)
    rate = len(at) / (len(motion) / fps / 60.0)
    if not len(at):
        return rate, float("nan"), float("nan")
    return rate, float(b[at].mean()), float(np.mean(after))


def person_figures(
    pred: np.ndarray,
    gt: np.ndarray,
    own: np.ndarray,
    partner: np.ndarray,
    speaking: np.ndarray,
    masks: np.ndarray,
) -> dict:
    listening = ~speaking
    out = {
        "jaw_vs_own_energy": corr(pred[:, 103], own),
        "gt_jaw_vs_own_energy": corr(gt[:, 103], own),
        "jaw_vs_partner_energy": corr(pred[:, 103], partner),
        "gt_jaw_vs_partner_energy": corr(gt[:, 103], partner),
        "jaw_speaking": float(pred[speaking, 103].mean()) if speaking.any() else float("nan"),
        "jaw_listening": float(pred[listening, 103].mean()) if listening.any() else float("nan"),
        "gt_jaw_speaking": float(gt[speaking, 103].mean()) if speaking.any() else float("nan"),
        "gt_jaw_listening": float(gt[listening, 103].mean()) if listening.any() else float("nan"),
        "head_speed_listening": head_speed(pred, listening),
        "head_speed_speaking": head_speed(pred, speaking),
        "gt_head_speed_listening": head_speed(gt, listening),
        "gt_head_speed_speaking": head_speed(gt, speaking),
    }
    for prefix, x in (("", pred), ("gt_", gt)):
        rate, peak, after = blink_figures(x, masks)
        out[prefix + "blinks_per_minute"] = rate
        out[prefix + "blink_peak"] = peak
        out[prefix + "blinks_after_speech"] = after
        press = x[:, 3] > PRESS_ON
        out[prefix + "press_speaking"] = float(press[speaking].mean()) if speaking.any() else float("nan")
        out[prefix + "press_listening"] = float(press[listening].mean()) if listening.any() else float("nan")
    m = evaluate_sequence(pred, gt, speech_mask=speaking)
    for k in ("S_PDD", "S_JDD", "L_PDD", "L_JDD"):
        out[k] = float(m[k])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="demo")
    ap.add_argument("--data", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model = UniLS.from_pretrained(args.model)
    clips = sorted(p for p in (Path(args.data) / "conversations").iterdir() if p.is_dir())[: args.limit]
    rows = []
    t0 = time.perf_counter()
    seconds = 0.0
    for clip in clips:
        a, _ = sf.read(clip / "speaker0.wav", dtype="float32")
        b, _ = sf.read(clip / "speaker1.wav", dtype="float32")
        data = np.load(clip / "motion.npz")
        gts, mask = [data["speaker0"], data["speaker1"]], data["speech_mask"].astype(bool)
        preds = model.generate_both(a, b, sample_rate=16000, seed=args.seed, progress=False)
        seconds += len(a) / 16000
        frames = min(len(preds[0]), gts[0].shape[0])
        energy = [log_energy(a, frames), log_energy(b, frames)]
        for p in range(2):
            rows.append(
                person_figures(
                    preds[p].to_array()[:frames],
                    gts[p][:frames],
                    energy[p],
                    energy[1 - p],
                    mask[p, :frames],
                    mask[:, :frames],
                )
            )
    elapsed = time.perf_counter() - t0
    keys = rows[0].keys()
    with warnings.catch_warnings():  # a figure that is NaN for every person (no blinks at all) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        summary = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    result = {
        "model": args.model,
        "data": str(args.data),
        "conversations": len(clips),
        "people": len(rows),
        "audio_seconds": round(seconds, 1),
        "generation_seconds": round(elapsed, 1),
        "mean": {k: round(v, 4) for k, v in summary.items()},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
