"""Live Link Face over UDP, as Unreal's Apple ARKit Live Link source reads it (packet version 6).

Layout (network byte order, as Epic's ``FNboSerializeToBuffer`` writes it in
``FAppleARKitLiveLinkRemotePublisher::PublishBlendShapes``):

| field | bytes |
|---|---|
| packet version | uint8, 6 |
| device id | int32 length, then that many UTF-8 bytes |
| subject name | int32 length, then that many UTF-8 bytes |
| frame time | int32 frame number, float32 sub-frame |
| frame rate | int32 numerator, int32 denominator (25/1) |
| count | uint8, 61 |
| values | 61 float32: 52 weights, head yaw/pitch/roll, left eye yaw/pitch/roll, right eye yaw/pitch/roll |

Rotations are sent divided by pi (-1..1 for -180..180 degrees), as Epic's ARKit code does.
Unreal drops a packet whose version or count differ or that ends early; its receive buffer also
truncates packets longer than [`MAX_PACKET_SIZE`][unils.arkit.livelink.MAX_PACKET_SIZE].
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import math
import re
import socket
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from ..errors import ArkitError
from .animation import ArkitAnimation, livelink_values
from .names import NUM_BLENDSHAPES, NUM_LIVELINK_VALUES

__all__ = [
    "DEFAULT_PORT",
    "MAX_PACKET_SIZE",
    "PACKET_VERSION",
    "LiveLinkPacket",
    "LiveLinkSender",
    "decode_packet",
    "encode_packet",
    "parse_address",
]

logger = logging.getLogger("unils")

#: Packet version Unreal's Apple ARKit Live Link source accepts (FQualifiedFrameTime timecodes).
PACKET_VERSION = 6
#: Unreal's default ``LiveLinkPublishingPort`` / Live Link Face's default target port.
DEFAULT_PORT = 11111
#: Unreal's receive buffer: version + frame time + count + 61 floats + 2 x 256 two-byte TCHARs.
MAX_PACKET_SIZE = 1 + 16 + 1 + 4 * NUM_LIVELINK_VALUES + 2 * 256 * 2
_NAME_BYTES = 256  # each name fits Unreal's buffer with room for the other


@dataclass(frozen=True)
class LiveLinkPacket:
    """One decoded Live Link Face packet.

    Attributes:
        device_id: the sender's device id.
        subject: the Live Link subject name.
        frame: frame number (at ``fps_numerator / fps_denominator``).
        sub_frame: fraction of a frame, [0, 1).
        fps_numerator: frame-rate numerator.
        fps_denominator: frame-rate denominator.
        values: float32 [61] in [`LIVELINK_NAMES`][unils.arkit.names.LIVELINK_NAMES] order.
    """

    device_id: str
    subject: str
    frame: int
    sub_frame: float
    fps_numerator: int
    fps_denominator: int
    values: np.ndarray


def _name_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ArkitError(f"the Live Link {what} must be a string, got {type(value).__name__}")
    raw = value.encode("utf-8")
    if len(raw) > _NAME_BYTES:
        raise ArkitError(
            f"the Live Link {what} is {len(raw)} UTF-8 bytes; Unreal reads at most {_NAME_BYTES}"
        )
    return raw


def _rate(fps: float) -> tuple[int, int]:
    if (
        isinstance(fps, bool)
        or not isinstance(fps, (int, float, np.integer, np.floating))
        or not (math.isfinite(float(fps)) and float(fps) > 0)
    ):
        raise ArkitError(f"fps must be a positive number, got {fps!r}")
    frac = Fraction(float(fps)).limit_denominator(1001)
    return frac.numerator, frac.denominator


def encode_packet(
    values: Any,
    *,
    subject: str = "unils",
    device_id: str = "unils",
    frame: int = 0,
    sub_frame: float = 0.0,
    fps: float = 25.0,
) -> bytes:
    """Build one Live Link Face packet (layout in the module docstring).

    Args:
        values: 61 numbers in [`LIVELINK_NAMES`][unils.arkit.names.LIVELINK_NAMES] order (see
            [`livelink_values`][unils.arkit.animation.livelink_values]).
        subject: Live Link subject name (at most 256 UTF-8 bytes).
        device_id: device id (at most 256 UTF-8 bytes).
        frame: frame number (int32).
        sub_frame: fraction of a frame.
        fps: frame rate, sent as numerator / denominator (25 -> 25/1, 29.97 -> 30000/1001).

    Returns:
        The packet bytes.

    Raises:
        ArkitError: not 61 finite values, names too long, or a frame outside int32.
    """
    v = np.asarray(values, np.float64).reshape(-1)
    if v.shape != (NUM_LIVELINK_VALUES,) or not np.isfinite(v).all():
        raise ArkitError(f"a Live Link packet carries {NUM_LIVELINK_VALUES} finite values, got {v.size}")
    dev, subj = _name_bytes(device_id, "device id"), _name_bytes(subject, "subject name")
    if not -(2**31) <= int(frame) < 2**31:
        raise ArkitError(f"frame number {frame} does not fit an int32")
    num, den = _rate(fps)
    return b"".join(
        [
            struct.pack(">B", PACKET_VERSION),
            struct.pack(">i", len(dev)), dev,
            struct.pack(">i", len(subj)), subj,
            struct.pack(">ifiiB", int(frame), float(sub_frame), num, den, NUM_LIVELINK_VALUES),
            struct.pack(f">{NUM_LIVELINK_VALUES}f", *v.astype(np.float32).tolist()),
        ]
    )  # fmt: skip


def decode_packet(data: bytes, *, strict: bool = True) -> LiveLinkPacket:
    """Read a Live Link Face packet, rejecting what Unreal rejects.

    Args:
        data: the datagram.
        strict: also reject bytes after the 61 values (Unreal ignores them).

    Returns:
        The decoded [`LiveLinkPacket`][unils.arkit.livelink.LiveLinkPacket].

    Raises:
        ArkitError: wrong version, wrong count, a packet that ends early (including a name length
            running past the end), one longer than Unreal's receive buffer, or invalid UTF-8.
    """
    buf = bytes(data)
    if len(buf) > MAX_PACKET_SIZE:
        raise ArkitError(f"packet of {len(buf)} bytes exceeds Unreal's {MAX_PACKET_SIZE}-byte receive buffer")
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > len(buf):
            raise ArkitError(f"packet ends early while reading the {what} ({len(buf)} bytes)")
        out = buf[pos : pos + n]
        pos += n
        return out

    (version,) = struct.unpack(">B", take(1, "version"))
    if version != PACKET_VERSION:
        raise ArkitError(
            f"packet version {version}, Unreal's Live Link Face source reads version {PACKET_VERSION}"
        )
    names = []
    for what in ("device id", "subject name"):
        (n,) = struct.unpack(">i", take(4, f"{what} length"))
        try:
            names.append(take(n, what).decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise ArkitError(f"the {what} is not UTF-8: {exc}") from exc
    frame, sub_frame, num, den, count = struct.unpack(">ifiiB", take(17, "frame time"))
    if count != NUM_LIVELINK_VALUES:
        raise ArkitError(f"packet carries {count} values, Unreal expects {NUM_LIVELINK_VALUES}")
    values = np.array(struct.unpack(f">{count}f", take(4 * count, "values")), np.float32)
    if strict and pos != len(buf):
        raise ArkitError(f"{len(buf) - pos} unexpected byte(s) after the values")
    return LiveLinkPacket(names[0], names[1], frame, sub_frame, num, den, values)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def _check_host(host: Any) -> str:
    if not isinstance(host, str) or not host.strip():
        raise ArkitError(f"Live Link host must be a host name or IP address, got {host!r}")
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    try:
        ipaddress.ip_address(h)
        return h
    except ValueError:
        pass
    labels = h.rstrip(".").split(".")
    if (
        all(lab.isdigit() for lab in labels)
        or not all(_HOST_LABEL.match(lab) for lab in labels)
        or len(h) > 253
    ):
        raise ArkitError(f"{host!r} is not a valid host name or IP address")
    return h


def _check_port(port: Any) -> int:
    if isinstance(port, bool) or not isinstance(port, (int, np.integer)) or not 1 <= int(port) <= 65535:
        raise ArkitError(f"Live Link port must be an integer in 1-65535, got {port!r}")
    return int(port)


def parse_address(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``HOST``, or ``[IPv6]:PORT``) as given to ``--livelink``.

    Raises:
        ArkitError: a malformed host or port.
    """
    if not isinstance(text, str):
        raise ArkitError(f"Live Link address must be HOST:PORT, got {text!r}")
    s = text.strip()
    if s.startswith("["):
        host, _, rest = s[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif s.count(":") == 1:
        host, port_text = s.split(":")
    else:
        host, port_text = s, ""
    port: Any = default_port
    if port_text:
        try:
            port = int(port_text)
        except ValueError:
            raise ArkitError(f"Live Link port must be an integer, got {port_text!r} in {text!r}") from None
    return _check_host(host), _check_port(port)


def _frames_since_midnight(fps: float) -> int:
    now = datetime.datetime.now()
    seconds = now.hour * 3600 + now.minute * 60 + now.second + now.microsecond / 1e6
    return int(seconds * fps)


class LiveLinkSender:
    """Sends ARKit frames to Unreal (or any Live Link Face receiver) over UDP.

    Socket errors while sending (an unreachable host, a closed port reported by ICMP, a full buffer) never
    raise: they are logged on the ``unils`` logger, counted in
    [`errors`][unils.arkit.livelink.LiveLinkSender.errors] and kept in
    [`last_error`][unils.arkit.livelink.LiveLinkSender.last_error], so a stream loop keeps going.

    Args:
        host: receiver's host name or IP address (Unreal's machine).
        port: receiver's UDP port (Unreal's ``LiveLinkPublishingPort``, 11111 by default).
        subject: Live Link subject name shown in Unreal.
        device_id: device id in the packets (default: the subject name).
        fps: frame rate written into packets and used for pacing.
        mirror: mirror the face (swap left/right, negate yaw and roll; see
            [`livelink_values`][unils.arkit.animation.livelink_values]).
        start_frame: frame number of the first packet; None = frames since local midnight, like
            Live Link Face's timecode.

    Raises:
        ArkitError: a malformed host or port, a name that is too long, or a host that cannot be
            resolved.

    Example:
        ```python
        with LiveLinkSender("127.0.0.1", 11111, subject="unils") as sender:
            sender.send(to_arkit(motion), realtime=True)
        ```
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        subject: str = "unils",
        device_id: str | None = None,
        fps: float = 25.0,
        mirror: bool = False,
        start_frame: int | None = None,
    ) -> None:
        self.host = _check_host(host)
        self.port = _check_port(port)
        _name_bytes(subject, "subject name")
        self.subject = subject
        self.device_id = subject if device_id is None else device_id
        _name_bytes(self.device_id, "device id")
        self.fps = float(fps)
        _rate(self.fps)
        self.mirror = bool(mirror)
        self.next_frame = _frames_since_midnight(self.fps) if start_frame is None else int(start_frame)
        #: Packets sent so far.
        self.packets_sent = 0
        #: Socket errors while sending so far (logged and counted, never raised).
        self.errors = 0
        #: The last of those socket errors, or None.
        self.last_error: OSError | None = None
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ArkitError(f"cannot resolve Live Link host {self.host!r}: {exc}") from exc
        family, _, _, _, address = infos[0]
        self.address: tuple[Any, ...] = tuple(address)
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # A connected UDP socket reports ICMP "port unreachable" on a later send, which is how a
            # closed port becomes visible (counted, never raised).
            self._sock.connect(self.address)
        except OSError as exc:
            self._sock.close()
            raise ArkitError(f"cannot address Live Link receiver {self.host}:{self.port}: {exc}") from exc

    def send_values(self, values: Any, *, sub_frame: float = 0.0) -> bool:
        """Send one packet of 61 values (already in Live Link order and units) as the next frame.

        Returns:
            True when the datagram was handed to the network, False after a socket error.
        """
        packet = encode_packet(
            values,
            subject=self.subject,
            device_id=self.device_id,
            frame=self.next_frame,
            sub_frame=sub_frame,
            fps=self.fps,
        )
        self.next_frame = (self.next_frame + 1) % (2**31)
        try:
            self._sock.send(packet)
        except OSError as exc:
            self.errors += 1
            self.last_error = exc
            if self.errors == 1 or self.errors % 100 == 0:
                logger.warning(
                    "Live Link send to %s:%d failed (%d so far): %s", self.host, self.port, self.errors, exc
                )
            return False
        self.packets_sent += 1
        return True

    def send_frame(
        self, weights: Any, head: Any = (0.0, 0.0, 0.0), eyes: Any = ((0.0, 0.0), (0.0, 0.0))
    ) -> bool:
        """Send one frame.

        Args:
            weights: 52 ARKit weights in [`ARKIT_NAMES`][unils.arkit.names.ARKIT_NAMES] order.
            head: (yaw, pitch, roll), radians.
            eyes: [[yaw, pitch] of the left eye, [yaw, pitch] of the right eye], radians.

        Returns:
            True when sent, False after a socket error (counted in
            [`errors`][unils.arkit.livelink.LiveLinkSender.errors]).
        """
        w = np.asarray(weights, np.float64).reshape(1, NUM_BLENDSHAPES)
        h = np.asarray(head, np.float64).reshape(1, 3)
        e = np.asarray(eyes, np.float64).reshape(1, 2, 2)
        return self.send_values(livelink_values(w, h, e, mirror=self.mirror)[0])

    def send(self, animation: ArkitAnimation, *, realtime: bool = False) -> int:
        """Send every frame of an animation, one packet per frame.

        Args:
            animation: the frames to send.
            realtime: pace packets at the animation's fps (from the first packet); False sends at once.

        Returns:
            The number of packets sent without a socket error.
        """
        values = animation.livelink_values(mirror=self.mirror)
        start = time.monotonic()
        sent = 0
        for i, row in enumerate(values):
            if realtime:
                delay = start + i / animation.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent += self.send_values(row)
        return sent

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()

    def __enter__(self) -> LiveLinkSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveLinkSender({self.host}:{self.port}, subject={self.subject!r}, sent={self.packets_sent}, errors={self.errors})"
