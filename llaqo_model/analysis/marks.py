"""What the score asks beyond its notes: dynamics, accents, hairpins, pedal and slurs, summarised per passage.

Note arrays in (the score's notes with their `onset_div`), a few numbers out. Listeners judge a passage against
what its music asks — a passage marked pp with the pedal held sounds softer and wetter in every player's hands
— so these are inputs of the model's heads beside what was played, and a base for judging the playing against
the marks.
"""

from __future__ import annotations

import numpy as np
import partitura as pt

from llaqo_model.analysis.report import PerformanceReport, WrittenMarks
from llaqo_model.analysis.score import Score

# Dynamic marks on one scale of steps (ppp 1 … fff 8); words that set no level (dolce) are skipped.
DYNAMIC_LEVELS = {
    "pppp": 0,
    "ppp": 1,
    "pp": 2,
    "p": 3,
    "piano": 3,
    "mp": 4,
    "mf": 5,
    "f": 6,
    "forte": 6,
    "ff": 7,
    "fff": 8,
    "ffff": 9,
}
HAIRPINS = (pt.score.IncreasingLoudnessDirection, pt.score.DecreasingLoudnessDirection)
ACCENTS = {"sf", "sfz", "fz", "fp", "sfp", "rfz", "rf", "sffz"}  # a single note or chord made loud


def _word(direction: pt.score.Direction) -> str:
    return (direction.text or "").strip().lower()


def _inside(onsets: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Which onsets (divs) fall in any [start, end) span."""
    inside = np.zeros(len(onsets), dtype=bool)
    for start, end in spans:
        inside |= (onsets >= start) & (onsets < end)
    return inside


def _take_rows(score: Score, played: list[int]) -> list[int]:
    """The rows of `score.bars` a take's bars are (`played`: their printed numbers in order, a run of
    consecutive rows as `metrics.build_bars` makes them); empty when no such run exists."""
    numbers = [int(b) for b in score.bars["bar"]]
    for first in range(len(numbers) - len(played) + 1):
        if numbers[first : first + len(played)] == played:
            return list(range(first, first + len(played)))
    return []


def written_marks(score: Score, played: list[int] | None = None) -> WrittenMarks:
    """The marks of the passage `score` holds (its notes' span of the part); `played`: the printed numbers of
    the take's bars, whose levels in force become `bar_levels`."""
    part, notes = score.part, score.note_array
    onsets = notes["onset_div"].astype(int)
    bars = max(len(score.bars), 1)
    if not len(onsets):
        return WrittenMarks()
    lo, hi = int(onsets.min()), int(onsets.max()) + 1
    directions = list(part.iter_all(pt.score.Direction, include_subclasses=True))
    levels = sorted(
        (d.start.t, DYNAMIC_LEVELS[_word(d)])
        for d in directions
        if isinstance(d, pt.score.ConstantLoudnessDirection) and _word(d) in DYNAMIC_LEVELS
    )
    in_force = np.full(len(onsets), np.nan)  # the last dynamic mark at or before each note
    if levels:
        at = np.searchsorted(np.array([t for t, _ in levels]), onsets, side="right") - 1
        in_force[at >= 0] = [levels[i][1] for i in at[at >= 0]]
    marked = in_force[np.isfinite(in_force)]
    level, span = (float(marked.mean()), float(np.ptp(marked))) if marked.size else (None, None)
    beats, rows = notes["onset_beat"], score.bars[_take_rows(score, played or [])]
    per_bar = [in_force[(beats >= row["start_beat"]) & (beats < row["end_beat"])] for row in rows]
    bar_levels = [float(np.nanmean(v)) if np.isfinite(v).any() else None for v in per_bar]
    within = [d for d in directions if lo <= d.start.t < hi]
    accents = sum(isinstance(d, pt.score.ImpulsiveLoudnessDirection) and _word(d) in ACCENTS for d in within)
    hairpins = sum(isinstance(d, HAIRPINS) for d in within)
    pedals = [
        (d.start.t, d.end.t if d.end is not None else d.start.t + 1)
        for d in directions
        if isinstance(d, pt.score.SustainPedalDirection)
    ]
    slurs = [(s.start.t, s.end.t) for s in part.iter_all(pt.score.Slur) if s.start is not None and s.end is not None]
    return WrittenMarks(
        dynamic_level=level,
        dynamic_span=span,
        accents_per_bar=accents / bars,
        hairpins_per_bar=hairpins / bars,
        pedal_share=float(_inside(onsets, pedals).mean()),
        slur_share=float(_inside(onsets, slurs).mean()),
        bar_levels=bar_levels,
    )


def mark_written(report: PerformanceReport, score: Score) -> None:
    """Record in an aligned take's measures what its score asks: tempo mark, key signature, the other marks."""
    report.measures.written_tempo_bpm = score.written_tempo_bpm
    report.measures.written_key_fifths = score.key_fifths
    report.measures.written_marks = written_marks(score, [b.bar for b in report.bars])
