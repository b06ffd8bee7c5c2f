"""Shared fixtures: a public-domain score from music21's corpus, takes rendered from it at test time."""

from __future__ import annotations

import os
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
