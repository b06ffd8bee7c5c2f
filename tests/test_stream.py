"""Streaming transcription gives Transkun's own offline result, with bounded buffering."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch

from llaqo_model.analysis.stream import Resampler, StreamingTranscription
from llaqo_model.analysis.transcribe import split_events

RATE = 44100


@pytest.fixture(scope="module")
def clip(chorale):
    """14 s of the chorale at 100 bpm: two 16 s segments both offline and streamed."""
    from llaqo_training.examples import mechanical_performance
    from llaqo_training.render import render_notes

    return render_notes(mechanical_performance(chorale, bpm=100.0), sample_rate=RATE)[: 14 * RATE]


def test_streamed_transcription_equals_offline_transkun(analyzer, clip):
    transcriber = analyzer.transcriber
    with torch.inference_mode(), transcriber.autocast():  # the same precision on both paths
        events = transcriber.model.transcribe(
            torch.from_numpy(clip).reshape(-1, 1), stepInSecond=12.0, segmentSizeInSecond=16.0
        )
    offline_notes, offline_pedal = split_events(events)

    stream = StreamingTranscription(transcriber)
    held = []
    done_while_streaming = 0
    for i in range(0, len(clip), 2205):  # 50 ms buffers, as a DAW sends them
        stream.feed(clip[i : i + 2205])
        done_while_streaming += stream.step()
        held.append(sum(len(c) for c in stream._chunks))
    notes, pedal = stream.finish()

    assert done_while_streaming == 1  # at take end only the last segment was left
    assert stream.segments_done == 2
    assert len(notes) > 60
    assert notes == offline_notes and pedal == offline_pedal
    assert max(held) <= 16 * RATE + 2205 + 4 * RATE  # one segment (plus lead-in), not the whole take


def test_streaming_resampler_matches_whole_file_resampling():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(48000 * 2).astype(np.float32) * 0.1
    resample = Resampler(48000, RATE)
    pieces = [resample(x[i : i + 1000]) for i in range(0, len(x), 1000)] + [resample(x[:0], last=True)]
    streamed = np.concatenate(pieces)
    whole = soxr.resample(x, 48000, RATE)
    assert abs(len(streamed) - len(whole)) <= 2
    n = min(len(streamed), len(whole)) - 200
    assert np.max(np.abs(streamed[200:n] - whole[200:n])) < 1e-3
    assert Resampler(RATE, RATE)(x) is x
