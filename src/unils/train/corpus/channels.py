"""Constants of the synthetic corpus: version, durations, the motion channels the rules drive, timing."""

from __future__ import annotations

from ...config import FPS, SAMPLE_RATE

__all__ = ["BACKCHANNELS", "BLINK_AFTER_SENTENCE", "BLINK_INTERVAL", "CHANNELS", "CORPUS_VERSION"]

#: Bumped whenever a rule changes the output for a given seed.
CORPUS_VERSION = 2
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
#: Shortest and longest conversation
#: [`generate_conversation`][unils.train.corpus.generate.generate_conversation] accepts, in seconds.
MIN_SECONDS = 2.0
MAX_SECONDS = 3600.0

EXPR_MOUTH_OPEN = 0
EXPR_LIP_ROUND = 1
EXPR_LIP_SPREAD = 2
EXPR_LIP_PRESS = 3
EXPR_BROW_RAISE = 4
EXPR_SMILE = 5
EXPR_BLINK = 6
HEAD_PITCH = 100
HEAD_YAW = 101
HEAD_ROLL = 102
JAW = 103
#: Named columns of the generated motion (recorded in ``dataset.json``).
CHANNELS: dict[str, int | list[int]] = {
    "mouth_open": EXPR_MOUTH_OPEN,
    "lip_round": EXPR_LIP_ROUND,
    "lip_spread": EXPR_LIP_SPREAD,
    "lip_press": EXPR_LIP_PRESS,
    "brow_raise": EXPR_BROW_RAISE,
    "smile": EXPR_SMILE,
    "blink": EXPR_BLINK,
    "head_pitch": HEAD_PITCH,
    "head_yaw": HEAD_YAW,
    "head_roll": HEAD_ROLL,
    "jaw": JAW,
    "gaze": [104, 105, 106, 107],
}
#: Blinks follow the conversation: each person blinks in the pause after every sentence, their own
#: and the partner's (onset this many seconds after the speech ends, uniform in the range) ...
BLINK_AFTER_SENTENCE = (0.04, 0.12)
#: ... never two onsets closer than the first value, and never longer than the second without a
#: blink (a gap is filled by spontaneous blinks at random points of it).
BLINK_INTERVAL = (1.0, 6.0)
#: Blink pulse: closing, closed, opening (seconds).
BLINK_SHAPE = (0.06, 0.04, 0.10)
#: Backchannel transcript -> what eSpeak is given ("mm-hmm" as text is read as letters).
BACKCHANNELS: dict[str, str] = {
    "yeah": "yeah",
    "mm-hmm": "[[m@'h@m]]",
    "right": "right",
    "okay": "okay",
    "uh-huh": "uh-huh",
    "I see": "I see",
}
BACKCHANNEL_P = (0.3, 0.25, 0.15, 0.15, 0.1, 0.05)

DT = 0.01  # internal control step: 100 Hz, 4 steps per frame
SUB = 4
NOISE_FLOOR = 10 ** (-66 / 20)  # RMS of the background noise added to both tracks (-66 dBFS)
