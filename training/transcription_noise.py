"""What transcription does to a take's head inputs, learned from takes that have both kinds of report.

Per input column: the transcribed value as a straight-line function of the performance-MIDI value, and the
spread of what the line leaves (Transkun's pedal of a rendered take, for one, has little to do with the
MIDI's: its column gets a small slope and a large spread). Passing performance-MIDI inputs through it, with
that spread drawn afresh for each copy, gives a training set whose inputs are as unreliable as the ones the
head meets at inference, so the fit leans on the columns transcription keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from llaqo_model.errors import LlaqoError

MIN_PAIRS = 20  # fewer paired takes than this give slopes and spreads too rough to train on


@dataclass
class TranscriptionNoise:
    """transcribed ≈ offset + slope · midi + spread · N(0, 1), per input column."""

    offset: np.ndarray
    slope: np.ndarray
    spread: np.ndarray
    pairs: int

    @classmethod
    def fit(cls, midi: np.ndarray, transcribed: np.ndarray) -> TranscriptionNoise:
        """Least-squares line per column over paired rows (the same takes, in the same order)."""
        if len(midi) != len(transcribed) or len(midi) < MIN_PAIRS:
            have = min(len(midi), len(transcribed))
            raise LlaqoError(
                f"simulated reports need at least {MIN_PAIRS} training takes transcribed (have {have}): "
                "run `llaqo corpus analyse MANIFEST --split train` first"
            )
        m_mean, t_mean = midi.mean(0), transcribed.mean(0)
        m_var = midi.var(0)
        cov = ((midi - m_mean) * (transcribed - t_mean)).mean(0)
        slope = np.where(m_var > 1e-12, cov / np.maximum(m_var, 1e-12), 0.0)
        offset = t_mean - slope * m_mean
        spread = (transcribed - offset - slope * midi).std(0)
        return cls(offset, slope, spread, len(midi))

    def apply(self, midi: np.ndarray, copies: int, seed: int = 0) -> np.ndarray:
        """`copies` noisy transcription-like versions of every row, stacked copy after copy."""
        rng = np.random.default_rng(seed)
        mapped = self.offset + self.slope * midi
        return np.concatenate([mapped + rng.standard_normal(midi.shape) * self.spread for _ in range(copies)])
