"""Rubric measures per bar and for the whole take (docs: ../shared/docs/rubric.md).

Score-free measures work on performed notes only; score-informed ones use the alignment.
Thresholds are deliberately conservative so that an expert's rubato is not flagged as a fault.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from llaqo_model.analysis.align import TRILL_MIN_NOTES, Alignment
from llaqo_model.analysis.faint import FaintStrike, faint_strikes
from llaqo_model.analysis.report import (
    DEFAULT_MIN_CONFIDENCE,
    NEIGHBOUR_SEMITONES,
    NOTE_ERROR_KINDS,
    Bar,
    Issue,
    IssueKind,
    Measures,
    Note,
    PedalInterval,
    struck_beside,
)
from llaqo_model.analysis.score import Score, pitch_name, spelled_name
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_model.analysis.transcribe import OnsetEvidence
from llaqo_model.analysis.verify import verify_issues

CHORD_WINDOW_S = 0.05  # notes struck within 50 ms are heard as one chord
RUSH_RATIO = 1.3  # a bar 30% faster than the bars around it is rushed (rubato stays within this)
DRAG_RATIO = 0.7  # …and 30% slower is held back
UNEVEN_MS = 90.0  # onsets straying this far from a steady pulse within a bar are audibly uneven
ASYNC_MS = 70.0  # a chord spread wider than this is heard as broken, not together
BALANCE_MARGIN = 12.0  # melody this many velocity steps under its accompaniment is covered
STACCATO_RATIO = 0.3  # notes held under 30% of their written length are cut short
DYNAMIC_JUMP = 28.0  # a bar this many velocity steps off its neighbours breaks the dynamic line
MIN_EXTRA_VELOCITY = 12  # quieter keys make next to no sound (notes from MIDI)
GRAZE_VELOCITY_RATIO = 0.6  # an extra key under 60% of its neighbours' velocity…
GRAZE_DURATION_S = 0.05  # …or shorter than 50 ms was grazed, not played (notes from MIDI)
UNCLEAR_MIN_ERRORS = 3  # at least this many note differences in a bar…
UNCLEAR_FRACTION = 0.3  # …and at least 30% of its notes make the bar unclear
OVERTONE_WINDOW_S = 0.02  # an octave-higher "note" this close to the lower one's onset is its overtone…
# …unless clearly louder: Transkun reads the second partial of a loud note a few steps above the note itself
# (on the benchmark's clean takes overtones read +1 to +3 over their fundamental; octaves really struck, +10 or more)
OVERTONE_VELOCITY_MARGIN = 5
REARTICULATION_S = 0.2  # the written key struck again this close to its written strike: a bounce, not another note
NEIGHBOUR_WINDOW_S = 1.0  # an extra note's loudness is compared with the notes this close
IOI_RANGE_S = (0.06, 2.0)  # inter-onset gaps outside this are grace notes or pauses, not the pulse
TEMPO_RANGE_BPM = (60.0, 180.0)  # the IOI beat is doubled or halved into the range a pulse is felt in
LOCAL_IOI_SPAN = 4  # gaps on either side that make a local tempo
CONTOUR_STEP_S = 2.0  # the velocity contour averages two-second windows
LEGATO_OVERLAP_S = 0.01  # a note still sounding this far past the next onset is legato
ARTICULATION_MAX_RATIO = 4.0  # longer held/gap ratios (a pedal-point) are counted as 4
MIN_NOTATED_S = 0.05  # notes notated shorter than this say nothing about articulation
LAST_GAP_S = 1.0  # the last note's gap to a next onset that never comes (for its articulation)
MIN_BAR_S = 1e-3  # a bar mapped to less time than this has no tempo
MIN_POINTS = 4  # chords (evenness) or notes (articulation) a bar needs for the figure to mean something
TEMPO_REACH_BARS = 3  # a bar's tempo is compared with up to three bars either side
DYNAMICS_REACH_BARS = 2  # its loudness with two
PEDAL_EDGE = 0.1  # a pedal held from the first 10% of a bar to its last 10% spans it
FAINT_MIN_GAIN = 0.05  # a key heard under the threshold whose partials the spectrum needs less than this (brushed
# keys on the benchmark's tuning pieces 0.10-0.14, keys only leaking from a neighbour 0-0.05) was not struck
HARMONY_CHANGE = 0.5  # pitch-class sets sharing under half their classes are a change of harmony


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


def score_free_measures(notes: list[Note], pedal: list[PedalInterval], duration_s: float) -> tuple[Measures, list[str]]:
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
    ioi = ioi[(ioi > IOI_RANGE_S[0]) & (ioi < IOI_RANGE_S[1])]
    if len(ioi) >= MIN_POINTS:
        beat = float(np.median(ioi))
        while 60 / beat < TEMPO_RANGE_BPM[0]:
            beat /= 2
        while 60 / beat > TEMPO_RANGE_BPM[1]:
            beat *= 2
        local = np.array([np.median(ioi[max(0, i - LOCAL_IOI_SPAN) : i + LOCAL_IOI_SPAN]) for i in range(len(ioi))])
        measures.ioi_tempo_bpm = _round(60 / beat, 1)
        measures.ioi_cv = _round(float(np.std(local) / np.mean(local)))
        available.append("tempo")
    measures.velocity_mean = _round(float(velocity.mean()), 1)
    measures.velocity_std = _round(float(velocity.std()), 1)
    measures.velocity_range = _round(float(np.percentile(velocity, 95) - np.percentile(velocity, 5)), 1)
    edges = np.arange(0.0, duration_s + CONTOUR_STEP_S, CONTOUR_STEP_S)
    contour = [
        velocity[(onsets >= a) & (onsets < b)].mean()
        for a, b in zip(edges[:-1], edges[1:], strict=True)
        if np.any((onsets >= a) & (onsets < b))
    ]
    measures.velocity_contour = [_round(v, 1) for v in contour]
    measures.velocity_contour_std = _round(float(np.std(contour)), 1) if contour else None
    available.append("dynamics")
    next_start = np.interp(onsets, starts, np.append(starts[1:], starts[-1] + LAST_GAP_S)[: len(starts)])
    gaps = np.maximum(next_start - onsets, 1e-3)
    ratio = np.clip((offsets - onsets) / gaps, 0, ARTICULATION_MAX_RATIO)
    measures.duration_ioi_ratio = _round(float(np.median(ratio)))
    measures.legato_overlap_fraction = _round(float(np.mean(offsets[:-1] > onsets[1:] + LEGATO_OVERLAP_S)))
    available += ["articulation", "asynchrony"]
    return measures, available


def build_bars(
    score: Score,
    alignment: Alignment,
    notes: list[Note],
    pedal: list[PedalInterval],
    evidence: OnsetEvidence | None = None,
    spectrum: OnsetSpectrum | None = None,
) -> list[Bar]:
    """Per-bar figures and teacher-style issues (`score_measures` sums them up for the take). With the
    transcriber's `evidence`, every wrong, missed and extra note gets a confidence from the audio, and with
    the audio's `spectrum` too, the keys it heard struck under its threshold that nothing explains are
    extra-note candidates, checked in the spectrum (`faint.py`, `spectrum.py`); without evidence (notes from
    MIDI, which is what was played) they are certain."""
    na = score.note_array
    tmap = alignment.time_map
    if tmap is None or alignment.in_take is None or not alignment.in_take.any():
        return []
    in_take = alignment.in_take
    take_start = float(na["onset_beat"][in_take].min())
    take_end = float((na["onset_beat"] + na["duration_beat"])[in_take].max())
    rows = [r for r in score.bars if r["end_beat"] > take_start and r["start_beat"] < take_end]
    matched = {s: p for s, p in alignment.matched}
    faint: list[tuple[FaintStrike, int | None]] = []
    if evidence is not None and spectrum is not None:
        written = list(zip(na["pitch"][in_take].tolist(), tmap(na["onset_beat"][in_take]).tolist(), strict=True))
        strikes = [
            s
            for s in faint_strikes(evidence, notes, written)
            if spectrum.explained_gain(s.pitch, s.time_s) >= FAINT_MIN_GAIN
        ]
        faint = list(zip(strikes, chord_bars(alignment, notes, [s.time_s for s in strikes]), strict=True))
    bars: list[Bar] = []
    for r in rows:
        start_s, end_s = (float(t) for t in tmap(np.array([r["start_beat"], r["end_beat"]])))
        bar = Bar(bar=int(r["bar"]), start_s=round(max(start_s, 0.0), 3), end_s=round(max(end_s, 0.0), 3))
        in_bar = in_take & (na["onset_beat"] >= r["start_beat"]) & (na["onset_beat"] < r["end_beat"])
        idx = np.flatnonzero(in_bar)
        bar.notes_expected = len(idx)
        pairs = [(s, matched[s]) for s in idx if s in matched]
        bar.notes_matched = len(pairs)
        if end_s - start_s > MIN_BAR_S and len(pairs) >= 2:
            bar.tempo_bpm = round(float(60 * (r["end_beat"] - r["start_beat"]) / (end_s - start_s)), 1)
        _note_errors(bar, r, score, alignment, notes, heard=evidence is not None)
        _faint_extras(bar, faint, score)
        if evidence is not None:
            verify_issues(bar.issues, evidence, notes, spectrum)
        _mark_unclear(bar, notes)
        _bar_figures(bar, pairs, score, alignment, notes)
        bars.append(bar)
    _tempo_issues(bars)
    _dynamics_issues(bars)
    _pedal_issues(bars, pedal, score, alignment)
    return bars


def _note_errors(
    bar: Bar,
    row: np.void,
    score: Score,
    alignment: Alignment,
    notes: list[Note],
    heard: bool,
) -> None:
    """The bar's wrong, missed and extra notes, restarts and added ornaments. Notes from MIDI (`heard`
    False) drop grazed keys by rule; transcribed ones keep them for the audio check to weigh."""
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
        if in_row(s):
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
            name = "trill" if len(run) >= TRILL_MIN_NOTES else "mordent"
            bar.issues.append(
                Issue(
                    kind=IssueKind.ORNAMENT,
                    detail=f"bar {bar.bar}: added a {name} on {pitch_name(main, score.key_fifths)} (not in the score)",
                    time_s=round(start, 3),
                    pitch=main,
                )
            )
    matched_velocity = [notes[p].velocity for _, p in alignment.matched]
    written_strikes = [notes[p] for _, p in alignment.matched] + [notes[p] for _, p in alignment.wrong]
    chord_bar = extra_note_bars(alignment, notes)
    for p in alignment.extra:
        n = notes[p]
        audible = heard or _audible(n, notes, matched_velocity)
        in_bar = chord_bar[p] == bar.bar if p in chord_bar else bar.start_s <= n.onset < bar.end_s
        if in_bar and audible and not _overtone(n, notes) and not _rearticulation(n, written_strikes):
            bar.issues.append(
                Issue(
                    kind=IssueKind.EXTRA_NOTE,
                    detail=f"bar {bar.bar}: an extra {pitch_name(n.pitch, score.key_fifths)} was played",
                    time_s=round(n.onset, 3),
                    pitch=n.pitch,
                )
            )


def extra_note_bars(alignment: Alignment, notes: list[Note]) -> dict[int, int]:
    """Extra notes struck with a played chord → that chord's bar (a key beside a downbeat chord, heard a
    few ms early, is still in the chord's bar). Extra notes struck alone go by their time."""
    bars = chord_bars(alignment, notes, [notes[p].onset for p in alignment.extra])
    return {p: bar for p, bar in zip(alignment.extra, bars, strict=True) if bar is not None}


def chord_bars(alignment: Alignment, notes: list[Note], times: list[float]) -> list[int | None]:
    """For each time, the bar of the written note played nearest it within `CHORD_WINDOW_S` (the chord
    it was struck with), or None when it was struck alone."""
    if not alignment.matched:
        return [None] * len(times)
    na = alignment.score.note_array
    order = sorted(alignment.matched, key=lambda sp: notes[sp[1]].onset)
    onsets = np.array([notes[p].onset for _, p in order])
    bars: list[int | None] = []
    for t in times:
        k = int(np.searchsorted(onsets, t))
        near = [j for j in (k - 1, k) if 0 <= j < len(onsets) and abs(onsets[j] - t) <= CHORD_WINDOW_S]
        nearest = min(near, key=lambda j: abs(onsets[j] - t)) if near else None
        bars.append(None if nearest is None else int(na["bar"][order[nearest][0]]))
    return bars


def _faint_extras(bar: Bar, faint: list[tuple[FaintStrike, int | None]], score: Score) -> None:
    """The keys heard struck under the transcriber's threshold (with the bar of the chord they came with)
    that fall in this bar, as extra-note candidates; the audio check weighs them (`verify.issue_features`)."""
    for strike, chord_bar in faint:
        in_bar = chord_bar == bar.bar if chord_bar is not None else bar.start_s <= strike.time_s < bar.end_s
        if in_bar:
            bar.issues.append(
                Issue(
                    kind=IssueKind.EXTRA_NOTE,
                    detail=f"bar {bar.bar}: an extra {pitch_name(strike.pitch, score.key_fifths)} sounded softly "
                    "(a key brushed)",
                    time_s=strike.time_s,
                    pitch=strike.pitch,
                )
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
        return abs(issue.pitch - issue.expected_pitch) <= NEIGHBOUR_SEMITONES
    if issue.kind == IssueKind.EXTRA_NOTE and issue.pitch is not None:
        return struck_beside(issue.pitch, issue.time_s, notes, CHORD_WINDOW_S)
    return False


def _audible(note: Note, notes: list[Note], matched_velocity: list[int]) -> bool:
    """An extra note a listener would hear as a slip: not a grazed key (soft and short next to its neighbours)."""
    nearby = [n.velocity for n in notes if abs(n.onset - note.onset) < NEIGHBOUR_WINDOW_S and n is not note]
    reference = float(np.median(nearby or matched_velocity or [note.velocity]))
    return note.velocity >= max(MIN_EXTRA_VELOCITY, GRAZE_VELOCITY_RATIO * reference) and (
        note.offset - note.onset >= GRAZE_DURATION_S
    )


def _overtone(note: Note, notes: list[Note]) -> bool:
    """An extra note an octave above a note struck with it and not clearly louder: what a transcriber hears of
    that note's strong second partial, not a key a pianist would brush (a slip lands on a neighbouring key)."""
    return any(
        n.pitch == note.pitch - 12
        and abs(n.onset - note.onset) <= OVERTONE_WINDOW_S
        and n.velocity >= note.velocity - OVERTONE_VELOCITY_MARGIN
        for n in notes
    )


def _rearticulation(note: Note, written_strikes: list[Note]) -> bool:
    """An extra note on the key of a written note struck within `REARTICULATION_S` of it: the key struck twice
    for one written note (a bounce, or a repeated attack), not a separate key a listener hears as a slip."""
    return any(
        n.pitch == note.pitch and n is not note and abs(n.onset - note.onset) <= REARTICULATION_S
        for n in written_strikes
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
    if len(chord_beats) >= MIN_POINTS:
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
    ok = notated > MIN_NOTATED_S
    if ok.sum() >= MIN_POINTS:
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


def _neighbour_median(values: list[float | None], i: int, reach: int) -> float | None:
    around = [v for j, v in enumerate(values) if v is not None and j != i and abs(j - i) <= reach]
    return float(np.median(around)) if len(around) >= 2 else None


def _tempo_issues(bars: list[Bar]) -> None:
    tempi = [b.tempo_bpm for b in bars]
    for i, bar in enumerate(bars[1:-1], start=1):
        ref = _neighbour_median(tempi, i, TEMPO_REACH_BARS)
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
        ref = _neighbour_median(levels, i, DYNAMICS_REACH_BARS)
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
            p.onset <= prev.start_s + PEDAL_EDGE * (prev.end_s - prev.start_s)
            and p.offset >= bar.end_s - PEDAL_EDGE * (bar.end_s - bar.start_s)
            for p in pedal
        )
        if not held:
            continue
        a = {int(p) % 12 for p in na["pitch"][na["bar"] == prev.bar]}
        b = {int(p) % 12 for p in na["pitch"][na["bar"] == bar.bar]}
        if a and b and len(a & b) / len(a | b) < HARMONY_CHANGE:
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
        for i in b.stated_issues():  # what the player is told (default confidence)
            counts[i.kind] = counts.get(i.kind, 0) + 1
    measures.issue_counts = counts
    errors = sum(counts.get(k, 0) for k in NOTE_ERROR_KINDS)
    measures.note_errors = errors
    measures.note_errors_per_min = _round(errors / minutes, 2)
    measures.bars_played = len(bars)
    return measures
