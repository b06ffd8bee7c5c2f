"""OSC over UDP for DAWs and Max/Live patches; see docs/protocol.md for the addresses.

Datagrams are decoded with python-osc's packet parser, but dispatched here: an address is looked up
literally (OSC address patterns are not expanded, so no client-made regular expression ever runs) and
bundle timetags are ignored (messages run at once; python-osc's dispatcher would sleep on the event
loop until a future timetag, freezing every client). Requests go through the engine's event flows;
this endpoint only encodes the events as OSC replies. Replies go to the sender's address, or to
`/llaqo/reply i:port` on the sender's host. A datagram cannot carry a whole report, so the full JSON
is written to the private results folder and its path sent as `/llaqo/result/file`. Files named by a
peer are read only inside the folders the server was given (`access.FileGate`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket

from llaqo_backend import protocol
from llaqo_backend.access import write_private
from llaqo_backend.context import ServeContext
from llaqo_backend.engine import LiveTake
from llaqo_backend.events import (
    AnswerDone,
    AssessmentReady,
    Event,
    Failed,
    Mismatch,
    Progress,
    ReportReady,
    error_event,
    guarded,
    settled,
)
from llaqo_backend.protocol import ProtocolError
from llaqo_model.errors import AudioError, ScoreError

log = logging.getLogger("llaqo.server")
Address = tuple[str, int]


@dataclass
class OscSession:
    """What one OSC peer (host + reply port) is doing."""

    take: LiveTake | None = None
    score: asyncio.Future | None = None
    last_take: LiveTake | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)


class OscEndpoint:
    """The UDP endpoint: maps /llaqo/* addresses to the engine's flows."""

    def __init__(self, ctx: ServeContext) -> None:
        self.ctx = ctx
        self.engine = ctx.engine
        self.reply_ports: dict[str, int] = {}
        self.authorized: set[str] = set()
        self.sessions: OrderedDict[Address, OscSession] = OrderedDict()
        self.transport: asyncio.DatagramTransport | None = None
        self._ids = itertools.count(1)
        self.routes: dict[str, Callable[..., None]] = {
            "/llaqo/reply": self._reply_port,
            "/llaqo/auth": self._auth,
            "/llaqo/assess/file": self._assess_file,
            "/llaqo/take/start": self._take_start,
            "/llaqo/take/chunk": self._take_chunk,
            "/llaqo/take/end": self._take_end,
            "/llaqo/score/file": self._score_file,
            "/llaqo/ask": self._ask,
        }

    @property
    def tasks(self) -> set[asyncio.Task]:
        """Requests in flight, all peers together."""
        return {t for s in self.sessions.values() for t in s.tasks}

    async def start(self, host: str, port: int) -> int:
        """Bind the UDP socket; returns the bound port."""
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), local_addr=(host, port))
        return self.transport.get_extra_info("sockname")[1]

    async def drain(self, grace_s: float) -> None:
        """Server stopping: let requests finish for `grace_s`."""
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=grace_s)

    def close(self) -> None:
        """Stop receiving, cancel requests and drop unfinished takes."""
        for task in self.tasks:
            task.cancel()
        for session in self.sessions.values():
            if session.take is not None and not session.take.ended:
                self.engine.cancel(session.take)
        if self.transport is not None:
            self.transport.close()

    def received(self, data: bytes, sender: Address) -> None:
        """One datagram: every message in it runs now, whatever its bundle's timetag says."""
        try:
            messages = [timed.message for timed in OscPacket(data).messages]
        except Exception:  # not OSC (or nested past the recursion limit): dropped, as UDP garbage is
            return
        for message in messages:
            self._dispatch(sender, message.address, message.params)

    def _dispatch(self, sender: Address, address: str, args: list[Any]) -> None:
        handler = self.routes.get(address)
        try:
            if handler is None:
                raise ProtocolError(protocol.UNKNOWN_TYPE, f"unknown OSC address {address[:80]}")
            if self.ctx.config.token and address != "/llaqo/auth" and sender[0] not in self.authorized:
                raise ProtocolError(protocol.UNAUTHORIZED, "send /llaqo/auth s:token first")
            handler(sender, *args)
        except (TypeError, ValueError) as exc:
            self.send(sender, "/llaqo/error", protocol.BAD_MESSAGE, f"{address[:80]}: wrong arguments ({exc})")
        except Exception as exc:
            self._send_event(sender, error_event(exc))

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

    def _send_event(self, sender: Address, event: Event, result: dict[str, Any] | None = None) -> None:
        """Encode one engine event as OSC replies (and gather what goes into the result file)."""
        match event:
            case Progress():
                self.send(sender, "/llaqo/progress", event.stage, float(event.fraction))
            case Mismatch():
                self.send(sender, "/llaqo/error", protocol.SCORE_MISMATCH, event.message)
            case ReportReady() if result is not None:
                result["report"] = event.report.to_dict()
            case AssessmentReady():
                assessment = event.assessment
                for key, value in assessment.ratings.items():
                    self.send(sender, "/llaqo/rating", key, float(value))
                self.send(sender, "/llaqo/rating", "overall", float(assessment.overall))
                self.send(sender, "/llaqo/feedback", assessment.feedback)
                for comment in assessment.bar_comments:
                    self.send(sender, "/llaqo/bar", comment.bar, comment.text)
                if result is not None:
                    result["assessment"] = assessment.to_dict()
            case AnswerDone():
                self.send(sender, "/llaqo/answer", event.text)
            case Failed():
                self.send(sender, "/llaqo/error", event.code, event.message)

    def _session(self, sender: Address) -> OscSession:
        """The peer's session; the least recently used one is dropped beyond `max_clients` peers."""
        key = self._target(sender)
        session = self.sessions.pop(key, None) or OscSession()
        self.sessions[key] = session
        while len(self.sessions) > self.ctx.limits.max_clients:
            _, old = self.sessions.popitem(last=False)
            for task in old.tasks:
                task.cancel()
            for take in (old.take, old.last_take):
                if take is not None:
                    self.engine.cancel(take)
        return session

    def _spawn(self, sender: Address, session: OscSession, events: AsyncIterator[Event],
               result: dict[str, Any] | None = None) -> None:
        """Run a request as a task, encoding its events; at most `max_requests_per_client` per peer."""
        self._check_capacity(session)

        async def run() -> None:
            try:
                async for event in guarded(events):
                    self._send_event(sender, event, result)
                    if isinstance(event, Failed) and result is not None:
                        return
            except asyncio.CancelledError:
                self._send_event(sender, error_event(asyncio.CancelledError()))
                raise
            if result is not None and "report" in result:
                name = result.pop("name")
                path = write_private(self.ctx.results_dir, f"{_safe(name)}-{result['take_id']}",
                                     json.dumps(result, ensure_ascii=False))
                self.send(sender, "/llaqo/result/file", str(path))

        task = asyncio.create_task(run())
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)

    def _check_capacity(self, session: OscSession) -> None:
        cap = self.ctx.limits.max_requests_per_client
        if len(session.tasks) >= cap:
            raise ProtocolError(protocol.TOO_MANY_REQUESTS, f"at most {cap} requests in flight per peer")

    def _reply_port(self, sender: Address, port: int) -> None:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ProtocolError(protocol.BAD_MESSAGE, "/llaqo/reply needs i:port")
        self.reply_ports[sender[0]] = port

    def _auth(self, sender: Address, token: str) -> None:
        if not self.ctx.token_ok(str(token)):
            raise ProtocolError(protocol.UNAUTHORIZED, "wrong token")
        self.authorized.add(sender[0])

    def _new_id(self) -> str:
        return f"osc-{next(self._ids)}"

    def _assess_file(self, sender: Address, audio_path: str, score_path: str | None = None) -> None:
        session = self._session(sender)
        if score_path:
            self._set_score(sender, session, str(score_path))
        take_id, name = self._new_id(), Path(str(audio_path)).name

        async def events() -> AsyncIterator[Event]:
            data = await asyncio.to_thread(self.ctx.files.read, str(audio_path), AudioError)
            fmt = Path(name).suffix.lstrip(".").lower() or "audio"
            take = await self.engine.take_from_bytes(take_id, data, fmt, f"osc:{sender[0]}")
            self._set_last(session, take)
            async for event in self.engine.assess_events(take, session.score, name):
                yield event

        self._spawn(sender, session, events(), {"take_id": take_id, "name": name})

    def _take_start(self, sender: Address, sample_rate: int, channels: int) -> None:
        session = self._session(sender)
        if session.take is not None and not session.take.ended:
            self.engine.cancel(session.take)
        session.take = self.engine.start_take(self._new_id(), int(sample_rate), int(channels), "f32le")

    def _take_chunk(self, sender: Address, blob: bytes) -> None:
        take = self._session(sender).take
        if take is None:
            raise ProtocolError(protocol.NO_TAKE, "/llaqo/take/chunk before /llaqo/take/start")
        if not isinstance(blob, bytes):
            raise ProtocolError(protocol.BAD_FRAME, "/llaqo/take/chunk needs b:float32 PCM")
        self.engine.feed(take, blob)

    def _take_end(self, sender: Address) -> None:
        session = self._session(sender)
        take = session.take
        if take is None:
            raise ProtocolError(protocol.NO_TAKE, "/llaqo/take/end before /llaqo/take/start")
        self.engine.end_take(take, f"osc:{sender[0]}")
        self._set_last(session, take)
        events = self.engine.assess_events(take, session.score, take.take_id)
        self._spawn(sender, session, events, {"take_id": take.take_id, "name": take.take_id})

    def _score_file(self, sender: Address, path: str) -> None:
        self._set_score(sender, self._session(sender), str(path))

    def _set_score(self, sender: Address, session: OscSession, path: str) -> None:
        """Read and parse the score now; a bad one is reported at once (assessments then go on without it)."""
        fmt = protocol.SCORE_FORMAT_OF_SUFFIX.get(Path(path).suffix.lower())
        if fmt is None:
            raise ScoreError(f"unsupported score type '{Path(path).suffix[:20]}' (.musicxml, .xml, .mxl, .mid)")
        self._check_capacity(session)

        async def load():
            data = await asyncio.to_thread(self.ctx.files.read, path, ScoreError)
            return await self.engine.parse_score("osc", data, fmt, Path(path).name)

        parsed = asyncio.ensure_future(load())
        self._spawn(sender, session, settled(parsed))
        session.score = parsed

    def _set_last(self, session: OscSession, take: LiveTake) -> None:
        """The take `/llaqo/ask` is about; the one before it is dropped (bounded memory)."""
        old = session.last_take
        if old is not None and old is not take and old.notes.done():
            self.engine.cancel(old)
        session.last_take = take

    def _ask(self, sender: Address, question: str) -> None:
        session = self._session(sender)
        take = session.last_take
        if take is None or take.cancelled:
            raise ProtocolError(protocol.UNKNOWN_TAKE, "no take to ask about yet")
        self.engine.check_model()
        question = str(question)[: protocol.MAX_QUESTION_CHARS]
        self._spawn(sender, session, self.engine.ask_events(take, session.score, question, self._new_id()))


class _Datagrams(asyncio.DatagramProtocol):
    """Hands every datagram to the endpoint."""

    def __init__(self, endpoint: OscEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.endpoint.received(data, addr[:2])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
