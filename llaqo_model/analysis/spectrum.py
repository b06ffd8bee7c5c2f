"""How much of the sound just after a moment one key explains: the spectrum read against harmonic templates.

The transcriber's onset evidence (`OnsetEvidence`) scores a key a little under its threshold both when the key
was brushed softly and when a loud neighbour's sound leaks onto it. The spectrum tells them apart: a brushed key
adds its own partials, a neighbour's leak does not. As in score-informed transcription (a spectrum decomposed
into note templates; Ewert & Müller 2012, Benetos et al. 2012), the magnitude spectrum of the `WINDOW_S` after
the moment is fitted, by non-negative least squares, with the spectrum of the same length just before it (what
was already sounding, decaying) and one harmonic template per piano key. `explained_gain` is how much worse that
fit becomes without the key's template (0: every other key and the earlier sound explain it as well). All 88 keys
compete, so the key's template only counts where no other key's partials do the same job: the check is
conservative in dense chords, where it is 0 more often than not.

On the benchmark's tuning pieces (`benchmarks/bench_analysis.py`, three SoundFonts, reverberant chains) brushed keys
heard under the threshold gained 0.10–0.14 and keys only leaking from their neighbours at most 0.05. The gain
depends on the piano's sound: a key struck at 40 beside a chord at 72 gains 0.17 on MuseScore General's sampled
piano, 0.03 on TimGM6mb and 0.015 on FluidR3 (at 60: 0.47, 0.07, 0.10), so the check misses soft brushed keys on
some pianos; it does not invent them (an unstruck key gains 0–0.03).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

WINDOW_S = 0.093  # about 4096 samples at 44.1 kHz: a semitone (6 %) apart partials resolve from the 3rd upwards
ONSET_LEAD_S = 0.005  # the window opens just before the moment (the evidence's frame time is rounded)
BEFORE_GAP_S = 0.03  # the "before" window ends this long before the moment (keeps the attack out of it)
MAX_HZ = 5000.0  # partials above this are weak and dense (a piano's templates say little there)
PARTIALS = 15  # harmonic partials per template, up to MAX_HZ
PARTIAL_WIDTH_HZ = 6.0  # a partial's width in the template (the window's main lobe is about ±20 Hz)
INHARMONICITY_C3 = 1e-4  # a piano string's inharmonicity at C3, doubling every two octaves up (Fletcher)
LOWEST_KEY, HIGHEST_KEY = 21, 108  # A0 and C8


def key_hz(pitch: int) -> float:
    """The fundamental of a MIDI key in equal temperament (A4 = 440 Hz)."""
    return 440.0 * 2.0 ** ((pitch - 69) / 12)


class OnsetSpectrum:
    """The take's audio with the harmonic templates of every key, for `explained_gain` checks."""

    def __init__(self, samples: np.ndarray, sample_rate: int) -> None:
        self.samples = np.asarray(samples, dtype=np.float32)
        self.sample_rate = sample_rate
        self.size = int(round(WINDOW_S * sample_rate))
        freqs = np.fft.rfftfreq(self.size, 1.0 / sample_rate)
        self.bins = (freqs > key_hz(LOWEST_KEY) / 2) & (freqs < MAX_HZ)
        self.freqs = freqs[self.bins]
        self.window = np.hanning(self.size).astype(np.float32)
        self.templates = np.stack([self._template(p) for p in range(LOWEST_KEY, HIGHEST_KEY + 1)], axis=1)
        self._gains: dict[tuple[int, float], float] = {}  # a candidate is gated, then weighed: one fit each

    def _template(self, pitch: int) -> np.ndarray:
        """Unit-norm harmonic comb of a key: partials at n·f0·sqrt(1 + B n²), falling off as 1/n."""
        f0 = key_hz(pitch)
        b = INHARMONICITY_C3 * 2.0 ** ((pitch - 48) / 24)
        comb = np.zeros_like(self.freqs)
        for n in range(1, PARTIALS + 1):
            fn = n * f0 * np.sqrt(1.0 + b * n * n)
            if fn > MAX_HZ:
                break
            comb += np.exp(-0.5 * ((self.freqs - fn) / PARTIAL_WIDTH_HZ) ** 2) / n
        norm = np.linalg.norm(comb)
        return comb / norm if norm > 0 else comb

    def _magnitude(self, start_s: float) -> np.ndarray:
        a = max(int(round(start_s * self.sample_rate)), 0)
        segment = self.samples[a : a + self.size]
        if len(segment) < self.size:
            segment = np.pad(segment, (0, self.size - len(segment)))
        return np.abs(np.fft.rfft(segment * self.window))[self.bins]

    def explained_gain(self, pitch: int, time_s: float) -> float:
        """How much the key's template improves the fit of the sound just after `time_s`: the rise of the
        squared residual without it, over the squared residual with it (0 when it adds nothing)."""
        if not LOWEST_KEY <= pitch <= HIGHEST_KEY:
            return 0.0
        if (pitch, time_s) not in self._gains:
            self._gains[pitch, time_s] = self._gain(pitch, time_s)
        return self._gains[pitch, time_s]

    def _gain(self, pitch: int, time_s: float) -> float:
        after = self._magnitude(time_s - ONSET_LEAD_S)
        before = self._magnitude(time_s - BEFORE_GAP_S - WINDOW_S)
        with_key = np.column_stack([before, self.templates])
        others = np.delete(with_key, 1 + pitch - LOWEST_KEY, axis=1)
        _, residual_with = nnls(with_key, after, maxiter=20 * with_key.shape[1])
        _, residual_without = nnls(others, after, maxiter=20 * with_key.shape[1])
        return round(float((residual_without**2 - residual_with**2) / max(residual_with**2, 1e-12)), 4)
