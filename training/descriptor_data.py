"""Descriptor training data: per take, the head's full input vector (every stream) and its labels with a mask.

Built from the cached transcription reports (`reports.py`) and the take's audio, and cached itself as one
`.npz` per take, so fitting the head and the baselines takes seconds once the reports exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llaqo_model.analysis.report import PerformanceReport
from llaqo_model.io import load_audio
from llaqo_model.model.descriptors import DESCRIPTOR_KEYS
from llaqo_model.model.frontend import FrontendConfig, audio_windows
from llaqo_model.model.take_features import STREAMS, head_inputs, select_streams
from llaqo_training.reports import cached_report

ReportSource = Callable[[dict[str, Any]], PerformanceReport | None]


@dataclass
class DescriptorTable:
    """Rows of takes: inputs (every stream), labels and their mask, and who each take is."""

    inputs: np.ndarray  # (N, sum of stream widths)
    labels: np.ndarray  # (N, 19), 0 where missing
    mask: np.ndarray  # (N, 19), 1 where the label exists
    ids: list[str]
    passages: list[str]
    splits: list[str]
    sounds: list[str]

    def subset(self, keep: np.ndarray) -> DescriptorTable:
        """Rows where `keep` is true."""
        idx = np.flatnonzero(keep)
        pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
        return DescriptorTable(
            self.inputs[idx],
            self.labels[idx],
            self.mask[idx],
            pick(self.ids),
            pick(self.passages),
            pick(self.splits),
            pick(self.sounds),
        )

    def repeated(self, inputs: np.ndarray) -> DescriptorTable:
        """The same takes, as many times over as `inputs` has rows for each (new inputs, same labels)."""
        copies = len(inputs) // max(len(self.ids), 1)
        return DescriptorTable(
            inputs.astype(np.float32),
            np.tile(self.labels, (copies, 1)),
            np.tile(self.mask, (copies, 1)),
            self.ids * copies,
            self.passages * copies,
            self.splits * copies,
            self.sounds * copies,
        )

    def stream(self, streams: tuple[str, ...]) -> np.ndarray:
        """The input columns of `streams` (in the head's order)."""
        return select_streams(self.inputs, streams)


def concat(tables: list[DescriptorTable]) -> DescriptorTable:
    """The rows of several tables, one after another."""
    return DescriptorTable(
        np.concatenate([t.inputs for t in tables]),
        np.concatenate([t.labels for t in tables]),
        np.concatenate([t.mask for t in tables]),
        [i for t in tables for i in t.ids],
        [p for t in tables for p in t.passages],
        [s for t in tables for s in t.splits],
        [s for t in tables for s in t.sounds],
    )


def label_arrays(descriptors: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, mask) over DESCRIPTOR_KEYS for one take's possibly partial labels."""
    labels = np.array([descriptors.get(k, 0.0) or 0.0 for k in DESCRIPTOR_KEYS], dtype=np.float32)
    mask = np.array([descriptors.get(k) is not None for k in DESCRIPTOR_KEYS], dtype=np.float32)
    return labels, mask


def take_inputs(entry: dict[str, Any], report: PerformanceReport | None, frontend: FrontendConfig) -> np.ndarray | None:
    """The full input vector of one take (None without a report)."""
    if report is None:
        return None
    samples, rate = load_audio(entry["audio"])
    windows, lengths = audio_windows(samples, rate, frontend)
    return head_inputs(report, windows, lengths)


def cached_inputs(
    entry: dict[str, Any], report_for: ReportSource, cache: Path, frontend: FrontendConfig
) -> np.ndarray | None:
    """The take's full input vector from `cache/<id>.npy`, computed and saved there on first use (None
    without a report)."""
    hit = cache / f"{entry['id']}.npy"
    if hit.is_file():
        return np.load(hit)
    x = take_inputs(entry, report_for(entry), frontend)
    if x is not None:  # written whole, then renamed: a job stopped mid-write or a reader beside it sees no torn file
        partial = hit.with_name(f"{hit.name}.partial")
        with partial.open("wb") as f:
            np.save(f, x)
        partial.replace(hit)
    return x


def transcribed(report_dir: str | Path) -> ReportSource:
    """Reports of the take's own transcription, cached by `reports.analyse_entries`."""
    return lambda entry: cached_report(entry, report_dir)


def from_midi(report_dir: str | Path) -> ReportSource:
    """Reports of the segment's performance MIDI (one per segment, shared by its renderings)."""
    return lambda entry: cached_report({**entry, "id": entry.get("segment", entry["id"])}, report_dir)


def build_table(entries: list[dict[str, Any]], report_for: ReportSource, cache_dir: str | Path) -> DescriptorTable:
    """Every entry with descriptors and a report, as one table (inputs cached per take under `cache_dir`)."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    frontend = FrontendConfig()
    rows: list[tuple[np.ndarray, dict[str, Any]]] = []
    for entry in entries:
        if not entry.get("descriptors"):
            continue
        x = cached_inputs(entry, report_for, cache, frontend)
        if x is not None:
            rows.append((x, entry))
    width = sum(w for _, w in STREAMS)
    labels, mask = zip(*(label_arrays(e["descriptors"]) for _, e in rows), strict=True) if rows else ((), ())
    return DescriptorTable(
        inputs=np.stack([x for x, _ in rows]) if rows else np.zeros((0, width), np.float32),
        labels=np.stack(labels) if rows else np.zeros((0, len(DESCRIPTOR_KEYS)), np.float32),
        mask=np.stack(mask) if rows else np.zeros((0, len(DESCRIPTOR_KEYS)), np.float32),
        ids=[e["id"] for _, e in rows],
        passages=[e.get("passage", e["id"]) for _, e in rows],
        splits=[e.get("split", "train") for _, e in rows],
        sounds=[e.get("sound", "") for _, e in rows],
    )


def as_tensors(table: DescriptorTable, streams: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs of `streams`, labels, mask) as float tensors."""
    return (
        torch.from_numpy(table.stream(streams)).float(),
        torch.from_numpy(table.labels).float(),
        torch.from_numpy(table.mask).float(),
    )
