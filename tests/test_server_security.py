"""Nothing outside the musician's own programs can get in or take the server down (issue 14).

Every case sends traffic to loopback only, bounded in count and time.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import stat
import struct
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from test_server_support import raw_handshake
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from llaqo_backend.access import private_results_dir, write_private
from llaqo_backend.engine import Engine, Limits
from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig
from llaqo_bridge.client import LlaqoClient
from llaqo_bridge.reaper_llaqo_assess import osc_message, parse_osc

RATE = 44100
HELLO = json.dumps({"type": "hello", "client": "test", "protocol": 1})
FAR_FUTURE_S = 3600.0  # a bundle timetagged an hour ahead


@pytest.fixture(scope="module")
def allowed(tmp_path_factory) -> Path:
    """The only folder the server may read client-named files from."""
    return tmp_path_factory.mktemp("allowed")


@pytest.fixture(scope="module")
def secure_server(analyzer, allowed, tmp_path_factory):
    limits = Limits(max_take_s=60, max_requests_per_client=4, max_buffered_audio_s=30)
    config = ServerConfig(ws_port=0, osc_port=0, limits=limits, files_from=[allowed],
                          results_dir=tmp_path_factory.mktemp("results"), allow_origins=("https://ok.example",))
    with ServerThread(Server(Engine(analyzer.transcriber, limits=limits), config)) as running:
        yield running


async def hello_reply(url: str, **kwargs) -> dict:
    async with connect(url, **kwargs) as ws:
        await ws.send(HELLO)
        return json.loads(await asyncio.wait_for(ws.recv(), 5))


def osc_exchange(port: int, *datagrams: bytes, until: str = "/llaqo/error", timeout: float = 30) -> list:
    """Send datagrams from one socket (replies come back to it); collect replies up to `until`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        for data in datagrams:
            sock.sendto(data, ("127.0.0.1", port))
        replies = []
        while not replies or replies[-1][0] != until:
            replies.append(parse_osc(sock.recv(65536)))
        return replies


def test_a_future_osc_bundle_does_not_freeze_the_server(secure_server):
    """python-osc's dispatcher slept on the event loop until the timetag: everything hung for an hour."""
    bundle = OscBundleBuilder(time.time() + FAR_FUTURE_S)
    bundle.add_content(OscMessageBuilder("/llaqo/no/such").build())
    pattern = OscMessageBuilder("/" + "*" * 40 + "x").build()  # regex backtracking if expanded as a pattern
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(bundle.build().dgram, ("127.0.0.1", secure_server.server.osc_port))
        sock.sendto(pattern.dgram, ("127.0.0.1", secure_server.server.osc_port))
    time.sleep(0.2)
    start = time.perf_counter()
    ready = asyncio.run(hello_reply(secure_server.url))
    assert ready["type"] == "ready"
    assert time.perf_counter() - start < 1.0


def test_browser_origins_and_foreign_hosts_are_refused_native_clients_are_not(secure_server):
    url = secure_server.url
    for headers in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
        with pytest.raises(InvalidStatus) as refused:
            asyncio.run(hello_reply(url, additional_headers=headers))
        assert refused.value.response.status_code == 403
    assert asyncio.run(hello_reply(url, origin="https://ok.example"))["type"] == "ready"  # allowed explicitly
    assert asyncio.run(hello_reply(url))["type"] == "ready"  # no Origin, as the bridges and wscat send

    async def python_client():
        async with await LlaqoClient.connect(url) as client:
            return client.ready["type"]

    assert asyncio.run(python_client()) == "ready"
    sock = raw_handshake("127.0.0.1", secure_server.server.ws_port)  # a bare handshake like wscat's
    sock.close()
    port = secure_server.server.osc_port
    replies = osc_exchange(port, osc_message("/llaqo/assess/file", "/nonexistent/x.wav"))  # the REAPER codec
    assert replies[-1][1][0] == "bad_audio"


def test_osc_reads_only_inside_the_allowed_folder_and_never_through_a_symlink(secure_server, allowed, tmp_path):
    outside = tmp_path / "secret.wav"
    sf.write(outside, np.zeros(RATE, dtype=np.float32), RATE)
    planted = allowed / "planted.wav"
    planted.symlink_to(outside)
    port = secure_server.server.osc_port
    messages = {}
    for label, path in (("outside", outside), ("missing", tmp_path / "nothing.wav"), ("symlink", planted),
                        ("dotdot", allowed / ".." / tmp_path.name / "secret.wav")):
        code, message = osc_exchange(port, osc_message("/llaqo/assess/file", str(path)))[-1][1]
        assert code == "bad_audio", (label, message)
        messages[label] = message.replace(Path(path).name, "NAME")
    assert len(set(messages.values())) == 1, messages  # the reply never tells whether a path exists
    assert str(tmp_path) not in str(messages)


def test_results_are_private_and_never_written_through_a_planted_file(tmp_path):
    folder = private_results_dir(tmp_path / "results")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (folder / "take-osc-1.json").symlink_to(victim)
    written = write_private(folder, "take-osc-1", "{}")
    assert written.name == "take-osc-1-1.json" and victim.read_text() == "keep"
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600
    default = private_results_dir()
    assert stat.S_IMODE(os.lstat(default).st_mode) == 0o700 and os.lstat(default).st_uid == os.getuid()


def mxl_bomb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="s.xml"/></rootfiles>'
                                             "</container>")
        with z.open("s.xml", "w", force_zip64=True) as member:
            for _ in range(256):  # 256 MiB of blanks
                member.write(b" " * 2**20)
    return buf.getvalue()


def flac_bomb() -> bytes:
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", samplerate=655_350, channels=8, format="FLAC") as f:
        for _ in range(20):
            f.write(np.zeros((655_350, 8), dtype=np.float32))
    return buf.getvalue()


def test_bombs_get_bad_score_and_bad_audio_quickly(secure_server):
    async def go():
        async with connect(secure_server.url) as ws:
            await ws.send(HELLO)
            await ws.recv()
            start = time.perf_counter()
            await ws.send(json.dumps({"type": "score", "take_id": "b", "format": "mxl",
                                      "data": base64.b64encode(mxl_bomb()).decode()}))
            score = json.loads(await asyncio.wait_for(ws.recv(), 30))
            await ws.send(json.dumps({"type": "take.file", "take_id": "f", "format": "flac",
                                      "data": base64.b64encode(flac_bomb()).decode()}))
            audio = json.loads(await asyncio.wait_for(ws.recv(), 30))
            await ws.send(json.dumps({"type": "stats"}))
            stats = json.loads(await asyncio.wait_for(ws.recv(), 30))
            return score, audio, stats, time.perf_counter() - start

    score, audio, stats, seconds = asyncio.run(go())
    assert score["code"] == "bad_score" and "inflates" in score["message"]
    assert audio["code"] == "bad_audio" and "655350 Hz" in audio["message"]
    assert seconds < 30
    assert stats["rss_mb"] < 4000  # inflating either bomb alone would take over a gigabyte more


def test_a_flood_is_refused_past_the_cap_while_another_take_finishes(secure_server, chorale):
    """One client sends 1000 requests at once; another streams a take and gets its report."""
    from llaqo_training.examples import mechanical_performance
    from llaqo_training.render import render_notes

    audio = render_notes(mechanical_performance(chorale, bpm=100.0), sample_rate=RATE)[: 6 * RATE]

    async def flooder():
        async with connect(secure_server.url, max_size=None) as ws:
            await ws.send(HELLO)
            await ws.recv()
            await ws.send(json.dumps({"type": "take.start", "take_id": "f", "sample_rate": RATE, "channels": 1,
                                      "format": "f32le"}))
            for _ in range(1000):
                await ws.send(json.dumps({"type": "assess", "take_id": "f"}))
            await ws.send(json.dumps({"type": "stats"}))
            replies = []
            while not replies or replies[-1]["type"] != "stats":
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 60)))
            return replies

    async def player():
        async with await LlaqoClient.connect(secure_server.url) as client:
            await client.stream_take("p", audio, RATE, chunk_s=0.1)
            return await client.assess("p", timeout=300)

    async def go():
        return await asyncio.gather(flooder(), player())

    replies, result = asyncio.run(go())
    refused = [r for r in replies if r.get("code") == "too_many_requests"]
    waiting = [r for r in replies if r["type"] == "progress"]
    assert len(refused) == 1000 - 4 and len(waiting) == 4  # four in flight, the rest refused at once
    assert len(result.report["notes"]) > 20


def test_frames_for_a_dropped_take_are_refused(secure_server):
    """A take dropped for the audio budget (30 s here) must not keep taking audio outside it."""

    async def go():
        async with connect(secure_server.url, max_size=None) as ws:
            await ws.send(HELLO)
            await ws.recv()
            await ws.send(json.dumps({"type": "take.start", "take_id": "big", "sample_rate": 8000, "channels": 1,
                                      "format": "f32le"}))
            second = (np.ones(8000, dtype="<f4") * 0.1).tobytes()
            for _ in range(40):
                await ws.send(second)
            await ws.send(json.dumps({"type": "stats"}))
            replies = []
            while not replies or replies[-1]["type"] != "stats":
                replies.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
            return replies

    replies = asyncio.run(go())
    codes = [r.get("code") for r in replies[:-1]]
    assert codes == ["server_busy", "take_ended"]  # dropped once, then its next frame refused, then silence
    assert replies[-1]["buffered_audio_s"] == 0 and replies[-1]["takes"] == 0


def test_connections_that_never_say_hello_count_and_cannot_send_big_frames(secure_server):
    sock = raw_handshake("127.0.0.1", secure_server.server.ws_port)
    header = bytes([0x82, 0xFF]) + struct.pack("!Q", 1 << 20) + os.urandom(4)  # a 1 MiB binary frame first
    sock.sendall(header + b"\0" * 1024)
    sock.settimeout(10)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    sock.close()
    assert data[:1] == b"\x88" and struct.unpack("!H", data[2:4])[0] == 1009  # closed: too big before hello

    async def counted():
        async with connect(secure_server.url):  # connected, silent
            async with connect(secure_server.url) as ws:
                await ws.send(HELLO)
                await ws.recv()
                await ws.send(json.dumps({"type": "stats"}))
                return json.loads(await ws.recv())

    assert asyncio.run(counted())["connections"] == 2


def test_default_readable_folders_are_the_users_own_on_loopback_and_none_elsewhere() -> None:
    import tempfile

    from llaqo_backend.context import ServerConfig

    local = ServerConfig(host="127.0.0.1").readable_folders()
    assert Path.home() in local and Path(tempfile.gettempdir()) in local  # plugins save the open score in temp
    assert ServerConfig(host="0.0.0.0", token="t").readable_folders() == []
    assert ServerConfig(host="127.0.0.1", files_from=[Path("/srv/takes")]).readable_folders() == [Path("/srv/takes")]
