"""The `llaqo` command: the one module that wires every package (core, training, server) into subcommands.

Each package registers the subcommands it drives; nothing below this module imports across that line."""

from __future__ import annotations

import argparse
import logging
import sys

from llaqo_backend.cli import register as register_server
from llaqo_model.cli import register as register_analysis
from llaqo_model.errors import LlaqoError
from llaqo_model.model.cli import register as register_model
from llaqo_training.corpus_cli import register as register_corpus
from llaqo_training.train_cli import register as register_train


def build_parser() -> argparse.ArgumentParser:
    """All subcommands; each `register` adds its own and sets `func`."""
    parser = argparse.ArgumentParser(
        prog="llaqo", description="LLaQo: a query-based coach for piano performance"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    register_analysis(sub)
    register_model(sub)
    register_corpus(sub)
    register_train(sub)
    register_server(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors print one line on stderr and exit non-zero."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except LlaqoError as exc:
        print(f"llaqo: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"llaqo: error: {exc.strerror or exc}: {exc.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("llaqo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
