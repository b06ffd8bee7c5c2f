"""Worker threads that keep CPU-heavy work off the event loop and off each other.

`Worker` runs one job at a time in priority order (transcription of a finished take's tail before
segments of takes still being recorded). `ModelWorker` owns the assessor: queued assess requests are
run together through `Assessor.assess_batch`, and `ask` answers are streamed token by token back
into the event loop. Twenty clients therefore share two threads, never twenty.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llaqo_model.analysis.report import PerformanceReport

log = logging.getLogger("llaqo.server")

FINISH = 0  # a take's tail and report: someone is waiting
SCORE = 1  # parse a score before the take it belongs to ends
SEGMENT = 2  # transcribe a segment of a take still being recorded

_STOP = object()


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: asyncio.Future = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)


class Worker:
    """One thread running submitted callables by priority; results come back as asyncio futures."""

    def __init__(self, name: str) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting to run."""
        return self._queue.qsize()

    def submit(self, priority: int, fn: Callable[[], Any]) -> asyncio.Future:
        """Queue `fn`; await the returned future for its result (or exception)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_Job(priority, next(self._seq), fn, future, loop))
        return future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job.fn is _STOP:
                return
            if job.future.cancelled():
                continue
            try:
                result = job.fn()
            except BaseException as exc:  # handed to the awaiting coroutine
                job.loop.call_soon_threadsafe(_set_exception, job.future, exc)
            else:
                job.loop.call_soon_threadsafe(_set_result, job.future, result)

    def close(self) -> None:
        """Finish the running job, drop queued ones, stop the thread."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            job.loop.call_soon_threadsafe(job.future.cancel)
        self._queue.put(_Job(-1, -1, _STOP, None, None))  # type: ignore[arg-type]
        self._thread.join(timeout=60)


def _set_result(future: asyncio.Future, result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


@dataclass
class _AssessJob:
    samples: np.ndarray
    sample_rate: int
    report: PerformanceReport
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


@dataclass
class _AskJob:
    samples: np.ndarray
    sample_rate: int
    report: PerformanceReport
    question: str
    deltas: asyncio.Queue
    loop: asyncio.AbstractEventLoop
    cancelled: threading.Event


class ModelWorker:
    """The assessor's thread: batches queued assess requests, streams ask answers."""

    def __init__(self, assessor: Any, max_batch: int = 8) -> None:
        self.assessor = assessor
        self.max_batch = max_batch
        self.batches: list[int] = []  # sizes of the assess batches run so far
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="llaqo-model", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Requests waiting to run."""
        return self._queue.qsize()

    def assess(self, samples: np.ndarray, sample_rate: int, report: PerformanceReport) -> asyncio.Future:
        """Queue an assessment; the future gives `Assessor.assess`'s dict."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(_AssessJob(samples, sample_rate, report, future, loop))
        return future

    async def ask(
        self, samples: np.ndarray, sample_rate: int, report: PerformanceReport, question: str
    ) -> AsyncIterator[str]:
        """Yield the answer's text deltas as the model generates them."""
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue = asyncio.Queue()
        cancelled = threading.Event()
        self._queue.put(_AskJob(samples, sample_rate, report, question, deltas, loop, cancelled))
        try:
            while True:
                item = await deltas.get()
                if item is _STOP:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            if isinstance(job, _AskJob):
                self._run_ask(job)
                continue
            batch = [job]
            held = []
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                (batch if isinstance(more, _AssessJob) else held).append(more)
            for other in held:
                self._queue.put(other)
            self._run_batch([j for j in batch if not j.future.cancelled()])

    def _run_batch(self, batch: list[_AssessJob]) -> None:
        if not batch:
            return
        self.batches.append(len(batch))
        try:
            results = self.assessor.assess_batch([(j.samples, j.sample_rate, j.report) for j in batch])
        except BaseException as exc:
            for j in batch:
                j.loop.call_soon_threadsafe(_set_exception, j.future, exc)
            return
        for j, result in zip(batch, results, strict=True):
            j.loop.call_soon_threadsafe(_set_result, j.future, result)

    def _run_ask(self, job: _AskJob) -> None:
        try:
            for delta in self.assessor.ask(job.samples, job.sample_rate, job.report, job.question):
                if job.cancelled.is_set():
                    break
                job.loop.call_soon_threadsafe(job.deltas.put_nowait, delta)
        except BaseException as exc:
            job.loop.call_soon_threadsafe(job.deltas.put_nowait, exc)
        job.loop.call_soon_threadsafe(job.deltas.put_nowait, _STOP)

    def close(self) -> None:
        """Finish the running request and stop (queued ones are cancelled)."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, _AssessJob):
                job.loop.call_soon_threadsafe(job.future.cancel)
            else:
                job.loop.call_soon_threadsafe(job.deltas.put_nowait, _STOP)
        self._queue.put(_STOP)
        self._thread.join(timeout=60)
