"""Render note arrays to audio with a SoundFont (tinysoundfont; FluidSynth where installed)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pretty_midi
import tinysoundfont

from llaqo_model.analysis.report import Note, PedalInterval

DEFAULT_SOUNDFONT = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
SYSTEM_SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
    Path("/usr/share/sounds/sf2/MuseScore_General.sf2"),
    Path("/usr/share/sounds/sf3/MuseScore_General.sf3"),
)


log = logging.getLogger(__name__)
SF2 = Path("/usr/share/sounds/sf2")
# (name, candidate SoundFonts (first installed wins), GM program). Distinct sample sets: TimGM6mb (bundled with
# pretty_midi), FluidR3_GM (Debian fluid-soundfont-gm), MuseScore General (musescore-general-soundfont-*; sf2
# or sf3, both read by tinysoundfont) and the csound GM bank (csound-soundfont). "bright" is the same
# SoundFont's bright-piano preset: another timbre, not new samples.
PIANO_SOUNDS: tuple[tuple[str, tuple[Path, ...], int], ...] = (
    ("timgm6mb_grand", (DEFAULT_SOUNDFONT,), 0),
    ("timgm6mb_bright", (DEFAULT_SOUNDFONT,), 1),
    ("fluidr3_grand", (SYSTEM_SOUNDFONTS[0],), 0),
    ("fluidr3_bright", (SYSTEM_SOUNDFONTS[0],), 1),
    (
        "musescore_grand",
        (
            SYSTEM_SOUNDFONTS[1],
            SF2 / "MuseScore_General_Full.sf2",
            SYSTEM_SOUNDFONTS[2],
            Path("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
        ),
        0,
    ),
    ("csound_grand", (SF2 / "sf_GMbank.sf2",), 0),
)


def piano_sounds(skipped: list[str] | None = None) -> list[tuple[str, Path, int]]:
    """The piano sounds installed here; missing ones are noted in `skipped`."""
    out = []
    for name, paths, program in PIANO_SOUNDS:
        found = next((p for p in paths if p.is_file()), None)
        if found is not None:
            out.append((name, found, program))
        elif skipped is not None:
            skipped.append(f"piano sound {name}: {paths[0]} not installed")
    return out


@functools.lru_cache(maxsize=4)
def _synth(soundfont: str, sample_rate: int) -> tuple[tinysoundfont.Synth, int]:
    synth = tinysoundfont.Synth(samplerate=sample_rate, gain=-6)
    return synth, synth.sfload(soundfont)


def available_soundfonts() -> list[Path]:
    """The bundled TimGM6mb SoundFont plus any Debian piano SoundFonts installed."""
    return [DEFAULT_SOUNDFONT] + [p for p in SYSTEM_SOUNDFONTS if p.is_file()]


def render_notes(
    notes: list[Note],
    pedal: list[PedalInterval] | None = None,
    sample_rate: int = 44100,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
    program: int = 0,
    tail_s: float = 1.0,
) -> np.ndarray:
    """Play notes (and sustain pedal) through a SoundFont piano; returns mono float32."""
    soundfont = Path(soundfont)
    if not soundfont.is_file():
        raise FileNotFoundError(f"soundfont not found: {soundfont}")
    synth, sfid = _synth(str(soundfont), sample_rate)
    synth.sounds_off()
    synth.control_change(0, 64, 0)
    synth.program_select(0, sfid, 0, program)
    events: list[tuple[float, int, int, int]] = []  # (time, order, kind, value); offs before ons
    for n in notes:
        events.append((n.onset, 2, n.pitch, int(np.clip(n.velocity, 1, 127))))
        events.append((n.offset, 0, n.pitch, 0))
    for p in pedal or []:
        events.append((p.onset, 1, -1, 127))
        events.append((p.offset, 1, -1, 0))
    events.sort()
    end_s = (max((e[0] for e in events), default=0.0)) + tail_s
    total = int(end_s * sample_rate)
    out = np.zeros(total, dtype=np.float32)
    cursor = 0
    for time_s, _, pitch, value in events:
        target = min(int(time_s * sample_rate), total)
        if target > cursor:
            block = np.frombuffer(synth.generate(target - cursor), dtype=np.float32)
            out[cursor:target] = block.reshape(-1, 2).mean(axis=1)
            cursor = target
        if pitch == -1:
            synth.control_change(0, 64, value)
        elif value > 0:
            synth.noteon(0, pitch, value)
        else:
            synth.noteoff(0, pitch)
    if total > cursor:
        block = np.frombuffer(synth.generate(total - cursor), dtype=np.float32)
        out[cursor:] = block.reshape(-1, 2).mean(axis=1)
    return out
