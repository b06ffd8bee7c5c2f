"""Streaming transcription: transcribe a take segment by segment while it is still being recorded.

Transkun's `transcribe` walks fixed-size overlapping segments over the whole take, decoding each
with the previous segment's last note ends as forced start positions, and merges the events per
pitch. `StreamingTranscription` runs the same loop incrementally: `feed()` appends audio as it
arrives, `step()` transcribes the next segment as soon as all of its samples are there, and
`finish()` transcribes what is left with exactly one more segment, placed so that it ends where the
take (plus Transkun's end padding) ends. Transkun's attention spans the whole segment and its
accuracy collapses for segments other than the 16 s it was trained on, so segments are never
shortened: the work left at take end is always one 16 s segment.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import soxr
import torch
from transkun.ModelTransformer import resolveOverlapping
from transkun.Util import makeFrame

from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_model.analysis.transcribe import EvidenceStitcher, OnsetEvidence, Transcriber, split_events


@dataclass
class StreamConfig:
    """Segment size (keep Transkun's 16 s) and hop between segment starts."""

    segment_s: float = 16.0
    hop_s: float = 12.0


class StreamingTranscription:
    """One take's incremental transcription (not thread-safe: call from one worker at a time)."""

    def __init__(self, transcriber: Transcriber, config: StreamConfig | None = None) -> None:
        self.config = config or StreamConfig()
        self.transcriber = transcriber
        self.model = transcriber.model
        self.autocast = transcriber.autocast
        self.device = transcriber.device
        self.sample_rate = transcriber.sample_rate
        self._hop = self.model.hopSize
        self._pad_s = self.config.segment_s - self.config.hop_s
        self._step = math.ceil(self.config.hop_s * self.sample_rate / self._hop) * self._hop
        self._segment = math.ceil(self.config.segment_s * self.sample_rate)
        pad = np.zeros(math.ceil(self._pad_s * self.sample_rate), dtype=np.float32)
        self._chunks: list[np.ndarray] = [pad]
        self._buffered = len(pad)
        self._origin = 0  # padded-stream index of self._chunks[0][0]
        self._next_start = 0  # padded-stream index where the next segment on the grid begins
        self._prev_start = 0  # start of the segment `_last_pos` refers to
        self._last_pos = [math.floor(self._pad_s * self.sample_rate / self._hop)] * len(self.model.targetMIDIPitch)
        self._events: dict[int, list] = defaultdict(list)
        self.segments_done = 0
        self.finished = False
        self._stitcher = EvidenceStitcher(transcriber.frame_s)
        self.evidence: OnsetEvidence | None = None  # the onset evidence of the whole take, once finished

    @property
    def received_s(self) -> float:
        """Seconds of audio fed so far."""
        return (self._origin + self._buffered) / self.sample_rate - self._pad_s

    def feed(self, samples: np.ndarray) -> None:
        """Append mono float32 samples at `self.sample_rate`."""
        if self.finished:
            raise RuntimeError("feed() after finish()")
        if len(samples):
            self._chunks.append(np.asarray(samples, dtype=np.float32))
            self._buffered += len(samples)

    def ready(self) -> bool:
        """Whether a whole segment is buffered and can be transcribed now."""
        return not self.finished and self._origin + self._buffered >= self._next_start + self._segment

    @torch.inference_mode()
    def step(self) -> bool:
        """Transcribe the next complete segment if there is one; True when a segment was done."""
        if not self.ready():
            return False
        self._transcribe_segment(self._next_start, self._segment)
        return True

    @torch.inference_mode()
    def finish(self) -> tuple[list[Note], list[PedalInterval]]:
        """Transcribe what is left with one last segment ending at the padded end; return all notes."""
        while self.step():
            pass
        duration_s = self.received_s
        self.feed(np.zeros(math.ceil(self._pad_s * self.sample_rate), dtype=np.float32))
        end = self._origin + self._buffered
        start = self._next_start
        if end - start > self._segment:
            start += math.ceil((end - self._segment - start) / self._hop) * self._hop
        self._transcribe_segment(start, end - start)
        self.evidence = self._stitcher.evidence(duration_s)
        self.finished = True
        self._chunks = []
        return self._collect()

    def _window(self, start: int, length: int) -> np.ndarray:
        """`length` samples from padded-stream index `start`, zero-padded to a whole segment."""
        buffer = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [buffer]
        window = buffer[start - self._origin : start - self._origin + length]
        if len(window) < self._segment:
            window = np.concatenate([window, np.zeros(self._segment - len(window), dtype=np.float32)])
        return window

    def _transcribe_segment(self, start: int, length: int) -> None:
        """Decode one segment with forced start positions and merge its events (as Transkun does)."""
        model = self.model
        shift = (start - self._prev_start) // self._hop
        forced = [max(p - shift, 0) for p in self._last_pos]
        x = torch.from_numpy(np.ascontiguousarray(self._window(start, length))).reshape(1, -1).to(self.device)
        frames = makeFrame(x, model.hopSize, model.windowSize)
        with self.autocast(), self.transcriber.recording() as scores:
            events, self._last_pos = model.transcribeFrames(
                frames.unsqueeze(0),
                forcedStartPos=forced,
                velocityCriteron="hamming",
                lastFrameIdx=round(self._segment / model.hopSize),
            )
        begin_time = start / self.sample_rate - self._pad_s
        self._stitcher.add(begin_time, scores[0])
        for e in events[0]:
            e.start = max(e.start + begin_time, 0.0)
            e.end = max(e.end + begin_time, e.start)
            self._merge(e)
        self._prev_start = start
        self._next_start = start + self._step
        self._drop_before(self._next_start)
        self.segments_done += 1

    def _drop_before(self, index: int) -> None:
        """Free buffered audio before padded-stream `index` (no later segment reads it)."""
        buffer = self._chunks[0]
        cut = min(index - self._origin, len(buffer))
        if cut > 0:
            self._chunks[0] = buffer[cut:].copy()
            self._origin += cut
            self._buffered -= cut

    def _merge(self, e) -> None:
        """Transkun's per-pitch merge: a continuation extends the last note, a new onset replaces it."""
        same_pitch = self._events[e.pitch]
        if same_pitch and e.start < same_pitch[-1].end:
            if e.hasOnset:
                same_pitch[-1] = e
            else:
                same_pitch[-1].hasOffset = e.hasOffset
                same_pitch[-1].end = max(e.end, same_pitch[-1].end)
            return
        if e.hasOnset:
            same_pitch.append(e)

    def _collect(self) -> tuple[list[Note], list[PedalInterval]]:
        for same_pitch in self._events.values():
            if same_pitch:
                same_pitch[-1].hasOffset = True
        events = [e for same_pitch in self._events.values() for e in same_pitch if e.hasOffset]
        return split_events(resolveOverlapping(events))


class Resampler:
    """Streaming resampler to the transcriber's rate (identity when the rates match)."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._stream = None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32")

    def __call__(self, mono: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample the next block of mono float32 audio; `last=True` flushes the filter."""
        if self._stream is None:
            return mono
        return self._stream.resample_chunk(mono, last=last)
