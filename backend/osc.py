"""OSC over UDP (python-osc) for DAWs and Max/Live patches; see docs/protocol.md for the addresses.

Replies go to the sender's address, or to `/llaqo/reply i:port` on the sender's host. A UDP
datagram cannot carry a whole report, so the full JSON is written to the results folder and its
path sent as `/llaqo/result/file`.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import AsyncIOOSCUDPServer

from llaqo_backend import protocol as p
from llaqo_backend.engine import Take
from llaqo_model.errors import LlaqoError

if TYPE_CHECKING:
    from llaqo_backend.server import Server

log = logging.getLogger("llaqo.server")
Address = tuple[str, int]


@dataclass
class OscSession:
    """What one OSC peer (host + reply port) is doing."""

    take: Take | None = None
    score: asyncio.Future | None = None
    last_take: Take | None = None


class OscEndpoint:
    """The UDP endpoint: maps /llaqo/* addresses to the shared engine."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.engine = server.engine
        self.reply_ports: dict[str, int] = {}
        self.authorized: set[str] = set()
        self.sessions: dict[Address, OscSession] = {}
        self.tasks: set[asyncio.Task] = set()
        self.transport: asyncio.DatagramTransport | None = None
        self._ids = itertools.count(1)
        d = Dispatcher()
        routes = {
            "/llaqo/reply": self._reply_port,
            "/llaqo/auth": self._auth,
            "/llaqo/assess/file": self._assess_file,
            "/llaqo/take/start": self._take_start,
            "/llaqo/take/chunk": self._take_chunk,
            "/llaqo/take/end": self._take_end,
            "/llaqo/score/file": self._score_file,
            "/llaqo/ask": self._ask,
        }
        for address, handler in routes.items():
            d.map(address, self._guard(handler), needs_reply_address=True)
        d.set_default_handler(self._unknown, needs_reply_address=True)
        self.dispatcher = d

    async def start(self, host: str, port: int) -> int:
        """Bind the UDP socket; returns the bound port."""
        osc = AsyncIOOSCUDPServer((host, port), self.dispatcher, asyncio.get_running_loop())
        self.transport, _ = await osc.create_serve_endpoint()
        return self.transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        """Stop receiving and drop unfinished takes."""
        for task in list(self.tasks):
            task.cancel()
        for session in self.sessions.values():
            if session.take is not None and not session.take.ended:
                self.engine.cancel(session.take)
        if self.transport is not None:
            self.transport.close()

    def _target(self, sender: Address) -> Address:
        port = self.reply_ports.get(sender[0])
        return (sender[0], port) if port else sender

    def send(self, sender: Address, address: str, *args: Any) -> None:
        """Send one OSC message to the sender's reply address."""
        builder = OscMessageBuilder(address=address)
        for arg in args:
            builder.add_arg(arg)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(builder.build().dgram, self._target(sender))

    def _session(self, sender: Address) -> OscSession:
        return self.sessions.setdefault(self._target(sender), OscSession())

    def _guard(self, handler):
        def handle(sender: Address, address: str, *args: Any) -> None:
            token = self.server.config.token
            if token and address != "/llaqo/auth" and sender[0] not in self.authorized:
                self.send(sender, "/llaqo/error", p.UNAUTHORIZED, "send /llaqo/auth s:token first")
                return
            try:
                handler(sender, *args)
            except p.ProtocolError as exc:
                self.send(sender, "/llaqo/error", exc.code, exc.message)
            except LlaqoError as exc:
                self.send(sender, "/llaqo/error", exc.code, str(exc))
            except (TypeError, ValueError) as exc:
                self.send(sender, "/llaqo/error", p.BAD_MESSAGE, f"{address}: wrong arguments ({exc})")

        return handle

    def _unknown(self, sender: Address, address: str, *args: Any) -> None:
        self.send(sender, "/llaqo/error", p.UNKNOWN_TYPE, f"unknown OSC address {address[:80]}")

    def _spawn(self, sender: Address, work) -> None:
        async def guarded() -> None:
            try:
                await work
            except p.ProtocolError as exc:
                self.send(sender, "/llaqo/error", exc.code, exc.message)
            except LlaqoError as exc:
                self.send(sender, "/llaqo/error", exc.code, str(exc))
            except asyncio.CancelledError:
                self.send(sender, "/llaqo/error", p.CANCELLED, "cancelled (take dropped or server stopping)")
                raise
            except Exception as exc:
                log.exception("OSC request failed")
                self.send(sender, "/llaqo/error", p.INTERNAL, f"internal error: {type(exc).__name__}")

        task = asyncio.create_task(guarded())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _reply_port(self, sender: Address, port: int) -> None:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise p.ProtocolError(p.BAD_MESSAGE, "/llaqo/reply needs i:port")
        self.reply_ports[sender[0]] = port

    def _auth(self, sender: Address, token: str) -> None:
        expected = self.server.config.token or ""
        if not hmac.compare_digest(str(token).encode(), expected.encode()):
            raise p.ProtocolError(p.UNAUTHORIZED, "wrong token")
        self.authorized.add(sender[0])

    def _new_id(self) -> str:
        return f"osc-{next(self._ids)}"

    def _assess_file(self, sender: Address, audio_path: str, score_path: str | None = None) -> None:
        session = self._session(sender)
        if score_path:
            self._set_score(sender, session, str(score_path))

        async def run() -> None:
            take = await self.engine.take_from_file(self._new_id(), str(audio_path), f"osc:{sender[0]}")
            self._set_last(session, take)
            await self._assess(sender, session, take, Path(str(audio_path)).name)

        self._spawn(sender, run())

    def _take_start(self, sender: Address, sample_rate: int, channels: int) -> None:
        session = self._session(sender)
        if session.take is not None and not session.take.ended:
            self.engine.cancel(session.take)
        session.take = self.engine.start_take(self._new_id(), int(sample_rate), int(channels), "f32le")

    def _take_chunk(self, sender: Address, blob: bytes) -> None:
        take = self._session(sender).take
        if take is None:
            raise p.ProtocolError(p.NO_TAKE, "/llaqo/take/chunk before /llaqo/take/start")
        if not isinstance(blob, bytes):
            raise p.ProtocolError(p.BAD_FRAME, "/llaqo/take/chunk needs b:float32 PCM")
        self.engine.feed(take, blob)

    def _take_end(self, sender: Address) -> None:
        session = self._session(sender)
        take = session.take
        if take is None:
            raise p.ProtocolError(p.NO_TAKE, "/llaqo/take/end before /llaqo/take/start")
        self.engine.end_take(take, f"osc:{sender[0]}")
        self._set_last(session, take)
        self._spawn(sender, self._assess(sender, session, take, take.take_id))

    def _score_file(self, sender: Address, path: str) -> None:
        self._set_score(sender, self._session(sender), str(path))

    def _set_score(self, sender: Address, session: OscSession, path: str) -> None:
        """Parse the score now; a bad score is reported at once (assessments then go on without it)."""
        session.score = self.engine.score_from_file(path)

        async def check(future: asyncio.Future) -> None:
            await future

        self._spawn(sender, check(session.score))

    def _set_last(self, session: OscSession, take: Take) -> None:
        """The take `/llaqo/ask` is about; the one before it is dropped (bounded memory)."""
        old = session.last_take
        if old is not None and old is not take and old.notes.done():
            self.engine.cancel(old)
        session.last_take = take

    def _ask(self, sender: Address, question: str) -> None:
        take = self._session(sender).last_take
        if take is None or take.cancelled:
            raise p.ProtocolError(p.UNKNOWN_TAKE, "no take to ask about yet")
        if self.engine.model_worker is None:
            raise p.ProtocolError(p.NO_MODEL, "no model is loaded on this server")
        session = self._session(sender)

        async def run() -> None:
            report = await self.engine.report(take, await _score(session), take.take_id)
            parts = [delta async for delta in self.engine.ask(take, report, str(question)[: p.MAX_QUESTION_CHARS])]
            self.send(sender, "/llaqo/answer", "".join(parts))

        self._spawn(sender, run())

    async def _assess(self, sender: Address, session: OscSession, take: Take, name: str) -> None:
        self.send(sender, "/llaqo/progress", "transcribing", float(take.transcribed_fraction()))
        report = await self.engine.report(take, await _score(session), name)
        self.send(sender, "/llaqo/progress", "analysed", 1.0)
        result: dict[str, Any] = {"take_id": take.take_id, "report": report.to_dict()}
        if report.score_mismatch is not None:
            self.send(sender, "/llaqo/error", p.SCORE_MISMATCH, report.score_mismatch)
        if self.engine.model_worker is not None:
            self.send(sender, "/llaqo/progress", "assessing", 0.0)
            assessment = await self.engine.assess(take, report)
            result["assessment"] = assessment.to_dict()
            for key, value in assessment.ratings.items():
                self.send(sender, "/llaqo/rating", key, float(value))
            self.send(sender, "/llaqo/rating", "overall", float(assessment.overall))
            self.send(sender, "/llaqo/feedback", assessment.feedback)
            for comment in assessment.bar_comments:
                self.send(sender, "/llaqo/bar", comment.bar, comment.text)
        path = self.server.results_dir / f"{_safe(name)}-{take.take_id}.json"
        path.write_text(json.dumps(result, ensure_ascii=False), encoding="utf-8")
        self.send(sender, "/llaqo/result/file", str(path))


async def _score(session: OscSession):
    if session.score is None:
        return None
    try:
        return await asyncio.shield(session.score)
    except LlaqoError:
        return None


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
