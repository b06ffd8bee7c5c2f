"""Performed excerpts as note arrays: expressive renditions of scores and cuts of real performances.

A `Take` holds partitura-style arrays (structured numpy): performed notes that know their bar, staff,
melody role and source score note, the sustain-pedal presses and the bar table in performance time.
Every later step (faults, labels, rendering) reads and writes these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from llaqo_model.analysis.metrics import onset_clusters
from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_model.analysis.score import Score

NOTE_DTYPE = [
    ("onset_sec", "f8"),
    ("duration_sec", "f8"),
    ("pitch", "i4"),
    ("velocity", "i4"),
    ("bar", "i4"),
    ("staff", "i4"),
    ("melody", "?"),
    ("fast", "?"),
    ("score_id", "i4"),
]
PEDAL_DTYPE = [("onset_sec", "f8"), ("offset_sec", "f8")]
BAR_DTYPE = [("bar", "i4"), ("start_sec", "f8"), ("end_sec", "f8")]
START_S = 0.5
FAST_IOI_S = 0.2


@dataclass
class Take:
    """One performed excerpt: notes, pedal and bars in seconds, plus what is known about it."""

    notes: np.ndarray
    pedal: np.ndarray
    bars: np.ndarray
    tempo_bpm: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """End of the last sounding note (or bar)."""
        ends = self.notes["onset_sec"] + self.notes["duration_sec"]
        return float(max(ends.max() if len(ends) else 0.0, self.bars["end_sec"].max() if len(self.bars) else 0.0))

    def copy(self) -> Take:
        """A deep copy (arrays copied)."""
        return replace(
            self, notes=self.notes.copy(), pedal=self.pedal.copy(), bars=self.bars.copy(), meta=dict(self.meta)
        )

    def bar_of(self, time_s: float) -> int:
        """The bar number sounding at `time_s`."""
        i = int(np.searchsorted(self.bars["start_sec"], time_s + 0.03, side="right")) - 1
        return int(self.bars["bar"][int(np.clip(i, 0, len(self.bars) - 1))])

    def to_notes(self) -> tuple[list[Note], list[PedalInterval]]:
        """The analysis package's note and pedal lists (sorted by onset)."""
        order = np.lexsort((self.notes["pitch"], self.notes["onset_sec"]))
        notes = [
            Note(
                round(float(n["onset_sec"]), 4),
                round(float(n["onset_sec"] + max(n["duration_sec"], 0.02)), 4),
                int(n["pitch"]),
                int(np.clip(n["velocity"], 1, 127)),
            )
            for n in self.notes[order]
        ]
        pedal = [PedalInterval(round(float(p["onset_sec"]), 4), round(float(p["offset_sec"]), 4)) for p in self.pedal]
        return notes, pedal


def warp(take: Take, fn: Any) -> Take:
    """Apply a monotone time map `fn(seconds) -> seconds` to every onset, offset, pedal and bar line."""
    out = take.copy()
    on = take.notes["onset_sec"]
    off = on + take.notes["duration_sec"]
    out.notes["onset_sec"] = fn(on)
    out.notes["duration_sec"] = np.maximum(fn(off) - out.notes["onset_sec"], 0.02)
    if len(take.pedal):
        out.pedal["onset_sec"] = fn(take.pedal["onset_sec"])
        out.pedal["offset_sec"] = fn(take.pedal["offset_sec"])
    out.bars["start_sec"] = fn(take.bars["start_sec"])
    out.bars["end_sec"] = fn(take.bars["end_sec"])
    return out


def mark_roles(notes: np.ndarray) -> np.ndarray:
    """Set `melody` (highest note of each onset cluster) and `fast` (inside a quick run) in place."""
    if not len(notes):
        return notes
    notes["melody"] = False
    onsets = notes["onset_sec"]
    clusters = onset_clusters(onsets)
    for c in clusters:
        notes["melody"][c[np.argmax(notes["pitch"][c])]] = True
    starts = np.array([onsets[c].min() for c in clusters])
    ioi = np.diff(starts)
    fast_cluster = np.zeros(len(clusters), dtype=bool)
    if len(ioi):
        quick = ioi < FAST_IOI_S
        fast_cluster[:-1] |= quick
        fast_cluster[1:] |= quick
    for c, f in zip(clusters, fast_cluster, strict=True):
        notes["fast"][c] = f
    return notes


def _phrase_curve(n_bars: int, rng: np.random.Generator, amount: float) -> np.ndarray:
    """A per-bar arch (rise then fall every 2–4 bars) scaled by `amount`, values around 0."""
    length = int(rng.integers(2, 5))
    pos = (np.arange(n_bars) % length) / max(length - 1, 1)
    return amount * (np.sin(np.pi * pos) - 0.5)


def perform_score(
    score: Score,
    rng: np.random.Generator,
    bpm: float,
    staccato: bool = False,
    pedal_style: str = "none",
    expressive: float = 1.0,
    level: float | None = None,
) -> Take:
    """An expressive rendition of `score`: phrase rubato, dynamic arches, melody voicing, final ritardando.

    `bpm` counts the score's beats (partitura `onset_beat`); `expressive` scales rubato and shaping
    (0 = mechanical); `pedal_style` is 'none', 'bar' (change every bar) or 'half' (every half bar).
    """
    na = score.note_array
    na = na[~na["is_grace"].astype(bool)] if "is_grace" in na.dtype.names else na
    bars = score.bars
    n_bars = len(bars)
    tempo_mult = 1.0 + _phrase_curve(n_bars, rng, 0.06 * expressive)
    if n_bars >= 3:
        tempo_mult[-1] *= 1.0 - 0.12 * expressive
    seconds_per_beat = 60.0 / bpm / tempo_mult
    bar_beats = bars["end_beat"] - bars["start_beat"]
    bar_starts = START_S + np.concatenate([[0.0], np.cumsum(bar_beats * seconds_per_beat)])

    def beat_to_sec(beat: np.ndarray) -> np.ndarray:
        beat = np.asarray(beat, dtype=float)
        row = np.clip(np.searchsorted(bars["start_beat"], beat, side="right") - 1, 0, n_bars - 1)
        return bar_starts[row] + (beat - bars["start_beat"][row]) * seconds_per_beat[row]

    notes = np.zeros(len(na), dtype=NOTE_DTYPE)
    onset = beat_to_sec(na["onset_beat"])
    end = beat_to_sec(na["onset_beat"] + na["duration_beat"])
    hold = 0.45 if staccato else 0.93
    notes["onset_sec"] = onset + rng.normal(0, 0.006, len(na))
    notes["duration_sec"] = np.maximum((end - onset) * hold, 0.05)
    notes["pitch"] = na["pitch"]
    row = np.clip(np.searchsorted(bars["start_beat"], na["onset_beat"], side="right") - 1, 0, n_bars - 1)
    notes["bar"] = bars["bar"][row]
    staff = na["staff"] if "staff" in na.dtype.names else np.ones(len(na), dtype=int)
    if len(np.unique(staff)) < 2:
        chordal = np.mean([len(c) > 1 for c in onset_clusters(na["onset_beat"].astype(float), 1e-6)])
        low = na["pitch"] < np.median(na["pitch"]) - 2
        staff = np.where(low & (chordal >= 0.05), 2, 1)
    notes["staff"] = staff
    notes["score_id"] = np.arange(len(na))
    mark_roles(notes)
    base = float(rng.uniform(58, 78)) if level is None else level
    arch = _phrase_curve(n_bars, rng, 22.0 * expressive)[row]
    beat_in_bar = na["onset_beat"] - bars["start_beat"][row]
    accent = np.where(np.isclose(beat_in_bar, 0.0), 4.0, 0.0)
    velocity = base + arch + accent + 9.0 * notes["melody"] - 5.0 * (notes["staff"] >= 2) + rng.normal(0, 3, len(na))
    notes["velocity"] = np.clip(np.round(velocity), 15, 120)
    notes["onset_sec"] -= 0.012 * notes["melody"] * expressive
    bar_table = np.zeros(n_bars, dtype=BAR_DTYPE)
    bar_table["bar"] = bars["bar"]
    bar_table["start_sec"] = bar_starts[:-1]
    bar_table["end_sec"] = bar_starts[1:]
    pedal = pedal_for_bars(bar_table, pedal_style)
    order = np.argsort(notes["onset_sec"], kind="stable")
    return Take(notes=notes[order], pedal=pedal, bars=bar_table, tempo_bpm=float(bpm))


def pedal_for_bars(bars: np.ndarray, style: str) -> np.ndarray:
    """Clean pedalling: lift just after each bar line (or half bar) and press again."""
    if style == "none" or not len(bars):
        return np.zeros(0, dtype=PEDAL_DTYPE)
    rows = []
    for b in bars:
        cuts = [b["start_sec"], b["end_sec"]]
        if style == "half":
            cuts.insert(1, 0.5 * (b["start_sec"] + b["end_sec"]))
        for a, z in zip(cuts[:-1], cuts[1:], strict=True):
            rows.append((a + 0.06, z - 0.02))
    return np.array(rows, dtype=PEDAL_DTYPE)


def cut_performance(
    notes: np.ndarray,
    pedal: np.ndarray,
    downbeats: np.ndarray,
    first: int,
    last: int,
    beats: np.ndarray | None = None,
    first_bar: int = 1,
) -> Take:
    """The bars between downbeat `first` and downbeat `last` (exclusive) of a real performance.

    `notes` and `pedal` use NOTE_DTYPE / PEDAL_DTYPE in the performance's own seconds; `beats` (all beat
    times) gives the tempo; bars are numbered from `first_bar`. The excerpt is shifted to start at START_S.
    """
    lo, hi = downbeats[first] - 0.04, downbeats[last] - 0.04
    keep = (notes["onset_sec"] >= lo) & (notes["onset_sec"] < hi)
    sel = notes[keep].copy()
    shift = START_S - downbeats[first]
    sel["onset_sec"] += shift
    ends = np.minimum(sel["onset_sec"] + sel["duration_sec"], hi + shift + 1.5)
    sel["duration_sec"] = np.maximum(ends - sel["onset_sec"], 0.02)
    edges = downbeats[first : last + 1] + shift
    idx = np.clip(np.searchsorted(edges, sel["onset_sec"] + 0.04, side="right") - 1, 0, last - first - 1)
    sel["bar"] = first_bar + idx
    if len(sel) and len(np.unique(sel["staff"])) < 2:
        split = float(np.median(sel["pitch"])) - 2
        sel["staff"] = np.where(sel["pitch"] < split, 2, 1)
    mark_roles(sel)
    ped = pedal[(pedal["offset_sec"] > lo) & (pedal["onset_sec"] < hi)].copy()
    ped["onset_sec"] = np.maximum(ped["onset_sec"], lo) + shift
    ped["offset_sec"] = np.minimum(ped["offset_sec"], hi) + shift
    bars = np.zeros(last - first, dtype=BAR_DTYPE)
    bars["bar"] = first_bar + np.arange(last - first)
    bars["start_sec"] = edges[:-1]
    bars["end_sec"] = edges[1:]
    inside = beats[(beats >= downbeats[first]) & (beats < downbeats[last])] if beats is not None else edges
    beat_s = float(np.median(np.diff(inside))) if len(inside) >= 2 else 1.0
    return Take(notes=sel, pedal=ped, bars=bars, tempo_bpm=60.0 / max(beat_s, 1e-3))
