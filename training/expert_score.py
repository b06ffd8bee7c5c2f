"""An ASAP excerpt's score made to say what the expert played.

A corpus take's labels count only the faults injected into it: a take with none is labelled flawless. The
experts' performances depart from ASAP's editions, though — ornaments realised, octave doublings left out,
chords re-voiced, another edition's accidentals — and analysed against the edition those departures read as
wrong, missed and extra notes (about 0.8 stated note errors per 5 s on clean excerpts), so the answer head
learned that note errors hardly lower a rating. Rewriting the excerpt's MIDI score to follow the expert (the
notes the alignment paired with another key take the played key, the notes left out go, the notes added come
in where the expert played them) makes the analysis of the clean take find what its labels say: nothing.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mido
import numpy as np

from llaqo_model.analysis.align import align_to_score
from llaqo_model.analysis.report import Note
from llaqo_model.analysis.score import Score, load_score
from llaqo_training.midi_score import META, TickEvent, note_events, save_track


def follow_expert(score: Score, path: Path, notes: list[Note]) -> Score:
    """Rewrite the MIDI score at `path` (the excerpt `score` was loaded from) to match the performed `notes`,
    and load it again; `score` (and its file) unchanged when the performance does not match it well enough
    to pair notes, or when the rewritten score would have other bars."""
    alignment = align_to_score(score, notes)
    if not alignment.summary.matches_score or alignment.time_map is None or len(alignment.time_map.beats) < 2:
        return score
    na = score.note_array
    keep = np.ones(len(na), dtype=bool)
    keep[alignment.missed] = False
    pitch = na["pitch"].astype(int)
    for s, p in alignment.wrong:
        pitch[s] = notes[p].pitch
    onsets = [float(q) for q in na["onset_quarter"][keep]]
    ends = [float(q + d) for q, d in zip(na["onset_quarter"][keep], na["duration_quarter"][keep], strict=True)]
    pitches = [int(p) for p in pitch[keep]]
    beats, first = np.unique(na["onset_beat"], return_index=True)  # beats → quarters, from the score's own notes
    quarters = na["onset_quarter"][first]
    time_map = alignment.time_map
    for p in alignment.extra:
        on, off = np.interp([notes[p].onset, notes[p].offset], time_map.seconds, time_map.beats)
        onsets.append(float(np.interp(on, beats, quarters)))
        ends.append(float(np.interp(off, beats, quarters)))
        pitches.append(notes[p].pitch)
    rewritten = path.with_name(f"{path.stem}.expert{path.suffix}")
    rewrite_midi_notes(path, rewritten, onsets, ends, pitches)
    followed = load_score(rewritten)
    if list(followed.bars["bar"]) != list(score.bars["bar"]):
        rewritten.unlink()
        return score
    rewritten.replace(path)
    return replace(followed, path=str(path))


def rewrite_midi_notes(path: Path, out: Path, onsets: list[float], ends: list[float], pitches: list[int]) -> None:
    """Write to `out` the one-track MIDI score at `path` with these notes instead of its own (times in
    quarters from its start), keeping its time signatures, tempo and length."""
    midi = mido.MidiFile(str(path))
    per_quarter = midi.ticks_per_beat
    events: list[TickEvent] = []
    now = 0
    for msg in midi.tracks[0]:
        now += msg.time
        if msg.is_meta and msg.type != "end_of_track":
            events.append((now, META, msg))
    for on_q, end_q, pitch in zip(onsets, ends, pitches, strict=True):
        events += note_events(int(round(on_q * per_quarter)), int(round(end_q * per_quarter)), pitch)
    save_track(events, now, per_quarter, out)
