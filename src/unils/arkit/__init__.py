"""Drive ARKit-52 avatars (Unreal MetaHumans via Live Link Face, Unity, three.js / VRM) from unils motion.

numpy only. [`to_arkit`][unils.arkit.convert.to_arkit] turns a [`Motion`][unils.motion.Motion] into an
[`ArkitAnimation`][unils.arkit.animation.ArkitAnimation] (52 weights in [0, 1], head yaw/pitch/roll, per-eye
gaze); [`ArkitConverter`][unils.arkit.convert.ArkitConverter] does the same chunk by chunk for streams;
[`LiveLinkSender`][unils.arkit.livelink.LiveLinkSender] sends frames to Unreal over UDP;
``ArkitAnimation.save`` writes Live Link Face CSV or three.js-ready JSON;
[`load_head`][unils.arkit.head.load_head] gives the bundled ICT-FaceKit head (MIT) that those weights drive.
See ``docs/arkit.md``.

Example:
    ```python
    from unils.arkit import to_arkit, LiveLinkSender

    anim = to_arkit(motion, expression_map="demo")            # the demo's map; yours: "map.npz"
    anim.save("take.csv")                                     # Live Link Face CSV
    with LiveLinkSender("127.0.0.1", 11111, subject="unils") as sender:
        sender.send(anim, realtime=True)
    ```
"""

from __future__ import annotations

from .animation import ARKIT_FORMAT_VERSION, ArkitAnimation, from_livelink_values, livelink_values
from .convert import DEFAULT_EYE_FULL_ANGLE, DEFAULT_JAW_FULL_OPEN, ArkitConverter, to_arkit
from .expression_map import (
    BUNDLED_MAPS,
    ExpressionMap,
    bundled_expression_map,
    expression_map_for,
    load_expression_map,
    solve_bounded_least_squares,
)
from .head import HEAD_ASSET, ArkitHead, load_head
from .livelink import (
    DEFAULT_PORT,
    MAX_PACKET_SIZE,
    PACKET_VERSION,
    LiveLinkPacket,
    LiveLinkSender,
    decode_packet,
    encode_packet,
    parse_address,
)
from .names import (
    ARKIT_NAMES,
    LIVELINK_NAMES,
    LIVELINK_ROTATION_NAMES,
    NUM_BLENDSHAPES,
    NUM_LIVELINK_VALUES,
    arkit_index,
    mirror_index,
)
from .rotations import (
    axis_angle_to_euler,
    axis_angle_to_matrix,
    euler_to_axis_angle,
    eye_axis_angle_to_gaze,
    gaze_to_eye_axis_angle,
    matrix_to_euler,
)

__all__ = [
    "ARKIT_FORMAT_VERSION",
    "ARKIT_NAMES",
    "BUNDLED_MAPS",
    "HEAD_ASSET",
    "DEFAULT_EYE_FULL_ANGLE",
    "DEFAULT_JAW_FULL_OPEN",
    "DEFAULT_PORT",
    "LIVELINK_NAMES",
    "LIVELINK_ROTATION_NAMES",
    "MAX_PACKET_SIZE",
    "NUM_BLENDSHAPES",
    "NUM_LIVELINK_VALUES",
    "PACKET_VERSION",
    "ArkitAnimation",
    "ArkitConverter",
    "ArkitHead",
    "ExpressionMap",
    "LiveLinkPacket",
    "LiveLinkSender",
    "arkit_index",
    "axis_angle_to_euler",
    "axis_angle_to_matrix",
    "bundled_expression_map",
    "decode_packet",
    "encode_packet",
    "euler_to_axis_angle",
    "expression_map_for",
    "eye_axis_angle_to_gaze",
    "from_livelink_values",
    "gaze_to_eye_axis_angle",
    "livelink_values",
    "load_expression_map",
    "load_head",
    "matrix_to_euler",
    "mirror_index",
    "parse_address",
    "solve_bounded_least_squares",
    "to_arkit",
]
