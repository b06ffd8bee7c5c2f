"""Protocol tests against a real running server (websockets client, audio rendered at test time)."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from test_server_support import (
    b64,
    check_schema,
    close_code_from,
    masked_text_frame,
    raw_frame_header,
    raw_handshake,
    wav_bytes,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from llaqo_backend.engine import Engine, Limits
from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig
from llaqo_bridge.client import LlaqoClient, LlaqoServerError
from llaqo_model.errors import LlaqoError

RATE = 44100
BPM = 160.0  # the chorale in 15 s: two of Transkun's 16 s segments (over 16 s takes three)


@pytest.fixture(scope="module")
def take(chorale):
    """The chorale at 160 bpm (15 s) with bar 3's first note a semitone sharp."""
    from llaqo_training.examples import mechanical_performance, note_in_bar
    from llaqo_training.render import render_notes

    notes = mechanical_performance(chorale, bpm=BPM)
    i = note_in_bar(chorale, notes, 3, bpm=BPM)
    notes[i] = replace(notes[i], pitch=notes[i].pitch + 1)
    return render_notes(notes, sample_rate=RATE)


@pytest.fixture(scope="module")
def server(analyzer, tmp_path_factory):
    """Reports-only server on ephemeral ports, sharing the session's transcriber."""
    limits = Limits(max_take_s=120, max_takes_per_client=3)
    config = ServerConfig(ws_port=0, osc_port=None, limits=limits,
                          results_dir=tmp_path_factory.mktemp("results"))
    with ServerThread(Server(Engine(analyzer.transcriber, limits=limits), config)) as running:
        yield running


@pytest.fixture(scope="module")
def strict_server(analyzer):
    """A server with tight limits and a token, for limit and auth cases (no transcription happens)."""
    limits = Limits(max_take_s=2, max_message_bytes=64 * 1024, max_takes_per_client=2, max_clients=3)
    config = ServerConfig(ws_port=0, osc_port=None, token="s3cret", limits=limits)
    with ServerThread(Server(Engine(analyzer.transcriber, limits=limits), config)) as running:
        yield running


async def hello(ws, token: str | None = None) -> dict[str, Any]:
    msg = {"type": "hello", "client": "test", "protocol": 1}
    if token:
        msg["token"] = token
    await ws.send(json.dumps(msg))
    return json.loads(await ws.recv())


async def reply(ws, timeout: float = 30) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_hello_gets_ready_with_limits(server):
    async def go():
        async with connect(server.url) as ws:
            ready = await hello(ws)
        check_schema(ready)
        assert ready["protocol"] == 1 and ready["model"] is None
        assert ready["limits"]["max_take_s"] == 120 and ready["limits"]["max_takes_per_client"] == 3
        assert {"stream", "assess", "ask"} <= set(ready["capabilities"])

    asyncio.run(go())


def test_streamed_take_gives_report_while_a_dropped_client_leaks_nothing(server, chorale_path, take):
    """Client B streams a take with its score; client A disconnects mid-take meanwhile."""

    async def dropper():
        async with connect(server.url) as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "take.start", "take_id": "a", "sample_rate": RATE,
                                      "channels": 1, "format": "f32le"}))
            for i in range(0, 3 * RATE, 4410):
                await ws.send(take[i : i + 4410].tobytes())
        # closed mid-take without take.end

    async def streamer():
        async with await LlaqoClient.connect(server.url) as client:
            await client.send_score("b", chorale_path)
            stereo = np.stack([take, take], axis=1)
            await client.stream_take("b", stereo, RATE, chunk_s=0.05)
            result = await client.assess("b")
            return result, await client.stats()

    async def go():
        _, (result, stats) = await asyncio.gather(dropper(), streamer())
        return result, stats

    result, stats = asyncio.run(go())
    report = result.report
    assert abs(report["duration_s"] - len(take) / RATE) < 0.1
    assert report["alignment"]["matches_score"] and report["alignment"]["coverage"] > 0.95
    wrong_bars = [b["bar"] for b in report["bars"] if any(i["kind"] == "wrong_note" for i in b["issues"])]
    assert wrong_bars == [3]
    assert [stage for stage, _ in result.progress] == ["transcribing", "analysed"]
    assert stats["takes"] == 1 and stats["connections"] == 1, stats  # A's take and connection are gone
    assert stats["buffered_audio_s"] == pytest.approx(0.0)  # no model: audio is not kept after transcription


def test_wrong_score_sent_later_is_used_and_reported_as_mismatch(server, take, other_piece_path, tmp_path):
    """A whole FLAC take; a score sent after it is used, the take is re-reported without re-transcribing."""
    flac = tmp_path / "take.flac"
    flac.write_bytes(wav_bytes(take[: 10 * RATE], RATE, "FLAC"))

    async def go():
        async with await LlaqoClient.connect(server.url) as client:
            await client.send_take_file("t", flac)
            first = await client.assess("t")
            await client.send_score("t", other_piece_path)
            second = await client.assess("t")
            return first, second

    first, second = asyncio.run(go())
    assert first.report["alignment"] is None and len(first.report["notes"]) > 40
    assert abs(first.report["duration_s"] - 10.0) < 0.05
    assert second.report["alignment"]["matches_score"] is False
    assert [w["code"] for w in second.warnings] == ["score_mismatch"]
    assert second.report["notes"] == first.report["notes"]


def test_bad_input_gets_clear_errors_and_the_connection_stays_up(server):
    async def go() -> list[dict[str, Any]]:
        got = []
        async with connect(server.url) as ws:
            await hello(ws)
            await ws.send("{not json")
            got.append(await reply(ws))
            await ws.send(json.dumps({"type": "dance"}))
            got.append(await reply(ws))
            await ws.send(json.dumps({"type": "take.start", "take_id": "x"}))
            got.append(await reply(ws))
            await ws.send(b"\x00\x01\x02")  # binary before any take
            got.append(await reply(ws))
            await ws.send(json.dumps({"type": "take.start", "take_id": "g", "sample_rate": RATE, "channels": 1,
                                      "format": "f32le"}))
            await ws.send(b"\x01\x02\x03")  # not a whole float
            got.append(await reply(ws))
            await ws.send(np.full(64, np.nan, dtype="<f4").tobytes())  # garbage floats
            got.append(await reply(ws))
            await ws.send(np.zeros(4410, dtype="<f4").tobytes() + b"")
            await ws.send(json.dumps({"type": "take.end", "take_id": "g"}))
            await ws.send(np.zeros(64, dtype="<f4").tobytes())  # frame after take.end
            got.append(await reply(ws))
            await ws.send(json.dumps({"type": "assess", "take_id": "g"}))  # 0.1 s: too short
            got += [await reply(ws), await reply(ws)]
            await ws.send(json.dumps({"type": "ask", "take_id": "nope", "question": "why?", "request_id": "r1"}))
            got.append(await reply(ws))
            await ws.send(json.dumps({"type": "score", "take_id": "g", "format": "musicxml", "data": "%%%"}))
            got.append(await reply(ws))
            await ws.send(json.dumps({"type": "stats"}))
            got.append(await reply(ws))
        return got

    got = asyncio.run(go())
    for msg in got:
        check_schema(msg)
    codes = [m.get("code") for m in got]
    assert codes == ["bad_json", "unknown_type", "bad_message", "no_take", "bad_frame", "bad_frame",
                     "take_ended", None, "bad_audio", "unknown_take", "bad_message", None]
    assert got[7]["type"] == "progress" and got[8]["take_id"] == "g"
    assert got[9]["request_id"] == "r1"
    assert got[-1]["type"] == "stats"


def test_unsafe_and_broken_scores_are_refused(server, tmp_path):
    xxe = (b'<?xml version="1.0"?><!DOCTYPE score-partwise [<!ENTITY x SYSTEM "http://127.0.0.1:9/leak">]>'
           b"<score-partwise><part-list/>&x;</score-partwise>")

    async def go():
        async with connect(server.url) as ws:
            await hello(ws)
            for data in (xxe, b"this is not a score"):
                await ws.send(json.dumps({"type": "score", "take_id": "s", "format": "musicxml", "data": b64(data)}))
            return [await reply(ws), await reply(ws)]

    errors = asyncio.run(go())
    assert [e["code"] for e in errors] == ["bad_score", "bad_score"]
    assert "entities" in errors[0]["message"]


def test_ask_without_a_model_is_refused(server, take):
    async def go():
        async with await LlaqoClient.connect(server.url) as client:
            await client.stream_take("q", take[: RATE // 4], RATE, end=False)
            with pytest.raises(LlaqoServerError) as err:
                async for _ in client.ask("q", "How was my tempo?"):
                    pass
            return err.value.code

    assert asyncio.run(go()) == "no_model"


def test_limits_are_enforced(strict_server):
    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with connect(strict_server.url) as ws:
            ready = await hello(ws, "s3cret")
            out["limits"] = ready["limits"]
            for tid in ("1", "2", "3"):
                await ws.send(json.dumps({"type": "take.start", "take_id": tid, "sample_rate": 8000, "channels": 1,
                                          "format": "s16le"}))
            out["too_many"] = await reply(ws)
            await ws.send(json.dumps({"type": "take.start", "take_id": "2", "sample_rate": 8000, "channels": 1,
                                      "format": "s16le"}))
            out["duplicate"] = await reply(ws)
            second = (np.ones(8000, dtype="<i2") * 1000).tobytes()
            for _ in range(3):
                await ws.send(second)
            out["too_long"] = await reply(ws)
            await ws.send(b"\x00" * (70 * 1024))
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                out["close"] = exc.rcvd.code if exc.rcvd else None
        return out

    out = asyncio.run(go())
    assert out["limits"]["max_take_s"] == 2
    assert out["too_many"]["code"] == "too_many_takes" and out["too_many"]["take_id"] == "3"
    assert out["duplicate"]["code"] == "duplicate_take"
    assert out["too_long"]["code"] == "take_too_long"
    assert out["close"] == 1009  # message too big


def test_a_2gb_frame_is_refused_without_reading_it(strict_server, server):
    sock = raw_handshake("127.0.0.1", strict_server.server.ws_port)
    sock.sendall(masked_text_frame(json.dumps({"type": "hello", "client": "raw", "protocol": 1, "token": "s3cret"})))
    sock.sendall(raw_frame_header(0x2, 2 * 1024**3) + b"\x00" * 1024)
    sock.shutdown(socket.SHUT_WR)
    assert close_code_from(sock) == 1009
    sock.close()

    async def still_serving():
        async with connect(strict_server.url) as ws:
            return await hello(ws, "s3cret")

    assert asyncio.run(still_serving())["type"] == "ready"


def test_token_is_checked_on_every_connection(strict_server):
    async def attempt(token: str | None):
        async with connect(strict_server.url) as ws:
            first = await hello(ws, token)
            try:
                await ws.recv()
            except ConnectionClosed as exc:
                return first, exc.rcvd.code if exc.rcvd else None
            return first, None

    refused, code = asyncio.run(attempt(None))
    assert refused["code"] == "unauthorized" and code == 1008
    wrong, _ = asyncio.run(attempt("guess"))
    assert wrong["code"] == "unauthorized"

    async def accepted():
        async with connect(strict_server.url) as ws:
            return await hello(ws, "s3cret")

    assert asyncio.run(accepted())["type"] == "ready"


def test_binding_off_loopback_needs_a_token(analyzer):
    engine = Engine(analyzer.transcriber)
    try:
        with pytest.raises(LlaqoError, match="--token"):
            Server(engine, ServerConfig(host="0.0.0.0", ws_port=0, osc_port=None))
        config = ServerConfig(host="0.0.0.0", ws_port=0, osc_port=None, token="t0k")
        with ServerThread(Server(engine, config)) as running:

            async def go(token):
                async with connect(f"ws://127.0.0.1:{running.server.ws_port}") as ws:
                    return await hello(ws, token)

            assert asyncio.run(go(None))["code"] == "unauthorized"
            assert asyncio.run(go("t0k"))["type"] == "ready"
    finally:
        engine.worker.close()


def test_shutdown_reports_unfinished_takes_as_cancelled(analyzer):
    config = ServerConfig(ws_port=0, osc_port=None, shutdown_grace_s=1)
    running = ServerThread(Server(Engine(analyzer.transcriber), config)).start()

    async def go():
        async with connect(running.url) as ws:
            await hello(ws)
            await ws.send(json.dumps({"type": "take.start", "take_id": "late", "sample_rate": 8000,
                                      "channels": 1, "format": "f32le"}))
            await ws.send(np.zeros(800, dtype="<f4").tobytes())
            await ws.send(json.dumps({"type": "stats"}))
            await reply(ws)
            await asyncio.get_running_loop().run_in_executor(None, running.stop)
            messages = []
            try:
                while True:
                    messages.append(json.loads(await ws.recv()))
            except ConnectionClosed as exc:
                return messages, exc.rcvd.code if exc.rcvd else None

    messages, code = asyncio.run(go())
    assert [(m["code"], m["take_id"]) for m in messages] == [("cancelled", "late")]
    assert code == 1001  # going away
