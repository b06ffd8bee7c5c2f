"""Audio front end of the paper: 32 kHz, Kaldi fbank (128 mel, 10 ms shift), normalised, 40 s windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.compliance.kaldi as kaldi

from llaqo_model.io import resample


@dataclass
class FrontendConfig:
    """Fbank settings; mean/std are AudioMAE's AudioSet normalisation constants."""

    sample_rate: int = 32000
    n_mels: int = 128
    frame_shift_ms: float = 10.0
    frame_length_ms: float = 25.0
    window_frames: int = 4096  # 40 s per window
    max_windows: int = 32  # a 20-minute take at most
    pad_multiple: int = 16  # short takes are padded only to a multiple of the patch size
    mean: float = -4.2677393
    std: float = 4.5689974


def fbank(samples: np.ndarray, sample_rate: int, config: FrontendConfig) -> torch.Tensor:
    """Mono audio at any rate → normalised log-mel fbank of shape (frames, n_mels)."""
    audio = resample(np.asarray(samples, dtype=np.float32), sample_rate, config.sample_rate)
    wave = torch.from_numpy(np.ascontiguousarray(audio)).unsqueeze(0)
    wave = wave - wave.mean()
    feats = kaldi.fbank(
        wave,
        htk_compat=True,
        sample_frequency=config.sample_rate,
        use_energy=False,
        window_type="hanning",
        num_mel_bins=config.n_mels,
        dither=0.0,
        frame_shift=config.frame_shift_ms,
        frame_length=config.frame_length_ms,
    )
    return (feats - config.mean) / (2 * config.std)


def split_windows(feats: torch.Tensor, config: FrontendConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames, n_mels) → windows (n, width, n_mels) zero-padded, and valid frame counts (n,).

    width is `window_frames`, or less for a take shorter than one window.
    """
    n = max(1, min(config.max_windows, -(-feats.shape[0] // config.window_frames)))
    feats = feats[: n * config.window_frames]
    m = config.pad_multiple
    size = min(config.window_frames, -(-feats.shape[0] // m) * m)
    lengths = torch.tensor([min(size, feats.shape[0] - i * size) for i in range(n)], dtype=torch.long)
    padded = torch.zeros(n * size, feats.shape[1], dtype=feats.dtype)
    padded[: feats.shape[0]] = feats
    return padded.view(n, size, feats.shape[1]), lengths


def audio_windows(samples: np.ndarray, sample_rate: int, config: FrontendConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole front end: audio → fbank windows and their valid frame counts."""
    return split_windows(fbank(samples, sample_rate, config), config)
