"""The one place where a request becomes a result, for every transport (WebSocket, OSC, HTTP).

A `LiveTake` receives PCM on the event loop; `Engine` resamples it to the transcriber's rate and hands
it to the analysis worker, which transcribes each 16 s segment as soon as it is complete. At take
end only the last segment is left (`Engine.end_take`); the report is built when it is asked for,
with the score known at that moment. `Engine.assess_events` and `Engine.ask_events` are the request
flows: async iterators of typed events (`llaqo_backend.events`) that a transport only encodes.
"""

from __future__ import annotations

import asyncio
import collections
import io
import logging
import resource
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from llaqo_backend.events import (
    AnswerDelta,
    AnswerDone,
    AssessmentReady,
    Event,
    Mismatch,
    Progress,
    ReportReady,
)
from llaqo_backend.protocol import (
    BAD_FRAME,
    BAD_MESSAGE,
    NO_MODEL,
    SCORE_SUFFIX,
    SERVER_BUSY,
    TAKE_ENDED,
    TOO_LONG,
    ProtocolError,
)
from llaqo_backend.worker import FINISH, SCORE, SEGMENT, ModelWorker, Worker
from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import Note, PedalInterval, PerformanceReport
from llaqo_model.analysis.score import Score, score_from_bytes
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_model.analysis.stream import Resampler, StreamingTranscription
from llaqo_model.analysis.transcribe import Transcriber
from llaqo_model.errors import AudioError, LlaqoError
from llaqo_model.io import load_audio

log = logging.getLogger("llaqo.server")

MAX_SAMPLE = 8.0  # |PCM| above this is not audio but garbage


@dataclass
class Limits:
    """Configurable limits, advertised to clients in `ready.limits`."""

    max_take_s: float = 600.0
    max_message_bytes: int = 16 * 1024 * 1024
    max_takes_per_client: int = 4
    max_clients: int = 64
    max_buffered_audio_s: float = 3600.0
    max_score_bytes: int = 4 * 1024 * 1024
    max_sample_rate: int = 192_000
    max_channels: int = 8
    max_requests_per_client: int = 8  # scores, assess and ask requests one client may have in flight

    def to_dict(self) -> dict[str, Any]:
        """The limits as JSON."""
        return asdict(self)


class LiveTake:
    """One take being received or already received: audio (at the transcriber's rate) and its notes."""

    def __init__(self, take_id: str, sample_rate: int, channels: int, fmt: str, model_rate: int,
                 transcription: StreamingTranscription, keep_audio: bool) -> None:
        self.take_id = take_id
        self.sample_rate = sample_rate
        self.channels = channels
        self.format = fmt
        self.model_rate = model_rate
        self.transcription = transcription
        self.keep_audio = keep_audio
        self.resampler = Resampler(sample_rate, model_rate)
        self.inbox: collections.deque[np.ndarray] = collections.deque()
        self.audio: list[np.ndarray] = []
        self.received = 0  # samples at model rate
        self.peak = 0.0
        self.ended = False
        self.cancelled = False
        self.frames_refused = False  # frames for a dropped take: the first is answered, the rest ignored
        self.ended_at: float | None = None
        self.segment_job: asyncio.Future | None = None
        self.notes: asyncio.Future = asyncio.get_running_loop().create_future()
        self.notes.add_done_callback(lambda f: f.cancelled() or f.exception())  # errors reach requests
        self.report: PerformanceReport | None = None
        self.report_score: Score | None = None

    @property
    def duration_s(self) -> float:
        """Seconds received so far."""
        return self.received / self.model_rate

    @property
    def held_s(self) -> float:
        """Seconds of audio this take keeps in memory (kept for the model, else only until transcribed)."""
        if self.cancelled or (not self.keep_audio and self.notes.done()):
            return 0.0
        return self.duration_s

    def samples(self) -> np.ndarray:
        """The whole take, mono float32 at `model_rate` (only when the audio is kept for the model)."""
        if len(self.audio) > 1:
            self.audio = [np.concatenate(self.audio)]
        return self.audio[0] if self.audio else np.zeros(0, dtype=np.float32)

    def transcribed_fraction(self) -> float:
        """Share of the received audio already transcribed."""
        if self.notes.done():
            return 1.0
        seg = self.transcription
        done = max(seg.segments_done * seg.config.hop_s, 0.0)
        return min(done / max(self.duration_s, 1e-6), 1.0)


def decode_pcm(data: bytes, fmt: str, channels: int) -> np.ndarray:
    """Raw interleaved PCM → mono float32; raises ProtocolError for frames that are not PCM."""
    width = 4 if fmt == "f32le" else 2
    if len(data) == 0 or len(data) % (width * channels):
        raise ProtocolError(BAD_FRAME, f"a {fmt} frame for {channels} channel(s) must be a non-empty "
                              f"multiple of {width * channels} bytes (got {len(data)})")
    if fmt == "f32le":
        pcm = np.frombuffer(data, dtype="<f4")
    else:
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    if not np.all(np.isfinite(pcm)) or float(np.max(np.abs(pcm))) > MAX_SAMPLE:
        raise ProtocolError(BAD_FRAME, f"the frame is not {fmt} audio (non-finite or huge sample values)")
    return pcm.reshape(-1, channels).mean(axis=1, dtype=np.float32)


class Engine:
    """Shared state and work for all connections (WebSocket and OSC)."""

    def __init__(self, transcriber: Transcriber, assessor: Any | None = None, limits: Limits | None = None,
                 max_batch: int = 8) -> None:
        self.transcriber = transcriber
        self.assessor = assessor
        self.limits = limits or Limits()
        self.model_rate = transcriber.sample_rate
        self.worker = Worker("llaqo-analysis")
        self.model_worker = ModelWorker(assessor, max_batch) if assessor is not None else None
        self.takes: set[LiveTake] = set()
        self.connections = 0

    @property
    def model_name(self) -> str | None:
        """The loaded model's name, or None."""
        return getattr(self.assessor, "name", None) if self.assessor is not None else None

    def warm_up(self, seconds: float = 4.0) -> float:
        """Analyse (and assess, and answer about) a short test tone once, so that the first real take
        does not pay for lazy CUDA start-up, kernel selection or allocator growth; returns the seconds taken."""
        start = time.perf_counter()
        rate = self.model_rate
        t = np.arange(int(seconds * rate)) / rate
        tone = (0.2 * np.sin(2 * np.pi * 440.0 * t) * np.exp(-2.0 * (t % 1.0))).astype(np.float32)
        notes, pedal = self.transcriber.transcribe(tone)
        report = report_from_notes(notes, pedal, seconds, "warm-up", None)
        if self.assessor is not None:
            self.assessor.assess(tone, rate, report)
            for _ in self.assessor.ask(tone, rate, report, "What should I practise next?"):
                pass
        return time.perf_counter() - start

    def buffered_s(self) -> float:
        """Seconds of audio held by all takes."""
        return sum(t.held_s for t in self.takes)

    def stats(self) -> dict[str, Any]:
        """Figures for the `stats` message and the load script."""
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        queued = self.worker.pending + (self.model_worker.pending if self.model_worker else 0)
        return {
            "type": "stats",
            "connections": self.connections,
            "takes": sum(1 for t in self.takes if not t.cancelled),
            "buffered_audio_s": round(self.buffered_s(), 2),
            "queued_jobs": queued,
            "rss_mb": round(rss_pages * resource.getpagesize() / 2**20, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }

    def start_take(self, take_id: str, sample_rate: int, channels: int, fmt: str) -> LiveTake:
        """A new take (PCM follows via `feed`)."""
        lim = self.limits
        if not 8000 <= sample_rate <= lim.max_sample_rate:
            raise ProtocolError(BAD_MESSAGE, f"sample_rate must be 8000..{lim.max_sample_rate}", take_id)
        if not 1 <= channels <= lim.max_channels:
            raise ProtocolError(BAD_MESSAGE, f"channels must be 1..{lim.max_channels}", take_id)
        take = LiveTake(take_id, sample_rate, channels, fmt, self.model_rate,
                    StreamingTranscription(self.transcriber), keep_audio=self.assessor is not None)
        self.takes.add(take)
        return take

    def feed(self, take: LiveTake, data: bytes) -> None:
        """Append one binary frame of PCM and schedule the segments it completes.

        Frames for a take that was dropped (too long, server busy, replaced) are refused: the first
        with an error, later ones silently, so the audio budget is never exceeded through them."""
        if take.cancelled:
            if take.frames_refused:
                return
            take.frames_refused = True
            raise ProtocolError(TAKE_ENDED, f"take '{take.take_id}' was dropped; its audio is refused",
                                take.take_id)
        if take.ended:
            raise ProtocolError(TAKE_ENDED, f"take '{take.take_id}' has ended; start a new take", take.take_id)
        mono = decode_pcm(data, take.format, take.channels)
        self._append(take, take.resampler(mono))

    def _append(self, take: LiveTake, mono: np.ndarray) -> None:
        lim = self.limits
        if take.duration_s + len(mono) / self.model_rate > lim.max_take_s:
            self.cancel(take)
            raise ProtocolError(TOO_LONG, f"take '{take.take_id}' is longer than the limit of "
                                  f"{lim.max_take_s:.0f} s; it was dropped", take.take_id)
        if self.buffered_s() + len(mono) / self.model_rate > lim.max_buffered_audio_s:
            self.cancel(take)
            raise ProtocolError(SERVER_BUSY, "the server holds too much audio right now; take "
                                  f"'{take.take_id}' was dropped, try again later", take.take_id)
        if not len(mono):
            return
        take.peak = max(take.peak, float(np.max(np.abs(mono))))
        take.received += len(mono)
        take.inbox.append(mono)
        if take.keep_audio:
            take.audio.append(mono)
        if take.segment_job is None and not take.ended:
            take.segment_job = self.worker.submit(SEGMENT, lambda: self._segment(take))
            take.segment_job.add_done_callback(lambda f: self._segment_done(take, f))

    def _drain(self, take: LiveTake) -> None:
        while take.inbox:
            take.transcription.feed(take.inbox.popleft())

    def _segment(self, take: LiveTake) -> None:
        """Worker thread: move new audio in, transcribe one segment if one is complete."""
        if take.cancelled or take.transcription.finished:
            return
        self._drain(take)
        take.transcription.step()

    def _segment_done(self, take: LiveTake, future: asyncio.Future) -> None:
        take.segment_job = None
        if not future.cancelled() and future.exception() is not None:
            log.error("segment transcription failed for %s: %s", take.take_id, future.exception())
        if take.ended or take.cancelled:
            return
        if take.inbox or take.transcription.ready():
            take.segment_job = self.worker.submit(SEGMENT, lambda: self._segment(take))
            take.segment_job.add_done_callback(lambda f: self._segment_done(take, f))

    def end_take(self, take: LiveTake, client: str = "") -> None:
        """The take is complete: transcribe its tail now (ahead of other takes' segments); logs one line."""
        if take.ended:
            raise ProtocolError(TAKE_ENDED, f"take '{take.take_id}' has already ended", take.take_id)
        self._append(take, take.resampler(np.zeros(0, dtype=np.float32), last=True))
        take.ended = True
        take.ended_at = time.perf_counter()
        job = self.worker.submit(FINISH, lambda: self._finish(take))
        job.add_done_callback(lambda f: _forward(f, take.notes))
        take.notes.add_done_callback(lambda f: _log_take(f"{client}/{take.take_id}", take))

    async def take_from_bytes(self, take_id: str, data: bytes, fmt: str, client: str = "",
                              name: str | None = None) -> LiveTake:
        """A take that arrived whole (a WAV/FLAC file's bytes): decode it in the worker and transcribe it.
        `name` (the client's file name) is what errors call it; by default TAKE_ID.FMT."""
        label = name or f"{take_id}.{fmt}"
        samples, _ = await self.worker.submit(
            FINISH, lambda: load_audio(io.BytesIO(data), self.model_rate, self.limits.max_take_s, label)
        )
        take = self.start_take(take_id, self.model_rate, 1, "f32le")
        self._append(take, samples)
        self.end_take(take, client)
        return take

    def _finish(self, take: LiveTake) -> tuple[list[Note], list[PedalInterval]]:
        """Worker thread: check the audio, transcribe the last segment, free the transcriber state."""
        if take.cancelled:
            return [], []  # nobody waits: cancel() already cancelled take.notes
        self._drain(take)
        if take.duration_s < 0.5:
            raise AudioError(f"the take is only {take.duration_s:.2f} s long")
        if take.peak < 1e-4:
            raise AudioError("the take is silent")
        return take.transcription.finish()

    def parse_score(self, take_id: str, data: bytes, fmt: str, name: str | None = None) -> asyncio.Future:
        """Parse a score's bytes in the worker (entities refused, nothing fetched); the future gives a Score."""
        if len(data) > self.limits.max_score_bytes:
            raise ProtocolError(BAD_MESSAGE, f"the score is larger than {self.limits.max_score_bytes} bytes",
                                take_id)
        suffix = SCORE_SUFFIX[fmt]
        parsed = self.worker.submit(SCORE, lambda: score_from_bytes(data, suffix, name or f"{take_id}{suffix}"))
        parsed.add_done_callback(lambda f: f.cancelled() or f.exception())  # reported by the request, if any
        return parsed

    @staticmethod
    async def score_of(parsed: asyncio.Future | None) -> Score | None:
        """The score a request uses: None when none was sent or it failed (that error was sent when parsed)."""
        if parsed is None:
            return None
        try:
            return await asyncio.shield(parsed)
        except LlaqoError:
            return None

    async def report(self, take: LiveTake, score: Score | None, audio_name: str) -> PerformanceReport:
        """The take's report against `score` (built once per score; waits for the transcription). Where the
        take's audio is kept (a model is loaded), keys heard under the transcriber's threshold are checked
        in its spectrum as `llaqo analyze` does; otherwise the audio is freed once transcribed and they are not."""
        notes, pedal = await asyncio.shield(take.notes)
        if take.report is None or take.report_score is not score:
            take.report = await self.worker.submit(
                FINISH,
                lambda: report_from_notes(
                    notes, pedal, take.duration_s, audio_name, score, take.transcription.evidence,
                    OnsetSpectrum(take.samples(), take.model_rate) if take.keep_audio else None,
                ),
            )
            take.report_score = score
        return take.report

    async def assess_events(self, take: LiveTake, score: asyncio.Future | None, name: str) -> AsyncIterator[Event]:
        """The assess flow: progress, the report (with a mismatch warning first when the take does not
        match its score), then the model's assessment when a model is loaded."""
        tid = take.take_id
        yield Progress(tid, "transcribing", take.transcribed_fraction())
        report = await self.report(take, await self.score_of(score), name)
        yield Progress(tid, "analysed", 1.0)
        if report.score_mismatch is not None:
            yield Mismatch(tid, report.score_mismatch)
        yield ReportReady(tid, report)
        if self.model_worker is not None:
            yield Progress(tid, "assessing", 0.0)
            assessment = await self.model_worker.assess(take.samples(), self.model_rate, report)
            yield AssessmentReady(tid, assessment)

    def check_model(self, take_id: str | None = None, request_id: str | None = None) -> None:
        """Refuse at once a request that needs the model when none is loaded."""
        if self.model_worker is None:
            raise ProtocolError(NO_MODEL, "no model is loaded on this server", take_id, request_id)

    async def ask_events(self, take: LiveTake, score: asyncio.Future | None, question: str,
                         request_id: str) -> AsyncIterator[Event]:
        """The ask flow: answer deltas as the model generates them, then the whole answer."""
        self.check_model(take.take_id, request_id)
        report = await self.report(take, await self.score_of(score), take.take_id)
        parts = []
        async for delta in self.model_worker.ask(take.samples(), self.model_rate, report, question):
            parts.append(delta)
            yield AnswerDelta(request_id, take.take_id, delta)
        yield AnswerDone(request_id, take.take_id, "".join(parts))

    def cancel(self, take: LiveTake) -> None:
        """Drop a take: its queued work is skipped and its audio freed."""
        take.cancelled = True
        take.inbox.clear()
        take.audio = []
        if not take.notes.done():
            take.notes.cancel()
        self.takes.discard(take)

    def close(self) -> None:
        """Stop the workers (the running job finishes; queued ones are cancelled)."""
        self.worker.close()
        if self.model_worker is not None:
            self.model_worker.close()


def _forward(source: asyncio.Future, target: asyncio.Future) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())


def _log_take(name: str, take: LiveTake) -> None:
    """The one log line per take."""
    notes = take.notes
    if notes.cancelled():
        log.info("take %s: %.1f s, cancelled", name, take.duration_s)
    elif notes.exception() is not None:
        log.info("take %s: %.1f s, %s", name, take.duration_s, notes.exception())
    else:
        tail = time.perf_counter() - (take.ended_at or time.perf_counter())
        log.info("take %s: %.1f s, %d notes, transcribed %.2f s after take end", name, take.duration_s,
                 len(notes.result()[0]), tail)
