"""The tempo a take was played at, measured against the tempo its score marks."""

from __future__ import annotations

import math
import re

import music21
import pytest

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.score import load_score
from llaqo_model.cli import summary_text
from llaqo_model.model.feedback import compose_feedback
from llaqo_model.model.take_features import tempo_statistics
from llaqo_training.examples import mechanical_performance
from llaqo_training.sources import mark_tempo

MARKED_QPM = 96  # the chorale is in 4/4: a beat is a quarter


@pytest.fixture(scope="module")
def marked_chorale(tmp_path_factory):
    """BWV 66.6 with a metronome mark of quarter = 96 at its start."""
    score = mark_tempo(music21.corpus.parse("bach/bwv66.6"), MARKED_QPM)
    path = tmp_path_factory.mktemp("tempo") / "marked.musicxml"
    score.write("musicxml", fp=str(path))
    return load_score(path)


@pytest.fixture(scope="module")
def unmarked_chorale(chorale_path, tmp_path_factory):
    """BWV 66.6 without its playback tempo (`<sound tempo>`): a score that marks no tempo."""
    path = tmp_path_factory.mktemp("tempo") / "unmarked.musicxml"
    xml = re.sub(r"<sound tempo=\"[^\"]*\"\s*/>", "", chorale_path.read_text(encoding="utf-8"))
    path.write_text(xml, encoding="utf-8")
    return load_score(path)


def _report(score, bpm: float):
    notes = mechanical_performance(score, bpm=bpm)
    return report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", score)


def test_a_take_at_half_the_marked_tempo_is_measured_against_the_mark(marked_chorale):
    report = _report(marked_chorale, MARKED_QPM / 2)
    assert report.measures.written_tempo_bpm == pytest.approx(MARKED_QPM)
    assert report.measures.tempo_bpm == pytest.approx(MARKED_QPM / 2, rel=0.03)
    marked, ratio, size, slower = tempo_statistics(report)
    assert marked == 1.0 and ratio == pytest.approx(-math.log(2), abs=0.03) and slower == pytest.approx(size)
    assert "the score marks 96" in summary_text(report)


def test_feedback_names_the_marked_tempo_only_when_far_from_it(marked_chorale):
    ratings = {"pitch_accuracy": 6, "tempo_choice": 3}
    slow = compose_feedback(_report(marked_chorale, MARKED_QPM / 2), ratings)
    assert "marks about 96 beats a minute and you played about 48" in slow and "raise the tempo" in slow
    near = compose_feedback(_report(marked_chorale, MARKED_QPM * 1.1), ratings)
    assert "marks about" not in near


def test_a_score_without_a_tempo_mark_gives_no_tempo_evidence(unmarked_chorale):
    report = _report(unmarked_chorale, 60)
    assert report.measures.written_tempo_bpm is None
    assert not tempo_statistics(report).any()
    assert "marks" not in compose_feedback(report, {"tempo_choice": 3})


def _midi_score(path, qpm: float | None):
    """Four quarter notes in 4/4, with a tempo message at `qpm` (none when None)."""
    import mido

    track = mido.MidiTrack([mido.MetaMessage("time_signature", numerator=4, denominator=4)])
    if qpm is not None:
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm)))
    for pitch in (60, 62, 64, 65):
        track += [mido.Message("note_on", note=pitch, velocity=64), mido.Message("note_off", note=pitch, time=480)]
    midi = mido.MidiFile(ticks_per_beat=480, tracks=[track])
    midi.save(str(path))
    return load_score(path)


def test_a_midi_scores_tempo_is_its_mark_unless_it_is_midis_default(tmp_path):
    assert _midi_score(tmp_path / "marked.mid", 72).written_tempo_bpm == pytest.approx(72, abs=0.1)
    assert _midi_score(tmp_path / "default.mid", 120).written_tempo_bpm is None
    assert _midi_score(tmp_path / "none.mid", None).written_tempo_bpm is None
