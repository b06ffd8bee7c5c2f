"""Score context: MusicXML / MXL / MIDI scores → a note array that knows each note's bar number."""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import mido
import numpy as np
import numpy.lib.recfunctions as rfn
import partitura as pt
from defusedxml import DefusedXmlException
from defusedxml import ElementTree as defused

from llaqo_model.errors import ScoreError

SCORE_SUFFIXES = {".musicxml", ".xml", ".mxl", ".mid", ".midi"}
MIDI_SUFFIXES = {".mid", ".midi"}
MAX_SCORE_FILE_BYTES = 16 * 2**20  # a piano score's file is at most a few MiB; this bounds memory
MAX_SCORE_XML_BYTES = 32 * 2**20  # uncompressed MusicXML inside an .mxl: beyond this it is a zip bomb
MAX_MIDI_BYTES = 2**20  # MAX_SCORE_NOTES take about 400 KB of MIDI; parsing more is slow (pure Python)
MIDI_DEFAULT_QPM = 120.0  # a MIDI file's tempo when it sets none (500,000 µs per quarter)
MAX_SCORE_NOTES = 50_000  # several times the longest piano works (ASAP's largest have ~15,000 notes)


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
    from_midi: bool = False  # a MIDI score: its tempo may be MIDI's default rather than a mark

    def excerpt(self, first_row: int, last_row: int) -> Score:
        """Rows `first_row`..`last_row` of `bars` (inclusive, performed order) as a score of their own."""
        rows = self.bars[first_row : last_row + 1]
        if len(rows) == 0:
            raise ScoreError(f"bars {first_row}..{last_row} are not in the score")
        lo, hi = rows["start_beat"][0], rows["end_beat"][-1]
        keep = (self.note_array["onset_beat"] >= lo) & (self.note_array["onset_beat"] < hi)
        name = f"{self.path}#bars={rows['bar'][0]}-{rows['bar'][-1]}"
        return Score(path=name, note_array=self.note_array[keep], bars=rows, part=self.part, from_midi=self.from_midi)

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
    def written_tempo_bpm(self) -> float | None:
        """The tempo the score marks where its notes begin (the last metronome mark or MIDI tempo at or
        before the first note), in the score's own beats per minute like the bars' played tempo; None when
        the score marks none. A MIDI score at exactly MIDI's default tempo marks none: tools write it when
        nobody set a tempo."""
        if not len(self.note_array):
            return None
        first = int(self.note_array["onset_div"].min())
        marks = sorted((t for t in self.part.iter_all(pt.score.Tempo) if t.start.t <= first), key=lambda t: t.start.t)
        if not marks:
            return None
        quarters_per_minute = 60e6 / marks[-1].microseconds_per_quarter
        if self.from_midi and abs(quarters_per_minute - MIDI_DEFAULT_QPM) < 0.01:
            return None
        beat_type = int(self.note_array["ts_beat_type"][0]) if "ts_beat_type" in self.note_array.dtype.names else 4
        return round(quarters_per_minute * beat_type / 4, 1)

    @property
    def key_fifths(self) -> int:
        """Key signature (sharps > 0, flats < 0) at the start."""
        return int(self.note_array["ks_fifths"][0]) if len(self.note_array) else 0


def _checked_xml(data: bytes, name: str) -> bytes:
    """`data` if it is XML without entity declarations, DTD fetches or external references (XXE,
    billion laughs), in any encoding and anywhere in the document; else ScoreError. The parser's own
    settings are the guard (defusedxml), not a scan of the text."""
    try:
        defused.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ScoreError(f"{name} declares XML entities, which are not allowed in a score") from exc
    except ElementTree.ParseError as exc:
        raise ScoreError(f"{name} is not well-formed XML ({exc})") from exc
    return data


def _mxl_root(data: bytes, name: str) -> bytes:
    """The score XML inside a compressed MusicXML (.mxl) archive, every member checked and each read
    bounded by its declared size (zipfile stops there), their sum bounded before anything is inflated."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = z.infolist()
            if sum(m.file_size for m in members) > MAX_SCORE_XML_BYTES:
                raise ScoreError(f"{name} inflates to more than {MAX_SCORE_XML_BYTES // 2**20} MiB")
            container = _checked_xml(z.read("META-INF/container.xml"), name)
            rootfile = defused.fromstring(container).find(".//{*}rootfile")
            if rootfile is None or not rootfile.get("full-path"):
                raise ScoreError(f"{name} has no score listed in META-INF/container.xml")
            return _checked_xml(z.read(rootfile.get("full-path")), name)
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError) as exc:
        raise ScoreError(f"{name} is not a readable .mxl archive") from exc


def _midi_file(data: bytes, name: str) -> mido.MidiFile:
    """A MIDI score parsed once, refused before parsing when too large and before analysis when it
    holds too many notes."""
    if len(data) > MAX_MIDI_BYTES:
        raise ScoreError(f"{name} is larger than {MAX_MIDI_BYTES // 2**20} MiB, too large for a MIDI score")
    try:
        midi = mido.MidiFile(file=io.BytesIO(data))
    except Exception as exc:
        raise ScoreError(f"cannot read {name} as MIDI ({str(exc)[:120] or type(exc).__name__})") from exc
    notes = sum(1 for track in midi.tracks for m in track if m.type == "note_on" and m.velocity > 0)
    _check_note_count(notes, name)
    return midi


def _check_note_count(count: int, name: str) -> None:
    if count > MAX_SCORE_NOTES:
        raise ScoreError(f"{name} has {count} notes; a score may have at most {MAX_SCORE_NOTES}")


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
    """Notes whose pitch is still sounding from another voice: a pianist plays them once.

    Per pitch, in onset order: held when an earlier note of the same pitch ends after this onset. A note
    that starts just as another voice's note of its key ends is struck again (on the ASAP benchmark's 24
    tuning pieces no performer left one out). One pass with a running maximum (linear, not quadratic).
    """
    held = np.zeros(len(na), dtype=bool)
    ends = na["onset_div"] + na["duration_div"]
    for pitch in np.unique(na["pitch"]):
        idx = np.flatnonzero(na["pitch"] == pitch)
        idx = idx[np.argsort(na["onset_div"][idx], kind="stable")]
        latest_end = -np.inf  # the latest end among earlier notes of this pitch
        for i in idx:
            held[i] = na["onset_div"][i] < latest_end
            latest_end = max(latest_end, ends[i])
    return held


def load_score(path: str | Path, unfold_repeats: bool = True) -> Score:
    """Load a score (MusicXML, MXL or MIDI); raise `ScoreError` with one line if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ScoreError(f"no score file at {path}")
    if path.stat().st_size > MAX_SCORE_FILE_BYTES:
        raise ScoreError(f"{path.name} is larger than {MAX_SCORE_FILE_BYTES // 2**20} MiB")
    return score_from_bytes(path.read_bytes(), path.suffix, path.name, unfold_repeats, str(path))


def score_from_bytes(data: bytes, suffix: str, name: str, unfold_repeats: bool = True,
                     path: str | None = None) -> Score:
    """Parse a score held in memory (`suffix` says which kind); raise `ScoreError` if it is not a safe one.

    Nothing is fetched, entities are refused, archives and note counts are bounded before parsing.
    """
    suffix = suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise ScoreError(f"unsupported score type '{suffix}' (use .musicxml, .xml, .mxl, .mid or .midi)")
    if len(data) > MAX_SCORE_FILE_BYTES:
        raise ScoreError(f"{name} is larger than {MAX_SCORE_FILE_BYTES // 2**20} MiB")
    try:
        if suffix in MIDI_SUFFIXES:
            loaded = pt.load_score_midi(_midi_file(data, name))
        else:
            xml = _mxl_root(data, name) if suffix == ".mxl" else _checked_xml(data, name)
            loaded = pt.load_musicxml(io.BytesIO(xml))
        parts = [p for p in loaded.parts if len(p.notes_tied)]
        if not parts:
            raise ScoreError(f"{name} contains no notes")
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
        raise ScoreError(f"cannot read {name} as a score ({first})") from exc
    if len(na) == 0:
        raise ScoreError(f"{name} contains no notes")
    _check_note_count(len(na), name)
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
    return Score(path=path or name, note_array=na, bars=table, part=part, from_midi=suffix in MIDI_SUFFIXES)


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
