"""Per-take inputs of the model's heads (descriptors, constrained answers): fixed-length vectors, note arrays in.

Eight streams, all from what one `analyze` already computes (no second transcription pass):
- `take_statistics`: 16 statistics of the transcribed notes and pedal (the statistics baseline's input);
- `aligned_statistics`: the score-aligned performance — per-bar tempo, timing, velocity, articulation,
  asynchrony and balance deviations, and how much of the score was played as written;
- `rubric_statistics`: what the analysis found, per bar played: the rate of each kind of stated issue and the
  share of score notes played wrong, missed or extra;
- `texture_statistics`: the figures the notes make — steps, leaps, repeated and alternating keys at the top,
  octaves and double notes in chords, how detached the notes are;
- `audio_statistics`: the sound itself, from the model's log-mel front end — gain-free level movement,
  onset sharpness, decay (touch, pedal resonance, room) and the early/late level difference;
- `tempo_statistics`: the played tempo against the tempo the score marks (the choice of tempo cannot be
  judged from the playing alone);
- `tonality_statistics`: the mode and key clarity of the pitches played (listeners hear a minor passage as
  darker: on PercePiano most of the bright–dark and pleasant–dark variance lies between passages);
- `written_statistics`: what the score asks beyond the notes — dynamic level and span, accents, hairpins,
  written pedal and slurs (`analysis.marks`): a passage marked pp under the pedal sounds softer and wetter in
  every player's hands.
"""

from __future__ import annotations

import numpy as np
import torch
from partitura.musicanalysis.key_identification import KRUMHANSL_KESSLER

from llaqo_model.analysis.metrics import onset_clusters
from llaqo_model.analysis.report import NOTE_ERROR_KINDS, IssueKind, PerformanceReport

N_BANDS = 8  # log-mel bands of the spectral-shape summary (low to high)
MIN_IOI_S = 0.03  # onsets closer than this are one chord
MAX_IOI_S = 3.0  # longer gaps are pauses, not the pulse


def _safe(values: list[float] | np.ndarray, fn, default: float = 0.0) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[np.isfinite(arr)]
    return float(fn(arr)) if arr.size else default


def take_statistics(report: PerformanceReport) -> np.ndarray:
    """16 statistics of the transcribed notes and pedal (notes/s, IOI spread, velocity, duration, pedal, pitch)."""
    notes = report.notes
    duration = max(report.duration_s, 1e-3)
    out = np.zeros(16, dtype=np.float32)
    if len(notes) < 2:
        return out
    onset = np.array([n.onset for n in notes])
    length = np.maximum(np.array([n.offset - n.onset for n in notes]), 1e-3)
    vel = np.array([n.velocity for n in notes], dtype=float)
    pitch = np.array([n.pitch for n in notes], dtype=float)
    ioi = np.diff(np.unique(np.round(onset / MIN_IOI_S)) * MIN_IOI_S)
    ioi = ioi[ioi < MAX_IOI_S]
    following = np.r_[np.diff(onset), np.inf]
    legato = np.mean(length[np.isfinite(following)] >= following[np.isfinite(following)]) if len(notes) > 1 else 0.0
    pedal_time = sum(max(0.0, p.offset - p.onset) for p in report.pedal)
    corr = np.corrcoef(pitch, vel)[0, 1] if np.std(pitch) > 0 and np.std(vel) > 0 else 0.0
    out[:] = [
        len(notes) / duration,
        _safe(np.log(ioi), np.std),
        vel.mean() / 127,
        vel.std() / 127,
        (np.percentile(vel, 90) - np.percentile(vel, 10)) / 127,
        np.log(length).mean(),
        np.log(length).std(),
        legato,
        min(1.0, pedal_time / duration),
        len(report.pedal) / duration,
        pitch.mean() / 127,
        corr,
        np.abs(np.diff(vel)).mean() / 127,
        _safe(np.log(ioi), np.mean),
        np.log(duration),
        pitch.std() / 127,
    ]
    return out


def aligned_statistics(report: PerformanceReport) -> np.ndarray:
    """12 statistics of the score-aligned performance (zeros where the take was not aligned to a score)."""
    out = np.zeros(12, dtype=np.float32)
    a, m = report.alignment, report.measures
    if a is None or not report.bars:
        return out
    bars = report.bars
    tempo = [b.tempo_bpm for b in bars if b.tempo_bpm]
    vel = [b.mean_velocity for b in bars if b.mean_velocity is not None]
    dev = [b.onset_deviation_ms for b in bars if b.onset_deviation_ms is not None]
    art = [b.articulation_ratio for b in bars if b.articulation_ratio is not None]
    played = max(a.score_notes, 1)
    out[:] = [
        np.log(max(m.tempo_bpm or 60.0, 1.0)),
        m.tempo_cv or 0.0,
        _safe(
            np.log(np.asarray(tempo, dtype=float) + 1e-3), lambda x: np.mean(np.abs(np.diff(x))) if x.size > 1 else 0.0
        ),
        _safe(dev, np.mean) / 100,
        _safe(dev, np.std) / 100,
        _safe(vel, np.std) / 127,
        _safe(art, np.mean),
        _safe(art, np.std),
        (m.chord_asynchrony_ms or 0.0) / 100,
        m.melody_balance or 0.0,
        a.coverage,
        (a.missed + a.extra + a.wrong) / played,
    ]
    return out


RUBRIC_KINDS: tuple[IssueKind, ...] = tuple(IssueKind)  # one rate per kind, in the enum's (stable) order


def rubric_statistics(report: PerformanceReport) -> np.ndarray:
    """Stated issues per bar played, one rate per `IssueKind`, then the share of score notes with a stated
    note error (zeros without a score)."""
    out = np.zeros(len(RUBRIC_KINDS) + 1, dtype=np.float32)
    if not report.bars:
        return out
    stated = [issue for _, issue in report.stated_issues()]
    for i, kind in enumerate(RUBRIC_KINDS):
        out[i] = sum(issue.kind == kind for issue in stated) / len(report.bars)
    score_notes = report.alignment.score_notes if report.alignment is not None else 0
    errors = sum(issue.kind in NOTE_ERROR_KINDS for issue in stated)
    out[-1] = min(1.0, errors / score_notes) if score_notes else 0.0
    return out


OCTAVE = 12
THIRD_TO_SIXTH = (3, 9)  # semitones between a chord's two top notes that make a double note
ARPEGGIO_LEAP = (3, 7)  # semitones between successive top notes: a broken-chord figure, not a step
TEXTURE_WIDTH = 8


def texture_statistics(report: PerformanceReport) -> np.ndarray:
    """8 shares of the take's figures, over its chords (notes struck together) and their top notes: octave
    and double-note chords, repeated / stepwise / leaping / alternating (trill-like) top notes, chords of
    three or more notes, and the median note length over the median time between chords."""
    out = np.zeros(TEXTURE_WIDTH, dtype=np.float32)
    if len(report.notes) < 3:
        return out
    onsets = np.array([n.onset for n in report.notes])
    pitches = np.array([n.pitch for n in report.notes])
    lengths = np.array([n.offset - n.onset for n in report.notes])
    clusters = onset_clusters(onsets)
    middle = np.median(pitches)
    octaves = doubles = full = 0
    tops = []
    for c in clusters:
        chord = np.sort(pitches[c])
        upper = chord[chord >= middle] if len(chord) > 1 else chord
        if len(upper) >= 2:
            gap = upper[-1] - upper[-2]
            octaves += gap == OCTAVE
            doubles += THIRD_TO_SIXTH[0] <= gap <= THIRD_TO_SIXTH[1]
        full += len(chord) >= 3
        tops.append(int(chord[-1]))
    steps = np.diff(tops)
    size = np.abs(steps)
    trill = (size[:-1] <= 2) & (steps[:-1] == -steps[1:]) & (steps[:-1] != 0) if len(steps) >= 3 else np.zeros(1)
    starts = np.array([onsets[c].min() for c in clusters])
    pulse = np.median(np.diff(starts)) if len(starts) > 1 else 1.0
    n, m = len(clusters), max(len(steps), 1)
    out[:] = [
        octaves / n,
        doubles / n,
        np.sum(size == 0) / m,
        np.sum((size >= 1) & (size <= 2)) / m,
        np.sum((size >= ARPEGGIO_LEAP[0]) & (size <= ARPEGGIO_LEAP[1])) / m,
        float(np.mean(trill)),
        full / n,
        min(4.0, float(np.median(lengths)) / max(float(pulse), 1e-3)),
    ]
    return out


TEMPO_WIDTH = 4


def tempo_statistics(report: PerformanceReport) -> np.ndarray:
    """Whether the score marks a tempo, and the played tempo against it: log ratio, its size, and how much
    slower (zeros where either tempo is unknown, which the heads read as "no evidence")."""
    out = np.zeros(TEMPO_WIDTH, dtype=np.float32)
    played, written = report.measures.tempo_bpm, report.measures.written_tempo_bpm
    if not played or not written:
        return out
    ratio = float(np.log(played / written))
    out[:] = [1.0, ratio, abs(ratio), max(-ratio, 0.0)]
    return out


TONALITY_WIDTH = 3
FIFTH, RELATIVE_MINOR = 7, 9  # semitones: one sharp more moves the major tonic a fifth up; its minor is a sixth up
MAX_SOUNDING_S = 2.0  # a note's weight in the pitch-class profile: its length, capped (pedal blurs the ends)


def tonality_statistics(report: PerformanceReport) -> np.ndarray:
    """The played pitch classes (weighted by capped note length) against the Krumhansl–Kessler key profiles:
    how much better a minor key fits than a major one — the key signature's relative minor against its major
    where the score gives one, the best of each otherwise —, the best key's fit (key clarity), and the
    pitch-class entropy in bits over its maximum (chromaticism); zeros for fewer than three notes."""
    out = np.zeros(TONALITY_WIDTH, dtype=np.float32)
    if len(report.notes) < 3:
        return out
    pitch_class = np.array([n.pitch % 12 for n in report.notes])
    sounding = np.clip([n.offset - n.onset for n in report.notes], 0.0, MAX_SOUNDING_S)
    profile = np.bincount(pitch_class, weights=sounding, minlength=12)
    if profile.sum() <= 0 or np.ptp(profile) == 0:
        return out
    fits = np.corrcoef(profile, KRUMHANSL_KESSLER)[0, 1:]  # 12 major keys, then 12 minor
    fifths = report.measures.written_key_fifths
    if fifths is None:
        minor_over_major = fits[12:].max() - fits[:12].max()
    else:
        tonic = (FIFTH * fifths) % 12
        minor_over_major = fits[12 + (tonic + RELATIVE_MINOR) % 12] - fits[tonic]
    shares = profile[profile > 0] / profile.sum()
    out[:] = [minor_over_major, fits.max(), -(shares * np.log2(shares)).sum() / np.log2(12)]
    return out


WRITTEN_WIDTH = 9
TOP_LEVEL = 8.0  # fff on `marks.DYNAMIC_LEVELS`' steps
MIN_MARKED_BARS = 3  # bars with a level and a velocity before the playing's answer to the marks is measured


def written_statistics(report: PerformanceReport) -> np.ndarray:
    """The score's marks for the passage played and how the playing answers them: whether it marks dynamics,
    the mean level in force and its span (over fff), accents and hairpins per bar, the shares of notes under a
    written pedal and under a slur, then — where the marked level changes across the take's bars — the
    correlation of each bar's mean velocity with its written level and the velocity gained per step
    (over 127); zeros without an aligned score."""
    out = np.zeros(WRITTEN_WIDTH, dtype=np.float32)
    marks = report.measures.written_marks
    if marks is None:
        return out
    pairs = np.array(
        [
            (level, bar.mean_velocity)
            for level, bar in zip(marks.bar_levels, report.bars, strict=False)
            if level is not None and bar.mean_velocity is not None
        ],
        dtype=float,
    ).reshape(-1, 2)
    follows = slope = 0.0
    if len(pairs) >= MIN_MARKED_BARS and np.ptp(pairs[:, 0]) > 0 and np.ptp(pairs[:, 1]) > 0:
        follows = float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])
        slope = float(np.polyfit(pairs[:, 0], pairs[:, 1], 1)[0]) / 127
    out[:] = [
        float(marks.dynamic_level is not None),
        (marks.dynamic_level or 0.0) / TOP_LEVEL,
        (marks.dynamic_span or 0.0) / TOP_LEVEL,
        marks.accents_per_bar,
        marks.hairpins_per_bar,
        marks.pedal_share,
        marks.slur_share,
        follows,
        slope,
    ]
    return out


def audio_statistics(windows: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """10 statistics of how the sound moves, from the model's normalised log-mel windows (gain-free).

    Level movement, onset sharpness, decay, and the brightness change between loud and soft frames; not the
    average spectral shape, which describes the piano and the microphone more than the playing (with it,
    validation R² on an unseen piano sound fell).
    """
    frames = torch.cat([w[: int(n)] for w, n in zip(windows, lengths, strict=True)]).float().numpy()
    out = np.zeros(10, dtype=np.float32)
    if frames.shape[0] < 8:
        return out
    loud = np.log(np.exp(frames * 4).sum(axis=1)) / 4  # soft maximum over bands: a frame's level
    active = loud > np.percentile(loud, 30)
    shape = frames[active] - loud[active, None]
    bands = np.array_split(np.arange(frames.shape[1]), N_BANDS)
    flux = np.maximum(np.diff(frames, axis=0), 0).mean(axis=1)
    fall = np.minimum(np.diff(loud), 0)
    half = len(loud) // 2
    out[:] = [
        loud.std(),
        np.percentile(loud, 95) - np.percentile(loud, 10),
        flux.mean(),
        flux.std(),
        np.percentile(flux, 95),
        fall.mean(),
        active.mean(),
        np.mean(np.abs(np.diff(loud))),
        loud[half:].mean() - loud[:half].mean(),
        (shape[:, bands[-1]].mean(axis=1) - shape[:, bands[0]].mean(axis=1)).std(),
    ]
    return out


# (stream name, width): the order of the head's input vector
STREAMS: tuple[tuple[str, int], ...] = (
    ("statistics", 16),
    ("aligned", 12),
    ("rubric", len(RUBRIC_KINDS) + 1),
    ("texture", TEXTURE_WIDTH),
    ("audio", 10),
    ("tempo", TEMPO_WIDTH),
    ("tonality", TONALITY_WIDTH),
    ("written", WRITTEN_WIDTH),
)
ALL_STREAMS = tuple(name for name, _ in STREAMS)
INPUT_WIDTH = sum(width for _, width in STREAMS)  # every stream; caches of inputs are kept per width


def stream_slices(streams: tuple[str, ...]) -> dict[str, slice]:
    """Where each used stream sits in the input vector."""
    out, start = {}, 0
    for name, width in STREAMS:
        if name in streams:
            out[name] = slice(start, start + width)
            start += width
    return out


def select_streams(inputs: np.ndarray, streams: tuple[str, ...]) -> np.ndarray:
    """The columns of `streams` (in `STREAMS` order) from rows holding every stream."""
    full = stream_slices(ALL_STREAMS)
    return np.concatenate([inputs[:, full[name]] for name, _ in STREAMS if name in streams], axis=1)


def head_inputs(report: PerformanceReport, windows: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
    """One take's every stream (INPUT_WIDTH, in `STREAMS` order), from its report and its prepared log-mel
    windows; a head reads its own columns with `select_streams`."""
    return np.concatenate(
        [
            take_statistics(report),
            aligned_statistics(report),
            rubric_statistics(report),
            texture_statistics(report),
            audio_statistics(windows, lengths),
            tempo_statistics(report),
            tonality_statistics(report),
            written_statistics(report),
        ]
    ).astype(np.float32)
