"""Shared fixtures: a public-domain score from music21's corpus, takes rendered from it at test time."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLAQO_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def chorale_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Bach's chorale BWV 66.6 as MusicXML (10 bars, pickup bar 0)."""
    from llaqo_training.examples import write_music21_score

    return write_music21_score("bach/bwv66.6", tmp_path_factory.mktemp("scores") / "bwv66.6.musicxml")


@pytest.fixture(scope="session")
def other_piece_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different chorale, for 'wrong score' cases."""
    from llaqo_training.examples import write_music21_score

    return write_music21_score("bach/bwv269", tmp_path_factory.mktemp("scores") / "bwv269.musicxml")


@pytest.fixture(scope="session")
def chorale(chorale_path: Path):
    """The loaded chorale score."""
    from llaqo_model.analysis.score import load_score

    return load_score(chorale_path)


@pytest.fixture(scope="session")
def analyzer():
    """One Transkun-backed analyzer for the whole session (loading it takes a few seconds)."""
    from llaqo_model.analysis.pipeline import Analyzer

    return Analyzer()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (or $LLAQO_SHARED); tests that need it skip when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


def _played_with_mistakes(
    score, wrong_bar: int | None = 6, missed_bar: int | None = 3, extra_bar: int | None = 8, bpm: float = 80.0
):
    """A mechanical take of `score` (performed notes, no audio): the first note of `wrong_bar` a semitone
    up, one note of `missed_bar` left out, an extra note a tenth above the start of `extra_bar`; at `bpm`."""
    from llaqo_model.analysis.report import Note
    from llaqo_training.examples import mechanical_performance, note_in_bar

    notes = mechanical_performance(score, bpm=bpm)
    if wrong_bar is not None:
        i = note_in_bar(score, notes, wrong_bar, which=0, bpm=bpm)
        notes[i] = replace(notes[i], pitch=notes[i].pitch + 1)
    if extra_bar is not None:
        j = note_in_bar(score, notes, extra_bar, which=0, bpm=bpm)
        notes.append(Note(notes[j].onset + 0.02, notes[j].onset + 0.3, notes[j].pitch + 17, 70))
    if missed_bar is not None:
        del notes[note_in_bar(score, notes, missed_bar, which=2, bpm=bpm)]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def _report_for(score, notes):
    """The report on performed notes, as the analysis makes it after transcription."""
    from llaqo_model.analysis.pipeline import report_from_notes

    return report_from_notes(notes, [], notes[-1].offset + 0.5, "take.flac", score)


@pytest.fixture(scope="session")
def mistakes_report(chorale):
    """The chorale played with a wrong note in bar 6 (D♯4 for D4), a missed note in bar 3, an extra in bar 8."""
    report = _report_for(chorale, _played_with_mistakes(chorale))
    kinds = {(b.bar, i.kind.value) for b in report.bars for i in b.issues}
    assert {(6, "wrong_note"), (3, "missed_note"), (8, "extra_note")} <= kinds  # the fixture is what it says
    return report


@pytest.fixture(scope="session")
def played_with_mistakes():
    """`played_with_mistakes(score, wrong_bar=6, missed_bar=3, extra_bar=8, bpm=80)` → performed notes."""
    return _played_with_mistakes


@pytest.fixture(scope="session")
def report_for():
    """`report_for(score, notes)` → the `PerformanceReport` on those performed notes."""
    return _report_for
