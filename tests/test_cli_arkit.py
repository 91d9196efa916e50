"""ARKit from the command line: --arkit files, --livelink packets, ARKit curve plots."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from unils import Motion
from unils.arkit import ArkitAnimation, decode_packet, to_arkit
from unils.cli import main

DIALOGUE = Path(__file__).resolve().parents[1] / "examples" / "dialogue"
A, B = str(DIALOGUE / "person_a.flac"), str(DIALOGUE / "person_b.flac")
FLAGS = ["--seed", "3", "--temperature", "0.8"]


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    d = tmp_path_factory.mktemp("arkit_cli")
    assert (
        main(
            [
                "-q",
                "generate",
                A,
                "-p",
                B,
                "--both",
                "-o",
                str(d / "m.npz"),
                "--arkit",
                str(d / "a.csv"),
                *FLAGS,
            ]
        )
        == 0
    )
    return d


def test_generate_writes_arkit_files_per_person(offline):
    for motion_name, arkit_name in (("m.npz", "a.csv"), ("m_partner.npz", "a_partner.csv")):
        motion = Motion.load(offline / motion_name)
        got = ArkitAnimation.load(offline / arkit_name)
        want = to_arkit(motion, expression_map="demo")  # the demo's own map, used without --arkit-map
        assert len(got) == len(motion) == 400
        np.testing.assert_allclose(got.weights, want.weights, atol=1e-4)
        np.testing.assert_allclose(got.head, want.head, atol=1e-4)
        assert got.weights[:, list(got.names).index("jawOpen")].max() > 0.1  # the speaker's jaw moves
        # the demo's map at work: smiles and blinks are filled
        assert got.weights[:, list(got.names).index("mouthSmileLeft")].max() > 0.3
        assert got.weights[:, list(got.names).index("eyeBlinkLeft")].max() > 0.5


def test_bad_arkit_path_is_refused_before_generating(tmp_path, capsys):
    assert main(["-q", "generate", A, "-o", str(tmp_path / "m.npz"), "--arkit", str(tmp_path / "a.txt")]) == 2
    assert "--arkit a.txt" in capsys.readouterr().err and not (tmp_path / "m.npz").exists()


class Receiver:
    """A loopback UDP receiver collecting Live Link packets until told to stop (bounded wait)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.packets: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.packets.append(self.sock.recv(4096))
            except OSError:
                continue

    def stop(self, expected: int, timeout: float = 10.0) -> None:
        t = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if len(self.packets) >= expected:
                break
            t.wait(0.05)
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def test_stream_sends_one_livelink_packet_per_frame_equal_to_offline(offline, tmp_path, capsys):
    rx = Receiver()
    argv = ["-q", "stream", A, "-p", B, "--block-ms", "400", "-o", str(tmp_path / "s.npz"), *FLAGS]
    assert main([*argv, "--livelink", f"127.0.0.1:{rx.port}", "--subject", "avatar"]) == 0
    rx.stop(expected=400)
    assert '"packets": 400' in capsys.readouterr().out
    packets = [decode_packet(p) for p in rx.packets]
    assert len(packets) == 400 and {p.subject for p in packets} == {"avatar"}
    frames = [p.frame for p in packets]
    assert frames == list(range(frames[0], frames[0] + 400))  # in order, none lost or repeated
    want = to_arkit(Motion.load(offline / "m.npz"), expression_map="demo").livelink_values()  # the demo's map
    np.testing.assert_allclose(np.stack([p.values for p in packets]), want, atol=1e-4)


def test_livelink_errors_are_typed_and_a_closed_port_never_stops_the_stream(tmp_path, capsys):
    assert main(["-q", "stream", A, "--livelink", "not a host:99999"]) == 2
    assert "unils stream: error:" in capsys.readouterr().err
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there: ICMP "port unreachable" comes back
    assert (
        main(
            [
                "-q",
                "stream",
                A,
                "--block-ms",
                "400",
                "--livelink",
                f"127.0.0.1:{port}",
                "-o",
                str(tmp_path / "x.npz"),
            ]
        )
        == 0
    )
    assert len(Motion.load(tmp_path / "x.npz")) == 400


def test_arkit_curve_plots(offline, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    assert (
        main(
            [
                "-q",
                "plot",
                str(offline / "m.npz"),
                str(offline / "m_partner.npz"),
                "--arkit",
                "-a",
                A,
                "-p",
                B,
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.stat().st_size > 10_000
    still, curves = tmp_path / "still.png", tmp_path / "ak.png"
    assert (
        main(
            ["-q", "preview", str(offline / "m.npz"), "-a", A, "-o", str(still), "--arkit-plot", str(curves)]
        )
        == 0
    )
    assert curves.stat().st_size > 10_000
