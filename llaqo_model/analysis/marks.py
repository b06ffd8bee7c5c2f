"""What the score asks beyond its notes: dynamics, accents, hairpins, pedal and slurs, summarised per passage.

Note arrays in (the score's notes with their `onset_div`), a few numbers out. Listeners judge a passage against
what its music asks — a passage marked pp with the pedal held sounds softer and wetter in every player's hands
— so these are inputs of the model's heads beside what was played, and a base for judging the playing against
the marks.
"""

from __future__ import annotations

import numpy as np
import partitura as pt

from llaqo_model.analysis.report import Measures, WrittenMarks
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


def written_marks(score: Score) -> WrittenMarks:
    """The marks of the passage `score` holds (its notes' span of the part)."""
    part, notes = score.part, score.note_array
    onsets = notes["onset_div"].astype(int)
    bars = max(len(score.bars), 1)
    if not len(onsets):
        return WrittenMarks(None, None, 0.0, 0.0, 0.0, 0.0)
    lo, hi = int(onsets.min()), int(onsets.max()) + 1
    directions = list(part.iter_all(pt.score.Direction, include_subclasses=True))
    levels = sorted(
        (d.start.t, DYNAMIC_LEVELS[_word(d)])
        for d in directions
        if isinstance(d, pt.score.ConstantLoudnessDirection) and _word(d) in DYNAMIC_LEVELS
    )
    level, span = None, None
    if levels:
        times = np.array([t for t, _ in levels])
        at = np.searchsorted(times, onsets, side="right") - 1  # the last mark at or before each note
        marked = at >= 0
        if marked.any():
            in_force = np.array([levels[i][1] for i in at[marked]], dtype=float)
            level, span = float(in_force.mean()), float(np.ptp(in_force))
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
    )


def mark_written(measures: Measures, score: Score) -> None:
    """Record in a take's `measures` what its score asks: tempo mark, key signature and the other marks."""
    measures.written_tempo_bpm = score.written_tempo_bpm
    measures.written_key_fifths = score.key_fifths
    measures.written_marks = written_marks(score)
