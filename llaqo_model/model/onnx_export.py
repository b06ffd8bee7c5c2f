"""ONNX export of the audio side (encoder + Q-former) for onnxruntime CPU serving, with a parity check.

The graph takes one take's fbank windows and the question's token ids and returns the query embeddings
that are spliced into the language model's prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from llaqo_model.model.llaqo import AudioFeatures, LlaqoModel


class AudioAligner(nn.Module):
    """encoder → Q-former for one take: (windows, lengths, question ids) → (1, n_query, lm_dim)."""

    def __init__(self, model: LlaqoModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.qformer = model.qformer
        self.embed = model.lm.get_input_embeddings()

    def forward(self, windows: torch.Tensor, lengths: torch.Tensor, question_ids: torch.Tensor) -> torch.Tensor:
        feats, mask = self.encoder(windows, lengths)
        audio = AudioFeatures(feats.unsqueeze(0), mask.unsqueeze(0))
        text_mask = torch.ones_like(question_ids, dtype=torch.bool)
        return self.qformer(audio.feats, audio.mask, self.embed(question_ids), text_mask)


def export_onnx(model: LlaqoModel, path: str | Path, example: tuple[torch.Tensor, torch.Tensor]) -> Path:
    """Export `AudioAligner` to `path` (dynamic window count, window width and question length)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = AudioAligner(model).eval()
    ids = torch.tensor([model.tokenizer.encode("How is the tempo?", add_special_tokens=False)])
    windows, lengths = example
    torch.onnx.export(
        module,
        (windows, lengths, ids),
        str(path),
        input_names=["windows", "lengths", "question_ids"],
        output_names=["queries"],
        dynamic_axes={"windows": {0: "n_windows", 1: "frames"}, "lengths": {0: "n_windows"}, "question_ids": {1: "n"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def onnx_parity(
    model: LlaqoModel, path: str | Path, windows: torch.Tensor, lengths: torch.Tensor, question: str
) -> float:
    """Max absolute difference between onnxruntime (CPU) and PyTorch outputs for one input."""
    import onnxruntime as ort

    ids = torch.tensor([model.tokenizer.encode(question, add_special_tokens=False)])
    with torch.no_grad():
        expected = AudioAligner(model).eval()(windows, lengths, ids).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"windows": windows.numpy(), "lengths": lengths.numpy(), "question_ids": ids.numpy()})[0]
    return float(np.max(np.abs(got - expected)))
