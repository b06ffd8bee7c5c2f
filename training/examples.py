"""Takes with known mistakes, rendered from music21's public-domain corpus (tests and the shipped example)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import music21
import numpy as np
import soundfile as sf

from llaqo_model.analysis.report import Note
from llaqo_model.analysis.score import Score, load_score
from llaqo_training.render import render_notes

EXAMPLE_PIECE = "bach/bwv66.6"


def mechanical_performance(
    score: Score, bpm: float = 80.0, velocity: int = 72, start_s: float = 0.5, legato: float = 0.95
) -> list[Note]:
    """Play every score note exactly in time at a fixed tempo (beats of the time signature)."""
    na = score.note_array
    beat_s = 60.0 / bpm
    first = float(na["onset_beat"].min())
    notes = [
        Note(
            onset=round(start_s + (float(n["onset_beat"]) - first) * beat_s, 4),
            offset=round(
                start_s + (float(n["onset_beat"]) - first + legato * float(n["duration_beat"])) * beat_s, 4
            ),
            pitch=int(n["pitch"]),
            velocity=velocity,
        )
        for n in na
        if not n["is_grace"]
    ]
    return sorted(notes, key=lambda n: (n.onset, n.pitch))


def performed_note(score: Score, notes: list[Note], s: int, bpm: float = 80.0, start_s: float = 0.5) -> int:
    """Index into `notes` (from `mechanical_performance`) of score note `s` (an index into the note array)."""
    na = score.note_array
    onset = round(start_s + (float(na["onset_beat"][s]) - float(na["onset_beat"].min())) * 60.0 / bpm, 4)
    return next(i for i, n in enumerate(notes) if n.onset == onset and n.pitch == int(na["pitch"][s]))


def note_in_bar(
    score: Score, notes: list[Note], bar: int, which: int = 0, bpm: float = 80.0, start_s: float = 0.5
) -> int:
    """Index into `notes` (from `mechanical_performance`) of the `which`-th score note of `bar`."""
    na = score.note_array
    in_bar = np.flatnonzero((na["bar"] == bar) & (~na["is_grace"].astype(bool)))
    in_bar = in_bar[np.lexsort((na["pitch"][in_bar], na["onset_beat"][in_bar]))]
    return performed_note(score, notes, int(in_bar[which]), bpm, start_s)


def write_music21_score(piece: str, path: str | Path) -> Path:
    """Write a music21 corpus piece (e.g. 'bach/bwv66.6') as MusicXML."""
    path = Path(path)
    music21.corpus.parse(piece).write("musicxml", fp=str(path))
    return path


@dataclass
class ExampleTake:
    """A rendered take and what is wrong in it."""

    audio: Path
    score: Path
    mistake_bar: int
    played: str
    written: str


def make_example(
    out_dir: str | Path, piece: str = EXAMPLE_PIECE, bar: int = 6, bpm: float = 80.0
) -> ExampleTake:
    """Render `piece` with one wrong note (a semitone up) in `bar`; write score and FLAC to `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    score_path = write_music21_score(piece, out_dir / f"{Path(piece).name}.musicxml")
    score = load_score(score_path)
    notes = mechanical_performance(score, bpm=bpm)
    i = note_in_bar(score, notes, bar, which=0, bpm=bpm)
    written = notes[i].pitch
    notes[i] = replace(notes[i], pitch=written + 1)
    audio_path = out_dir / f"{Path(piece).name}_take.flac"
    sf.write(str(audio_path), render_notes(notes), 44100)
    return ExampleTake(audio_path, score_path, bar, str(written + 1), str(written))
