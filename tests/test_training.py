"""Training runs: every answer weighs alike, a stopped run resumes exactly where it stopped, validation is
logged, a local Hugging Face LM is LoRA-trained without any download."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from llaqo_cli import main
from llaqo_model.model.llaqo import LlaqoModel, answer_loss, tiny_config
from llaqo_model.model.prompts import OVERALL, OVERALL_QUESTION
from llaqo_model.model.tokenizer import train_tokenizer
from llaqo_training.dataset import QA, TrainTake, write_dev_manifest
from llaqo_training.evaluate import evaluate
from llaqo_training.train import TrainerState, fit

LONG_ANSWER = 12  # tokens of a templated sentence answer


def test_a_long_answer_no_longer_outweighs_a_one_digit_rating() -> None:
    vocab = 5
    labels = torch.full((2, LONG_ANSWER), -100)
    labels[0] = 1  # a long answer, predicted well
    labels[1, 0] = 2  # a one-digit rating, predicted badly
    logits = torch.zeros(2, LONG_ANSWER, vocab)
    logits[0, :, 1] = 5.0
    logits[1, 0, 0] = 5.0
    token_losses = torch.nn.functional.cross_entropy(logits[0], labels[0], reduction="none")
    long_loss, digit_loss = (
        float(token_losses.mean()),
        float(torch.nn.functional.cross_entropy(logits[1, :1], labels[1, :1])),
    )
    per_token = float(answer_loss(logits, labels, per_answer=False))
    per_answer = float(answer_loss(logits, labels, per_answer=True))
    assert per_token == pytest.approx((long_loss * LONG_ANSWER + digit_loss) / (LONG_ANSWER + 1), rel=1e-5)
    assert per_answer == pytest.approx((long_loss + digit_loss) / 2, rel=1e-5)
    assert per_answer > 4 * per_token  # the rating's error is no longer drowned by the sentence


def noise_takes(model: LlaqoModel) -> list[TrainTake]:
    rng = np.random.default_rng(0)
    return [
        TrainTake(
            f"t{i}",
            model.prepare((rng.standard_normal(16000) * 0.1 * (i + 1)).astype(np.float32), 16000),
            None,
            [QA(OVERALL_QUESTION, str(i + 2), OVERALL), QA("How was it?", "It was fine, with steady time.", OVERALL)],
        )
        for i in range(3)
    ]


def tiny_model() -> LlaqoModel:
    torch.manual_seed(0)
    tokenizer = train_tokenizer([], vocab_size=512)
    config = tiny_config(len(tokenizer))
    config.grounding = False
    return LlaqoModel(config, tokenizer)


def test_resumed_fit_equals_an_uninterrupted_one() -> None:
    kwargs = dict(batch_takes=2, questions_per_take=2, warmup=2, log_every=0, per_answer_loss=True)
    model = tiny_model()
    takes = noise_takes(model)
    saved: dict = {}

    def keep(state: TrainerState) -> None:
        if state.step == 4:
            saved["state"] = copy.deepcopy(state)
            saved["weights"] = copy.deepcopy(model.state_dict())

    fit(model, takes, 8, save_every=4, on_save=keep, **kwargs)
    resumed = tiny_model()
    resumed.load_state_dict(saved["weights"])
    state = saved["state"]
    fit(resumed, takes, 8, state=state, **kwargs)
    assert state.step == 8 and len(state.losses) == 8
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dev_manifest(tmp_path_factory.mktemp("corpus"), n_takes=10, seconds=2.0)


def train_args(manifest: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "train", str(manifest), "--out", str(out), "--steps", str(steps), "--device", "cpu",
        "--batch-takes", "2", "--questions-per-take", "2", "--val-every", "2", "--save-every", "2", *extra,
    ]  # fmt: skip


def test_train_resume_continues_step_count_optimiser_and_validation(manifest: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(train_args(manifest, out, 4)) == 0
    first = json.loads((out / "training.json").read_text())
    assert first["steps"] == 4 and [v["step"] for v in first["val_loss"]] == [2, 4]
    assert main(train_args(manifest, out, 8, "--resume")) == 0
    summary = json.loads((out / "training.json").read_text())
    assert summary["steps"] == 8 and summary["device"] == "cpu" and summary["loss"] == "mean over answers"
    assert [v["step"] for v in summary["val_loss"]] == [2, 4, 6, 8]
    assert all(np.isfinite(v["loss"]) for v in summary["val_loss"])
    state = TrainerState.load(out / "trainer.pt")
    adam_steps = {float(s["step"]) for s in state.optimizer["state"].values()}
    assert state.step == 8 and adam_steps == {8.0}
    figures = evaluate(out, manifest)  # the resumed checkpoint loads and answers, free text included
    assert figures["takes"] == 1 and 0.0 <= figures["prompt_following_rate_free"] <= 1.0
    feedback = figures["answer_head_figures"]["feedback"]  # the composed feedback, scored against the analysis
    assert feedback["takes"] == 1 and feedback["withheld_share"] == 0.0
    assert 0.0 <= feedback["precision"] <= 1.0 and 0.0 <= feedback["top3_recall"] <= 1.0


def test_train_without_a_gpu_or_a_run_to_resume_says_so(manifest: Path, tmp_path: Path, capsys) -> None:
    if not torch.cuda.is_available():
        assert main(train_args(manifest, tmp_path / "a", 1, "--device", "cuda")) != 0
        assert "no CUDA device" in capsys.readouterr().err
    assert main(train_args(manifest, tmp_path / "b", 1, "--resume")) != 0
    assert "holds no run to continue" in capsys.readouterr().err


def test_a_manifest_without_training_takes_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": "a.wav", "split": "val"}) + "\n")
    assert main(["train", str(manifest), "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"llaqo: error: {manifest} has no training takes"


def test_lora_on_a_local_hugging_face_lm(manifest: Path, tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from llaqo_model.model.checkpoint import from_pretrained

    tokenizer = train_tokenizer([], vocab_size=512)
    lm_dir = tmp_path / "local-lm"
    shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **shape)).save_pretrained(str(lm_dir))
    tokenizer.save_pretrained(str(lm_dir))
    out = tmp_path / "lora"
    assert main(train_args(manifest, out, 2, "--lm", str(lm_dir))) == 0
    before = {k: v.clone() for k, v in from_pretrained(out).state_dict().items() if "lora_B" in k}
    assert before and json.loads((out / "training.json").read_text())["lm"] == str(lm_dir.resolve())
    assert main(train_args(manifest, out, 4, "--resume")) == 0
    after = from_pretrained(out).state_dict()
    assert any(not torch.equal(after[k], v) for k, v in before.items())  # the adapter kept training
