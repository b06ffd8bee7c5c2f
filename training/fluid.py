"""FluidSynth through its C library (libfluidsynth, Debian's `libfluidsynth3`), for rendering takes.

Bound with ctypes rather than pyfluidsynth: with a module named `fluidsynth` importable, partitura tries
to download a SoundFont from the internet when it is imported, which fails offline.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from pathlib import Path

import numpy as np


@functools.cache
def library() -> ctypes.CDLL | None:
    """libfluidsynth with the functions used here declared, or None when it is not installed."""
    name = ctypes.util.find_library("fluidsynth")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    p, i, d, s, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_double, ctypes.c_char_p, ctypes.POINTER(ctypes.c_float)
    signatures = {
        "new_fluid_settings": (p, []),
        "fluid_settings_setnum": (i, [p, s, d]),
        "fluid_settings_setint": (i, [p, s, i]),
        "new_fluid_synth": (p, [p]),
        "delete_fluid_synth": (None, [p]),
        "delete_fluid_settings": (None, [p]),
        "fluid_synth_sfload": (i, [p, s, i]),
        "fluid_synth_program_select": (i, [p, i, i, i, i]),
        "fluid_synth_noteon": (i, [p, i, i, i]),
        "fluid_synth_noteoff": (i, [p, i, i]),
        "fluid_synth_cc": (i, [p, i, i, i]),
        "fluid_synth_all_sounds_off": (i, [p, i]),
        "fluid_synth_write_float": (i, [p, i, f, i, i, f, i, i]),
    }
    for func, (restype, argtypes) in signatures.items():
        getattr(lib, func).restype = restype
        getattr(lib, func).argtypes = argtypes
    return lib


class FluidSynthSynth:
    """One dry FluidSynth (no reverb or chorus) with one SoundFont loaded, played on MIDI channel 0."""

    GAIN = 0.4  # about tinysoundfont's level at its -6 dB gain
    BLOCK = 64  # FluidSynth renders in blocks of this many frames and starts events on block boundaries

    def __init__(self, soundfont: Path, sample_rate: int) -> None:
        lib = library()
        if lib is None:
            raise RuntimeError("FluidSynth (libfluidsynth) is not installed")
        self.lib = lib
        self.settings = lib.new_fluid_settings()
        lib.fluid_settings_setnum(self.settings, b"synth.sample-rate", float(sample_rate))
        lib.fluid_settings_setnum(self.settings, b"synth.gain", self.GAIN)
        lib.fluid_settings_setint(self.settings, b"synth.reverb.active", 0)
        lib.fluid_settings_setint(self.settings, b"synth.chorus.active", 0)
        self.synth = lib.new_fluid_synth(self.settings)
        self.sfid = lib.fluid_synth_sfload(self.synth, str(soundfont).encode(), 1)
        if self.sfid < 0:
            raise RuntimeError(f"FluidSynth could not load {soundfont}")
        self.frames = 0

    def __del__(self) -> None:
        if getattr(self, "synth", None):
            self.lib.delete_fluid_synth(self.synth)
            self.lib.delete_fluid_settings(self.settings)

    def reset(self, program: int) -> None:
        """Silence every voice, lift the pedal, select `program`, and start a fresh block, so that the same
        notes always render to the same samples."""
        self.lib.fluid_synth_all_sounds_off(self.synth, 0)
        self.pedal(0)
        self.lib.fluid_synth_program_select(self.synth, 0, self.sfid, 0, program)
        self.generate(-self.frames % self.BLOCK)

    def note(self, pitch: int, velocity: int) -> None:
        """Strike `pitch` (velocity > 0) or release it (0)."""
        if velocity > 0:
            self.lib.fluid_synth_noteon(self.synth, 0, pitch, velocity)
        else:
            self.lib.fluid_synth_noteoff(self.synth, 0, pitch)

    def pedal(self, value: int) -> None:
        """Sustain pedal down (127) or up (0)."""
        self.lib.fluid_synth_cc(self.synth, 0, 64, value)

    def generate(self, frames: int) -> np.ndarray:
        """The next `frames` samples, mono float32."""
        stereo = np.zeros((frames, 2), dtype=np.float32)
        pointer = stereo.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        self.lib.fluid_synth_write_float(self.synth, frames, pointer, 0, 2, pointer, 1, 2)
        self.frames += frames
        return stereo.mean(axis=1)
