"""The score as written, read with music21 for editing: its measures, in written order, and its notes.

MusicXML (`.musicxml`, `.xml`, `.mxl`) keeps its own measure numbers, parts, voices and everything else.
A MIDI score is quantised into notation first (16ths and triplet 8ths): it loses what MIDI never had or
what quantising guesses — pitch spelling (music21 picks sharps or flats), voices (simultaneous notes of
one track become chords), dynamics (velocities), articulations, slurs, a pickup bar (bars count from 1),
and rhythms finer than the quantisation grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import music21
from music21 import stream

from llaqo_model.analysis.score import MIDI_SUFFIXES, SCORE_SUFFIXES
from llaqo_model.errors import ScoreError

QUANTISE_DIVISORS = (4, 3)  # a MIDI score's onsets and durations snap to 16ths and triplet 8ths
OFFSET_TOLERANCE_QL = 0.26  # a score note and a written note are the same note within this (a MIDI score's snapping)


@dataclass
class WrittenNote:
    """One written note (a chord's member is one note): where it is and the music21 object to mark."""

    part: int
    measure_index: int
    bar: int
    offset_ql: float
    pitch: int
    element: music21.note.Note


@dataclass
class WrittenScore:
    """A parsed score ready to edit: music21's `Score`, its written measures and its notes.

    `part` indices count music21 parts, one per staff (a piano's two staves are two parts), which is also
    MuseScore's staff order. `measure_index` counts written measures from 0 (a pickup is index 0).
    """

    path: str
    score: stream.Score
    bar_numbers: list[int]
    notes: list[WrittenNote]
    quantised: bool

    def voice_name(self, part: int) -> str:
        """The part's name when every part has its own ('Tenor'), else '' (a piano's two staves share one)."""
        names = [p.partName or "" for p in self.score.parts]
        return names[part] if all(names) and len(set(names)) == len(names) else ""

    def measure(self, part: int, measure_index: int) -> stream.Measure:
        """The music21 measure at `measure_index` of `part`."""
        return self.score.parts[part].getElementsByClass(stream.Measure)[measure_index]

    def measure_index(self, bar: int) -> int | None:
        """The written measure printed as `bar` (its first occurrence), or None."""
        return self.bar_numbers.index(bar) if bar in self.bar_numbers else None

    def find(self, bar: int, offset_ql: float, pitch: int) -> list[WrittenNote]:
        """The written notes of `pitch` in `bar` nearest to `offset_ql` (every voice that has it)."""
        candidates = [n for n in self.notes if n.bar == bar and n.pitch == pitch]
        if not candidates:
            return []
        best = min(abs(n.offset_ql - offset_ql) for n in candidates)
        if best > OFFSET_TOLERANCE_QL:
            return []
        return [n for n in candidates if abs(abs(n.offset_ql - offset_ql) - best) < 1e-6]

    def onsets(self, measure_index: int) -> list[tuple[float, int, int]]:
        """(offset, pitch, part) of every written note starting in the measure."""
        return [(n.offset_ql, n.pitch, n.part) for n in self.notes if n.measure_index == measure_index]


def read_written_score(path: str | Path) -> WrittenScore:
    """Parse a score for editing; raise `ScoreError` with one line when it is not one or has no measures."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise ScoreError(f"unsupported score type '{suffix}' (use .musicxml, .xml, .mxl, .mid or .midi)")
    quantised = suffix in MIDI_SUFFIXES
    try:
        if quantised:
            parsed = music21.converter.parse(
                str(path), format="midi", quantizePost=True, quarterLengthDivisors=QUANTISE_DIVISORS
            )
        else:
            parsed = music21.converter.parse(str(path), format="musicxml", forceSource=True)
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ScoreError(f"cannot read {path.name} as a score ({first})") from exc
    if not isinstance(parsed, stream.Score) or not parsed.parts:
        raise ScoreError(f"{path.name} has no parts to write comments into")
    measures = list(parsed.parts[0].getElementsByClass(stream.Measure))
    if not measures:
        raise ScoreError(f"{path.name} has no measures to write comments into")
    bar_numbers = [int(m.number) for m in measures]
    return WrittenScore(str(path), parsed, bar_numbers, _written_notes(parsed, bar_numbers), quantised)


def _written_notes(score: stream.Score, bar_numbers: list[int]) -> list[WrittenNote]:
    """Every sounding written note: chords split into their members, tie continuations left out."""
    found = []
    for part_index, part in enumerate(score.parts):
        for index, measure in enumerate(part.getElementsByClass(stream.Measure)):
            if index >= len(bar_numbers):
                break
            for element in measure.recurse().notes:
                offset = float(element.getOffsetInHierarchy(measure))
                members = element.notes if isinstance(element, music21.chord.Chord) else [element]
                for note in members:
                    tie = note.tie or getattr(element, "tie", None)
                    if tie is not None and tie.type in ("stop", "continue"):
                        continue
                    found.append(WrittenNote(part_index, index, bar_numbers[index], offset, note.pitch.midi, note))
    return found
