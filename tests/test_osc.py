"""The OSC path, driven by liblo's oscsend / oscdump (a client that is not ours), with a tiny real model."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pythonosc.udp_client import SimpleUDPClient

from llaqo_backend.engine import Engine
from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig
from llaqo_model.analysis.report import RUBRIC_KEYS

RATE = 44100
needs_liblo = pytest.mark.skipif(
    shutil.which("oscsend") is None or shutil.which("oscdump") is None,
    reason="liblo-tools (oscsend/oscdump) not installed; scripts/setup.sh --test installs them as root",
)


@pytest.fixture(scope="module")
def osc_take(chorale, tmp_path_factory) -> tuple[np.ndarray, Path]:
    """8 s of the chorale, as samples and as a bounced WAV."""
    from llaqo_training.examples import mechanical_performance
    from llaqo_training.render import render_notes

    audio = render_notes(mechanical_performance(chorale, bpm=100.0), sample_rate=RATE)[: 8 * RATE]
    path = tmp_path_factory.mktemp("bounce") / "bounce.wav"
    sf.write(path, audio, RATE)
    return audio, path


@pytest.fixture(scope="module")
def osc_server(analyzer, tmp_path_factory):
    from llaqo_model.model.assess import Assessor, build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny")
    engine = Engine(analyzer.transcriber, Assessor.load(checkpoint, "cpu"))
    config = ServerConfig(ws_port=0, osc_port=0, results_dir=tmp_path_factory.mktemp("results"),
                          files_from=[tmp_path_factory.getbasetemp()])
    with ServerThread(Server(engine, config)) as running:
        yield running


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dump:
    """oscdump on a free port; a reader thread collects replies as (address, args text)."""

    def __init__(self) -> None:
        import queue
        import threading

        self.port = free_udp_port()
        self.proc = subprocess.Popen(["oscdump", "-L", str(self.port)], stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.3)

    def _read(self) -> None:
        for line in self.proc.stdout:
            parts = line.split()
            if parts and not parts[0].startswith("/"):
                parts = parts[1:]  # oscdump's timestamp column
            if parts:
                self.lines.put((parts[0], " ".join(parts[2:])))

    def until(self, address: str, timeout: float = 180) -> list[tuple[str, str]]:
        """Replies up to and including the first one sent to `address` (fails after `timeout`)."""
        import queue

        lines: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                lines.append(self.lines.get(timeout=1))
            except queue.Empty:
                continue
            if lines[-1][0] == address:
                return lines
        raise AssertionError(f"no {address} within {timeout} s; got {lines}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def oscsend(port: int, address: str, types: str = "", *values: object) -> None:
    subprocess.run(["oscsend", "127.0.0.1", str(port), address, types, *map(str, values)], check=True)


@needs_liblo
def test_bounced_file_gets_ratings_feedback_and_result_file(osc_server, osc_take, chorale_path):
    port = osc_server.server.osc_port
    dump = Dump()
    try:
        oscsend(port, "/llaqo/reply", "i", dump.port)
        oscsend(port, "/llaqo/assess/file", "ss", osc_take[1], chorale_path)
        lines = dump.until("/llaqo/result/file")
        oscsend(port, "/llaqo/ask", "s", "How was my pedalling?")
        answer = dump.until("/llaqo/answer")[-1]
        oscsend(port, "/llaqo/no/such/thing")
        oscsend(port, "/llaqo/assess/file", "s", "/nonexistent/take.wav")
        unknown = dump.until("/llaqo/error")[-1]
        missing = dump.until("/llaqo/error")[-1]
    finally:
        dump.close()
    addresses = [a for a, _ in lines]
    assert addresses[0] == "/llaqo/progress"
    rated = [args.split(" ")[0].strip('"') for a, args in lines if a == "/llaqo/rating"]
    assert rated == [*RUBRIC_KEYS, "overall"]
    assert "/llaqo/feedback" in addresses
    result = json.loads(Path(lines[-1][1].strip('"')).read_text())
    # the score was used, and the first 8 s of the piece are a take of it (its opening bars), not a mismatch
    assert result["report"]["alignment"]["matches_score"] is True
    assert not any(a == "/llaqo/error" and "score_mismatch" in args for a, args in lines)
    assert set(result["assessment"]["ratings"]) == set(RUBRIC_KEYS)
    assert answer[0] == "/llaqo/answer" and len(answer[1]) > 2
    assert "unknown_type" in unknown[1]
    assert "bad_audio" in missing[1]


@needs_liblo
def test_streamed_blobs_from_a_patch_get_a_report(osc_server, osc_take):
    audio, _ = osc_take
    port = osc_server.server.osc_port
    dump = Dump()
    try:
        patch = SimpleUDPClient("127.0.0.1", port)
        oscsend(port, "/llaqo/reply", "i", dump.port)  # same host: replies for the patch go to oscdump too
        patch.send_message("/llaqo/take/start", [RATE, 1])
        for i in range(0, len(audio), 1024):  # 4 KB blobs
            patch.send_message("/llaqo/take/chunk", [audio[i : i + 1024].astype("<f4").tobytes()])
            if i % (RATE // 2) < 1024:
                time.sleep(0.01)  # let the UDP buffer drain like a real-time patch would
        patch.send_message("/llaqo/take/end", [])
        lines = dump.until("/llaqo/result/file")
    finally:
        dump.close()
    result = json.loads(Path(lines[-1][1].strip('"')).read_text())
    assert abs(result["report"]["duration_s"] - 8.0) < 0.1
    assert len(result["report"]["notes"]) > 20
    assert result["assessment"]["overall"] >= 1


def test_reaper_script_codec_talks_to_the_server(osc_server):
    """The REAPER ReaScript's stdlib OSC codec: python-osc reads what it writes, and it reads the server."""
    import socket

    from pythonosc.osc_message import OscMessage

    from llaqo_bridge.reaper_llaqo_assess import osc_message, parse_osc

    encoded = OscMessage(osc_message("/llaqo/assess/file", "/tmp/a b.wav", 3, 0.5))
    assert encoded.address == "/llaqo/assess/file" and encoded.params == ["/tmp/a b.wav", 3, 0.5]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(30)
        server = ("127.0.0.1", osc_server.server.osc_port)
        sock.sendto(osc_message("/llaqo/reply", sock.getsockname()[1]), server)  # as the ReaScript does
        sock.sendto(osc_message("/llaqo/assess/file", "/nonexistent/bounce.wav"), server)
        address, args = parse_osc(sock.recv(65536))
        while address == "/llaqo/progress":
            address, args = parse_osc(sock.recv(65536))
    assert address == "/llaqo/error" and args[0] == "bad_audio" and "bounce.wav" in args[1]
