"""Checkpoint directories: config.json, model.safetensors (trained parts), adapter/ (peft), tokenizer/.

A LoRA (paper-scale) checkpoint stores only the trained parts and the base model's local path;
an embedded checkpoint (LM trained from scratch) stores the whole LM in model.safetensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from llaqo_model.errors import ModelError
from llaqo_model.model.llaqo import LlaqoConfig, LlaqoModel
from llaqo_model.model.lm import load_tokenizer

FORMAT = "llaqo-checkpoint-1"
WEIGHTS = "model.safetensors"


def trained_state(model: LlaqoModel) -> dict[str, torch.Tensor]:
    """The parameters a checkpoint must store (everything not recoverable from a base path)."""
    keep = ["qformer.", "audio_token", "descriptor_head.", "answer_head."]
    if not model.config.encoder.frozen:
        keep.append("encoder.")
    if model.config.lm.train == "full":
        keep.append("lm.")
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k.startswith(tuple(keep))}


def save_pretrained(model: LlaqoModel, path: str | Path) -> Path:
    """Write a checkpoint directory."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "config": model.config.to_dict()}
    (path / "config.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    save_file(trained_state(model), str(path / WEIGHTS))
    if model.config.lm.train == "lora":
        model.lm.save_pretrained(str(path / "adapter"))
    model.tokenizer.save_pretrained(str(path / "tokenizer"))
    return path


def _required_files(path: Path, config: LlaqoConfig) -> list[Path]:
    files = [path / WEIGHTS, path / "tokenizer" / "tokenizer.json"]
    if config.lm.train == "lora":
        files.append(path / "adapter" / "adapter_config.json")
    return files


def read_config(path: str | Path) -> LlaqoConfig:
    """The LlaqoConfig of a checkpoint directory; ModelError when it is not one."""
    path = Path(path)
    meta_path = path / "config.json"
    if not meta_path.is_file():
        raise ModelError(f"{path} is not a LLaQo checkpoint (no config.json)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ModelError(f"{path} is not a LLaQo checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
        return LlaqoConfig.from_dict(meta["config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}/config.json is malformed ({exc})") from exc


def from_pretrained(path: str | Path, device: str = "cpu", trainable: bool = False) -> LlaqoModel:
    """Load a checkpoint directory; any missing or mismatched file raises one ModelError.

    `trainable` keeps a LoRA adapter trainable (to continue training); otherwise it is loaded frozen."""
    path = Path(path)
    config = read_config(path)
    missing = [str(f.relative_to(path)) for f in _required_files(path, config) if not f.is_file()]
    if missing:
        raise ModelError(f"checkpoint {path} is incomplete: missing {', '.join(missing)}")
    tokenizer = load_tokenizer(path / "tokenizer")
    lm = None
    if config.lm.train == "lora":
        from peft import PeftModel

        from llaqo_model.model.lm import build_lm

        dtype = torch.bfloat16 if device.startswith("cuda") else None
        base = build_lm(config.lm, dtype=dtype)
        try:
            lm = PeftModel.from_pretrained(base, str(path / "adapter"), is_trainable=trainable)
        except (ValueError, RuntimeError, KeyError) as exc:
            raise ModelError(f"checkpoint {path}: the adapter does not fit the base model ({exc})") from exc
    model = LlaqoModel(config, tokenizer, lm=lm)
    weights = load_file(str(path / WEIGHTS))
    expected = trained_state(model)
    absent = sorted(set(expected) - set(weights))
    wrong = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    if absent:
        raise ModelError(f"checkpoint {path} does not match its config.json (missing {absent[0]})")
    if wrong:
        got, want = tuple(weights[wrong[0]].shape), tuple(expected[wrong[0]].shape)
        raise ModelError(f"checkpoint {path} does not match its config ({wrong[0]}: {got}, expected {want})")
    if len(tokenizer) > model.lm.get_input_embeddings().weight.shape[0]:
        raise ModelError(f"checkpoint {path}: the tokenizer is larger than the model's vocabulary")
    model.load_state_dict(weights, strict=False)
    return model.to(device).eval()
