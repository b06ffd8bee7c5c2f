"""The mode and key clarity of what was played: a minor passage reads as minor, a major one as major."""

from __future__ import annotations

import music21
import pytest

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.score import load_score
from llaqo_model.model.take_features import tonality_statistics
from llaqo_training.examples import mechanical_performance

C_MINOR = ["C4", "E-4", "G4", "C5", "G4", "E-4", "D4", "B3", "F4", "A-4", "G4", "C4"]
E_FLAT_MAJOR = ["E-4", "G4", "B-4", "E-5", "B-4", "G4", "F4", "D4", "A-4", "C5", "B-4", "E-4"]  # same signature


def _score(pitches: list[str], fifths: int, folder) -> object:
    """One bar of quarter notes per four pitches, in 4/4 with `fifths` in the key signature."""
    part = music21.stream.Part()
    part.append(music21.key.KeySignature(fifths))
    part.append(music21.meter.TimeSignature("4/4"))
    for p in pitches:
        part.append(music21.note.Note(p, quarterLength=1.0))
    path = folder / f"tonality_{fifths}_{pitches[0]}.musicxml"
    music21.stream.Score([part]).write("musicxml", fp=str(path))
    return load_score(path)


@pytest.mark.parametrize("with_score", [True, False])
def test_a_minor_passage_is_heard_as_more_minor_than_its_relative_major(tmp_path, with_score):
    modes = []
    for pitches in (C_MINOR, E_FLAT_MAJOR):
        score = _score(pitches, -3, tmp_path)
        notes = mechanical_performance(score, bpm=90)
        report = report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", score if with_score else None)
        assert report.measures.written_key_fifths == (-3 if with_score else None)
        modes.append(tonality_statistics(report)[0])
    assert modes[0] > 0 > modes[1]


def test_a_chromatic_run_is_less_clear_in_key_than_a_triad(tmp_path):
    chromatic = [f"{n}4" for n in ("C", "C#", "D", "E-", "E", "F", "F#", "G", "G#", "A", "B-", "B")]
    triad = ["C4", "E4", "G4", "C5"] * 3
    stats = []
    for pitches in (chromatic, triad):
        score = _score(pitches, 0, tmp_path)
        notes = mechanical_performance(score, bpm=90)
        stats.append(tonality_statistics(report_from_notes(notes, [], notes[-1].offset + 1, "take.wav", score)))
    (_, clarity_chromatic, entropy_chromatic), (_, clarity_triad, entropy_triad) = stats
    assert entropy_chromatic == pytest.approx(1.0, abs=0.01) and entropy_triad < 0.5
    assert clarity_triad > clarity_chromatic
