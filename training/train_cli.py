"""`llaqo train` and `llaqo evaluate`."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` and `evaluate`."""
    t = subparsers.add_parser("train", help="train the embedded LLaQo model on a corpus manifest")
    t.add_argument("manifest", help="corpus manifest.jsonl")
    t.add_argument("--out", required=True, help="checkpoint directory to write")
    t.add_argument("--encoder", choices=["cnn", "transkun"], default="cnn")
    t.add_argument("--audio-only", action="store_true", help="no report text in the prompt (paper-faithful)")
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--minutes", type=float, default=25.0, help="stop after this much training time")
    t.add_argument("--batch-takes", type=int, default=4)
    t.add_argument("--questions-per-take", type=int, default=4)
    t.add_argument("--lr", type=float, default=2e-3)
    t.add_argument("--cache", help="folder for prepared audio features (reused across runs)")
    t.add_argument("--threads", type=int)
    t.add_argument("--init-from", help="continue training this checkpoint (keeps its tokenizer and config)")
    t.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="score a checkpoint on a manifest split")
    e.add_argument("manifest")
    e.add_argument("--model", required=True, help="checkpoint directory")
    e.add_argument("--split", default="val")
    e.add_argument("--cache", help="folder for prepared audio features")
    e.add_argument("--shuffle-audio", action="store_true", help="pair each take with another take's audio")
    e.set_defaults(func=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    """Train and print where the checkpoint went."""
    from llaqo_training.train import TrainConfig, train

    config = TrainConfig(
        manifest=args.manifest,
        out=args.out,
        encoder=args.encoder,
        grounding=not args.audio_only,
        steps=args.steps,
        time_budget_s=args.minutes * 60,
        batch_takes=args.batch_takes,
        questions_per_take=args.questions_per_take,
        lr=args.lr,
        cache_dir=args.cache,
        threads=args.threads,
        init_from=args.init_from,
    )
    print(train(config))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Print the metrics as JSON."""
    from llaqo_training.evaluate import evaluate

    print(json.dumps(evaluate(args.model, args.manifest, args.split, args.cache, args.shuffle_audio), indent=1))
    return 0
