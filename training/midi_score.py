"""One-track MIDI scores written from timed events: the corpus's excerpt scores and their rewrites."""

from __future__ import annotations

from pathlib import Path

import mido

META, NOTE_OFF, NOTE_ON = 0, 1, 2  # order of events at the same tick: a note ends before the next one starts
TickEvent = tuple[int, int, mido.Message]  # (tick, order at that tick, message)
MIN_TICKS = 1  # a note lasts at least one tick, or the MIDI reader drops it


def note_events(on: int, off: int, pitch: int) -> list[TickEvent]:
    """A score note's note-on and note-off (velocity 64: a score's notes carry no dynamics)."""
    off = max(off, on + MIN_TICKS)
    return [
        (on, NOTE_ON, mido.Message("note_on", note=pitch, velocity=64)),
        (off, NOTE_OFF, mido.Message("note_off", note=pitch, velocity=0)),
    ]


def save_track(events: list[TickEvent], end_tick: int, ticks_per_beat: int, out: Path) -> None:
    """Write the events, in time order, as a one-track MIDI file that ends at `end_tick` (its last bar line)."""
    track = mido.MidiTrack()
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
    mido.MidiFile(ticks_per_beat=ticks_per_beat, tracks=[track]).save(str(out))
