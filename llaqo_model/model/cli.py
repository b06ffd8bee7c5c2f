"""`llaqo model info` and `llaqo ask`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `model` (with `info`) and `ask`."""
    model = subparsers.add_parser("model", help="inspect model configurations")
    sub = model.add_subparsers(dest="model_command", required=True)
    info = sub.add_parser("info", help="parameter counts per component (built on the meta device, no weights)")
    info.add_argument("--config", choices=["paper", "embedded"], default="paper")
    info.add_argument("--model", help="a checkpoint directory (its config.json is used instead of --config)")
    info.set_defaults(func=run_info)

    export = sub.add_parser("export-onnx", help="export encoder + aligner to ONNX and check parity with PyTorch")
    export.add_argument("--model", default="embedded", help="checkpoint directory or 'embedded'")
    export.add_argument("--out", required=True, help="the .onnx file to write")
    export.set_defaults(func=run_export)

    ask = subparsers.add_parser("ask", help="ask the model a question about a take")
    ask.add_argument("take", help="audio file")
    ask.add_argument("question", help="the question, in quotes")
    ask.add_argument("--score", help="MusicXML or MIDI score of what was played")
    ask.add_argument("--model", help="checkpoint directory, or 'embedded' (default: the installed model)")
    ask.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ask.set_defaults(func=run_ask)


def parameter_counts(config: Any) -> dict[str, Any]:
    """Build the model on the meta device and count parameters per component."""
    import torch

    from llaqo_model.model.llaqo import LlaqoModel

    with torch.device("meta"):
        model = LlaqoModel(config, tokenizer=None)

    def count(module: torch.nn.Module, trainable: bool | None = None) -> int:
        return sum(p.numel() for p in module.parameters() if trainable is None or p.requires_grad == trainable)

    lora = sum(p.numel() for n, p in model.lm.named_parameters() if "lora_" in n)
    return {
        "encoder": {
            "kind": config.encoder.kind,
            "params": count(model.encoder),
            "trainable": count(model.encoder, True),
        },
        "aligner": {
            "blocks": config.qformer.n_layer,
            "queries": config.qformer.n_query,
            "params": count(model.qformer) + model.audio_token.numel(),
        },
        "language_model": {
            "params": count(model.lm) - lora,
            "lora_params": lora,
            "trainable": count(model.lm, True),
            "layers": config.lm.n_layer,
            "hidden": config.lm.hidden_size,
        },
        "total": count(model),
        "trainable": count(model, True),
    }


def run_info(args: argparse.Namespace) -> int:
    """Print parameter counts as JSON."""
    from llaqo_model.model.assess import default_model_path
    from llaqo_model.model.checkpoint import read_config
    from llaqo_model.model.llaqo import embedded_config, paper_config

    if args.model:
        config = read_config(args.model)
        name = args.model
    elif args.config == "paper":
        config, name = paper_config(), "paper"
    else:
        shipped = default_model_path()
        config = read_config(shipped) if shipped else embedded_config(vocab_size=1024)
        name = "embedded"
    print(json.dumps({"config": name, **parameter_counts(config)}, indent=1))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Export to ONNX; print the max abs difference to PyTorch on a fresh 50 s input (two windows)."""
    import numpy as np

    from llaqo_model.model.assess import Assessor
    from llaqo_model.model.onnx_export import export_onnx, onnx_parity

    model = Assessor.load(args.model, device="cpu").model
    rng = np.random.default_rng(0)
    path = export_onnx(model, args.out, model.prepare(rng.standard_normal(16000 * 3).astype(np.float32) * 0.1, 16000))
    windows, lengths = model.prepare(rng.standard_normal(16000 * 50).astype(np.float32) * 0.1, 16000)
    error = onnx_parity(model, path, windows, lengths, "How even were the runs in bar 4?")
    print(json.dumps({"onnx": str(path), "max_abs_error": error, "windows": int(windows.shape[0])}))
    return 0


def run_ask(args: argparse.Namespace) -> int:
    """Analyse the take, then stream the model's answer."""
    from llaqo_model.coach import Coach

    coach = Coach.load(args.model, device=args.device)
    for delta in coach.ask_file(args.take, args.question, args.score):
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
