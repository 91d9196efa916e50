"""Procedural two-person conversations: real synthesized speech and rule-based 108-d motion.

The package: `unils.train.corpus.planning` (voices, grammar, turns),
`unils.train.corpus.motion_rules` (the motion rules), `unils.train.corpus.generate`
(one conversation) and `unils.train.corpus.writing` (a corpus on disk); every name below is
importable from here.

A conversation is planned from a seed: two eSpeak NG voices, sentences from a small built-in grammar, turns
with pauses, overlapping turn changes and short listener backchannels ("yeah", "mm-hmm", "right", "okay").
Each utterance is synthesized ([`unils.train.tts`][unils.train.tts]) with its phoneme timing; the motion of
both people is then built from that timing by fixed rules, at an internal 100 Hz and averaged to 25 fps frames
(frame ``f`` covers audio samples ``[640 f, 640 (f + 1))``).

Motion channels (columns of the 108-d vector; every other expression coefficient carries only
small slow noise):

| channel | column | behaviour |
|---|---|---|
| mouth opening | 0 | follows the jaw (lip aperture); pressed lips pull it down |
| lip rounding | 1 | rounded vowels and consonants (u, o, w, sh) |
| lip spreading | 2 | spread vowels (i, e) and j |
| lip press | 3 | bilabial closures (p, b, m), weaker for f and v |
| brow raise | 4 | stressed words, questions, listener feedback |
| smile | 5 | per-person mood, listener smiles around backchannels |
| blink | 6 | eyelid closure pulse: about 200 ms, peak 1.3-1.7, in the pause after every sentence (own and partner's), 1-6 s apart |
| texture | 7-14 | small fixed mixtures of the four articulation channels |
| noise | 15-99 | slow Ornstein-Uhlenbeck noise, decreasing with the index |
| head pitch | 100 | nod; positive is chin down |
| head yaw | 101 | turn; follows gaze aversions a little |
| head roll | 102 | tilt |
| jaw | 103 | opening in radians: about 0.15-0.2 open vowels, 0-0.03 bilabials |
| gaze | 104-107 | eye 1 (x vertical, y horizontal), eye 2 (x, y), radians; 0 looks at the partner |

Rules: articulation targets per phoneme class (open / mid / close vowels, bilabial, labiodental,
other consonants, pauses), 20 ms anticipation, one-pole attack/release smoothing; speakers nod and
raise brows on some stressed syllables, nod at the end of a statement turn and raise and tilt the
head at the end of a question, avert their gaze at the start of turns; listeners nod (single or
double) and shift gaze in the partner's pauses, nod at their own backchannels and sometimes on the
partner's stressed syllables; everyone sways slowly (sinusoids plus Ornstein-Uhlenbeck noise, more
while speaking) and blinks. All randomness comes from numpy Generators seeded by the conversation
seed, and the synthesized audio depends only on text and voice, so a seed gives byte-identical
output.

A corpus on disk ([`write_corpus`][unils.train.corpus.writing.write_corpus]):

```text
DIR/
  dataset.json           {"format": "unils-dataset", "version": 1, "fps": 25, "sample_rate": 16000,
                          "generator": {... parameters, seed ...}}
  conversations/<clip_id>/
      speaker0.wav, speaker1.wav   mono 16 kHz PCM16, equal length, T * 640 samples
      motion.npz                   speaker0 [T, 108] float32, speaker1 [T, 108] float32,
                                   speech_mask [2, T] bool (True where that person speaks)
  motion_only/<clip_id>.npz        motion [T, 108] float32 (one person of a generated conversation)
```
"""

from __future__ import annotations

from .channels import (
    BACKCHANNELS,
    BLINK_AFTER_SENTENCE,
    BLINK_INTERVAL,
    CHANNELS,
    CORPUS_VERSION,
)
from .channels import (
    EXPR_BLINK as EXPR_BLINK,
)
from .channels import (
    EXPR_BROW_RAISE as EXPR_BROW_RAISE,
)
from .channels import (
    EXPR_LIP_PRESS as EXPR_LIP_PRESS,
)
from .channels import (
    EXPR_LIP_ROUND as EXPR_LIP_ROUND,
)
from .channels import (
    EXPR_LIP_SPREAD as EXPR_LIP_SPREAD,
)
from .channels import (
    EXPR_MOUTH_OPEN as EXPR_MOUTH_OPEN,
)
from .channels import (
    EXPR_SMILE as EXPR_SMILE,
)
from .channels import (
    HEAD_PITCH as HEAD_PITCH,
)
from .channels import (
    HEAD_ROLL as HEAD_ROLL,
)
from .channels import (
    HEAD_YAW as HEAD_YAW,
)
from .channels import (
    JAW as JAW,
)
from .channels import (
    MAX_SECONDS as MAX_SECONDS,
)
from .channels import (
    MIN_SECONDS as MIN_SECONDS,
)
from .channels import (
    SAMPLES_PER_FRAME as SAMPLES_PER_FRAME,
)
from .generate import generate_conversation
from .planning import Conversation, Turn
from .writing import write_corpus

__all__ = [
    "BACKCHANNELS",
    "BLINK_AFTER_SENTENCE",
    "BLINK_INTERVAL",
    "CHANNELS",
    "CORPUS_VERSION",
    "Conversation",
    "Turn",
    "generate_conversation",
    "write_corpus",
]
