"""Labels of a take: the 12 rubric ratings and `overall` from its faults (one monotone mapping,
documented in docs/labels.md), `difficulty` 1–9 (CIPI/Henle table or a score-feature estimate) and
the most salient technique.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from llaqo_model.analysis.metrics import onset_clusters
from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES
from llaqo_training.faults import NOTE_FAULTS, Fault

# Penalty weight of each fault kind on each dimension (kind → {dimension: weight}).
WEIGHTS: dict[str, dict[str, float]] = {
    "hesitation": {"rhythm_accuracy": 0.6, "tempo_stability": 0.4, "expressiveness": 0.15},
    "restart": {"rhythm_accuracy": 0.7, "tempo_stability": 0.5, "expressiveness": 0.2},
    "inaccurate_rhythm": {"rhythm_accuracy": 1.0, "evenness": 0.3},
    "rushing": {"tempo_stability": 0.8, "rhythm_accuracy": 0.3},
    "dragging": {"tempo_stability": 0.8, "rhythm_accuracy": 0.3},
    "unsteady_tempo": {"tempo_stability": 1.0, "rhythm_accuracy": 0.2},
    "wrong_tempo": {"tempo_choice": 1.0},
    "flat_dynamics": {"dynamic_range": 1.0, "dynamic_shaping": 0.4, "expressiveness": 0.4},
    "exaggerated_dynamics": {"dynamic_range": 1.0, "expressiveness": 0.3},
    "ignored_hairpins": {"dynamic_shaping": 1.0, "expressiveness": 0.2},
    "heavy_left_hand": {"hand_balance": 1.0},
    "staccato_for_legato": {"articulation": 1.0},
    "legato_for_staccato": {"articulation": 1.0},
    "chord_asynchrony": {"attack_cleanliness": 1.0},
    "smudged_attack": {"attack_cleanliness": 1.0},
    "uneven_runs": {"evenness": 1.0, "rhythm_accuracy": 0.2},
    "pedal_blur": {"pedaling": 1.0},
    "no_pedal": {"pedaling": 1.0},
    "mechanical": {"expressiveness": 1.0, "dynamic_shaping": 0.3},
}
NOTE_ERROR_SECONDS = 5.0
OVERALL_WEIGHTS = {"pitch_accuracy": 2.0, "rhythm_accuracy": 2.0, "tempo_stability": 1.5}


def rating_from_penalty(penalty: float) -> int:
    """0 → 6; (0, 0.2] → 5; (0.2, 0.4] → 4; … (0.8, ∞) → 1. Monotone non-increasing."""
    if penalty <= 0:
        return 6
    return int(max(1, 6 - math.ceil(min(penalty, 1.0) * 5 - 1e-9)))


def penalties(faults: Iterable[Fault], duration_s: float) -> dict[str, float]:
    """Penalty per dimension: note errors per 5 s of music for pitch, weighted magnitudes otherwise."""
    out = dict.fromkeys(RUBRIC_KEYS, 0.0)
    note_errors = 0.0
    for f in faults:
        if f.kind in NOTE_FAULTS:
            note_errors += f.magnitude
            if f.kind == "extra_note" and f.magnitude < 1.0:
                out["attack_cleanliness"] += 0.1
            continue
        for dim, w in WEIGHTS.get(f.kind, {}).items():
            out[dim] += w * f.magnitude
    out["pitch_accuracy"] = note_errors * NOTE_ERROR_SECONDS / max(duration_s, NOTE_ERROR_SECONDS)
    return out


def ratings(faults: list[Fault], duration_s: float) -> dict[str, int]:
    """The twelve rubric ratings (1–6) of a take with these faults."""
    return {k: rating_from_penalty(p) for k, p in penalties(faults, duration_s).items()}


def overall(r: dict[str, int]) -> int:
    """Weighted mean of the ratings (accuracy and pulse count more), pulled down by any dimension ≤ 2."""
    total = sum(OVERALL_WEIGHTS.get(k, 1.0) * v for k, v in r.items())
    mean = total / sum(OVERALL_WEIGHTS.get(k, 1.0) for k in r)
    weak = sum(1 for v in r.values() if v <= 2)
    return int(np.clip(math.floor(mean - 0.25 * weak + 0.5), 1, 6))


# ---------------------------------------------------------------- difficulty


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", " ", text).strip()


def _catalogue_keys(text: str) -> set[str]:
    """Catalogue identifiers in a title: 'op 10 4', 'op 10', 'bwv 846', 'kv 331', 'd 899 2'."""
    t = _norm(text).replace("no ", "")
    keys = set()
    for m in re.finditer(r"\b(op|bwv|kv|k|d|hob|s)\s*(\d+)(?:\s+(\d+))?", t):
        cat = "kv" if m.group(1) == "k" else m.group(1)
        keys.add(f"{cat} {m.group(2)}")
        if m.group(3):
            keys.add(f"{cat} {m.group(2)} {m.group(3)}")
    return keys


@functools.lru_cache(maxsize=2)
def cipi_table(path: str) -> list[tuple[str, set[str], int]]:
    """(composer surname, catalogue keys, Henle level) per work of the CIPI table."""
    rows: dict[tuple[str, str], int] = {}
    p = Path(path)
    if not p.is_file():
        return []
    with p.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            try:
                rows[(row["Composer"], row["Work Title"])] = int(float(row["henle"]))
            except (KeyError, ValueError):
                continue
    return [(_norm(c).split()[-1], _catalogue_keys(w), h) for (c, w), h in rows.items() if _catalogue_keys(w)]


ASAP_CATALOGUE = {"Etudes_op_10": "op 10", "Etudes_op_25": "op 25", "Preludes_op_28": "op 28"}


def cipi_difficulty(composer: str | None, title: str, table_path: str | Path) -> int | None:
    """The Henle level of the work when the CIPI table lists it (composer and catalogue number agree)."""
    if not composer:
        return None
    keys = _catalogue_keys(title)
    for folder, cat in ASAP_CATALOGUE.items():
        m = re.search(folder.replace("_", " ") + r"\s+(\d+)", title)
        if m:
            keys |= {f"{cat} {m.group(1)}", cat}
    surname = _norm(composer).split()[-1]
    best = None
    for name, work_keys, level in cipi_table(str(table_path)):
        if name != surname:
            continue
        shared = keys & work_keys
        if shared and (best is None or max(len(k) for k in shared) > best[0]):
            best = (max(len(k) for k in shared), level)
    return best[1] if best else None


def estimate_difficulty(notes: np.ndarray, tempo_bpm: float, duration_s: float) -> int:
    """Score-feature estimate (1–9): note rate, chord density, hand span and register width."""
    if not len(notes):
        return 1
    rate = len(notes) / max(duration_s, 1e-3)
    clusters = onset_clusters(notes["onset_sec"])
    chord_size = float(np.mean([len(c) for c in clusters]))
    span = float(np.percentile(notes["pitch"], 98) - np.percentile(notes["pitch"], 2))
    score = 1.0 + 0.45 * min(rate, 14) + 1.2 * (chord_size - 1) + 0.04 * max(span - 24, 0)
    return int(np.clip(round(score), 1, 9))


# ---------------------------------------------------------------- technique


def technique_of(notes: np.ndarray) -> str:
    """The most salient technique in a performed excerpt, from its melodic and chordal figures."""
    n = notes[np.argsort(notes["onset_sec"], kind="stable")]
    clusters = onset_clusters(n["onset_sec"])
    counts = dict.fromkeys(TECHNIQUES, 0.0)
    tops = []
    for c in clusters:
        pitches = np.sort(n["pitch"][c])
        rh = pitches[pitches >= np.median(n["pitch"])] if len(pitches) > 1 else pitches
        if len(rh) >= 2:
            gap = rh[-1] - rh[-2]
            if gap == 12:
                counts["octaves"] += 1.5
            elif 3 <= gap <= 9:
                counts["double_notes"] += 1.0
        tops.append(int(pitches[-1]))
    steps = np.diff(tops)
    counts["repeated_notes"] += 1.2 * float(np.sum(steps == 0))
    counts["scales"] += float(np.sum((np.abs(steps) >= 1) & (np.abs(steps) <= 2)))
    counts["arpeggios"] += 1.1 * float(np.sum((np.abs(steps) >= 3) & (np.abs(steps) <= 7)))
    if len(steps) >= 3:
        trill = (np.abs(steps[:-1]) <= 2) & (steps[:-1] == -steps[1:]) & (steps[:-1] != 0)
        counts["ornaments"] += 2.0 * float(np.sum(trill))
    dur = n["duration_sec"]
    starts = np.array([n["onset_sec"][c].min() for c in clusters])
    ioi = float(np.median(np.diff(starts))) if len(starts) > 1 else 1.0
    if np.median(dur) < 0.5 * ioi:
        counts["staccato"] += 0.8 * len(clusters)
    return max(counts, key=lambda k: counts[k])


def label_summary(entries: list[dict[str, Any]]) -> dict[str, dict[int, int]]:
    """Histogram of each rating dimension (and overall, difficulty) over manifest entries."""
    keys = list(RUBRIC_KEYS) + ["overall", "difficulty"]
    out: dict[str, dict[int, int]] = {k: {} for k in keys}
    for e in entries:
        for k in keys:
            v = e["ratings"][k] if k in e["ratings"] else e.get(k)
            if v is not None:
                out[k][int(v)] = out[k].get(int(v), 0) + 1
    return out
