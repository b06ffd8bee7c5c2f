"""Rendering takes: every piano sound the corpus uses plays louder when struck harder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llaqo_model.analysis.report import Note
from llaqo_training.render import available_soundfonts, needs_fluidsynth, render_notes


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


def test_without_fluidsynth_musescore_is_skipped_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    import llaqo_training.render as render

    monkeypatch.setattr(render, "library", lambda: None)
    render._synth.cache_clear()
    skipped: list[str] = []
    sounds = render.piano_sounds(skipped)
    assert sounds and not any(needs_fluidsynth(path) for _, path, _ in sounds)
    assert not any(needs_fluidsynth(path) for path in render.available_soundfonts())
    musescore = [p for p in render.SYSTEM_SOUNDFONTS if needs_fluidsynth(p) and p.is_file()]
    try:
        if not musescore:
            pytest.skip("no MuseScore General SoundFont installed (musescore-general-soundfont-*)")
        assert any("needs FluidSynth" in reason for reason in skipped)
        with pytest.raises(RuntimeError, match="needs FluidSynth"):
            render_notes([Note(0.1, 0.5, 60, 80)], soundfont=musescore[0])
    finally:
        render._synth.cache_clear()


@pytest.mark.parametrize("soundfont", available_soundfonts(), ids=lambda p: p.name)
def test_the_same_take_renders_the_same_whatever_was_rendered_before(soundfont: Path) -> None:
    notes = [Note(0.1 + 0.2 * i, 0.5 + 0.2 * i, 50 + i % 20, 40 + i) for i in range(30)]
    first = render_notes(notes, soundfont=soundfont)
    render_notes(notes[:7], soundfont=soundfont, tail_s=0.3337)  # leaves the synth mid-block
    again = render_notes(notes, soundfont=soundfont)
    assert np.abs(first - again).max() < 1e-3
