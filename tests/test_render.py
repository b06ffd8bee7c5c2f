"""Rendering takes: every piano sound the corpus uses plays louder when struck harder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llaqo_model.analysis.report import Note
from llaqo_training.fluid import library
from llaqo_training.render import available_soundfonts, needs_fluidsynth, piano_sounds, render_notes


def _level_db(soundfont: Path, pitch: int, velocity: int) -> float:
    audio = render_notes([Note(0.1, 0.6, pitch, velocity)], soundfont=soundfont, tail_s=0.2)
    attack = audio[int(0.1 * 44100) : int(0.3 * 44100)]
    return float(20 * np.log10(np.sqrt(np.mean(attack**2)) + 1e-9))


@pytest.mark.parametrize("soundfont", available_soundfonts(), ids=lambda p: p.name)
def test_harder_keystrokes_are_louder_in_every_sound(soundfont: Path) -> None:
    for pitch in (48, 65, 79):
        levels = [_level_db(soundfont, pitch, v) for v in (40, 64, 90, 120)]
        assert all(b > a - 0.5 for a, b in zip(levels, levels[1:], strict=False)), (pitch, levels)
        assert levels[-1] - levels[0] > 3.0, (pitch, levels)


def test_musescore_is_used_only_through_fluidsynth() -> None:
    skipped: list[str] = []
    sounds = piano_sounds(skipped)
    if library() is None:
        assert not any(needs_fluidsynth(path) for _, path, _ in sounds)
    assert all(path.is_file() for _, path, _ in sounds)
    assert all("needs FluidSynth" in s or "not installed" in s for s in skipped)


@pytest.mark.parametrize("soundfont", available_soundfonts(), ids=lambda p: p.name)
def test_the_same_take_renders_the_same_whatever_was_rendered_before(soundfont: Path) -> None:
    notes = [Note(0.1 + 0.2 * i, 0.5 + 0.2 * i, 50 + i % 20, 40 + i) for i in range(30)]
    first = render_notes(notes, soundfont=soundfont)
    render_notes(notes[:7], soundfont=soundfont, tail_s=0.3337)  # leaves the synth mid-block
    again = render_notes(notes, soundfont=soundfont)
    assert np.abs(first - again).max() < 1e-3
