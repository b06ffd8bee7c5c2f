"""Worker threads that keep CPU-heavy work off the event loop and off each other.

`Worker` is the one queue/thread/shutdown implementation: it runs submitted callables one at a time in
priority order and hands each result or exception back to the event loop as an asyncio future. Every
job ends with a result or an error, and a thread found dead is restarted (and logged) on the next
submit. The analysis worker is a plain `Worker`; `ModelWorker` puts the assessor on one: queued assess
requests are run together through `Assessor.assess_batch`, and `ask` answers are streamed token by token
back into the event loop. Twenty clients therefore share two threads, never twenty.
"""

from __future__ import annotations

import asyncio
import collections
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
MODEL = 0  # the model worker has one kind of job, run in arrival order

_STOP = object()


@dataclass(order=True)
class _Job:
    priority: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)
    future: asyncio.Future | None = field(compare=False)
    loop: asyncio.AbstractEventLoop | None = field(compare=False)


class Worker:
    """One thread running submitted callables by priority; results come back as asyncio futures."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.restarts = 0
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._closed = False
        self._thread = self._start_thread()

    def _start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        thread.start()
        return thread

    @property
    def pending(self) -> int:
        """Jobs waiting to run."""
        return self._queue.qsize()

    def submit(self, priority: int, fn: Callable[[], Any]) -> asyncio.Future:
        """Queue `fn`; await the returned future for its result (or exception)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._closed:
            future.cancel()
            return future
        if not self._thread.is_alive():
            self.restarts += 1
            log.error("worker thread %s had died; restarted (%d restarts)", self.name, self.restarts)
            self._thread = self._start_thread()
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
                outcome, ok = job.fn(), True
            except BaseException as exc:  # handed to the awaiting coroutine, never kills the thread
                outcome, ok = exc, False
            _deliver(job.loop, job.future, outcome, ok)

    def close(self) -> None:
        """Finish the running job, cancel queued ones, stop the thread."""
        self._closed = True
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job.future is not None:
                _deliver(job.loop, job.future, None, None)
        self._queue.put(_Job(-1, -1, _STOP, None, None))
        self._thread.join(timeout=60)


def _deliver(loop: asyncio.AbstractEventLoop, future: asyncio.Future, outcome: Any, ok: bool | None) -> None:
    """Set a future from the worker thread: result (ok), exception (not ok) or cancelled (None)."""

    def settle() -> None:
        if future.done():
            return
        if ok is None:
            future.cancel()
        elif ok:
            future.set_result(outcome)
        else:
            future.set_exception(outcome)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop has closed: nobody is waiting any more
        pass


@dataclass
class _AssessRequest:
    samples: np.ndarray
    sample_rate: int
    report: PerformanceReport
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


class ModelWorker:
    """The assessor on its own `Worker`: batches queued assess requests, streams ask answers."""

    def __init__(self, assessor: Any, max_batch: int = 8) -> None:
        self.assessor = assessor
        self.max_batch = max_batch
        self.batches: list[int] = []  # sizes of the assess batches run so far
        self.worker = Worker("llaqo-model")
        self._waiting: collections.deque[_AssessRequest] = collections.deque()

    @property
    def pending(self) -> int:
        """Requests waiting to run."""
        return self.worker.pending

    def assess(self, samples: np.ndarray, sample_rate: int, report: PerformanceReport) -> asyncio.Future:
        """Queue an assessment; the future gives `Assessor.assess`'s result.

        Each request queues a job; the first of them to run takes every request waiting (up to
        `max_batch`) into one batch, and the later jobs find theirs already done.
        """
        loop = asyncio.get_running_loop()
        request = _AssessRequest(samples, sample_rate, report, loop.create_future(), loop)
        self._waiting.append(request)
        job = self.worker.submit(MODEL, self._run_batch)
        job.add_done_callback(lambda f: _fail_if_lost(f, request.future))
        return request.future

    def _run_batch(self) -> None:
        batch = []
        while self._waiting and len(batch) < self.max_batch:
            request = self._waiting.popleft()
            if not request.future.cancelled():
                batch.append(request)
        if not batch:
            return
        self.batches.append(len(batch))
        try:
            results = self.assessor.assess_batch([(r.samples, r.sample_rate, r.report) for r in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the model returned {len(results)} assessments for {len(batch)} takes")
        except BaseException as exc:
            for r in batch:
                _deliver(r.loop, r.future, exc, False)
            return
        for r, result in zip(batch, results, strict=True):
            _deliver(r.loop, r.future, result, True)

    async def ask(
        self, samples: np.ndarray, sample_rate: int, report: PerformanceReport, question: str
    ) -> AsyncIterator[str]:
        """Yield the answer's text deltas as the model generates them."""
        loop = asyncio.get_running_loop()
        deltas: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def generate() -> None:
            for delta in self.assessor.ask(samples, sample_rate, report, question):
                if stop.is_set():
                    return
                loop.call_soon_threadsafe(deltas.put_nowait, delta)

        job = self.worker.submit(MODEL, generate)
        job.add_done_callback(lambda _: deltas.put_nowait(_STOP))
        try:
            while True:
                item = await deltas.get()
                if item is _STOP:
                    break
                yield item
            await job  # the generator's error (or the worker's cancellation) reaches the caller
        finally:
            stop.set()
            job.cancel()

    def close(self) -> None:
        """Finish the running request and stop (queued ones are cancelled)."""
        self.worker.close()
        while self._waiting:
            request = self._waiting.popleft()
            _deliver(request.loop, request.future, None, None)


def _fail_if_lost(job: asyncio.Future, request: asyncio.Future) -> None:
    """A batch job that ended without settling its request (cancelled, or failed outside the batch)."""
    if request.done():
        return
    if job.cancelled():
        request.cancel()
    elif job.exception() is not None:
        request.set_exception(job.exception())
