"""Checkpoints (round trip, LoRA with a base path, clear errors), the Assessor API, ONNX parity, CLI info."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from llaqo_cli import main
from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES, Bar, Issue, PerformanceReport
from llaqo_model.errors import ModelError
from llaqo_model.model.assess import Assessor, build_tiny_checkpoint, faithful_sentences
from llaqo_model.model.checkpoint import from_pretrained, save_pretrained
from llaqo_model.model.encoder import build_encoder
from llaqo_model.model.llaqo import LlaqoModel, tiny_config
from llaqo_model.model.lm import build_lm
from llaqo_model.model.onnx_export import export_onnx, onnx_parity
from llaqo_model.model.prompts import OVERALL_QUESTION
from llaqo_model.model.tokenizer import train_tokenizer


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)


def report() -> PerformanceReport:
    issue = Issue(kind="rushing", detail="bar 3: rushing", time_s=2.0)
    return PerformanceReport(
        audio="take.wav",
        score=None,
        duration_s=3.0,
        bars=[Bar(bar=3, start_s=1.5, end_s=2.5, issues=[issue]), Bar(bar=4, start_s=2.5, end_s=3)],
    )


def outputs(model: LlaqoModel) -> torch.Tensor:
    audio = model.encode_audio([model.prepare(noise(2.0), 16000)])
    embeds, mask, _ = model.embed_prompts(audio, [OVERALL_QUESTION], ["bar 3: rushing"])
    with torch.no_grad():
        return model.lm(inputs_embeds=embeds, attention_mask=mask).logits


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([], vocab_size=512)


@pytest.mark.parametrize("out_norm", ["layer", "batch"])
def test_round_trip_gives_identical_outputs(tokenizer, tmp_path: Path, out_norm: str) -> None:
    torch.manual_seed(0)
    config = tiny_config(len(tokenizer))
    config.qformer.out_norm = out_norm
    model = LlaqoModel(config, tokenizer)
    if out_norm == "batch":  # a training-mode pass gives the running statistics non-default values
        audio = model.encode_audio([model.prepare(noise(2.0, seed=s), 16000) for s in range(3)])
        model(audio, ["q"] * 3, [None] * 3, ["4"] * 3)
    model.eval()
    loaded = from_pretrained(save_pretrained(model, tmp_path / "ck"))
    assert torch.equal(outputs(model), outputs(loaded))


def test_lora_checkpoint_stores_trained_parts_and_base_path(tokenizer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = tiny_config(len(tokenizer), encoder="audiomae", lm_train="lora")
    base = build_lm(config.lm)
    base.save_pretrained(str(tmp_path / "base"))
    config.lm.path = str(tmp_path / "base")
    official = {"model": build_encoder(config.encoder, config.frontend).state_dict(), "epoch": 1}
    torch.save(official, tmp_path / "audiomae.pth")  # the frozen encoder also comes from a local path
    config.encoder.checkpoint = str(tmp_path / "audiomae.pth")
    model = LlaqoModel(config, tokenizer).eval()
    for name, p in model.lm.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)  # a trained adapter is not the identity
    ck = save_pretrained(model, tmp_path / "ck")
    stored = load_file(str(ck / "model.safetensors"))
    assert not any(k.startswith(("lm.", "encoder.")) for k in stored)
    assert (ck / "adapter" / "adapter_config.json").is_file()
    assert json.loads((ck / "config.json").read_text())["config"]["lm"]["path"] == str(tmp_path / "base")
    loaded = from_pretrained(ck)
    assert torch.allclose(outputs(model), outputs(loaded), atol=1e-6)


def test_broken_checkpoints_fail_with_one_clear_message(tmp_path: Path, capsys) -> None:
    ck = build_tiny_checkpoint(tmp_path / "ck")
    with pytest.raises(ModelError, match="not a LLaQo checkpoint"):
        from_pretrained(tmp_path)
    broken = shutil.copytree(ck, tmp_path / "no_weights")
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="incomplete: missing model.safetensors"):
        from_pretrained(broken)
    mismatched = shutil.copytree(ck, tmp_path / "mismatch")
    weights = load_file(str(mismatched / "model.safetensors"))
    weights["qformer.query"] = torch.zeros(1, 7, 32)
    save_file(weights, str(mismatched / "model.safetensors"))
    with pytest.raises(ModelError, match="does not match its config"):
        from_pretrained(mismatched)
    take = tmp_path / "take.wav"
    sf.write(take, noise(1.0), 16000)  # a readable take: the model is what is refused
    assert main(["ask", str(take), "q", "--model", str(broken)]) == 2
    assert "incomplete: missing model.safetensors" in capsys.readouterr().err


def test_assessor_api(tmp_path: Path) -> None:
    assessor = Assessor.load(build_tiny_checkpoint(tmp_path / "ck"), device="cpu")
    results = assessor.assess_batch([(noise(3.0), 16000, report()), (noise(2.0, seed=1), 22050, report())])
    assert len(results) == 2
    for out in results:
        assert list(out.ratings) == list(RUBRIC_KEYS)
        assert all(1 <= v <= 6 for v in out.ratings.values())
        assert all(1.0 <= v <= 6.0 for v in out.expected_ratings.values())
        assert 1 <= out.overall <= 6 and 1 <= out.difficulty <= 9
        assert out.technique in TECHNIQUES
        assert out.feedback == faithful_sentences(out.feedback, {3})  # names no bar but the flagged one
        assert [c.bar for c in out.bar_comments] == [3]  # only the bar with an issue
    single = assessor.assess(noise(3.0), 16000, report())
    assert single.ratings == results[0].ratings
    deltas = list(assessor.ask(noise(3.0), 16000, report(), "What happened in bar 3?"))
    model = assessor.model
    audio = model.encode_audio([model.prepare(noise(3.0), 16000)])
    grounding = report().to_prompt_text() if model.config.grounding else None
    whole = model.generate(audio, ["What happened in bar 3?"], [grounding])[0]
    assert "".join(deltas).strip() == whole  # the stream is the same answer, piece by piece
    assert list(assessor.ask(noise(3.0), 16000, report(), OVERALL_QUESTION))[0] in list("123456")
    assert assessor.name == "ck"


def test_onnx_parity(tokenizer, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = LlaqoModel(tiny_config(len(tokenizer), encoder="audiomae"), tokenizer).eval()
    path = export_onnx(model, tmp_path / "aligner.onnx", model.prepare(noise(3.0), 16000))
    windows, lengths = model.prepare(noise(5.0, seed=2), 16000)
    assert onnx_parity(model, path, windows, lengths, "How even were the sixteenth notes in the left hand?") < 1e-4


def test_model_info_paper(capsys) -> None:
    assert main(["model", "info", "--config", "paper"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 85e6 < info["encoder"]["params"] < 87e6
    assert 6.6e9 < info["language_model"]["params"] < 6.8e9
    assert info["aligner"]["blocks"] == 4 and info["aligner"]["queries"] == 32
    assert info["language_model"]["trainable"] == info["language_model"]["lora_params"] > 0
