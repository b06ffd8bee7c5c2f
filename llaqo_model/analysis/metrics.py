"""Rubric measures per bar and for the whole take (docs: ../shared/docs/rubric.md).

Score-free measures work on performed notes only; score-informed ones use the alignment.
Thresholds are deliberately conservative so that an expert's rubato is not flagged as a fault.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from llaqo_model.analysis.align import Alignment
from llaqo_model.analysis.report import (
    DEFAULT_MIN_CONFIDENCE,
    NOTE_ERROR_KINDS,
    Bar,
    Issue,
    IssueKind,
    Measures,
    Note,
    PedalInterval,
)
from llaqo_model.analysis.score import Score, pitch_name, spelled_name
from llaqo_model.analysis.transcribe import OnsetEvidence
from llaqo_model.analysis.verify import verify_issues

CHORD_WINDOW_S = 0.05
RUSH_RATIO = 1.3
DRAG_RATIO = 0.7
UNEVEN_MS = 90.0
ASYNC_MS = 70.0
BALANCE_MARGIN = 12.0
STACCATO_RATIO = 0.3
DYNAMIC_JUMP = 28.0
MIN_EXTRA_VELOCITY = 12
GRAZE_VELOCITY_RATIO = 0.6
UNCLEAR_MIN_ERRORS = 3
UNCLEAR_FRACTION = 0.3
GRAZE_DURATION_S = 0.05
RESTRIKE_WINDOW_S = 0.6
OVERTONE_WINDOW_S = 0.02
SLIP_SEMITONES = 2  # a finger landing on a neighbouring key: the slip a wrong note usually is


def _round(x: float | None, nd: int = 3) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def onset_clusters(onsets: np.ndarray, window_s: float = CHORD_WINDOW_S) -> list[np.ndarray]:
    """Group sorted onset indices whose onsets lie within `window_s` of the group's first onset."""
    order = np.argsort(onsets, kind="stable")
    groups: list[list[int]] = []
    for i in order:
        if groups and onsets[i] - onsets[groups[-1][0]] <= window_s:
            groups[-1].append(int(i))
        else:
            groups.append([int(i)])
    return [np.array(g) for g in groups]


def score_free_measures(
    notes: list[Note], pedal: list[PedalInterval], duration_s: float
) -> tuple[Measures, list[str]]:
    """Tempo (from inter-onset intervals), dynamics, articulation, asynchrony and pedal use."""
    measures = Measures(note_count=len(notes), notes_per_s=_round(len(notes) / max(duration_s, 1e-6)))
    pedal_time = sum(max(0.0, p.offset - p.onset) for p in pedal)
    measures.pedal_fraction = _round(min(1.0, pedal_time / max(duration_s, 1e-6)))
    measures.pedal_presses = len(pedal)
    available = ["pedal"]
    if len(notes) < 2:
        return measures, available
    onsets = np.array([n.onset for n in notes])
    offsets = np.array([n.offset for n in notes])
    velocity = np.array([n.velocity for n in notes], dtype=float)
    clusters = onset_clusters(onsets)
    starts = np.array([onsets[c].min() for c in clusters])
    spreads = [1000 * np.ptp(onsets[c]) for c in clusters if len(c) > 1]
    measures.asynchrony_ms = _round(np.mean(spreads), 1) if spreads else 0.0
    ioi = np.diff(starts)
    ioi = ioi[(ioi > 0.06) & (ioi < 2.0)]
    if len(ioi) >= 4:
        beat = float(np.median(ioi))
        while 60 / beat < 60:
            beat /= 2
        while 60 / beat > 180:
            beat *= 2
        local = np.array([np.median(ioi[max(0, i - 4) : i + 4]) for i in range(len(ioi))])
        measures.ioi_tempo_bpm = _round(60 / beat, 1)
        measures.ioi_cv = _round(float(np.std(local) / np.mean(local)))
        available.append("tempo")
    measures.velocity_mean = _round(float(velocity.mean()), 1)
    measures.velocity_std = _round(float(velocity.std()), 1)
    measures.velocity_range = _round(float(np.percentile(velocity, 95) - np.percentile(velocity, 5)), 1)
    edges = np.arange(0.0, duration_s + 2.0, 2.0)
    contour = [
        velocity[(onsets >= a) & (onsets < b)].mean()
        for a, b in zip(edges[:-1], edges[1:], strict=True)
        if np.any((onsets >= a) & (onsets < b))
    ]
    measures.velocity_contour = [_round(v, 1) for v in contour]
    measures.velocity_contour_std = _round(float(np.std(contour)), 1) if contour else None
    available.append("dynamics")
    next_start = np.interp(onsets, starts, np.append(starts[1:], starts[-1] + 1.0)[: len(starts)])
    gaps = np.maximum(next_start - onsets, 1e-3)
    ratio = np.clip((offsets - onsets) / gaps, 0, 4)
    measures.duration_ioi_ratio = _round(float(np.median(ratio)))
    measures.legato_overlap_fraction = _round(float(np.mean(offsets[:-1] > onsets[1:] + 0.01)))
    available += ["articulation", "asynchrony"]
    return measures, available


def build_bars(
    score: Score,
    alignment: Alignment,
    notes: list[Note],
    pedal: list[PedalInterval],
    evidence: OnsetEvidence | None = None,
) -> list[Bar]:
    """Per-bar figures and teacher-style issues (`score_measures` sums them up for the take). With the
    transcriber's `evidence`, every wrong, missed and extra note gets a confidence from the audio;
    without it (notes from MIDI, which is what was played) they are certain."""
    na = score.note_array
    tmap = alignment.time_map
    if tmap is None or alignment.in_take is None or not alignment.in_take.any():
        return []
    in_take = alignment.in_take
    take_start = float(na["onset_beat"][in_take].min())
    take_end = float((na["onset_beat"] + na["duration_beat"])[in_take].max())
    rows = [r for r in score.bars if r["end_beat"] > take_start and r["start_beat"] < take_end]
    matched = {s: p for s, p in alignment.matched}
    bars: list[Bar] = []
    for r in rows:
        start_s, end_s = (float(t) for t in tmap(np.array([r["start_beat"], r["end_beat"]])))
        bar = Bar(bar=int(r["bar"]), start_s=round(max(start_s, 0.0), 3), end_s=round(max(end_s, 0.0), 3))
        in_bar = in_take & (na["onset_beat"] >= r["start_beat"]) & (na["onset_beat"] < r["end_beat"])
        idx = np.flatnonzero(in_bar)
        bar.notes_expected = len(idx)
        pairs = [(s, matched[s]) for s in idx if s in matched]
        bar.notes_matched = len(pairs)
        if end_s - start_s > 1e-3 and len(pairs) >= 2:
            bar.tempo_bpm = round(float(60 * (r["end_beat"] - r["start_beat"]) / (end_s - start_s)), 1)
        _note_errors(bar, r, score, alignment, notes, pedal)
        if evidence is not None:
            verify_issues(bar.issues, evidence, notes)
        _mark_unclear(bar, notes)
        _bar_figures(bar, pairs, score, alignment, notes)
        bars.append(bar)
    _tempo_issues(bars)
    _dynamics_issues(bars)
    _pedal_issues(bars, pedal, score, alignment)
    return bars


def _note_errors(
    bar: Bar, row: np.void, score: Score, alignment: Alignment, notes: list[Note], pedal: list[PedalInterval]
) -> None:
    na = score.note_array

    def in_row(s: int) -> bool:
        return bool(row["start_beat"] <= na["onset_beat"][s] < row["end_beat"])

    def where(s: int) -> str:
        return f"beat {na['onset_beat'][s] - row['start_beat'] + 1:g}"

    def written(s: int) -> str:
        return spelled_name(na["step"][s], na["alter"][s], na["octave"][s])

    for s, p in alignment.wrong:
        if in_row(s):
            bar.issues.append(
                Issue(
                    kind=IssueKind.WRONG_NOTE,
                    detail=f"bar {bar.bar}: played {pitch_name(notes[p].pitch, score.key_fifths)} where the score "
                    f"has {written(s)} ({where(s)})",
                    time_s=round(notes[p].onset, 3),
                    pitch=notes[p].pitch,
                    expected_pitch=int(na["pitch"][s]),
                )
            )
    for s in alignment.missed:
        t = float(alignment.time_map(na["onset_beat"][s])) if alignment.time_map else 0.0
        if in_row(s) and not _still_sounding(int(na["pitch"][s]), t, notes, pedal):
            bar.issues.append(
                Issue(
                    kind=IssueKind.MISSED_NOTE,
                    detail=f"bar {bar.bar}: the {written(s)} on {where(s)} was not played",
                    time_s=round(max(t, 0.0), 3),
                    expected_pitch=int(na["pitch"][s]),
                )
            )
    for restart in alignment.restarts:
        if in_row(restart.score_note):
            bar.issues.append(
                Issue(
                    kind=IssueKind.RESTART,
                    detail=f"bar {bar.bar}: stopped and started again from {where(restart.score_note)}",
                    time_s=restart.time_s,
                )
            )
    for run, main in alignment.ornaments:
        start = min(notes[p].onset for p in run)
        if bar.start_s <= start < bar.end_s:
            name = "trill" if len(run) >= 3 else "mordent"
            bar.issues.append(
                Issue(
                    kind=IssueKind.ORNAMENT,
                    detail=f"bar {bar.bar}: added a {name} on {pitch_name(main, score.key_fifths)} (not in the score)",
                    time_s=round(start, 3),
                    pitch=main,
                )
            )
    matched_velocity = [notes[p].velocity for _, p in alignment.matched]
    for p in alignment.extra:
        n = notes[p]
        if bar.start_s <= n.onset < bar.end_s and _audible(n, notes, matched_velocity) and not _overtone(n, notes):
            bar.issues.append(
                Issue(
                    kind=IssueKind.EXTRA_NOTE,
                    detail=f"bar {bar.bar}: an extra {pitch_name(n.pitch, score.key_fifths)} was played",
                    time_s=round(n.onset, 3),
                    pitch=n.pitch,
                )
            )


def _still_sounding(pitch: int, time_s: float, notes: list[Note], pedal: list[PedalInterval]) -> bool:
    """The same pitch was struck just before and still rings (held or pedalled): a skipped re-strike is
    barely audible, unlike a note that is simply not there."""
    pedalled = any(p.onset <= time_s <= p.offset for p in pedal)
    return any(
        n.pitch == pitch
        and time_s - RESTRIKE_WINDOW_S <= n.onset < time_s - 0.02
        and (pedalled or n.offset >= time_s - 0.05)
        for n in notes
    )


def _mark_unclear(bar: Bar, notes: list[Note]) -> None:
    """Too many note differences in one bar means the alignment cannot be trusted note by note there:
    replace them with one `unclear` comment, keeping only the differences that are plain slips onto a
    neighbouring key (`_neighbour_slip`), which no misalignment produces. Only differences confirmed at the
    default confidence count (doubtful ones stay, unstated); `unclear` is as sure as the least sure of the
    differences it needs."""
    errors = [i for i in bar.issues if i.kind in NOTE_ERROR_KINDS and i.confidence >= DEFAULT_MIN_CONFIDENCE]
    needed = max(UNCLEAR_MIN_ERRORS, math.ceil(UNCLEAR_FRACTION * bar.notes_expected))
    if len(errors) >= needed:
        replaced = {id(i) for i in errors if not _neighbour_slip(i, notes)}
        bar.issues = [i for i in bar.issues if id(i) not in replaced]
        bar.issues.append(
            Issue(
                kind=IssueKind.UNCLEAR,
                detail=f"bar {bar.bar}: many notes differ from the score here ({len(errors)} of "
                f"{bar.notes_expected}); play it slowly against the score",
                time_s=min(i.time_s for i in errors),
                severity=float(len(errors)),
                confidence=sorted((i.confidence for i in errors), reverse=True)[needed - 1],
            )
        )


def _neighbour_slip(issue: Issue, notes: list[Note]) -> bool:
    """A wrong note one or two semitones from the written one, or an extra note struck together with a
    played note one or two semitones away (a brushed neighbouring key)."""
    if issue.kind == IssueKind.WRONG_NOTE and issue.pitch is not None and issue.expected_pitch is not None:
        return abs(issue.pitch - issue.expected_pitch) <= SLIP_SEMITONES
    if issue.kind == IssueKind.EXTRA_NOTE and issue.pitch is not None:
        return any(
            0 < abs(n.pitch - issue.pitch) <= SLIP_SEMITONES and abs(n.onset - issue.time_s) <= CHORD_WINDOW_S
            for n in notes
        )
    return False


def _audible(note: Note, notes: list[Note], matched_velocity: list[int]) -> bool:
    """An extra note a listener would hear as a slip: not a grazed key (soft and short next to its neighbours)."""
    nearby = [n.velocity for n in notes if abs(n.onset - note.onset) < 1.0 and n is not note]
    reference = float(np.median(nearby or matched_velocity or [note.velocity]))
    return note.velocity >= max(MIN_EXTRA_VELOCITY, GRAZE_VELOCITY_RATIO * reference) and (
        note.offset - note.onset >= GRAZE_DURATION_S
    )


def _overtone(note: Note, notes: list[Note]) -> bool:
    """An extra note an octave above a note struck with it and no louder: what a transcriber hears of that
    note's strong second partial, not a key a pianist would brush (a slip lands on a neighbouring key)."""
    return any(
        n.pitch == note.pitch - 12 and abs(n.onset - note.onset) <= OVERTONE_WINDOW_S and n.velocity >= note.velocity
        for n in notes
    )


def _bar_figures(bar: Bar, pairs: list[tuple[int, int]], score: Score, alignment: Alignment, notes: list[Note]) -> None:
    """Velocity, onset deviation from a local linear tempo fit, articulation, asynchrony, balance."""
    if not pairs:
        return
    na = score.note_array
    beats = np.array([na["onset_beat"][s] for s, _ in pairs], dtype=float)
    perf = np.array([notes[p].onset for _, p in pairs])
    vel = np.array([notes[p].velocity for _, p in pairs], dtype=float)
    bar.mean_velocity = round(float(vel.mean()), 1)
    groups = {b: np.flatnonzero(beats == b) for b in np.unique(beats)}
    chord_onsets = np.array([np.median(perf[g]) for g in groups.values()])
    chord_beats = np.array(list(groups.keys()))
    if len(chord_beats) >= 4:
        slope, intercept = np.polyfit(chord_beats, chord_onsets, 1)
        resid = chord_onsets - (slope * chord_beats + intercept)
        bar.onset_deviation_ms = round(float(1000 * np.std(resid)), 1)
        if bar.onset_deviation_ms > UNEVEN_MS:
            worst = int(np.argmax(np.abs(resid)))
            bar.issues.append(
                Issue(
                    kind=IssueKind.UNEVEN,
                    detail=f"bar {bar.bar}: uneven timing — onsets stray by about "
                    f"{bar.onset_deviation_ms:.0f} ms from a steady pulse",
                    time_s=round(float(chord_onsets[worst]), 3),
                    severity=round(bar.onset_deviation_ms / UNEVEN_MS, 2),
                )
            )
    tmap = alignment.time_map
    notated = tmap(beats + np.array([na["duration_beat"][s] for s, _ in pairs])) - tmap(beats)
    played = np.array([notes[p].offset - notes[p].onset for _, p in pairs])
    ok = notated > 0.05
    if ok.sum() >= 4:
        bar.articulation_ratio = round(float(np.median(played[ok] / notated[ok])), 2)
        if bar.articulation_ratio < STACCATO_RATIO:
            bar.issues.append(
                Issue(
                    kind=IssueKind.ARTICULATION,
                    detail=f"bar {bar.bar}: notes are cut short (held for about "
                    f"{100 * bar.articulation_ratio:.0f}% of their written length)",
                    time_s=bar.start_s,
                )
            )
    spreads = [1000 * np.ptp(perf[g]) for g in groups.values() if len(g) > 1]
    if spreads:
        bar.asynchrony_ms = round(float(np.mean(spreads)), 1)
        if len(spreads) >= 2 and bar.asynchrony_ms > ASYNC_MS:
            bar.issues.append(
                Issue(
                    kind=IssueKind.ASYNCHRONY,
                    detail=f"bar {bar.bar}: chord notes are not together (spread about {bar.asynchrony_ms:.0f} ms)",
                    time_s=bar.start_s,
                )
            )
    pitches = np.array([na["pitch"][s] for s, _ in pairs])
    diffs = [
        vel[g][np.argmax(pitches[g])] - np.delete(vel[g], np.argmax(pitches[g])).mean()
        for g in groups.values()
        if len(g) > 1
    ]
    if diffs:
        bar.balance_db = round(float(np.mean(diffs)), 1)
        if len(diffs) >= 2 and bar.balance_db < -BALANCE_MARGIN:
            bar.issues.append(
                Issue(
                    kind=IssueKind.BALANCE,
                    detail=f"bar {bar.bar}: the accompaniment covers the melody (top notes about "
                    f"{-bar.balance_db:.0f} velocity steps softer than the rest)",
                    time_s=bar.start_s,
                )
            )


def _neighbour_median(values: list[float | None], i: int, reach: int = 3) -> float | None:
    around = [v for j, v in enumerate(values) if v is not None and j != i and abs(j - i) <= reach]
    return float(np.median(around)) if len(around) >= 2 else None


def _tempo_issues(bars: list[Bar]) -> None:
    tempi = [b.tempo_bpm for b in bars]
    for i, bar in enumerate(bars[1:-1], start=1):
        ref = _neighbour_median(tempi, i)
        if bar.tempo_bpm is None or ref is None:
            continue
        ratio = bar.tempo_bpm / ref
        if ratio > RUSH_RATIO:
            bar.issues.append(
                Issue(
                    kind=IssueKind.RUSHING,
                    detail=f"bar {bar.bar}: rushed — about {bar.tempo_bpm:.0f} bpm against {ref:.0f} around it",
                    time_s=bar.start_s,
                    severity=round(ratio, 2),
                )
            )
        elif ratio < DRAG_RATIO:
            bar.issues.append(
                Issue(
                    kind=IssueKind.DRAGGING,
                    detail=f"bar {bar.bar}: held back or hesitated — about {bar.tempo_bpm:.0f} bpm "
                    f"against {ref:.0f} around it",
                    time_s=bar.start_s,
                    severity=round(1 / ratio, 2),
                )
            )


def _dynamics_issues(bars: list[Bar]) -> None:
    levels = [b.mean_velocity for b in bars]
    for i, bar in enumerate(bars):
        ref = _neighbour_median(levels, i, reach=2)
        if bar.mean_velocity is None or ref is None:
            continue
        if abs(bar.mean_velocity - ref) > DYNAMIC_JUMP:
            louder = "louder" if bar.mean_velocity > ref else "softer"
            bar.issues.append(
                Issue(
                    kind=IssueKind.DYNAMICS,
                    detail=f"bar {bar.bar}: a sudden {louder} bar that breaks the phrase's dynamic line",
                    time_s=bar.start_s,
                )
            )


def _pedal_issues(bars: list[Bar], pedal: list[PedalInterval], score: Score, alignment: Alignment) -> None:
    """Pedal held through a bar line where the harmony changes → blur in the second bar."""
    na = score.note_array
    for prev, bar in zip(bars[:-1], bars[1:], strict=True):
        held = any(
            p.onset <= prev.start_s + 0.1 * (prev.end_s - prev.start_s)
            and p.offset >= bar.end_s - 0.1 * (bar.end_s - bar.start_s)
            for p in pedal
        )
        if not held:
            continue
        a = {int(p) % 12 for p in na["pitch"][na["bar"] == prev.bar]}
        b = {int(p) % 12 for p in na["pitch"][na["bar"] == bar.bar]}
        if a and b and len(a & b) / len(a | b) < 0.5:
            bar.issues.append(
                Issue(
                    kind=IssueKind.PEDAL_BLUR,
                    detail=f"bar {bar.bar}: the pedal is held over from bar {prev.bar} through a "
                    "change of harmony, so the sound blurs",
                    time_s=bar.start_s,
                )
            )


def score_measures(bars: list[Bar], measures: Measures) -> Measures:
    """`measures` with the score-informed take-level figures added from the bars."""
    measures = replace(measures)
    tempi = np.array([b.tempo_bpm for b in bars if b.tempo_bpm is not None])
    if len(tempi):
        measures.tempo_bpm = _round(float(np.median(tempi)), 1)
        measures.tempo_cv = _round(float(np.std(tempi) / np.mean(tempi)))
    for key, attr in (
        ("onset_deviation_ms", "onset_deviation_ms"),
        ("bar_articulation_ratio", "articulation_ratio"),
        ("chord_asynchrony_ms", "asynchrony_ms"),
        ("melody_balance", "balance_db"),
    ):
        vals = [getattr(b, attr) for b in bars if getattr(b, attr) is not None]
        setattr(measures, key, _round(float(np.median(vals)), 2) if vals else None)
    minutes = max(sum(b.end_s - b.start_s for b in bars) / 60, 1e-6)
    counts: dict[str, int] = {}
    for b in bars:
        for i in b.issues:
            counts[i.kind] = counts.get(i.kind, 0) + 1
    measures.issue_counts = counts
    errors = sum(counts.get(k, 0) for k in NOTE_ERROR_KINDS)
    measures.note_errors = errors
    measures.note_errors_per_min = _round(errors / minutes, 2)
    measures.bars_played = len(bars)
    return measures
