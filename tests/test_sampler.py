"""The sampled piano: harder keystrokes sound louder and brighter (its reason to exist), every key sounds at its
own pitch, and the sustain pedal holds released notes. Samples are made at test time (the real ones are
fetched for training only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_training.render import render_notes

RATE = 22050
SAMPLED = {"C4": 60, "D#4": 63}  # every third key, as the real set
LAYERS = {3: (0.1, 2), 15: (0.5, 8)}  # layer: (level, harmonics): loud layers are louder and richer


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("salamander")
    t = np.arange(int(3.0 * RATE)) / RATE
    for name, pitch in SAMPLED.items():
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        for layer, (level, harmonics) in LAYERS.items():
            tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, harmonics + 1))
            sf.write(str(folder / f"{name}v{layer}.wav"), (level * tone * np.exp(-t)).astype(np.float32), RATE)
    return folder


def _centroid(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    freqs = np.fft.rfftfreq(len(audio), 1 / RATE)
    return float((spectrum * freqs).sum() / spectrum.sum())


def test_a_harder_keystroke_is_louder_and_brighter(samples: Path) -> None:
    def attack(velocity: int) -> np.ndarray:
        return render_notes([Note(0.1, 0.6, 60, velocity)], None, RATE, samples)[int(0.1 * RATE) : int(0.5 * RATE)]

    soft, mid, loud = attack(30), attack(72), attack(120)
    rms = [float(np.sqrt(np.mean(x**2))) for x in (soft, mid, loud)]
    assert rms[0] < rms[1] < rms[2]
    assert _centroid(soft) < _centroid(mid) < _centroid(loud)


def test_a_key_between_samples_sounds_at_its_own_pitch(samples: Path) -> None:
    audio = render_notes([Note(0.0, 1.0, 61, 90)], None, RATE, samples)[: RATE // 2]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak = np.fft.rfftfreq(len(audio), 1 / RATE)[np.argmax(spectrum)]
    assert abs(peak - 277.18) < 4.0  # C♯4, not the C4 sample it was made from


def test_the_sustain_pedal_holds_a_released_note(samples: Path) -> None:
    note = [Note(0.0, 0.3, 60, 90)]
    dry = render_notes(note, None, RATE, samples)
    held = render_notes(note, [PedalInterval(0.0, 1.2)], RATE, samples)
    after_release = slice(int(0.6 * RATE), int(1.0 * RATE))
    assert np.abs(dry[after_release]).max() < 1e-4
    assert np.abs(held[after_release]).max() > 0.01
