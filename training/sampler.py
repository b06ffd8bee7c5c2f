"""A sampled piano whose timbre follows velocity: recorded notes at several strengths (Salamander Grand Piano
V3 layers, fetched by `scripts/get_sounds.sh`), mixed between the two layers nearest each note's velocity.

The SoundFont pianos the corpus also uses play one sample set louder or softer, and the transcriber, which learnt
dynamics from a real piano's timbre, hears almost none of the velocity in them: after the recording chain's gain,
the mean velocity read back follows the MIDI with r 0.35 on FluidR3 and r 0.89 on these samples (14 PercePiano
training segments). With the gain curve below, the spread of the velocities read back is 0.93 of the MIDI's (7
segments; MuseScore General, the held-out sound: 0.93; without the curve it was 0.69 on 32 takes, and followed the
MIDI's spread with a slope of 0.22 against MuseScore General's 0.53). Takes rendered here teach the model how
transcribed dynamics relate to what was played.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile as sf
import soxr

from llaqo_model.analysis.report import Note, PedalInterval

SAMPLES_DIR = Path(os.environ.get("LLAQO_SOUNDS", Path.home() / ".cache" / "llaqo" / "sounds")) / "salamander"
SAMPLE_NAME = re.compile(r"(?P<note>[A-G]#?\d)v(?P<layer>\d+)\.(?:ogg|flac|wav)$")
LAYER_VELOCITY = 8  # Salamander records 16 layers over MIDI velocity 1-127: layer k sounds at about 8k
MAX_SAMPLE_S = 8.0  # a piano note has decayed by ~40 dB after 8 s; longer holds end with the sample
DAMPER_S = 0.12  # the damper silences a string in about a tenth of a second
SOFTEST_LAYER_EXPONENT = 1.5  # below the softest layer only the level falls (steeper than linear, as a hammer)
# The four layers span only ~12 dB from velocity 24 to 120, a piano (and General MIDI's 40·log10(v/127) curve)
# ~28 dB: each note is also scaled by (v/127)^1.3, which adds the missing ~16 dB over that range.
VELOCITY_GAIN_EXPONENT = 1.3


def installed(folder: Path = SAMPLES_DIR) -> bool:
    """Whether a folder of layered samples is there."""
    return folder.is_dir() and any(SAMPLE_NAME.search(p.name) for p in folder.iterdir())


@functools.lru_cache(maxsize=2)
def load_samples(folder: Path, sample_rate: int) -> dict[tuple[int, int], np.ndarray]:
    """{(layer, MIDI pitch): mono float32 at `sample_rate`} from files named like `C4v11.ogg`."""
    samples = {}
    for path in sorted(folder.iterdir()):
        match = SAMPLE_NAME.search(path.name)
        if match is None:
            continue
        info = sf.info(str(path))
        audio, rate = sf.read(str(path), dtype="float32", frames=int(MAX_SAMPLE_S * info.samplerate), always_2d=True)
        pitch = pretty_midi.note_name_to_number(match["note"])
        samples[(int(match["layer"]), pitch)] = soxr.resample(audio.mean(axis=1), rate, sample_rate)
    if not samples:
        raise FileNotFoundError(f"no piano samples named like C4v11.ogg in {folder}")
    return samples


def layer_mix(velocity: float, layers: list[int]) -> list[tuple[int, float]]:
    """(layer, gain) pairs for one velocity: a crossfade of the two layers around it."""
    levels = [layer * LAYER_VELOCITY for layer in layers]
    if velocity <= levels[0]:
        return [(layers[0], (velocity / levels[0]) ** SOFTEST_LAYER_EXPONENT)]
    if velocity >= levels[-1]:
        return [(layers[-1], velocity / levels[-1])]
    i = int(np.searchsorted(levels, velocity)) - 1
    w = (velocity - levels[i]) / (levels[i + 1] - levels[i])
    return [(layers[i], 1.0 - w), (layers[i + 1], w)]


def damper_time(note: Note, pedal: list[PedalInterval]) -> float:
    """When the damper falls on a released key: at release, or when the sustain pedal held then comes up."""
    for p in pedal:
        if p.onset <= note.offset < p.offset:
            return p.offset
    return note.offset


def render_sampled(
    notes: list[Note], pedal: list[PedalInterval], sample_rate: int, folder: Path = SAMPLES_DIR, tail_s: float = 1.0
) -> np.ndarray:
    """Play notes and sustain pedal on the sampled piano; returns mono float32."""
    samples = load_samples(folder, sample_rate)
    layers = sorted({layer for layer, _ in samples})
    pitches = np.array(sorted({pitch for _, pitch in samples}))
    end_s = max((max(n.offset, damper_time(n, pedal)) for n in notes), default=0.0) + tail_s
    out = np.zeros(int(end_s * sample_rate) + 1, dtype=np.float32)
    damper = int(DAMPER_S * sample_rate)
    fade = np.exp(-np.linspace(0.0, 7.0, damper)).astype(np.float32)
    for n in notes:
        source = int(pitches[np.argmin(np.abs(pitches - n.pitch))])
        mix = layer_mix(float(np.clip(n.velocity, 1, 127)), layers)
        size = min(len(samples[(layer, source)]) for layer, _ in mix)
        level = (float(np.clip(n.velocity, 1, 127)) / 127.0) ** VELOCITY_GAIN_EXPONENT
        tone = level * sum(gain * samples[(layer, source)][:size] for layer, gain in mix)
        ratio = 2.0 ** ((n.pitch - source) / 12)  # nearest sample played faster or slower (≤ 1.5 semitones)
        held = int((damper_time(n, pedal) - n.onset) * sample_rate) + damper
        length = min(held, int((size - 1) / ratio))
        played = np.interp(np.arange(length) * ratio, np.arange(size), tone).astype(np.float32)
        ending = min(damper, length)  # the damper, or the end of a sample cut at MAX_SAMPLE_S, never a click
        played[length - ending :] *= fade[damper - ending :]
        start = int(n.onset * sample_rate)
        stop = min(start + length, len(out))
        out[start:stop] += played[: stop - start]
    return out
