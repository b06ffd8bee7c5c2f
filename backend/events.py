"""What a request produces, as typed events: the engine yields them, each transport only encodes them.

`Engine.assess_events` and `Engine.ask_events` are async iterators of these; `guarded` turns any
failure into one final `Failed` event through `error_event`, the one mapping from exceptions to the
protocol's error codes, so the WebSocket session, the OSC endpoint and any other transport report the
same failure the same way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass

from llaqo_backend.protocol import CANCELLED, INTERNAL, ProtocolError
from llaqo_model.analysis.report import PerformanceReport
from llaqo_model.errors import LlaqoError
from llaqo_model.model.assessment import Assessment

log = logging.getLogger("llaqo.server")


@dataclass(frozen=True)
class Progress:
    """A step of an assess request: 'transcribing', 'analysed' or 'assessing'."""

    take_id: str
    stage: str
    fraction: float


@dataclass(frozen=True)
class Mismatch:
    """The take does not match its score (a warning: the report follows, without bar comments)."""

    take_id: str
    message: str


@dataclass(frozen=True)
class ReportReady:
    """The take's `PerformanceReport`."""

    take_id: str
    report: PerformanceReport


@dataclass(frozen=True)
class AssessmentReady:
    """The model's assessment of the take (only when a model is loaded)."""

    take_id: str
    assessment: Assessment


@dataclass(frozen=True)
class AnswerDelta:
    """A piece of an answer, as the model generates it."""

    request_id: str
    take_id: str
    text: str


@dataclass(frozen=True)
class AnswerDone:
    """The whole answer (the concatenated deltas)."""

    request_id: str
    take_id: str
    text: str


@dataclass(frozen=True)
class Failed:
    """The request failed: an error code of the protocol and one readable line."""

    code: str
    message: str
    take_id: str | None = None
    request_id: str | None = None


Event = Progress | Mismatch | ReportReady | AssessmentReady | AnswerDelta | AnswerDone | Failed


def error_event(exc: BaseException, take_id: str | None = None, request_id: str | None = None) -> Failed:
    """The one mapping from an exception to the error a client is sent (unexpected ones are logged)."""
    if isinstance(exc, ProtocolError):
        return Failed(exc.code, exc.message, exc.take_id or take_id, exc.request_id or request_id)
    if isinstance(exc, LlaqoError):
        return Failed(exc.code, str(exc), take_id, request_id)
    if isinstance(exc, asyncio.CancelledError):
        return Failed(CANCELLED, "the request was cancelled (take dropped or server stopping)", take_id, request_id)
    log.error("request failed", exc_info=exc)
    return Failed(INTERNAL, f"internal error: {type(exc).__name__}", take_id, request_id)


async def guarded(events: AsyncIterator[Event], take_id: str | None = None,
                  request_id: str | None = None) -> AsyncIterator[Event]:
    """`events`, ending with a `Failed` event instead of an exception (cancellation still propagates)."""
    try:
        async for event in events:
            yield event
    except Exception as exc:
        yield error_event(exc, take_id, request_id)


async def settled(awaitable: Awaitable[object]) -> AsyncIterator[Event]:
    """No events, only the awaitable's failure (as `guarded` reports it): e.g. a score parsed at once."""
    await awaitable
    for event in ():
        yield event
