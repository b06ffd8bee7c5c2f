"""Subcommands of `llaqo` for this package."""

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's subcommands."""
