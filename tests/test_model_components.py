"""Tiny random configurations of every model component: shapes, loss, generation, constrained answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llaqo_model.analysis.report import TECHNIQUES
from llaqo_model.model.encoder import EncoderConfig, build_encoder
from llaqo_model.model.frontend import FrontendConfig, audio_windows, fbank
from llaqo_model.model.llaqo import LlaqoModel, tiny_config
from llaqo_model.model.prompts import DIFFICULTY, OVERALL, OVERALL_QUESTION, TECHNIQUE, canonical_questions
from llaqo_model.model.qformer import QFormer, QFormerConfig
from llaqo_model.model.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([], vocab_size=512)


def noise(seconds: float, rate: int = 16000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * rate)) * 0.1).astype(np.float32)


def test_fbank_is_100_frames_per_second_with_128_bins() -> None:
    feats = fbank(noise(2.0), 16000, FrontendConfig())
    assert feats.shape[1] == 128
    assert abs(feats.shape[0] - 200) <= 3
    assert torch.isfinite(feats).all()


def test_long_take_is_split_into_40s_windows() -> None:
    windows, lengths = audio_windows(noise(50.0, rate=8000), 8000, FrontendConfig())
    assert windows.shape[:2] == (2, 4096)
    assert lengths[0] == 4096 and 880 < lengths[1] < 920
    assert windows[1, lengths[1] :].abs().sum() == 0


@pytest.mark.parametrize("kind", ["audiomae", "cnn"])
def test_fbank_encoders_mask_padding(kind: str) -> None:
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig(kind=kind, dim=32, depth=2, n_head=2, channels=(8, 8, 8, 8)), FrontendConfig())
    windows = torch.randn(2, 320, 128)
    feats, mask = enc(windows, torch.tensor([320, 100]))
    assert feats.shape[0] == 2 and feats.shape[2] == 32
    assert mask[0].all() and not mask[1].all() and mask[1].any()


def test_audiomae_paper_shape_has_86m_parameters() -> None:
    with torch.device("meta"):
        enc = build_encoder(EncoderConfig(), FrontendConfig())
    assert 85e6 < sum(p.numel() for p in enc.parameters()) < 87e6
    assert not any(p.requires_grad for p in enc.parameters())


def test_qformer_output_depends_on_question_and_audio() -> None:
    torch.manual_seed(0)
    qf = QFormer(QFormerConfig(n_layer=2, n_query=4, dim=32, n_head=2, audio_dim=16, lm_dim=24), text_dim=24)
    audio, amask = torch.randn(1, 2, 5, 16), torch.ones(1, 2, 5, dtype=torch.bool)
    text, tmask = torch.randn(1, 3, 24), torch.ones(1, 3, dtype=torch.bool)
    out = qf(audio, amask, text, tmask)
    assert out.shape == (1, 4, 24)
    assert not torch.allclose(out, qf(audio, amask, torch.randn(1, 3, 24), tmask))
    assert not torch.allclose(out, qf(torch.randn(1, 2, 5, 16), amask, text, tmask))


@pytest.mark.parametrize(("encoder", "lm_train"), [("cnn", "full"), ("audiomae", "lora")])
def test_forward_loss_and_generate(tokenizer, encoder: str, lm_train: str) -> None:
    torch.manual_seed(0)
    model = LlaqoModel(tiny_config(len(tokenizer), encoder, lm_train), tokenizer)
    audio = model.encode_audio([model.prepare(noise(3.0), 16000), model.prepare(noise(1.0, seed=1), 16000)])
    loss = model(audio, [OVERALL_QUESTION, "How is the tempo?"], ["bar 2: rushing", None], ["4", "steady"])
    assert torch.isfinite(loss) and 4.0 < loss.item() < 8.0  # ≈ ln(vocab) for random weights
    loss.backward()
    assert model.qformer.query.grad is not None and model.audio_token.grad is not None
    if lm_train == "lora":
        trained = {n for n, p in model.lm.named_parameters() if p.requires_grad}
        assert trained and all("lora_" in n for n in trained)
    model.eval()
    texts = model.generate(audio, ["How is the tempo?"] * 2, [None, None], max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    single = model.generate(audio.select([0]), ["How is the tempo?"], [None], max_new_tokens=5)[0]
    deltas = list(model.stream(audio.select([0]), "How is the tempo?", None, max_new_tokens=5))
    assert deltas and "".join(deltas).strip() == single


def test_constrained_answers_are_always_in_range(tokenizer) -> None:
    torch.manual_seed(1)
    model = LlaqoModel(tiny_config(len(tokenizer)), tokenizer).eval()
    questions = canonical_questions()
    for seed in range(3):
        torch.manual_seed(seed)
        for p in model.lm.parameters():  # different random LMs, some strongly biased
            p.data.normal_(0, 0.5)
        audio = model.encode_audio([model.prepare(noise(2.0, seed=seed), 16000)])
        choices = model.choose(
            audio.select([0] * len(questions)), list(questions.values()), [None] * len(questions), list(questions)
        )
        for qtype, c in zip(questions, choices, strict=True):
            if qtype == TECHNIQUE:
                assert c.answer in TECHNIQUES
                assert set(c.probs) == set(TECHNIQUES)
            else:
                top = 9 if qtype == DIFFICULTY else 6
                assert 1 <= int(c.answer) <= top
                assert 1.0 <= c.expected() <= top
                assert abs(sum(c.probs.values()) - 1.0) < 1e-4
                assert c.answer == max(c.probs, key=c.probs.get)


def test_grounding_puts_the_report_in_the_prompt_and_audio_only_leaves_it_out(tokenizer) -> None:
    torch.manual_seed(0)
    config = tiny_config(len(tokenizer))
    model = LlaqoModel(config, tokenizer).eval()
    audio = model.encode_audio([model.prepare(noise(2.0), 16000)])
    grounded, _, _ = model.embed_prompts(audio, [OVERALL_QUESTION], ["bar 3: rushing; bar 5: dynamics"])
    config.grounding = False
    plain, _, _ = model.embed_prompts(audio, [OVERALL_QUESTION], ["bar 3: rushing; bar 5: dynamics"])
    assert grounded.shape[1] > plain.shape[1]
    assert model.choose(audio, [OVERALL_QUESTION], ["bar 3: rushing"], [OVERALL])[0].answer in list("123456")


@pytest.mark.slow  # runs the real Transkun backbone
def test_transkun_encoder_reads_backbone_hidden_states() -> None:
    torch.manual_seed(0)
    enc = build_encoder(EncoderConfig(kind="transkun", dim=32, frozen=False), FrontendConfig())
    windows, lengths = enc.prepare(noise(2.0), 16000)
    assert windows.shape[0] == 1 and windows.shape[2] == 512 and 40 < int(lengths[0]) < 50  # ≈46 ms per token
    feats, mask = enc(windows, lengths)
    assert feats.shape == (1, windows.shape[1], 32) and mask.all()
    assert not any(k.startswith("_transkun") for k in enc.state_dict())
    assert all(p.requires_grad for p in enc.parameters())
