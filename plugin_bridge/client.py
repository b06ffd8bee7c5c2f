"""A Python client for `llaqo serve` (WebSocket protocol 1), for bridges and scripts.

    async with await LlaqoClient.connect("ws://127.0.0.1:8765") as client:
        await client.send_score("t1", "piece.musicxml")
        await client.stream_take("t1", samples, 44100, realtime=True)
        result = await client.assess("t1")
        async for text in client.ask("t1", "How was my pedalling?"):
            print(text, end="")

Run `python -m llaqo_bridge.client take.wav --score piece.musicxml` for a command-line example.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

SCORE_FORMATS = {".musicxml": "musicxml", ".xml": "musicxml", ".mxl": "mxl", ".mid": "midi", ".midi": "midi"}
NON_FATAL = {"score_mismatch", "bad_score"}


class LlaqoServerError(Exception):
    """An error message from the server."""

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(f"{message.get('code')}: {message.get('message')}")
        self.code = message.get("code")
        self.data = message


@dataclass
class AssessResult:
    """What came back for one assess request."""

    report: dict[str, Any]
    assessment: dict[str, Any] | None = None
    progress: list[tuple[str, float]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    report_latency_s: float = 0.0
    assessment_latency_s: float | None = None


class LlaqoClient:
    """One connection; a reader task routes messages by take_id / request_id to the waiting call."""

    def __init__(self, ws: ClientConnection, ready: dict[str, Any]) -> None:
        self.ws = ws
        self.ready = ready
        self._queues: dict[str, asyncio.Queue] = defaultdict(asyncio.Queue)
        self._ids = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str = "ws://127.0.0.1:8765", client: str = "llaqo-bridge",
                      token: str | None = None, max_size: int | None = 2**26) -> LlaqoClient:
        """Connect and say hello; raises LlaqoServerError when the server refuses."""
        ws = await connect(url, max_size=max_size)
        hello: dict[str, Any] = {"type": "hello", "client": client, "protocol": 1}
        if token:
            hello["token"] = token
        await ws.send(json.dumps(hello))
        reply = json.loads(await ws.recv())
        if reply.get("type") != "ready":
            await ws.close()
            raise LlaqoServerError(reply)
        return cls(ws, reply)

    async def __aenter__(self) -> LlaqoClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def has_model(self) -> bool:
        """Whether the server will send assessments and answers."""
        return self.ready.get("model") is not None

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                msg = json.loads(text)
                key = msg.get("request_id") or msg.get("take_id") or "_"
                self._queues[key].put_nowait(msg)
        finally:
            for q in list(self._queues.values()):
                q.put_nowait({"type": "error", "code": "closed", "message": "connection closed"})

    async def next_message(self, key: str = "_", timeout: float | None = None) -> dict[str, Any]:
        """The next message for a take_id / request_id ('_' for ones with neither)."""
        return await asyncio.wait_for(self._queues[key].get(), timeout)

    async def send_json(self, message: dict[str, Any]) -> None:
        """Send one protocol message."""
        await self.ws.send(json.dumps(message))

    async def send_score(self, take_id: str, score: str | Path | bytes, fmt: str | None = None) -> None:
        """Send the score for a take (a path, or bytes with `fmt`)."""
        if not isinstance(score, bytes):
            fmt = fmt or SCORE_FORMATS.get(Path(score).suffix.lower(), "musicxml")
            score = Path(score).read_bytes()
        data = base64.b64encode(score).decode()
        await self.send_json({"type": "score", "take_id": take_id, "format": fmt or "musicxml", "data": data})

    async def stream_take(self, take_id: str, samples: np.ndarray, sample_rate: int, chunk_s: float = 0.1,
                          realtime: bool = False, end: bool = True) -> None:
        """Stream float32 PCM ((frames,) or (frames, channels)) as a take; `realtime` paces it like a recording."""
        pcm = np.asarray(samples, dtype="<f4")
        channels = 1 if pcm.ndim == 1 else pcm.shape[1]
        await self.send_json({"type": "take.start", "take_id": take_id, "sample_rate": int(sample_rate),
                              "channels": channels, "format": "f32le"})
        step = max(int(chunk_s * sample_rate), 1)
        start = time.perf_counter()
        for i in range(0, len(pcm), step):
            await self.ws.send(pcm[i : i + step].tobytes())
            if realtime:
                ahead = (i + step) / sample_rate - (time.perf_counter() - start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        if end:
            await self.end_take(take_id)

    async def end_take(self, take_id: str) -> None:
        """Send take.end."""
        await self.send_json({"type": "take.end", "take_id": take_id})

    async def send_take_file(self, take_id: str, path: str | Path) -> None:
        """Send a whole WAV/FLAC file as a take."""
        path = Path(path)
        fmt = "flac" if path.suffix.lower() == ".flac" else "wav"
        data = base64.b64encode(path.read_bytes()).decode()
        await self.send_json({"type": "take.file", "take_id": take_id, "format": fmt, "data": data})

    async def assess(self, take_id: str, timeout: float = 600.0) -> AssessResult:
        """Ask for the report (and the assessment when a model is loaded) of a take."""
        t0 = time.perf_counter()
        await self.send_json({"type": "assess", "take_id": take_id})
        progress: list[tuple[str, float]] = []
        warnings: list[dict[str, Any]] = []
        result: AssessResult | None = None
        while True:
            msg = await self.next_message(take_id, timeout)
            kind = msg["type"]
            if kind == "error":
                if msg["code"] not in NON_FATAL:
                    raise LlaqoServerError(msg)
                warnings.append(msg)
            elif kind == "progress":
                progress.append((msg["stage"], msg["fraction"]))
            elif kind == "report":
                result = AssessResult(msg["report"], None, progress, warnings, time.perf_counter() - t0)
                if not self.has_model:
                    return result
            elif kind == "assessment" and result is not None:
                result.assessment = {k: v for k, v in msg.items() if k not in ("type", "take_id")}
                result.assessment_latency_s = time.perf_counter() - t0
                return result

    async def ask(self, take_id: str, question: str, timeout: float = 600.0) -> AsyncIterator[str]:
        """Yield the answer's text deltas as the server streams them."""
        request_id = f"q{next(self._ids)}"
        await self.send_json({"type": "ask", "take_id": take_id, "question": question, "request_id": request_id})
        while True:
            msg = await self.next_message(request_id, timeout)
            if msg["type"] == "answer.delta":
                yield msg["text"]
            elif msg["type"] == "answer":
                return
            elif msg["type"] == "error":
                raise LlaqoServerError(msg)

    async def stats(self) -> dict[str, Any]:
        """Server figures (connections, takes, buffered audio, memory)."""
        await self.send_json({"type": "stats"})
        while True:
            msg = await self.next_message("_", 30)
            if msg["type"] == "stats":
                return msg

    async def close(self) -> None:
        """Close the connection."""
        await self.ws.close()
        self._reader.cancel()


async def _main(args: argparse.Namespace) -> int:
    import soundfile as sf

    async with await LlaqoClient.connect(args.url, "llaqo-bridge-cli", args.token) as client:
        print(f"connected to {client.ready['server']} (model: {client.ready['model']})", file=sys.stderr)
        take_id = Path(args.audio).stem
        if args.score:
            await client.send_score(take_id, args.score)
        if args.stream or args.realtime:
            samples, rate = sf.read(args.audio, dtype="float32")
            await client.stream_take(take_id, samples, rate, realtime=args.realtime)
        else:
            await client.send_take_file(take_id, args.audio)
        result = await client.assess(take_id)
        for warning in result.warnings:
            print(f"warning: {warning['message']}", file=sys.stderr)
        out: dict[str, Any] = {"report": result.report, "assessment": result.assessment}
        if args.ask and client.has_model:
            parts = []
            async for text in client.ask(take_id, args.ask):
                print(text, end="", flush=True, file=sys.stderr)
                parts.append(text)
            print(file=sys.stderr)
            out["answer"] = "".join(parts)
        json.dump(out if args.full else _summary(out), sys.stdout, indent=1, ensure_ascii=False)
        print()
    return 0


def _summary(out: dict[str, Any]) -> dict[str, Any]:
    report = out["report"]
    summary = {"duration_s": report["duration_s"], "notes": len(report["notes"]), "alignment": report["alignment"],
               "issues": [(b["bar"], i["kind"]) for b in report["bars"] for i in b["issues"]],
               "warnings": report["warnings"]}
    return {"report": summary, **{k: v for k, v in out.items() if k != "report"}}


def main(argv: list[str] | None = None) -> int:
    """Command-line example: send a take (and score), print the report summary and assessment."""
    ap = argparse.ArgumentParser(prog="python -m llaqo_bridge.client", description=main.__doc__)
    ap.add_argument("audio", help="WAV or FLAC take")
    ap.add_argument("--score", help="MusicXML, MXL or MIDI score")
    ap.add_argument("--url", default="ws://127.0.0.1:8765")
    ap.add_argument("--token", default=None)
    ap.add_argument("--stream", action="store_true", help="stream PCM frames instead of sending the file")
    ap.add_argument("--realtime", action="store_true", help="stream at recording speed")
    ap.add_argument("--ask", default=None, help="a question about the take (needs a model)")
    ap.add_argument("--full", action="store_true", help="print the whole report")
    try:
        return asyncio.run(_main(ap.parse_args(argv)))
    except (LlaqoServerError, OSError) as exc:
        print(f"llaqo-bridge: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
