"""Score context: MusicXML / MXL / MIDI scores → a note array that knows each note's bar number."""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.lib.recfunctions as rfn
import partitura as pt

from llaqo_model.errors import ScoreError

SCORE_SUFFIXES = {".musicxml", ".xml", ".mxl", ".mid", ".midi"}
MIDI_SUFFIXES = {".mid", ".midi"}
_ENTITY = re.compile(rb"<!ENTITY", re.IGNORECASE)


@dataclass
class Score:
    """A loaded score: notes (partitura note array plus `bar`) and its bars in beats.

    `bars` is a structured array (`bar`, `start_beat`, `end_beat`), one row per bar as performed
    (repeats unfolded); `bar` is the printed measure number a musician sees.
    """

    path: str
    note_array: np.ndarray
    bars: np.ndarray
    part: pt.score.Part

    def excerpt(self, first_row: int, last_row: int) -> Score:
        """Rows `first_row`..`last_row` of `bars` (inclusive, performed order) as a score of their own."""
        rows = self.bars[first_row : last_row + 1]
        if len(rows) == 0:
            raise ScoreError(f"bars {first_row}..{last_row} are not in the score")
        lo, hi = rows["start_beat"][0], rows["end_beat"][-1]
        keep = (self.note_array["onset_beat"] >= lo) & (self.note_array["onset_beat"] < hi)
        name = f"{self.path}#bars={rows['bar'][0]}-{rows['bar'][-1]}"
        return Score(path=name, note_array=self.note_array[keep], bars=rows, part=self.part)

    def bar_range(self, first_bar: int, last_bar: int) -> Score:
        """The passage from printed bar `first_bar` to `last_bar` (first occurrence), e.g. what a take covers."""
        numbers = list(self.bars["bar"])
        if first_bar not in numbers:
            raise ScoreError(f"the score has no bar {first_bar}")
        start = numbers.index(first_bar)
        ends = [i for i in range(start, len(numbers)) if numbers[i] == last_bar]
        if not ends:
            raise ScoreError(f"the score has no bar {last_bar} after bar {first_bar}")
        return self.excerpt(start, ends[0])

    @property
    def key_fifths(self) -> int:
        """Key signature (sharps > 0, flats < 0) at the start."""
        return int(self.note_array["ks_fifths"][0]) if len(self.note_array) else 0


def _check_safe_xml(path: Path) -> None:
    """Refuse MusicXML that declares entities (XXE / billion-laughs); nothing is fetched."""
    if path.suffix.lower() == ".mxl":
        try:
            with zipfile.ZipFile(path) as z:
                blobs = [z.read(n) for n in z.namelist() if n.lower().endswith((".xml", ".musicxml"))]
        except (zipfile.BadZipFile, OSError) as exc:
            raise ScoreError(f"{path.name} is not a readable .mxl archive") from exc
    else:
        blobs = [path.read_bytes()]
    if any(_ENTITY.search(b[:65536]) for b in blobs):
        raise ScoreError(f"{path.name} declares XML entities, which are not allowed in a score")


def _bar_number(name: str | None, fallback: int) -> int:
    """The printed measure number, e.g. '12' → 12, '12a' or 'X1' → the leading digits or the index."""
    match = re.match(r"\d+", name or "")
    return int(match.group()) if match else fallback


def _dedupe_unisons(na: np.ndarray) -> np.ndarray:
    """Keep one note per (onset, pitch): voices doubling a note are played once on the piano."""
    order = np.lexsort((-na["duration_div"], na["pitch"], na["onset_div"]))
    na = na[order]
    keep = np.ones(len(na), dtype=bool)
    keep[1:] = (na["onset_div"][1:] != na["onset_div"][:-1]) | (na["pitch"][1:] != na["pitch"][:-1])
    return na[keep]


def _held_over(na: np.ndarray) -> np.ndarray:
    """Notes whose pitch is still sounding (or just ending) from another voice: a pianist plays them once."""
    held = np.zeros(len(na), dtype=bool)
    ends = na["onset_div"] + na["duration_div"]
    for pitch in np.unique(na["pitch"]):
        idx = np.flatnonzero(na["pitch"] == pitch)
        idx = idx[np.argsort(na["onset_div"][idx], kind="stable")]
        for k, i in enumerate(idx):
            earlier = idx[:k]
            other_voice = (na["voice"][earlier] != na["voice"][i]) | (na["staff"][earlier] != na["staff"][i])
            held[i] = bool(np.any(other_voice & (ends[earlier] >= na["onset_div"][i]))) or bool(
                np.any(ends[earlier] > na["onset_div"][i])
            )
    return held


def load_score(path: str | Path, unfold_repeats: bool = True) -> Score:
    """Load a score (MusicXML, MXL or MIDI); raise `ScoreError` with one line if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"no score file at {path}")
    suffix = path.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise ScoreError(f"unsupported score type '{suffix}' (use .musicxml, .xml, .mxl, .mid or .midi)")
    try:
        if suffix in MIDI_SUFFIXES:
            loaded = pt.load_score_midi(str(path))
        else:
            _check_safe_xml(path)
            loaded = pt.load_musicxml(str(path))
        parts = [p for p in loaded.parts if len(p.notes_tied)]
        if not parts:
            raise ScoreError(f"{path.name} contains no notes")
        part = pt.score.merge_parts(parts) if len(parts) > 1 else parts[0]
        for i, note in enumerate(part.iter_all(pt.score.Note, include_subclasses=True)):
            note.id = f"n{i}"
        if unfold_repeats and len(list(part.iter_all(pt.score.Repeat))):
            part = pt.score.unfold_part_maximal(part)
        na = part.note_array(
            include_pitch_spelling=True,
            include_staff=True,
            include_grace_notes=True,
            include_key_signature=True,
            include_time_signature=True,
        )
    except ScoreError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ScoreError(f"cannot read {path.name} as a score ({first})") from exc
    if len(na) == 0:
        raise ScoreError(f"{path.name} contains no notes")
    na = _dedupe_unisons(na)
    bars = _bar_table(part)
    bar_of_note = np.searchsorted(bars["start_div"], na["onset_div"], side="right") - 1
    ornamented = {n.id for n in part.notes_tied if n.ornaments}
    na = rfn.append_fields(
        na,
        ("bar", "ornamented", "held_over"),
        (
            bars["bar"][np.clip(bar_of_note, 0, len(bars) - 1)],
            np.array([i in ornamented for i in na["id"]]),
            _held_over(na),
        ),
        usemask=False,
    )
    table = np.zeros(len(bars), dtype=[("bar", "i4"), ("start_beat", "f8"), ("end_beat", "f8")])
    table["bar"] = bars["bar"]
    table["start_beat"] = part.beat_map(bars["start_div"])
    table["end_beat"] = part.beat_map(bars["end_div"])
    return Score(path=str(path), note_array=na, bars=table, part=part)


def _bar_table(part: pt.score.Part) -> np.ndarray:
    """Bars in score order with their division span; a score without measures is one bar."""
    measures = list(part.measures)
    rows = [(_bar_number(m.name, m.number or i + 1), m.start.t, m.end.t) for i, m in enumerate(measures)]
    if not rows:
        rows = [(1, part.first_point.t, part.last_point.t)]
    return np.array(rows, dtype=[("bar", "i4"), ("start_div", "i8"), ("end_div", "i8")])


def pitch_name(pitch: int, key_fifths: int = 0) -> str:
    """Spell a MIDI pitch for a musician, with flats in flat keys: 63 → 'E♭4' when key_fifths < 0."""
    sharps = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"]
    flats = ["C", "D♭", "D", "E♭", "E", "F", "G♭", "G", "A♭", "A", "B♭", "B"]
    names = flats if key_fifths < 0 else sharps
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


def spelled_name(step: str, alter: int, octave: int) -> str:
    """A score note's own spelling: ('E', -1, 4) → 'E♭4'."""
    accidental = {-2: "𝄫", -1: "♭", 0: "", 1: "♯", 2: "𝄪"}.get(int(alter), "")
    return f"{step}{accidental}{octave}"
