"""The spectrum check: a key struck softly beside a chord adds partials of its own that the chord's keys do
not explain; a key that was not struck adds nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llaqo_model.analysis.report import Note
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_training.render import available_soundfonts, render_notes

RATE = 44100
CHORD = (60, 64, 67)  # C major, struck at 0.5 s
BESIDE = 69  # A4: a tone above the chord's top key, none of its partials' keys


def _gain(with_brushed: bool, font: Path) -> float:
    notes = [Note(0.5, 1.5, p, 80) for p in CHORD]
    if with_brushed:
        notes.append(Note(0.51, 0.59, BESIDE, 40))
    return OnsetSpectrum(render_notes(notes, soundfont=font), RATE).explained_gain(BESIDE, 0.5)


@pytest.mark.parametrize("font", available_soundfonts(), ids=lambda f: f.stem)
def test_a_brushed_key_is_needed_to_explain_the_spectrum_and_an_unstruck_one_is_not(font: Path):
    struck, not_struck = _gain(True, font), _gain(False, font)
    assert struck > 0.02 and 0.0 <= not_struck < 0.005


def test_keys_outside_the_piano_explain_nothing():
    spectrum = OnsetSpectrum(render_notes([Note(0.5, 1.0, 60, 80)]), RATE)
    assert spectrum.explained_gain(10, 0.5) == 0.0 and spectrum.explained_gain(60, 0.5) > 0.05
