"""The NumPy semi-CRF decode and onset evidence give exactly what Transkun's own code gives."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from llaqo_model.analysis.transcribe import KEYS, PEDAL_SYMBOLS, device_onset_scores, onset_scores, viterbi_backward

transkun_crf = importlib.import_module("transkun.CRF.NeuralSemiCRFInterval")
FRAMES = 120
SYMBOLS = PEDAL_SYMBOLS + KEYS


def _scores(seed: int, skip_scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mostly negative interval scores with a few positive ones, as a segment without many notes has."""
    rng = np.random.default_rng(seed)
    score = rng.normal(-2.0, 1.5, (FRAMES, FRAMES, SYMBOLS)).astype(np.float32)
    skip = (rng.normal(0.0, 1.0, (FRAMES - 1, SYMBOLS)) * skip_scale).astype(np.float32)
    return torch.from_numpy(score), torch.from_numpy(skip)


@pytest.mark.parametrize("seed, skip_scale, forced", [(0, 0.0, None), (1, 0.0, "random"), (2, 1.0, "random")])
def test_numpy_decode_gives_transkuns_paths(seed, skip_scale, forced):
    score, skip = _scores(seed, skip_scale)
    starts = None if forced is None else np.random.default_rng(seed).integers(0, FRAMES // 2, SYMBOLS).tolist()
    expected = transkun_crf.viterbiBackward(score, skip, starts)
    assert viterbi_backward(score.numpy(), skip.numpy(), starts) == expected
    assert sum(map(len, expected)) > SYMBOLS  # the paths hold notes, not only silence


def test_onset_scores_are_the_best_note_starting_at_each_frame():
    score, _ = _scores(3, 0.0)
    keys = score[..., PEDAL_SYMBOLS:].numpy()
    ends, starts = np.meshgrid(np.arange(FRAMES), np.arange(FRAMES), indexing="ij")
    expected = np.where((ends >= starts)[..., None], keys, -np.inf).max(axis=0)
    assert np.array_equal(onset_scores(score.numpy()), expected)


def test_the_onset_evidence_is_the_same_reduced_on_the_device_or_on_the_host():
    score = torch.randn(150, 150, 90, generator=torch.Generator().manual_seed(3))
    assert np.array_equal(device_onset_scores(score), onset_scores(score.numpy()))
