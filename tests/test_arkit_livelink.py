"""Live Link Face packets: Unreal's layout, what Unreal rejects, and LiveLinkSender over loopback UDP."""

import socket
import struct

import numpy as np
import pytest

from unils import Motion
from unils.arkit import (
    MAX_PACKET_SIZE,
    NUM_LIVELINK_VALUES,
    ArkitConverter,
    LiveLinkSender,
    arkit_index,
    decode_packet,
    encode_packet,
    parse_address,
    to_arkit,
)
from unils.errors import ArkitError


def _unreal_layout(values, device=b"dev", subject=b"subj", frame=7, sub=0.25, num=25, den=1, count=61, version=6):
    """The packet as Epic's FAppleARKitLiveLinkRemotePublisher writes it (FNboSerializeToBuffer, big-endian)."""
    return (struct.pack(">B", version) + struct.pack(">i", len(device)) + device + struct.pack(">i", len(subject))
            + subject + struct.pack(">ifii", frame, sub, num, den) + struct.pack(">B", count)
            + struct.pack(f">{len(values)}f", *values))


def test_encoder_writes_unreals_layout_and_decoder_reads_every_value():
    values = np.linspace(-1, 1, 61, dtype=np.float32)
    packet = encode_packet(values, subject="subj", device_id="dev", frame=7, sub_frame=0.25, fps=25)
    assert packet == _unreal_layout(values.tolist())
    p = decode_packet(packet)
    assert (p.device_id, p.subject, p.frame, p.sub_frame, p.fps_numerator, p.fps_denominator) == ("dev", "subj", 7, 0.25, 25, 1)
    np.testing.assert_array_equal(p.values, values)
    assert decode_packet(encode_packet(values, fps=30000 / 1001)).fps_denominator == 1001
    assert decode_packet(encode_packet(values, subject="Gesicht-äö")).subject == "Gesicht-äö"


@pytest.mark.parametrize(
    "packet, match",
    [
        (_unreal_layout([0.0] * 61, version=5), "version 5"),
        (_unreal_layout([0.0] * 61, version=7), "version 7"),
        (_unreal_layout([0.0] * 52, count=52), "52 values"),
        (_unreal_layout([0.0] * 61)[:-1], "ends early"),
        (_unreal_layout([0.0] * 61)[:20], "ends early"),
        (b"", "ends early"),
        (_unreal_layout([0.0] * 61, device=b"x" * 900, subject=b"y" * 400), "receive buffer"),
        (struct.pack(">Bi", 6, 1000) + b"abc", "ends early"),
        (struct.pack(">Bi", 6, -3) + b"abc", "ends early"),
        (_unreal_layout([0.0] * 61) + b"\0", "unexpected"),
    ],
)
def test_decoder_rejects_what_unreal_rejects(packet, match):
    with pytest.raises(ArkitError, match=match):
        decode_packet(packet)


def test_trailing_bytes_pass_when_not_strict_and_encoder_limits():
    packet = _unreal_layout([0.5] * 61) + b"\0\0"
    assert decode_packet(packet, strict=False).values[0] == 0.5
    assert len(_unreal_layout([0.0] * 61, device=b"", subject=b"")) < MAX_PACKET_SIZE
    with pytest.raises(ArkitError, match="61"):
        encode_packet(np.zeros(60))
    with pytest.raises(ArkitError, match="256"):
        encode_packet(np.zeros(61), subject="x" * 257)


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2.0)
    yield sock
    sock.close()


def _receive(sock, n):
    return [decode_packet(sock.recv(4096)) for _ in range(n)]


def test_sender_sends_one_packet_per_frame_equal_to_to_arkit(receiver):
    rng = np.random.default_rng(0)
    motion = Motion.from_array(rng.normal(0, 0.15, (40, 108)).astype(np.float32))
    offline = to_arkit(motion)
    conv = ArkitConverter()
    port = receiver.getsockname()[1]
    with LiveLinkSender("127.0.0.1", port, subject="Avatar", device_id="unils-test", start_frame=100) as sender:
        for a in range(0, 40, 9):  # frames arriving as a stream would emit them
            assert sender.send(conv.push(motion[a : a + 9])) == len(motion[a : a + 9])
        assert sender.packets_sent == 40 and sender.errors == 0
    packets = _receive(receiver, 40)
    assert [p.frame for p in packets] == list(range(100, 140))
    assert {(p.subject, p.device_id, p.fps_numerator, p.fps_denominator) for p in packets} == {("Avatar", "unils-test", 25, 1)}
    np.testing.assert_array_equal(np.stack([p.values for p in packets]), offline.livelink_values())
    np.testing.assert_allclose(packets[5].values[arkit_index("HeadPitch")] * np.pi, offline.head[5, 1], atol=1e-6)


def test_send_frame_and_mirroring(receiver):
    port = receiver.getsockname()[1]
    weights = np.zeros(52)
    weights[arkit_index("eyeBlinkLeft")] = 0.75
    with LiveLinkSender("127.0.0.1", port, mirror=True, start_frame=0) as sender:
        assert sender.send_frame(weights, head=(0.3, 0.2, 0.1), eyes=((0.1, 0.05), (0.0, 0.0)))
    values = _receive(receiver, 1)[0].values
    assert values[arkit_index("EyeBlinkRight")] == 0.75 and values[arkit_index("EyeBlinkLeft")] == 0
    np.testing.assert_allclose(values[arkit_index("HeadYaw"):arkit_index("HeadRoll") + 1], np.array([-0.3, 0.2, -0.1]) / np.pi,
                               rtol=1e-6)
    np.testing.assert_allclose(values[arkit_index("RightEyeYaw")], -0.1 / np.pi, rtol=1e-6)


@pytest.mark.parametrize("host", ["", "   ", None, "999.1.1.1", "has space", "bad_host!", "-dash.example"])
def test_bad_hosts_are_typed_errors(host):
    with pytest.raises(ArkitError):
        LiveLinkSender(host, 11111)


@pytest.mark.parametrize("port", [0, -1, 65536, "11111", 1.5, True, None])
def test_bad_ports_are_typed_errors(port):
    with pytest.raises(ArkitError, match="port"):
        LiveLinkSender("127.0.0.1", port)


def test_parse_address():
    assert parse_address("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_address("localhost") == ("localhost", 11111)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    for bad in ("127.0.0.1:port", "127.0.0.1:70000", ":9000"):
        with pytest.raises(ArkitError):
            parse_address(bad)


def test_closed_port_is_counted_and_never_stops_sending(caplog):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there any more
    anim = to_arkit(Motion.zeros(20))
    with LiveLinkSender("127.0.0.1", port, start_frame=0) as sender:
        sent = sender.send(anim)
        sent += sender.send(anim)
    assert sender.packets_sent + sender.errors == 40 and sent == sender.packets_sent
    # Linux reports ICMP port-unreachable on the next send of a connected UDP socket
    assert sender.errors >= 1 and isinstance(sender.last_error, ConnectionRefusedError)
    assert "Live Link send" in caplog.text
    assert sender.next_frame == 40


def test_realtime_pacing(receiver):
    import time

    anim = to_arkit(Motion.zeros(6, fps=50))
    with LiveLinkSender("127.0.0.1", receiver.getsockname()[1], fps=50) as sender:
        start = time.monotonic()
        assert sender.send(anim, realtime=True) == 6
        elapsed = time.monotonic() - start
    assert elapsed >= 5 / 50 - 1e-3
    assert len(_receive(receiver, 6)) == 6
    assert NUM_LIVELINK_VALUES == 61
