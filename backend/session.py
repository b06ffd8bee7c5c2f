"""One WebSocket connection: hello, takes streamed or whole, scores, assess and ask requests.

The session only parses messages and encodes the engine's events as JSON (`encode`); requests run
as tasks so that a client can keep streaming while it waits, at most `max_requests_per_client` at a
time. Every mistake is answered with an `error` message and the connection stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from llaqo_backend import protocol
from llaqo_backend.context import ServeContext
from llaqo_backend.engine import LiveTake
from llaqo_backend.events import (
    AnswerDelta,
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

log = logging.getLogger("llaqo.server")
HELLO_MAX_BYTES = 4096  # frames accepted before hello: a hello is a few hundred bytes


def encode(event: Event) -> dict[str, Any]:
    """An engine event as a protocol message (also what an HTTP transport sends as JSON)."""
    match event:
        case Progress():
            return protocol.progress(event.take_id, event.stage, event.fraction)
        case Mismatch():
            return protocol.error(protocol.SCORE_MISMATCH, event.message, event.take_id)
        case ReportReady():
            return protocol.report(event.take_id, event.report.to_dict())
        case AssessmentReady():
            return protocol.assessment(event.take_id, event.assessment)
        case AnswerDelta():
            return protocol.answer_delta(event.request_id, event.take_id, event.text)
        case AnswerDone():
            return protocol.answer(event.request_id, event.take_id, event.text)
        case Failed():
            return protocol.error(event.code, event.message, event.take_id, event.request_id)
    raise TypeError(f"not an event: {event!r}")


class Connection:
    """Protocol state of one client."""

    def __init__(self, ctx: ServeContext, ws: ServerConnection) -> None:
        self.ctx = ctx
        self.engine = ctx.engine
        self.ws = ws
        self.client = "?"
        self.takes: OrderedDict[str, LiveTake] = OrderedDict()
        self.current: LiveTake | None = None
        self.scores: dict[str, asyncio.Future] = {}
        self.tasks: set[asyncio.Task] = set()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message; a closed connection is ignored (cleanup happens in `run`)."""
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed:
            pass

    async def run(self) -> None:
        """Serve the connection until the client leaves (it counts against `max_clients` from the start)."""
        self.engine.connections += 1
        try:
            if not await self._hello():
                return
            async for message in self.ws:
                try:
                    if isinstance(message, bytes):
                        self._on_binary(message)
                    else:
                        await self._on_text(message)
                except ProtocolError as exc:
                    await self.send(exc.to_message())
                except Exception as exc:
                    await self.send(encode(error_event(exc)))
        except ConnectionClosed:  # the client went away abruptly: cleaned up below like any departure
            pass
        finally:
            self.engine.connections -= 1
            self.close()

    async def _hello(self) -> bool:
        config, limits = self.ctx.config, self.ctx.limits
        try:
            text = await asyncio.wait_for(self.ws.recv(), config.hello_timeout_s)
        except (TimeoutError, ConnectionClosed):
            return False
        try:
            if isinstance(text, bytes):
                raise ProtocolError(protocol.NOT_READY, 'the first message must be {"type": "hello", ...}')
            hello = protocol.parse_client_message(text)
            if not isinstance(hello, protocol.Hello):
                raise ProtocolError(protocol.NOT_READY, 'the first message must be {"type": "hello", ...}')
            if hello.protocol != protocol.PROTOCOL_VERSION:
                raise ProtocolError(protocol.BAD_MESSAGE, f"this server speaks protocol {protocol.PROTOCOL_VERSION}")
            if not self.ctx.token_ok(hello.token):
                await self.send(protocol.error(protocol.UNAUTHORIZED, "missing or wrong token"))
                await self.ws.close(1008, "unauthorized")
                return False
            if self.engine.connections > limits.max_clients:
                await self.send(protocol.error(protocol.SERVER_BUSY, "too many clients are connected"))
                await self.ws.close(1013, "server busy")
                return False
        except ProtocolError as exc:
            await self.send(exc.to_message())
            await self.ws.close(1002, exc.code)
            return False
        self.client = hello.client[:80]
        self.ws.protocol.max_message_size = limits.max_message_bytes  # small until now
        await self.send(protocol.ready(self.ctx.server_name, self.engine.model_name, limits.to_dict()))
        return True

    def _on_binary(self, data: bytes) -> None:
        take = self.current
        if take is None:
            raise ProtocolError(protocol.NO_TAKE, "binary audio arrived before any take.start")
        self.engine.feed(take, data)

    async def _on_text(self, text: str) -> None:
        msg = protocol.parse_client_message(text)
        match msg:
            case protocol.TakeStart():
                self._make_room(msg.take_id)
                take = self.engine.start_take(msg.take_id, msg.sample_rate, msg.channels, msg.format)
                self.takes[msg.take_id] = self.current = take
            case protocol.TakeEnd():
                self.engine.end_take(self._take(msg.take_id), self.client)
            case protocol.TakeFile():
                self._make_room(msg.take_id)
                try:
                    take = await self.engine.take_from_bytes(msg.take_id, msg.data, msg.format, self.client)
                except Exception as exc:
                    raise _as_protocol_error(exc, msg.take_id) from exc
                self.takes[msg.take_id] = take
            case protocol.ScoreMessage():
                self._check_capacity(msg.take_id)
                parsed = self.engine.parse_score(msg.take_id, msg.data, msg.format)
                self.scores[msg.take_id] = parsed
                self._spawn(settled(parsed), msg.take_id)  # a bad score is reported now, not at assess
            case protocol.Assess():
                take = self._take(msg.take_id)
                self._check_capacity(msg.take_id)
                self._spawn(self.engine.assess_events(take, self.scores.get(take.take_id), take.take_id),
                            msg.take_id)
            case protocol.Ask():
                take = self._take(msg.take_id, msg.request_id)
                self.engine.check_model(msg.take_id, msg.request_id)
                self._check_capacity(msg.take_id, msg.request_id)
                events = self.engine.ask_events(take, self.scores.get(take.take_id), msg.question, msg.request_id)
                self._spawn(events, msg.take_id, msg.request_id)
            case protocol.Stats():
                await self.send(self.engine.stats())
            case protocol.Hello():
                raise ProtocolError(protocol.BAD_MESSAGE, "hello was already received")

    def _take(self, take_id: str, request_id: str | None = None) -> LiveTake:
        take = self.takes.get(take_id)
        if take is None or take.cancelled:
            raise ProtocolError(protocol.UNKNOWN_TAKE, f"no take '{take_id}' on this connection", take_id, request_id)
        return take

    def _check_capacity(self, take_id: str | None, request_id: str | None = None) -> None:
        """Refuse a request past the per-client cap of requests in flight."""
        cap = self.ctx.limits.max_requests_per_client
        if len(self.tasks) >= cap:
            raise ProtocolError(protocol.TOO_MANY_REQUESTS, f"at most {cap} requests in flight per client; "
                                "wait for an answer before sending more", take_id, request_id)

    def _make_room(self, take_id: str) -> None:
        """Refuse a duplicate id; forget the oldest finished take when the per-client limit is reached."""
        if take_id in self.takes and not self.takes[take_id].cancelled:
            raise ProtocolError(protocol.DUPLICATE_TAKE, f"take '{take_id}' already exists", take_id)
        self.takes.pop(take_id, None)
        limit = self.ctx.limits.max_takes_per_client
        while len(self.takes) >= limit:
            old = next((t for t in self.takes.values() if t.ended or t.cancelled), None)
            if old is None:
                raise ProtocolError(protocol.TOO_MANY_TAKES, f"at most {limit} takes at once per client", take_id)
            self.engine.cancel(old)
            del self.takes[old.take_id]
            self.scores.pop(old.take_id, None)

    def _spawn(self, events: AsyncIterator[Event], take_id: str | None, request_id: str | None = None) -> None:
        """Run a request as a task, sending each event as it comes; any failure becomes its error message."""

        async def run() -> None:
            try:
                async for event in guarded(events, take_id, request_id):
                    await self.send(encode(event))
            except asyncio.CancelledError:
                await self.send(encode(error_event(asyncio.CancelledError(), take_id, request_id)))
                raise

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def drain(self, grace_s: float) -> None:
        """Server stopping: let requests finish for `grace_s`, cancel the rest, report unfinished takes."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=grace_s)
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=2)
        for take in self.takes.values():
            if not take.ended and not take.cancelled:
                await self.send(protocol.error(protocol.CANCELLED, f"take '{take.take_id}' was not finished: "
                                               "server stopping", take.take_id))

    def close(self) -> None:
        """The client left: cancel its requests and drop its takes."""
        for task in list(self.tasks):
            task.cancel()
        for take in self.takes.values():
            self.engine.cancel(take)
        self.takes.clear()
        self.scores.clear()
        self.current = None


def _as_protocol_error(exc: Exception, take_id: str) -> ProtocolError:
    """A failure of an inline request, with its take id, through the one error mapping."""
    failed = error_event(exc, take_id)
    return ProtocolError(failed.code, failed.message, failed.take_id, failed.request_id)
