"""`llaqo corpus build` and `llaqo corpus import`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `corpus build` and `corpus import`."""
    corpus = subparsers.add_parser("corpus", help="build or import a training corpus")
    sub = corpus.add_subparsers(dest="corpus_command", required=True)
    b = sub.add_parser("build", help="generate takes with known faults, labels and instruction QA")
    b.add_argument("--out", required=True, help="corpus folder (manifest.jsonl, takes/)")
    b.add_argument("--takes", type=int, required=True)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=1)
    b.add_argument("--asap", help="ASAP dataset folder (default ../shared/data/asap)")
    b.add_argument("--max-seconds", type=float, default=30.0, help="longest excerpt (10–40)")
    b.add_argument("--sample-rate", type=int, default=22050)
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=run_build)

    i = sub.add_parser("import", help="render PercePiano, or convert the paper's QA tables, to a manifest")
    i.add_argument(
        "format", help="'percepiano', or a QA table's dataset: crocus, YCU-PPE-III, techniques, or 'auto'"
    )
    i.add_argument("path", help="the PercePiano folder, or the QA table (csv)")
    i.add_argument("--audio-root", help="where the dataset's audio files are (QA tables)")
    i.add_argument("--limit", type=int, help="PercePiano: only the first N segments")
    i.add_argument("--out", required=True, help="folder for manifest.jsonl")
    i.set_defaults(func=run_import)

    a = sub.add_parser("analyse", help="transcribe and analyse a manifest's takes once, cached for training")
    a.add_argument("manifest", help="manifest.jsonl (its reports go to reports/ beside it)")
    a.add_argument("--split", choices=["train", "val", "test", "all"], default="all")
    a.add_argument("--limit", type=int, help="stop after this many takes analysed now")
    a.add_argument("--sound", help="only the takes rendered with this piano sound (e.g. salamander_grand)")
    a.set_defaults(func=run_analyse)


def run_build(args: argparse.Namespace) -> int:
    """Build or resume a corpus and print its summary."""
    from llaqo_training.corpus import CorpusError, build, default_config, format_summary

    if args.takes < 1:
        raise CorpusError("--takes must be at least 1")
    if not 10.0 <= args.max_seconds <= 40.0:
        raise CorpusError("--max-seconds must be between 10 and 40")
    config = default_config(args.out, args.takes, args.seed, max(1, args.workers))
    if args.asap:
        config.asap_root = Path(args.asap)
    config.max_s = args.max_seconds
    config.sample_rate = args.sample_rate
    summary = build(config, progress=not args.no_progress)
    print(format_summary(summary))
    return 0 if summary["takes"] else 1


def run_analyse(args: argparse.Namespace) -> int:
    """Analyse (resumably) the takes not cached yet: PercePiano's held-out-sound takes first."""
    from llaqo_training.dataset import read_manifest
    from llaqo_training.percepiano import HELD_OUT_SOUND
    from llaqo_training.reports import analyse_entries, analysis_order

    entries = [e for e in read_manifest(args.manifest) if args.split in ("all", e.get("split", "train"))]
    entries = [e for e in entries if args.sound in (None, e.get("sound"))]
    todo = analysis_order(entries, HELD_OUT_SOUND)
    done, failed = analyse_entries(todo, Path(args.manifest).parent / "reports", limit=args.limit, progress=True)
    print(f"{done} takes analysed now; {len(failed)} failed")
    for line in failed[:10]:
        print(f"failed: {line}")
    return 0 if not failed else 1


def run_import(args: argparse.Namespace) -> int:
    """Render PercePiano, or import a QA table and report rows whose audio is missing."""
    if args.format.lower() == "percepiano":
        from llaqo_training.percepiano import import_percepiano

        summary = import_percepiano(args.path, args.out, limit=args.limit)
        print(summary.text())
        return 0 if summary.rows else 1
    from llaqo_training.adapters import import_table
    from llaqo_training.corpus import CorpusError

    if not args.audio_root:
        raise CorpusError("--audio-root is required for a QA table")

    result = import_table(args.format, args.path, args.audio_root, args.out)
    print(result.summary())
    return 0
