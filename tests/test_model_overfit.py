"""The audio matters: trained on clips whose answers depend only on the sound, the model tells them apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llaqo_model.model.llaqo import LlaqoModel, tiny_config
from llaqo_model.model.prompts import OVERALL, OVERALL_QUESTION, TECHNIQUE, TECHNIQUE_QUESTION
from llaqo_model.model.tokenizer import train_tokenizer
from llaqo_training.dataset import QA, TrainTake
from llaqo_training.train import fit

CLIPS = [(220.0, "2", "scales"), (440.0, "5", "octaves"), (880.0, "3", "staccato"), (1760.0, "6", "scales")]
STEPS = 300  # here the last 20 losses average 0.017 and every overall answer has probability ≥ 0.97


def tone(freq: float, rate: int = 16000, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.mark.slow  # ≈60 s of CPU
def test_overfit_answers_follow_the_audio() -> None:
    torch.manual_seed(0)
    tokenizer = train_tokenizer([], vocab_size=512)
    config = tiny_config(len(tokenizer))
    config.grounding = False
    model = LlaqoModel(config, tokenizer)
    takes = [
        TrainTake(
            f"clip{i}",
            model.prepare(tone(freq), 16000),
            None,
            [QA(OVERALL_QUESTION, overall, OVERALL), QA(TECHNIQUE_QUESTION, technique, TECHNIQUE)],
        )
        for i, (freq, overall, technique) in enumerate(CLIPS)
    ]
    losses = fit(model, takes, steps=STEPS, batch_takes=4, questions_per_take=2, lr=3e-3, warmup=20, log_every=0)
    assert np.mean(losses[-20:]) < 0.1 < np.mean(losses[:20])
    audio = model.encode_audio([t.prepared for t in takes])
    overall = model.choose(audio, [OVERALL_QUESTION] * 4, [None] * 4, [OVERALL] * 4)
    technique = model.choose(audio, [TECHNIQUE_QUESTION] * 4, [None] * 4, [TECHNIQUE] * 4)
    assert [c.answer for c in overall] == [o for _, o, _ in CLIPS]
    assert [c.answer for c in technique] == [t for _, _, t in CLIPS]
    assert all(c.probs[c.answer] > 0.5 for c in overall)
