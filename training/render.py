"""Render note arrays to audio with a SoundFont: tinysoundfont for the bundled TimGM6mb, FluidSynth
(`fluid.py`) for the system SoundFonts where libfluidsynth is installed, else tinysoundfont.

MuseScore General needs FluidSynth: tinysoundfont renders its middle velocity layer (75–107) about
20 dB too quietly (it misreads that layer's filter settings), so a mezzo-forte note all but vanishes.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np
import pretty_midi
import tinysoundfont

from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_training.fluid import FluidSynthSynth, library
from llaqo_training.sampler import SAMPLES_DIR, installed, render_sampled

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
# or sf3, rendered with FluidSynth) and the csound GM bank (csound-soundfont). "bright" is the same
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


SAMPLED_SOUND = "salamander_grand"  # velocity-layered samples (`scripts/get_sounds.sh`), rendered by sampler.py


def sampled_piano(skipped: list[str] | None = None) -> tuple[str, Path, int] | None:
    """The velocity-layered sampled piano when its samples are installed (else noted in `skipped`)."""
    if installed(SAMPLES_DIR):
        return (SAMPLED_SOUND, SAMPLES_DIR, 0)
    if skipped is not None:
        skipped.append(f"piano sound {SAMPLED_SOUND}: no samples in {SAMPLES_DIR} (scripts/get_sounds.sh)")
    return None


def needs_fluidsynth(soundfont: Path) -> bool:
    """Whether tinysoundfont cannot render this SoundFont faithfully (MuseScore General, see above)."""
    return "musescore" in soundfont.name.lower()


def renderable(soundfont: Path) -> bool:
    """Whether this machine can render the SoundFont faithfully."""
    return library() is not None or not needs_fluidsynth(soundfont)


def piano_sounds(skipped: list[str] | None = None) -> list[tuple[str, Path, int]]:
    """The piano sounds installed (and renderable) here; the others are noted in `skipped`."""
    out = []
    for name, paths, program in PIANO_SOUNDS:
        found = next((p for p in paths if p.is_file()), None)
        if found is not None and not renderable(found):
            if skipped is not None:
                skipped.append(f"piano sound {name}: {found} needs FluidSynth (libfluidsynth), not installed")
        elif found is not None:
            out.append((name, found, program))
        elif skipped is not None:
            skipped.append(f"piano sound {name}: {paths[0]} not installed")
    return out


def available_soundfonts() -> list[Path]:
    """The bundled TimGM6mb SoundFont plus the Debian piano SoundFonts installed and renderable here."""
    return [DEFAULT_SOUNDFONT, *(p for p in SYSTEM_SOUNDFONTS if p.is_file() and renderable(p))]


class TinySoundFontSynth:
    """tinysoundfont behind the small interface `render_notes` plays through."""

    def __init__(self, soundfont: Path, sample_rate: int) -> None:
        self.synth = tinysoundfont.Synth(samplerate=sample_rate, gain=-6)
        self.sfid = self.synth.sfload(str(soundfont))

    def reset(self, program: int) -> None:
        """Silence every voice, lift the pedal and select `program`."""
        self.synth.sounds_off()
        self.pedal(0)
        self.synth.program_select(0, self.sfid, 0, program)

    def note(self, pitch: int, velocity: int) -> None:
        """Strike `pitch` (velocity > 0) or release it (0)."""
        if velocity > 0:
            self.synth.noteon(0, pitch, velocity)
        else:
            self.synth.noteoff(0, pitch)

    def pedal(self, value: int) -> None:
        """Sustain pedal down (127) or up (0)."""
        self.synth.control_change(0, 64, value)

    def generate(self, frames: int) -> np.ndarray:
        """The next `frames` samples, mono float32."""
        return np.frombuffer(self.synth.generate(frames), dtype=np.float32).reshape(-1, 2).mean(axis=1)


@functools.lru_cache(maxsize=len(PIANO_SOUNDS) * 2)  # every sound stays loaded (MuseScore takes seconds to load)
def _synth(soundfont: Path, sample_rate: int) -> TinySoundFontSynth | FluidSynthSynth:
    """One loaded synth per SoundFont and rate: FluidSynth for the system SoundFonts where installed."""
    if library() is not None and soundfont != DEFAULT_SOUNDFONT:
        return FluidSynthSynth(soundfont, sample_rate)
    if not renderable(soundfont):
        raise RuntimeError(f"{soundfont.name} needs FluidSynth (libfluidsynth), which is not installed")
    return TinySoundFontSynth(soundfont, sample_rate)


def render_notes(
    notes: list[Note],
    pedal: list[PedalInterval] | None = None,
    sample_rate: int = 44100,
    soundfont: str | Path = DEFAULT_SOUNDFONT,
    program: int = 0,
    tail_s: float = 1.0,
) -> np.ndarray:
    """Play notes (and sustain pedal) through a SoundFont piano, or the sampled piano when `soundfont` is
    its folder of samples; returns mono float32."""
    soundfont = Path(soundfont)
    if soundfont.is_dir():
        return render_sampled(notes, pedal or [], sample_rate, soundfont, tail_s)
    if not soundfont.is_file():
        raise FileNotFoundError(f"soundfont not found: {soundfont}")
    synth = _synth(soundfont, sample_rate)
    synth.reset(program)
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
            out[cursor:target] = synth.generate(target - cursor)
            cursor = target
        if pitch == -1:
            synth.pedal(value)
        else:
            synth.note(pitch, value)
    if total > cursor:
        out[cursor:] = synth.generate(total - cursor)
    return out
