"""Source material: ASAP scores with real expert performances, music21's public-domain corpus, and
generated technique exercises. Each source yields `Piece`s; `base_take` cuts or performs an excerpt
(10–40 s, cut at bar lines) and writes the excerpt's score next to it.
"""

from __future__ import annotations

import copy
import csv
import functools
import hashlib
import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pretty_midi

from llaqo_model.analysis.report import TECHNIQUES
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.io import read_performance_midi
from llaqo_training.expert_score import follow_expert
from llaqo_training.midi_score import META, TickEvent, note_events, save_track
from llaqo_training.performance import NOTE_DTYPE, PEDAL_DTYPE, Take, cut_performance, perform_score

log = logging.getLogger(__name__)

PERIODS = {
    "Bach": "Baroque",
    "Handel": "Baroque",
    "Haydn": "Classical",
    "Mozart": "Classical",
    "Beethoven": "Classical",
    "C. P. E. Bach": "Classical",
    "Schubert": "Romantic",
    "Chopin": "Romantic",
    "Schumann": "Romantic",
    "Clara Schumann": "Romantic",
    "Liszt": "Romantic",
    "Brahms": "Romantic",
    "Balakirev": "Romantic",
    "Glinka": "Romantic",
    "Joplin": "Ragtime",
    "Debussy": "Impressionist",
    "Ravel": "Impressionist",
    "Scriabin": "Late Romantic",
    "Rachmaninoff": "Late Romantic",
    "Prokofiev": "20th century",
}
MUSIC21_PIANO = {
    "joplin/maple_leaf_rag.mxl": ("Joplin", "Maple Leaf Rag", 1.0),
    "schumann_clara/polonaise_op1n1.mxl": ("Clara Schumann", "Polonaise op. 1 no. 1", 1.0),
    "schumann_clara/polonaise_op1n2.mxl": ("Clara Schumann", "Polonaise op. 1 no. 2", 1.0),
    "schumann_clara/polonaise_op1n3.mxl": ("Clara Schumann", "Polonaise op. 1 no. 3", 1.0),
    "schumann_clara/polonaise_op1n4.mxl": ("Clara Schumann", "Polonaise op. 1 no. 4", 1.0),
    "cpebach/h186.mxl": ("C. P. E. Bach", "Sonata H. 186", 1.0),
}
MUSIC21_SONATA_FORMS = ("mozart/k155", "mozart/k156", "mozart/k157", "mozart/k158", "haydn/opus1no1")
KEYS = ("C", "G", "D", "A", "E", "F", "B-", "E-", "A-")
MIN_NOTE_S = 0.02  # a zero-length MIDI note still sounds; give it the shortest audible duration
EXERCISE_VARIANTS = 3


def shared_root() -> Path:
    """../shared relative to the repository root, or $LLAQO_SHARED."""
    env = os.environ.get("LLAQO_SHARED")
    return Path(env) if env else Path(__file__).resolve().parent.parent.parent / "shared"


@dataclass
class Piece:
    """A piece (the unit of the train/val/test split) and where its material comes from."""

    id: str
    source: str
    title: str
    composer: str | None
    ref: dict[str, Any] = field(default_factory=dict)

    @property
    def period(self) -> str | None:
        """Stylistic period, when the composer is known."""
        return PERIODS.get(self.composer or "")


def split_of(piece_id: str, val: float = 0.1, test: float = 0.1) -> str:
    """Deterministic split by piece: the same piece always lands in the same split."""
    h = int(hashlib.sha1(piece_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test else "val" if h < test + val else "train"


def asap_pieces(root: Path, skipped: list[str]) -> list[Piece]:
    """ASAP pieces (one per folder) with their performances whose files are all present."""
    meta = root / "metadata.csv"
    if not meta.is_file():
        skipped.append(f"ASAP: no metadata.csv under {root}")
        return []
    pieces: dict[str, Piece] = {}
    with meta.open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            files = {k: root / row[k] for k in ("midi_performance", "performance_annotations", "midi_score")}
            files["score_annotations"] = root / row["midi_score_annotations"]
            missing = [k for k, p in files.items() if not p.is_file()]
            if missing:
                skipped.append(f"ASAP {row['midi_performance']}: missing {', '.join(missing)}")
                continue
            folder = row["folder"]
            piece = pieces.setdefault(
                folder,
                Piece(
                    id=f"asap:{folder}",
                    source="asap",
                    title=folder.split("/", 1)[1].replace("_", " ").replace("/", " "),
                    composer=row["composer"],
                    ref={"folder": folder, "performances": []},
                ),
            )
            piece.ref["performances"].append({k: str(p) for k, p in files.items()})
    return list(pieces.values())


def music21_pieces(max_chorales: int = 160, max_folk: int = 160) -> list[Piece]:
    """Public-domain scores from music21's corpus: chorales, folk tunes, sonata-form movements, piano pieces."""
    from music21 import corpus

    paths = sorted(str(p).split("corpus/", 1)[1] for p in corpus.getCorePaths())
    chorales = [p for p in paths if re.match(r"bach/bwv\d+\.\d+\.mxl$", p)][:max_chorales]
    folk = [p for p in paths if p.startswith("ryansMammoth/")][:max_folk]
    sonata = [p for p in paths if p.startswith(MUSIC21_SONATA_FORMS) and p.endswith(".mxl")]
    out = [Piece(f"m21:{p}", "music21", f"Chorale {Path(p).stem}", "Bach", {"path": p, "qpm": 72}) for p in chorales]
    out += [Piece(f"m21:{p}", "music21", _tune_title(p), None, {"path": p, "qpm": 104, "folk": True}) for p in folk]
    for p in sonata:
        composer = "Mozart" if p.startswith("mozart") else "Haydn"
        title = f"{composer} {p.split('/')[1].upper()} {Path(p).stem}"
        out.append(Piece(f"m21:{p}", "music21", title, composer, {"path": p, "qpm": 96}))
    for p, (composer, title, _) in MUSIC21_PIANO.items():
        if p in paths:
            out.append(Piece(f"m21:{p}", "music21", title, composer, {"path": p, "qpm": 90}))
    return out


def _tune_title(path: str) -> str:
    stem = Path(path).stem
    return "Folk tune: " + re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)


def exercise_pieces() -> list[Piece]:
    """Technique exercises: every technique in several keys and variants (each its own piece)."""
    return [
        Piece(
            f"exercise:{t}:{k}:{v}",
            "exercise",
            f"{t.replace('_', ' ').capitalize()} exercise in {k.replace('-', ' flat')} major",
            None,
            {"technique": t, "key": k, "variant": v},
        )
        for t in TECHNIQUES
        for k in KEYS
        for v in range(EXERCISE_VARIANTS)
    ]


def catalog(asap_root: Path | None, skipped: list[str], with_music21: bool = True) -> list[Piece]:
    """Every piece available here; problems are appended to `skipped`, never raised."""
    pieces: list[Piece] = []
    if asap_root is not None:
        if asap_root.is_dir():
            pieces += asap_pieces(asap_root, skipped)
        else:
            skipped.append(f"ASAP: {asap_root} not found (no real performances in this corpus)")
    if with_music21:
        try:
            pieces += music21_pieces()
        except Exception as exc:  # music21's corpus is optional material
            skipped.append(f"music21 corpus unavailable ({exc})")
    return pieces + exercise_pieces()


# ---------------------------------------------------------------- ASAP excerpts


def _annotations(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Beat and downbeat times from an ASAP annotation file."""
    beats, downbeats = [], []
    for line in Path(path).read_text().splitlines():
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        t = float(parts[0])
        beats.append(t)
        if parts[2].startswith("db"):
            downbeats.append(t)
    return np.array(beats), np.array(downbeats)


@functools.lru_cache(maxsize=8)
def _performance_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    notes, pedal = read_performance_midi(path)
    arr = np.zeros(len(notes), dtype=NOTE_DTYPE)
    arr["onset_sec"] = [n.onset for n in notes]
    arr["duration_sec"] = [max(n.offset - n.onset, MIN_NOTE_S) for n in notes]
    arr["pitch"] = [n.pitch for n in notes]
    arr["velocity"] = [n.velocity for n in notes]
    arr["staff"] = 1
    arr["score_id"] = -1
    return arr, np.array(sorted((p.onset, p.offset) for p in pedal), dtype=PEDAL_DTYPE)


def _choose_bars(downbeats: np.ndarray, rng: np.random.Generator, target_s: float) -> tuple[int, int] | None:
    """Downbeat indices (first, last) spanning about `target_s` seconds (10–40 s), or None."""
    n = len(downbeats)
    starts = [i for i in range(n - 2) if downbeats[-1] - downbeats[i] >= min(target_s, 10.0)]
    if not starts:
        return None
    for _ in range(8):
        first = int(rng.choice(starts))
        ends = np.flatnonzero(downbeats - downbeats[first] >= target_s)
        last = int(ends[0]) if len(ends) else n - 1
        span = downbeats[last] - downbeats[first]
        if 10.0 <= span <= 40.0 and last - first >= 2:
            return first, last
    return None


def write_midi_excerpt(midi_score: str, start_s: float, end_s: float, out: Path, played_s: float) -> None:
    """Write the notes of a MIDI score between two times (a bar-line cut) as a MIDI score of its own, marked
    with the tempo at which the expert played those bars in `played_s` seconds (the tempo the take's labels
    measure a wrong tempo against, as a teacher's score marks the tempo a student is judged by)."""
    pm = pretty_midi.PrettyMIDI(midi_score)
    t0, t1 = pm.time_to_tick(start_s), pm.time_to_tick(end_s)
    quarters = (t1 - t0) / pm.resolution
    ts_events = [(0, pm.time_signature_changes[0])] if pm.time_signature_changes else []
    for ts in pm.time_signature_changes:
        tick = pm.time_to_tick(ts.time)
        if tick <= t0:
            ts_events = [(0, ts)]
        elif tick < t1:
            ts_events.append((tick - t0, ts))
    events: list[TickEvent] = []
    for tick, ts in ts_events:
        signature = mido.MetaMessage("time_signature", numerator=ts.numerator, denominator=ts.denominator)
        events.append((tick, META, signature))
    events.append((0, META, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(60 * quarters / max(played_s, 1e-3)))))
    for inst in pm.instruments:
        for n in inst.notes:
            on = pm.time_to_tick(n.start)
            if t0 <= on < t1:
                events += note_events(on - t0, min(pm.time_to_tick(n.end), t1) - t0, n.pitch)
    save_track(events, t1 - t0, pm.resolution, out)


def asap_take(piece: Piece, rng: np.random.Generator, target_s: float, out_dir: Path) -> Take:
    """A real expert performance cut at bar lines, with its MIDI-score excerpt (bars numbered from 1)."""
    perf = piece.ref["performances"][int(rng.integers(len(piece.ref["performances"])))]
    notes, pedal = _performance_arrays(perf["midi_performance"])
    beats, downbeats = _annotations(perf["performance_annotations"])
    _, score_downbeats = _annotations(perf["score_annotations"])
    if len(downbeats) != len(score_downbeats):
        raise ValueError("performance and score annotations have different bar counts")
    chosen = _choose_bars(downbeats, rng, target_s)
    if chosen is None:
        raise ValueError("no excerpt of 10–40 s between bar lines")
    first, last = chosen
    take = cut_performance(notes, pedal, downbeats, first, last, beats)
    score_path = out_dir / "score.mid"
    played_s = downbeats[last] - downbeats[first]
    write_midi_excerpt(perf["midi_score"], score_downbeats[first], score_downbeats[last], score_path, played_s)
    score = load_score(score_path)
    take.meta.update(performer=Path(perf["midi_performance"]).stem, first_bar_in_piece=first + 1)
    if len(score.bars) == last - first:
        score = follow_expert(score, score_path, take.to_notes()[0])
        take.meta.update(score=str(score_path), score_obj=score)
    else:
        score_path.unlink()
        take.meta["score_note"] = "excerpt score bars did not match the annotations; score withheld"
    return take


# ---------------------------------------------------------------- music21 excerpts and exercises


@functools.lru_cache(maxsize=4)
def _parse_music21(path: str) -> Any:
    from music21 import corpus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return corpus.parse(path)


_REPEAT_TAGS = re.compile(r"<repeat\b[^>]*/>|<ending\b[^>]*/>|<ending\b[^>]*>[^<]*</ending>")


def _strip_repeats(path: Path) -> None:
    """Excerpts are played straight through: drop repeat barlines and volta brackets from the MusicXML."""
    path.write_text(_REPEAT_TAGS.sub("", path.read_text(encoding="utf-8")), encoding="utf-8")


def with_accompaniment(excerpt: Any) -> Any:
    """A folk melody with a left-hand part: per bar the I, IV or V triad that best fits the melody."""
    from music21 import chord, clef, stream

    melody = excerpt.parts[0] if excerpt.parts else excerpt
    key = excerpt.analyze("key")
    tonic = key.tonic
    triads = [[tonic.transpose(i) for i in (0, 4 if key.mode == "major" else 3, 7)]]
    triads.append([p.transpose(5) for p in triads[0]])
    triads.append([tonic.transpose(i) for i in (7, 11, 14)])
    bass = stream.Part()
    for m in melody.getElementsByClass("Measure"):
        pcs = [n.pitch.pitchClass for n in m.recurse().notes if hasattr(n, "pitch")]
        best = max(triads, key=lambda t: sum(pc in {p.pitchClass for p in t} for pc in pcs))
        bm = stream.Measure(number=m.number)
        if m.number == melody.getElementsByClass("Measure")[0].number:
            bm.insert(0, clef.BassClef())
            ts = m.timeSignature or melody.recurse().getElementsByClass("TimeSignature").first()
            if ts is not None:
                bm.insert(0, ts.__class__(ts.ratioString))
        length = min(m.barDuration.quarterLength, m.duration.quarterLength)
        voiced = [p.transpose(-24 if p.octave and p.octave >= 4 else -12) for p in best]
        bm.append(chord.Chord(voiced, quarterLength=length))
        bass.append(bm)
    return stream.Score([melody, bass])


def _tempo_qpm(stream: Any, default: float) -> float:
    """The piece's first tempo mark in quarters a minute (a printed mark or a playback-only one, which is
    what a score reader takes as the tempo too), else `default`."""
    marks = list(stream.recurse().getElementsByClass("MetronomeMark"))
    qpm = marks[0].getQuarterBPM() if marks else None
    return float(qpm) if qpm else default


def mark_tempo(score: Any, qpm: float) -> Any:
    """A copy of a music21 score with a metronome mark (quarter = `qpm`) at its start unless it has one there
    (a copy: music21 shares measures between a piece and its excerpts, and keeps parsed pieces cached)."""
    from music21 import tempo

    marked = copy.deepcopy(score)
    first = marked.parts[0].getElementsByClass("Measure").first() if marked.parts else None
    if first is not None and first.getElementsByClass("MetronomeMark").getElementsByOffset(0).first() is None:
        first.insert(0, tempo.MetronomeMark(number=round(qpm)))
    return marked


def _beats_bpm(score: Score, qpm: float) -> float:
    """Tempo in the score's own beats (partitura beats are time-signature denominators)."""
    beat_type = int(score.note_array["ts_beat_type"][0]) if "ts_beat_type" in score.note_array.dtype.names else 4
    return qpm * beat_type / 4.0


def music21_take(piece: Piece, rng: np.random.Generator, target_s: float, out_dir: Path) -> Take:
    """An expressive performance of a bar-line excerpt of a music21 corpus piece (printed bar numbers kept)."""
    stream = _parse_music21(piece.ref["path"])
    if not stream.parts:
        raise ValueError("no parts")
    numbers = [m.number for m in stream.parts[0].getElementsByClass("Measure") if m.number is not None]
    bar_q = float(stream.parts[0].getElementsByClass("Measure")[min(1, len(numbers) - 1)].barDuration.quarterLength)
    written_qpm = _tempo_qpm(stream, piece.ref["qpm"])
    qpm = written_qpm * float(rng.uniform(0.9, 1.1))  # the performer's own tempo, near the marked one
    n_bars = int(np.clip(round(target_s / ((bar_q or 4.0) * 60.0 / qpm)), 2, max(len(numbers) - 1, 2)))
    runs = [
        i
        for i in range(1, len(numbers) - n_bars + 1)
        if all(b - a == 1 for a, b in zip(numbers[i : i + n_bars - 1], numbers[i + 1 : i + n_bars], strict=True))
    ]
    if not runs:
        raise ValueError("no run of consecutively numbered bars long enough")
    start = int(rng.choice(runs))
    first, last = numbers[start], numbers[start + n_bars - 1]
    score_path = out_dir / "score.musicxml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        excerpt = stream.measures(first, last)
        if piece.ref.get("folk"):
            excerpt = with_accompaniment(excerpt)
        excerpt = mark_tempo(excerpt, written_qpm)
        excerpt.write("musicxml", fp=str(score_path))
    _strip_repeats(score_path)
    score = load_score(score_path)
    bars = list(score.bars["bar"])
    if bars != sorted(set(bars)):
        raise ValueError("excerpt still repeats bars after stripping repeats")
    take = perform_score(score, rng, _beats_bpm(score, qpm), pedal_style="none" if piece.ref.get("folk") else "bar")
    take.meta.update(score=str(score_path), score_obj=score)
    return take


def exercise_figure(technique: str, key: str, variant: int) -> list[tuple[list[Any], float]]:
    """One cycle of a right-hand technique figure: (pitches, quarter length) events."""
    from music21 import scale

    sc = scale.MajorScale(key)
    up = list(sc.getPitches(f"{key}4", f"{key}{6 if variant == 2 else 5}"))
    triad = [p for p in up if sc.getScaleDegreeFromPitch(p) in (1, 3, 5)]
    if technique == "scales":
        return [([p], 0.25) for p in up + up[-2:0:-1]]
    if technique == "arpeggios":
        return [([p], 0.25) for p in (triad + triad[-2:0:-1]) * 2]
    if technique == "ornaments":
        out: list[tuple[list[Any], float]] = []
        for p in up[:8]:
            upper = sc.nextPitch(p)
            out += [([x], 0.125) for x in (p, upper, p, upper)] + [([p], 0.5)]
        return out
    if technique == "repeated_notes":
        return [([p], 0.25) for p in (up[:8] + up[6::-1])[:12] for _ in range(4)]
    if technique == "double_notes":
        thirds = [[p, up[i + 2]] for i, p in enumerate(up[:-2])]
        return [(c, 0.5) for c in thirds + thirds[::-1]]
    if technique == "octaves":
        return [([p, p.transpose(12)], 0.5) for p in up + up[-2::-1]]
    if technique == "staccato":
        return [([p], 0.5) for p in (triad + triad[::-1]) * 2]
    raise ValueError(f"unknown technique {technique}")


def exercise_stream(technique: str, key: str, variant: int, repeats: int = 1) -> Any:
    """A two-hand technique exercise as a music21 score (right hand = the technique, left hand support)."""
    from music21 import articulations, chord, clef, meter, note, scale, stream
    from music21 import key as m21key

    figure = exercise_figure(technique, key, variant) * max(1, repeats)
    rh, lh = stream.Part(), stream.Part()
    rh.append(m21key.Key(key))
    lh.append(m21key.Key(key))
    rh.append(meter.TimeSignature("4/4"))
    lh.append(meter.TimeSignature("4/4"))
    lh.append(clef.BassClef())
    for pitches, ql in figure:
        n = note.Note(pitches[0], quarterLength=ql) if len(pitches) == 1 else chord.Chord(pitches, quarterLength=ql)
        if technique == "staccato":
            n.articulations.append(articulations.Staccato())
        rh.append(n)
    total = sum(ql for _, ql in figure)
    pad = (-total) % 4
    if pad:
        rh.append(note.Rest(quarterLength=pad))
    bass = scale.MajorScale(key).getPitches(f"{key}2", f"{key}3")
    degrees = [0, 3, 4, 0] if variant != 1 else [0, 5, 3, 4]
    for i in range(int((total + pad) // 2)):
        root = bass[degrees[i % 4]]
        lh.append(chord.Chord([root, root.transpose(7)], quarterLength=2.0))
    rh.makeMeasures(inPlace=True)
    lh.makeMeasures(inPlace=True)
    return stream.Score([rh, lh])


EXERCISE_QPM = {
    "scales": (60, 100),
    "arpeggios": (56, 92),
    "ornaments": (50, 76),
    "repeated_notes": (60, 96),
    "double_notes": (60, 100),
    "octaves": (60, 104),
    "staccato": (80, 132),
}


def exercise_take(piece: Piece, rng: np.random.Generator, target_s: float, out_dir: Path) -> Take:
    """A generated technique exercise, written as MusicXML and played at a tempo suited to it."""
    technique = piece.ref["technique"]
    qpm = float(rng.uniform(*EXERCISE_QPM[technique]))
    cycle_s = sum(ql for _, ql in exercise_figure(technique, piece.ref["key"], piece.ref["variant"])) * 60.0 / qpm
    repeats = max(1, round(target_s / cycle_s))
    score_path = out_dir / "score.musicxml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exercise = exercise_stream(technique, piece.ref["key"], piece.ref["variant"], repeats)
        exercise = mark_tempo(exercise, qpm)
        exercise.write("musicxml", fp=str(score_path))
    score = load_score(score_path)
    take = perform_score(score, rng, _beats_bpm(score, qpm), staccato=technique == "staccato", expressive=0.5)
    take.meta.update(score=str(score_path), score_obj=score)
    return take


def base_take(piece: Piece, rng: np.random.Generator, target_s: float, out_dir: Path) -> Take:
    """The clean (expert or expressive) excerpt of `piece` that faults are later injected into."""
    make = {"asap": asap_take, "music21": music21_take, "exercise": exercise_take}[piece.source]
    take = make(piece, rng, target_s, out_dir)
    if len(take.notes) < 8:
        raise ValueError("excerpt has fewer than 8 notes")
    take.meta.setdefault("source", piece.source)
    return take
