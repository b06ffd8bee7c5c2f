"""The loopback HTTP endpoint notation plugins use: only this machine's own programs are served (Host,
Origin and token checks as for the WebSocket), bad requests get one line, and a take comes back as the
annotation plan the plugin writes into the score."""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf

from llaqo_backend.engine import Engine
from llaqo_backend.harness import ServerThread
from llaqo_backend.http import refusal
from llaqo_backend.server import Server, ServerConfig

TOKEN = "s3cret"
BPM = 160.0  # the chorale in 15 s: two of Transkun's 16 s segments (over 16 s takes three)


@pytest.fixture(scope="module")
def server(analyzer, tmp_path_factory):
    """Reports-only server with a token; its WebSocket and plugin ports are picked free; it reads files
    only under pytest's temporary folder."""
    config = ServerConfig(ws_port=0, osc_port=None, http_port=0, token=TOKEN,
                          files_from=[tmp_path_factory.getbasetemp()])
    with ServerThread(Server(Engine(analyzer.transcriber), config)) as running:
        yield running


def request(server, method: str, path: str, body: dict | None = None, **headers: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", server.server.http_port, timeout=60)
    sent = {"Host": f"127.0.0.1:{server.server.http_port}", "Authorization": f"Bearer {TOKEN}"}
    sent.update({k.replace("_", "-"): v for k, v in headers.items()})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=sent)
    answer = connection.getresponse()
    return answer.status, json.loads(answer.read())


def answer_of(server, job: str, timeout_s: float = 600) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        status, message = request(server, "GET", f"/v1/jobs/{job}")
        if message["type"] != "pending" or time.monotonic() > deadline:
            return status, message


def test_requests_from_outside_this_machine_or_a_web_page_are_refused(server):
    assert request(server, "GET", "/v1/health")[0] == 200
    status, message = request(server, "GET", "/v1/health", Host="attacker.example:80")
    assert status == 403 and "loopback" in message["message"]
    status, message = request(server, "GET", "/v1/health", Origin="https://attacker.example")
    assert status == 403 and "Origin" in message["message"]
    status, message = request(server, "GET", "/v1/health", Authorization="Bearer guess")
    assert status == 401 and message["code"] == "unauthorized"
    status, _ = request(server, "POST", "/v1/annotate", {"score": "/x.musicxml", "audio": "/x.wav"},
                        Content_Type="text/plain")
    assert status == 400  # a form a web page could post without asking is not JSON


def test_refusal_accepts_every_loopback_name_and_nothing_else():
    for host in ("localhost", "localhost:8766", "127.0.0.1:8766", "[::1]:8766", "[::1]"):
        assert refusal({"Host": host}, None) is None, host
    for host in ("", "127.0.0.1.attacker.example", "192.168.1.5:8766", "llaqo.local"):
        assert refusal({"Host": host}, None) is not None, host


def test_bad_requests_get_one_line_and_the_server_keeps_serving(server, tmp_path):
    status, message = request(server, "POST", "/v1/annotate", {"score": "relative.musicxml", "audio": "/a.wav"})
    assert status == 400 and "absolute" in message["message"]
    status, message = request(server, "GET", "/v1/jobs/j999")
    assert status == 404
    fake = tmp_path / "fake.musicxml"
    fake.write_text("<html/>")
    status, message = request(server, "POST", "/v1/annotate", {"score": str(fake), "audio": str(tmp_path / "a.wav")})
    assert status == 202 and message["type"] == "pending"
    status, message = answer_of(server, message["job"])
    assert status == 422 and message["code"] == "bad_score" and "\n" not in message["message"]
    assert request(server, "GET", "/v1/health")[0] == 200


@pytest.mark.slow
def test_a_take_comes_back_as_comments_for_its_bars(server, chorale, chorale_path, tmp_path):
    from llaqo_training.examples import mechanical_performance, note_in_bar
    from llaqo_training.render import render_notes

    notes = mechanical_performance(chorale, bpm=BPM)
    i = note_in_bar(chorale, notes, 3, bpm=BPM)
    notes[i] = replace(notes[i], pitch=notes[i].pitch + 1)
    take = Path(tmp_path / "take.flac")
    sf.write(take, render_notes(notes), 44100)
    status, message = request(server, "POST", "/v1/annotate", {"score": str(chorale_path), "audio": str(take)})
    assert status == 202
    status, message = answer_of(server, message["job"])
    assert status == 200 and message["type"] == "annotations", message
    plan = message["annotations"]
    assert [t["bar"] for t in plan["bar_texts"]] == [3]
    assert {n["bar"] for n in plan["notes"]} == {3} and plan["header"].startswith("LLaQo · take.flac")
