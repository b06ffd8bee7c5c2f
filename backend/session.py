"""One WebSocket connection: hello, takes streamed or whole, scores, assess and ask requests.

Requests (`assess`, `ask`) run as tasks so that a client can keep streaming while it waits; every
mistake is answered with an `error` message and the connection stays open.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from llaqo_backend import protocol as p
from llaqo_backend.engine import Take
from llaqo_model.analysis.score import Score
from llaqo_model.errors import LlaqoError

if TYPE_CHECKING:
    from llaqo_backend.server import Server

log = logging.getLogger("llaqo.server")


class Connection:
    """Protocol state of one client."""

    def __init__(self, server: Server, ws: ServerConnection) -> None:
        self.server = server
        self.engine = server.engine
        self.ws = ws
        self.client = "?"
        self.takes: OrderedDict[str, Take] = OrderedDict()
        self.current: Take | None = None
        self.scores: dict[str, asyncio.Future] = {}
        self.tasks: set[asyncio.Task] = set()

    async def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message; a closed connection is ignored (cleanup happens in `run`)."""
        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed:
            pass

    async def run(self) -> None:
        """Serve the connection until the client leaves."""
        if not await self._hello():
            return
        self.engine.connections += 1
        try:
            async for message in self.ws:
                try:
                    if isinstance(message, bytes):
                        self._on_binary(message)
                    else:
                        await self._on_text(message)
                except p.ProtocolError as exc:
                    await self.send(exc.to_message())
                except LlaqoError as exc:
                    await self.send(p.error(exc.code, str(exc)))
        finally:
            self.engine.connections -= 1
            self.close()

    async def _hello(self) -> bool:
        config = self.server.config
        try:
            text = await asyncio.wait_for(self.ws.recv(), config.hello_timeout_s)
        except (TimeoutError, ConnectionClosed):
            return False
        try:
            if isinstance(text, bytes):
                raise p.ProtocolError(p.NOT_READY, 'the first message must be {"type": "hello", ...}')
            hello = p.parse_client_message(text)
            if not isinstance(hello, p.Hello):
                raise p.ProtocolError(p.NOT_READY, 'the first message must be {"type": "hello", ...}')
            if hello.protocol != p.PROTOCOL_VERSION:
                raise p.ProtocolError(p.BAD_MESSAGE, f"this server speaks protocol {p.PROTOCOL_VERSION}")
            if config.token and not hmac.compare_digest((hello.token or "").encode(), config.token.encode()):
                await self.send(p.error(p.UNAUTHORIZED, "missing or wrong token"))
                await self.ws.close(1008, "unauthorized")
                return False
            if self.engine.connections >= self.engine.limits.max_clients:
                await self.send(p.error(p.SERVER_BUSY, "too many clients are connected"))
                await self.ws.close(1013, "server busy")
                return False
        except p.ProtocolError as exc:
            await self.send(exc.to_message())
            await self.ws.close(1002, exc.code)
            return False
        self.client = hello.client[:80]
        await self.send(p.ready(self.server.name, self.engine.model_name, self.engine.limits.to_dict()))
        return True

    def _on_binary(self, data: bytes) -> None:
        take = self.current
        if take is None:
            raise p.ProtocolError(p.NO_TAKE, "binary audio arrived before any take.start")
        self.engine.feed(take, data)

    async def _on_text(self, text: str) -> None:
        msg = p.parse_client_message(text)
        match msg:
            case p.TakeStart():
                self._make_room(msg.take_id)
                take = self.engine.start_take(msg.take_id, msg.sample_rate, msg.channels, msg.format)
                self.takes[msg.take_id] = self.current = take
            case p.TakeEnd():
                self.engine.end_take(self._take(msg.take_id), self.client)
            case p.TakeFile():
                self._make_room(msg.take_id)
                try:
                    take = await self.engine.take_from_bytes(msg.take_id, msg.data, msg.format, self.client)
                except LlaqoError as exc:
                    raise p.ProtocolError(exc.code, str(exc), msg.take_id) from exc
                self.takes[msg.take_id] = take
            case p.ScoreMessage():
                future = self.engine.parse_score(msg.take_id, msg.data, msg.format)
                self.scores[msg.take_id] = future
                self._spawn(self._check_score(msg.take_id, future), msg.take_id)
            case p.Assess():
                self._spawn(self._assess(self._take(msg.take_id)), msg.take_id)
            case p.Ask():
                take = self._take(msg.take_id, msg.request_id)
                self._spawn(self._ask(take, msg.question, msg.request_id), msg.take_id, msg.request_id)
            case p.Stats():
                await self.send(self.engine.stats())
            case p.Hello():
                raise p.ProtocolError(p.BAD_MESSAGE, "hello was already received")

    def _take(self, take_id: str, request_id: str | None = None) -> Take:
        take = self.takes.get(take_id)
        if take is None or take.cancelled:
            raise p.ProtocolError(p.UNKNOWN_TAKE, f"no take '{take_id}' on this connection", take_id, request_id)
        return take

    def _make_room(self, take_id: str) -> None:
        """Refuse a duplicate id; forget the oldest finished take when the per-client limit is reached."""
        if take_id in self.takes and not self.takes[take_id].cancelled:
            raise p.ProtocolError(p.DUPLICATE_TAKE, f"take '{take_id}' already exists", take_id)
        self.takes.pop(take_id, None)
        limit = self.engine.limits.max_takes_per_client
        while len(self.takes) >= limit:
            old = next((t for t in self.takes.values() if t.ended or t.cancelled), None)
            if old is None:
                raise p.ProtocolError(p.TOO_MANY_TAKES, f"at most {limit} takes at once per client", take_id)
            self.engine.cancel(old)
            del self.takes[old.take_id]
            self.scores.pop(old.take_id, None)

    def _spawn(self, work: Awaitable[None], take_id: str | None = None, request_id: str | None = None) -> None:
        task = asyncio.create_task(self._guard(work, take_id, request_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _guard(self, work: Awaitable[None], take_id: str | None, request_id: str | None) -> None:
        """Run a request; any failure becomes an error message for that request."""
        try:
            await work
        except p.ProtocolError as exc:
            await self.send(exc.to_message())
        except LlaqoError as exc:
            await self.send(p.error(exc.code, str(exc), take_id, request_id))
        except asyncio.CancelledError:
            await self.send(p.error(p.CANCELLED, "the request was cancelled (take dropped or server stopping)",
                                    take_id, request_id))
            raise
        except Exception as exc:
            log.exception("request failed")
            await self.send(p.error(p.INTERNAL, f"internal error: {type(exc).__name__}", take_id, request_id))

    async def _check_score(self, take_id: str, future: asyncio.Future) -> None:
        await future  # a ScoreError is sent now, when the client can still send a better score

    async def _score(self, take_id: str) -> Score | None:
        future = self.scores.get(take_id)
        if future is None:
            return None
        try:
            return await asyncio.shield(future)
        except LlaqoError:
            return None

    async def _assess(self, take: Take) -> None:
        tid = take.take_id
        await self.send(p.progress(tid, "transcribing", take.transcribed_fraction()))
        score = await self._score(tid)
        report = await self.engine.report(take, score, tid)
        await self.send(p.progress(tid, "analysed", 1.0))
        if report.score_mismatch is not None:
            await self.send(p.error(p.SCORE_MISMATCH, report.score_mismatch, tid))
        await self.send(p.report(tid, report.to_dict()))
        if self.engine.model_worker is not None:
            await self.send(p.progress(tid, "assessing", 0.0))
            result = await self.engine.assess(take, report)
            await self.send(p.assessment(tid, result))

    async def _ask(self, take: Take, question: str, request_id: str) -> None:
        if self.engine.model_worker is None:
            raise p.ProtocolError(p.NO_MODEL, "no model is loaded on this server", take.take_id, request_id)
        report = await self.engine.report(take, await self._score(take.take_id), take.take_id)
        parts = []
        async for delta in self.engine.ask(take, report, question):
            parts.append(delta)
            await self.send(p.answer_delta(request_id, take.take_id, delta))
        await self.send(p.answer(request_id, take.take_id, "".join(parts)))

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
                await self.send(p.error(p.CANCELLED, f"take '{take.take_id}' was not finished: server stopping",
                                        take.take_id))

    def close(self) -> None:
        """The client left: cancel its requests and drop its takes."""
        for task in list(self.tasks):
            task.cancel()
        for take in self.takes.values():
            self.engine.cancel(take)
        self.takes.clear()
        self.scores.clear()
        self.current = None
