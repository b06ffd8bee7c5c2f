"""Recording-chain augmentation so that the model does not learn one synthesiser: room reverb,
microphone EQ, background noise and gain. Parameters are drawn per take and recorded in the manifest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal


def draw_chain(rng: np.random.Generator) -> dict[str, Any]:
    """Random recording conditions: dry/room/hall, mic tilt, noise level, gain."""
    room = str(rng.choice(["dry", "room", "hall"], p=[0.25, 0.5, 0.25]))
    rt60 = {"dry": 0.0, "room": float(rng.uniform(0.25, 0.6)), "hall": float(rng.uniform(0.8, 1.8))}[room]
    return {
        "room": room,
        "rt60_s": round(rt60, 2),
        "wet": round(float(rng.uniform(0.15, 0.4)), 2) if rt60 else 0.0,
        "low_shelf_db": round(float(rng.uniform(-6, 4)), 1),
        "high_shelf_db": round(float(rng.uniform(-9, 3)), 1),
        "snr_db": round(float(rng.uniform(22, 55)), 1),
        "gain_db": round(float(rng.uniform(-14, -1)), 1),
    }


def _reverb(x: np.ndarray, sr: int, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """Convolve with an exponentially decaying noise impulse response (a simple diffuse room)."""
    n = int(sr * min(rt60 * 1.2, 2.5))
    t = np.arange(n) / sr
    ir = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    ir[: int(0.004 * sr)] = 0.0
    ir /= np.sqrt(np.sum(ir**2)) + 1e-9
    tail = signal.fftconvolve(x, ir)[: len(x)]
    return (1 - wet) * x + wet * tail


def _shelves(x: np.ndarray, sr: int, low_db: float, high_db: float) -> np.ndarray:
    """Low shelf below ~250 Hz and high shelf above ~4 kHz (microphone and placement colour)."""
    sos_low = signal.butter(2, 250, "lowpass", fs=sr, output="sos")
    sos_high = signal.butter(2, min(4000, 0.45 * sr), "highpass", fs=sr, output="sos")
    low = signal.sosfilt(sos_low, x)
    high = signal.sosfilt(sos_high, x)
    return x + (10 ** (low_db / 20) - 1) * low + (10 ** (high_db / 20) - 1) * high


def apply_chain(x: np.ndarray, sr: int, chain: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Apply `draw_chain` conditions to mono audio; the result peaks below full scale."""
    y = x.astype(np.float64)
    if chain["rt60_s"] > 0:
        y = _reverb(y, sr, chain["rt60_s"], chain["wet"], rng)
    y = _shelves(y, sr, chain["low_shelf_db"], chain["high_shelf_db"])
    peak = float(np.max(np.abs(y))) or 1.0
    y = y / peak * 10 ** (chain["gain_db"] / 20)
    rms = float(np.sqrt(np.mean(y**2))) or 1e-6
    noise = rng.standard_normal(len(y))
    noise = signal.lfilter([1.0], [1.0, -0.95], noise)
    noise *= rms / (np.sqrt(np.mean(noise**2)) + 1e-12) * 10 ** (-chain["snr_db"] / 20)
    y = y + noise
    return np.clip(y, -0.99, 0.99).astype(np.float32)
