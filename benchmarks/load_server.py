"""Soak on loopback: N clients stream takes, first alone, then while a hostile client attacks the server.

    python benchmarks/load_server.py [--clients 6] [--seconds 12] [--model tiny|embedded|PATH|none] [--fast]
                                     [--hostile-rounds 2]

The issue's configuration is `--clients 20` (about 15 minutes on two free cores); the defaults run in a
few minutes.

Every well-behaved client streams the chorale (rendered at a tempo that lasts `--seconds`) with its
score, in real time unless `--fast`, sends take.end and assess, and checks that its report is correct
(every score note matched). The quiet run measures that alone; the hostile run repeats it while one
more client, for `--hostile-rounds` rounds, sends a zip-bomb .mxl, a FLAC bomb (8 channels at 655 kHz),
an XML entity bomb, a MIDI with 300,000 notes, floods 1000 assess requests, opens connections that
never say hello, tries a browser Origin and a foreign Host, and sends OSC bundles timetagged an hour
ahead with a pathological address pattern. Prints takes completed correctly, p50/p95 take.end → report
latency of the well-behaved clients in both runs, peak RSS, what the hostile client was answered, and
whether the server still answers afterwards. Traffic goes to 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import logging
import os
import random
import socket
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from bench_server import RATE, model_argument, render_take
from pythonosc.osc_bundle_builder import OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from llaqo_backend.harness import ServerThread
from llaqo_backend.server import Server, ServerConfig, build_engine
from llaqo_bridge.client import LlaqoClient

HOST = "127.0.0.1"
HELLO = json.dumps({"type": "hello", "client": "hostile", "protocol": 1})
FLOOD = 1000  # assess requests sent at once per round
SILENT_CONNECTIONS = 20  # connections per round that never say hello
ASSESS_TIMEOUT_S = 1800.0  # on a loaded 2-core machine 20 takes queue for many minutes
REPLY_TIMEOUT_S = 900.0  # bombs wait behind take tails in the one analysis worker; bounded anyway


async def client_run(url: str, n: int, audio: np.ndarray, score_path: Path, realtime: bool) -> dict:
    await asyncio.sleep(random.uniform(0, 0.5))  # clients press record at slightly different moments
    async with await LlaqoClient.connect(url, f"load{n}") as client:
        await client.send_score(f"t{n}", score_path)
        await client.stream_take(f"t{n}", audio, RATE, chunk_s=0.05, realtime=realtime, end=False)
        t_end = time.perf_counter()
        await client.end_take(f"t{n}")
        since_end = time.perf_counter() - t_end
        result = await client.assess(f"t{n}", timeout=ASSESS_TIMEOUT_S)
        align = result.report["alignment"] or {}
        return {
            "report_s": since_end + result.report_latency_s,
            "assessment_s": None if result.assessment_latency_s is None else since_end + result.assessment_latency_s,
            "correct": bool(align.get("matches_score")) and align.get("missed") == 0 and align.get("wrong") == 0,
            "stats": await client.stats(),
        }


def bombs(chorale: bytes) -> list[tuple[str, dict]]:
    """(label, message) for each bomb, as protocol messages."""
    mxl = io.BytesIO()
    with zipfile.ZipFile(mxl, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml", '<container><rootfiles><rootfile full-path="s.xml"/></rootfiles>'
                                             "</container>")
        with z.open("s.xml", "w", force_zip64=True) as member:
            for _ in range(1024):  # 1 GiB of blanks, ~1 MB compressed
                member.write(b" " * 2**20)
    flac = io.BytesIO()
    with sf.SoundFile(flac, "w", samplerate=655_350, channels=8, format="FLAC") as f:
        for _ in range(30):
            f.write(np.zeros((655_350, 8), dtype=np.float32))
    text = chorale.decode()
    laughs = ('<!DOCTYPE score-partwise [<!ENTITY a "hahahahaha">' + "".join(
        f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)) + "]>")
    late = ('<?xml version="1.0" encoding="UTF-16"?>' + laughs + text[text.index("<score-partwise"):]).encode("utf-16")
    track = mido.MidiTrack()
    for _ in range(300_000):
        track.append(mido.Message("note_on", note=60, velocity=64, time=0))
        track.append(mido.Message("note_off", note=60, velocity=0, time=1))
    midi = io.BytesIO()
    mido.MidiFile(tracks=[track]).save(file=midi)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return [
        ("mxl zip bomb", {"type": "score", "take_id": "b1", "format": "mxl", "data": b64(mxl.getvalue())}),
        ("flac bomb", {"type": "take.file", "take_id": "b2", "format": "flac", "data": b64(flac.getvalue())}),
        ("utf-16 entity bomb", {"type": "score", "take_id": "b3", "format": "musicxml", "data": b64(late)}),
        ("midi note bomb", {"type": "score", "take_id": "b4", "format": "midi", "data": b64(midi.getvalue())}),
    ]


async def hostile(url: str, osc_port: int | None, messages: list[tuple[str, dict]], rounds: int,
                  stop: asyncio.Event) -> Counter:
    """Attack for `rounds` rounds (or until `stop`); count what the server answered."""
    answers: Counter = Counter()
    for _ in range(rounds):
        if stop.is_set():
            break
        silent = [await connect(url) for _ in range(SILENT_CONNECTIONS)]  # never say hello
        for headers in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
            try:
                async with connect(url, additional_headers=headers):
                    answers["browser/rebinding connection accepted (bad)"] += 1
            except InvalidStatus as exc:
                answers[f"handshake refused {exc.response.status_code}"] += 1
        if osc_port is not None:
            bundle = OscBundleBuilder(time.time() + 3600)
            bundle.add_content(OscMessageBuilder("/" + "*" * 40 + "x").build())
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(100):
                    sock.sendto(bundle.build().dgram, (HOST, osc_port))
            answers["osc future bundles sent"] += 100
        try:  # the flood on one connection, the bombs on another (past the cap a bomb would only be refused)
            async with connect(url, max_size=None, ping_interval=None) as flood, \
                    connect(url, max_size=None, ping_interval=None) as ws:
                for conn in (flood, ws):
                    await conn.send(HELLO)
                    await conn.recv()
                await flood.send(json.dumps({"type": "take.start", "take_id": "flood", "sample_rate": RATE,
                                             "channels": 1, "format": "f32le"}))
                for _ in range(FLOOD):
                    await flood.send(json.dumps({"type": "assess", "take_id": "flood"}))
                await flood.send(json.dumps({"type": "stats"}))
                while (reply := json.loads(await asyncio.wait_for(flood.recv(), REPLY_TIMEOUT_S)))["type"] != "stats":
                    answers[f"flood: {reply.get('code') or reply['type']}"] += 1
                labels = {message["take_id"]: label for label, message in messages}
                for _, message in messages:
                    await ws.send(json.dumps(message))
                for _ in messages:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT_S))
                    answers[f"{labels.get(reply.get('take_id'), '?')}: {reply.get('code')}"] += 1
        except (WebSocketException, TimeoutError) as exc:
            answers[f"hostile connection ended: {type(exc).__name__}"] += 1
        for ws in silent:
            await ws.close()
    return answers


async def run(url: str, osc_port: int | None, clients: int, audio: np.ndarray, score_path: Path, realtime: bool,
              attack: list[tuple[str, dict]] | None, rounds: int) -> tuple[list, float, Counter]:
    stop = asyncio.Event()
    attacker = asyncio.create_task(hostile(url, osc_port, attack, rounds, stop)) if attack else None
    t0 = time.perf_counter()
    results = await asyncio.gather(*(client_run(url, n, audio, score_path, realtime) for n in range(clients)))
    wall = time.perf_counter() - t0
    stop.set()
    answers = await attacker if attacker else Counter()
    return results, wall, answers


async def still_answers(url: str) -> tuple[bool, float]:
    """Whether a fresh client gets `ready` and `stats`, and how long that took."""
    start = time.perf_counter()
    async with await LlaqoClient.connect(url, "after") as client:
        stats = await client.stats()
    return stats["type"] == "stats", time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def summary(name: str, results: list, wall: float, audio_s: float) -> str:
    reports = [r["report_s"] for r in results]
    correct = sum(r["correct"] for r in results)
    peak = max(r["stats"]["peak_rss_mb"] for r in results)
    return (f"{name}: correct {correct}/{len(results)}, take.end→report p50 {pct(reports, 50):.2f} s, "
            f"p95 {pct(reports, 95):.2f} s, max {max(reports):.2f} s; wall {wall:.1f} s "
            f"({len(results) * audio_s / wall:.2f} s of audio per second); peak RSS {peak:.0f} MB")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  server: %(message)s")
    logging.getLogger("llaqo.server").setLevel(logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=12.0,
                    help="take length (the chorale at < 12 s is too fast to transcribe note-perfectly)")
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--fast", action="store_true", help="stream as fast as possible instead of in real time")
    ap.add_argument("--hostile-rounds", type=int, default=2, help="attack rounds during the hostile run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        audio, score_path = render_take(args.seconds, Path(tmp))
        attack = bombs(score_path.read_bytes())
        engine = build_engine(model_argument(args.model, Path(tmp)), args.device)
        engine.warm_up()  # as `llaqo serve` does before it listens
        config = ServerConfig(host=HOST, ws_port=0, osc_port=0, results_dir=Path(tmp) / "results", files_from=[])
        with ServerThread(Server(engine, config)) as running:
            url, osc_port, audio_s = running.url, running.server.osc_port, len(audio) / RATE
            quiet, quiet_wall, _ = asyncio.run(run(url, osc_port, args.clients, audio, score_path, not args.fast,
                                                   None, 0))
            loud, loud_wall, answers = asyncio.run(run(url, osc_port, args.clients, audio, score_path,
                                                       not args.fast, attack, args.hostile_rounds))
            answering, answer_s = asyncio.run(still_answers(url))
            batches = list(engine.model_worker.batches) if engine.model_worker else []
    print(f"{args.clients} clients × {audio_s:.1f} s takes ({'fast' if args.fast else 'real time'}), device "
          f"{engine.transcriber.device}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"model batches {len(batches)} for {2 * args.clients} takes")
    print(summary("quiet  ", quiet, quiet_wall, audio_s))
    print(summary("hostile", loud, loud_wall, audio_s))
    q95, h95 = pct([r["report_s"] for r in quiet], 95), pct([r["report_s"] for r in loud], 95)
    q_rss = max(r["stats"]["peak_rss_mb"] for r in quiet)
    h_rss = max(r["stats"]["peak_rss_mb"] for r in loud)
    print(f"p95 hostile/quiet {h95 / q95:.2f}× (target ≤ 1.5×); peak RSS hostile/quiet {h_rss / q_rss:.2f}× "
          "(target ≤ 2×; RSS is the process's peak, so the hostile run includes the quiet one)")
    print("hostile client was answered:")
    for label, count in sorted(answers.items()):
        print(f"  {count:5d}  {label}")
    print(f"server still answering afterwards: {'yes' if answering else 'NO'} (hello + stats in {answer_s:.2f} s)")


if __name__ == "__main__":
    main()
