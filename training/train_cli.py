"""`llaqo train` and `llaqo evaluate`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from llaqo_model.errors import LlaqoError


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
    t.add_argument(
        "--descriptors", help="PercePiano manifest (llaqo corpus import percepiano): fit the descriptor head on it"
    )
    reports_option(
        t, "--descriptor-reports", "transcribed", "reports the descriptor head trains on", choices=DESCRIPTOR_REPORTS
    )
    t.add_argument("--no-answer-head", action="store_true", help="the LM answers ratings/difficulty/technique")
    reports_option(
        t, "--answer-reports", "midi", "reports the answer head trains on (both: each take's MIDI report, and its "
        "transcribed one where `corpus analyse` has made it)", choices=ANSWER_REPORTS,
    )  # fmt: skip
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when present")
    t.add_argument("--lm", help="local Hugging Face causal LM folder to LoRA-train (never downloaded)")
    t.add_argument("--token-loss", action="store_true", help="average the loss over answer tokens, not over answers")
    t.add_argument("--val-every", type=int, default=0, help="validation loss every N steps (and at the end)")
    t.add_argument("--save-every", type=int, default=0, help="checkpoint + trainer state every N steps")
    t.add_argument("--resume", action="store_true", help="continue the run saved in --out up to --steps")
    t.set_defaults(func=run_train)

    e = subparsers.add_parser("evaluate", help="score a checkpoint on a manifest split")
    e.add_argument("manifest")
    e.add_argument("--model", required=True, help="checkpoint directory")
    e.add_argument("--split", default="val")
    e.add_argument("--cache", help="folder for prepared audio features")
    e.add_argument("--shuffle-audio", action="store_true", help="pair each take with another take's audio")
    reports_option(e, "--reports", "transcribed", "the evaluated takes' reports (midi: an upper bound)")
    reports_option(
        e,
        "--train-reports",
        None,
        "the training reports the baselines fit on (simulated: PercePiano only)",
        "PercePiano transcribed, else midi",
        choices=DESCRIPTOR_REPORTS,
    )
    e.add_argument("--max-takes", type=int, help="transcribe at most this many evaluated takes")
    e.add_argument("--out", help="also write the JSON here")
    e.set_defaults(func=run_evaluate)


REPORTS = ("transcribed", "midi")
DESCRIPTOR_REPORTS = (*REPORTS, "both", "simulated")  # PercePiano: also MIDI with transcription's noise
ANSWER_REPORTS = (*REPORTS, "both")  # the answer head: a take's MIDI report and its transcribed one, two rows


def reports_option(
    parser: argparse.ArgumentParser,
    flag: str,
    default: str | None,
    what: str,
    default_text: str | None = None,
    choices: tuple[str, ...] = REPORTS,
) -> None:
    """A `--...-reports` option: transcribed takes (llaqo corpus analyse, what a user's take gives), the takes'
    performance MIDI, or (PercePiano training only) `simulated`: the MIDI with the noise transcription adds,
    learned from the takes transcribed so far."""
    shown = default_text or default
    parser.add_argument(flag, choices=choices, default=default, help=f"{what}: {', '.join(choices)} (default {shown})")


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
        descriptor_manifest=args.descriptors,
        descriptor_reports=args.descriptor_reports,
        answer_head=not args.no_answer_head,
        answer_reports=args.answer_reports,
        device=args.device,
        lm=args.lm,
        per_answer_loss=not args.token_loss,
        val_every=args.val_every,
        save_every=args.save_every,
        resume=args.resume,
    )
    print(train(config))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Print the metrics as JSON (PercePiano figures for a manifest of rated takes), and write them to --out."""
    from llaqo_training.dataset import read_manifest

    entries = read_manifest(args.manifest)
    if any(e.get("descriptors") for e in entries):
        from llaqo_model.model.checkpoint import from_pretrained
        from llaqo_training.descriptor_eval import evaluate_descriptors

        if args.train_reports == "both":
            raise LlaqoError("--train-reports both is for the synthetic corpus (the answer head) only")
        model = from_pretrained(args.model)
        result = evaluate_descriptors(
            model, entries, args.manifest, args.split, args.reports, args.max_takes, args.train_reports or "transcribed"
        )
    else:
        from llaqo_training.evaluate import evaluate

        if args.train_reports == "simulated":
            raise LlaqoError("--train-reports simulated is for PercePiano manifests (rated takes) only")
        result = evaluate(
            args.model, args.manifest, args.split, args.cache, args.shuffle_audio,
            args.reports, args.train_reports or "midi", args.max_takes,
        )  # fmt: skip
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0
