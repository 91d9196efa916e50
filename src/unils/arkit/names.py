"""Apple's 52 ARKit blendshape names in Unreal Live Link's order, and the 61 Live Link Face channels.

The order is that of Unreal's ``EARFaceBlendShape`` enum (``ARTrackable.h`` in Epic's AugmentedReality
module), which is also the order of the floats in a Live Link Face UDP packet and of the columns of a
Live Link Face CSV. Names are Apple's ``ARFaceAnchor.BlendShapeLocation`` raw values (camelCase);
lookups ignore case, so Unreal's PascalCase (``JawOpen``) works as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ..errors import ArkitError

__all__ = [
    "ARKIT_NAMES",
    "LIVELINK_NAMES",
    "LIVELINK_ROTATION_NAMES",
    "NUM_BLENDSHAPES",
    "NUM_LIVELINK_VALUES",
    "arkit_index",
    "mirror_index",
]

#: Apple's 52 blendshape names (camelCase) in the order of Unreal's ``EARFaceBlendShape``.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip

#: Number of ARKit blendshapes (52).
NUM_BLENDSHAPES = len(ARKIT_NAMES)

#: The 9 rotation channels that follow the 52 weights in a Live Link Face packet and CSV.
LIVELINK_ROTATION_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
    "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip

#: The 61 Live Link Face channels as Unreal names them (PascalCase), in packet / CSV order.
LIVELINK_NAMES: tuple[str, ...] = (
    *(n[0].upper() + n[1:] for n in ARKIT_NAMES),
    *LIVELINK_ROTATION_NAMES,
)

#: Number of floats in a Live Link Face packet (61).
NUM_LIVELINK_VALUES = len(LIVELINK_NAMES)

_INDEX: Mapping[str, int] = MappingProxyType({n.lower(): i for i, n in enumerate(LIVELINK_NAMES)})


def arkit_index(name: str) -> int:
    """Position of a blendshape (0-51) or Live Link rotation channel (52-60), ignoring case.

    Args:
        name: e.g. ``"jawOpen"``, ``"JawOpen"`` or ``"HeadYaw"``.

    Returns:
        The index into [`LIVELINK_NAMES`][unils.arkit.names.LIVELINK_NAMES] (equal to the index into
        [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES] below 52).

    Raises:
        ArkitError: not an ARKit / Live Link name.
    """
    try:
        return _INDEX[str(name).strip().lower()]
    except KeyError:
        raise ArkitError(
            f"{name!r} is not an ARKit blendshape or Live Link channel; see unils.arkit.LIVELINK_NAMES"
        ) from None


def _partner(name: str) -> str:
    for a, b in (("Left", "Right"), ("Right", "Left")):
        if name.endswith(a):
            return name[: -len(a)] + b
        if name.startswith(a):
            return b + name[len(a) :]
    return name


def mirror_index() -> tuple[int, ...]:
    """For each of the 61 Live Link channels, the channel that takes its value in a mirrored face.

    Left and right swap (``eyeBlinkLeft`` <-> ``eyeBlinkRight``, ``mouthLeft`` <-> ``mouthRight``,
    ``LeftEyeYaw`` <-> ``RightEyeYaw``); unpaired channels map to themselves.
    """
    return tuple(_INDEX[_partner(n).lower()] for n in LIVELINK_NAMES)
