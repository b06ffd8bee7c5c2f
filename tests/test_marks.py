"""What the score asks beyond its notes (dynamics, accents, hairpins, slurs) is recorded with the take's report
and reaches the model's heads; a take without a score has none."""

from __future__ import annotations

from dataclasses import replace

import music21
import pytest

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import PerformanceReport
from llaqo_model.analysis.score import load_score
from llaqo_model.model.take_features import TOP_LEVEL, written_statistics
from llaqo_training.examples import mechanical_performance


@pytest.fixture(scope="module")
def marked_score(tmp_path_factory):
    """Four bars of quarter notes marked p, f, p, f; an sf on the second bar's third beat, a crescendo and a
    slur over the first bar."""
    part = music21.stream.Part()
    part.append(music21.key.KeySignature(0))
    part.append(music21.meter.TimeSignature("4/4"))
    notes = []
    for i, pitch in enumerate(["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"] * 2):
        if i % 4 == 0:
            part.append(music21.dynamics.Dynamic("p" if i % 8 == 0 else "f"))
        if i == 6:
            part.append(music21.dynamics.Dynamic("sf"))
        notes.append(music21.note.Note(pitch, quarterLength=1.0))
        part.append(notes[-1])
    part.insert(0, music21.spanner.Slur(notes[0], notes[3]))
    part.insert(0, music21.dynamics.Crescendo(notes[1], notes[3]))
    path = tmp_path_factory.mktemp("marks") / "marked.musicxml"
    music21.stream.Score([part]).write("musicxml", fp=str(path))
    return load_score(path)


def test_the_report_records_the_dynamics_accents_hairpins_and_slurs_the_score_asks_for(marked_score):
    notes = mechanical_performance(marked_score, bpm=90)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", marked_score)
    marks = report.measures.written_marks
    assert marks is not None
    assert marks.dynamic_level == pytest.approx(4.5)  # half the notes at p (3), half at f (6)
    assert marks.dynamic_span == pytest.approx(3.0)
    assert marks.accents_per_bar == pytest.approx(0.25) and marks.hairpins_per_bar == pytest.approx(0.25)
    assert 0.15 <= marks.slur_share <= 0.3 and marks.pedal_share == 0.0
    assert marks.bar_levels == [3.0, 6.0, 3.0, 6.0]
    again = PerformanceReport.from_json(report.to_json()).measures.written_marks
    assert again == marks
    stats = written_statistics(report)
    assert stats[0] == 1.0 and stats[1] == pytest.approx(4.5 / TOP_LEVEL)


def test_a_take_that_plays_the_marks_follows_them_and_one_that_plays_against_them_does_not(marked_score):
    def played(soft: int, loud: int) -> PerformanceReport:
        notes = mechanical_performance(marked_score, bpm=90)
        notes = [replace(n, velocity=soft if (i // 4) % 2 == 0 else loud) for i, n in enumerate(notes)]
        return report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", marked_score)

    follows, slope = written_statistics(played(40, 90))[-2:]
    against, backwards = written_statistics(played(90, 40))[-2:]
    assert follows > 0.9 and slope > 0 and against < -0.9 and backwards < 0


def test_a_take_without_a_score_has_no_written_marks(marked_score):
    notes = mechanical_performance(marked_score, bpm=90)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", None)
    assert report.measures.written_marks is None
    assert not written_statistics(report).any()


def test_a_report_cached_before_the_marks_were_recorded_gets_them_from_its_score(marked_score, tmp_path):
    from llaqo_training.reports import cache_path, cached_report

    notes = mechanical_performance(marked_score, bpm=90)
    report = report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", marked_score)
    expected = report.measures.written_marks
    report.measures.written_marks = None  # as a report cached by an earlier version
    cache_path(tmp_path, "take").write_text(report.to_json(), encoding="utf-8")
    loaded = cached_report({"id": "take", "score": marked_score.path}, tmp_path)
    assert loaded is not None and loaded.measures.written_marks == expected
