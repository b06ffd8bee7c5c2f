"""Note alignment of a performance to its score with parangonar, and error classification.

matched: score note played; missed: score note not played; extra: played note not in the score;
wrong: a missed score note and an extra played note at the same score position.
ornaments: played notes not in the score that make a trill or mordent the player added (`added_trills`);
they are not extra notes.
restart: the player broke off and went back — a run of extra notes that the take repeats at one time
shift. The abandoned attempt is set aside and the rest aligned again, so its notes are not extra notes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import parangonar as pa

from llaqo_model.analysis.report import AlignmentSummary, Note, ScoreNote, struck_beside
from llaqo_model.analysis.score import Score

MIN_COVERAGE = 0.5  # under half the score's notes (or half the take's) matched: another piece, or no piece
MIN_SCORE_FRACTION = 0.2  # a take that plays under a fifth of the given score is not a take of that passage
WRONG_NOTE_WINDOW_S = 0.12  # a missed and an extra note this close to its chord (or expected time) are one wrong note
WRONG_NOTE_MAX_INTERVAL = 7  # …and at most a fifth apart (a slip or a misread, not another voice)
ORNAMENT_WINDOW_S = 1.2  # extra notes this close to a written ornament may realise it
ORNAMENT_MAX_INTERVAL = 3  # …and this close in pitch (a turn spans a third around its note)
GRACE_WINDOW_S = 0.4  # a grace note is played just before or on its main note (a long appoggiatura: a little later)
STRUCK_TOGETHER_S = 0.03  # two keys this close are one strike: the notes of a trill or turn follow each other
DEFAULT_BEAT_S = 0.5  # time map with fewer than two points: assume 120 beats per minute
RESTART_MIN_NOTES = 3  # fewer abandoned notes are slips, not an attempt
RESTART_GAP_S = 1.0  # extra notes further apart than this belong to different runs
RESTART_WINDOW_S = 15.0  # a restart goes back at most this far
RESTART_SUPPORT = 0.6  # share of a run's notes the take must repeat at one shift to be a restart
RESTART_MIN_SHIFT_S = 0.3  # the repeat comes after the attempt, never inside it
RESTART_PAUSE_S = 0.4  # the shortest break in playing that means the player stopped
RESTART_PAUSE_FACTOR = 2.5  # …and several times the take's usual onset gap (a fast run never breaks off)
RESTART_SHIFT_STEP_S = 0.1  # candidate time shifts between two attempts, on a grid this fine
RESTART_TOLERANCE_S = 0.15  # a repeated note may be off the shift by this much at the run's start…
RESTART_TOLERANCE_GROWTH = 0.15  # …growing by this much per second into the run (tempo differs)
RESUME_TOLERANCE_S = 0.05  # the resumed attempt's first matched note may start this much before its first note
TRILL_GAP_S = (0.03, 0.16)  # onset gaps between the notes of a trill
TRILL_MIN_NOTES = 3  # a trill or mordent alternates at least three notes
TRILL_MAX_INTERVAL = 2  # a trill alternates with a key at most a tone away
TRILL_REACH_S = 1.5  # the notes around an extra note gathered to look for a trill
MIN_DURATION_S = 1e-3  # parangonar needs positive durations; a 0-length transcribed note gets 1 ms
MIN_TIME_STEP_S = 1e-3  # consecutive time-map points must be at least this far apart to stay monotone
MATCH_REACH_S = 0.45  # a note matched this far from its score note's time-map time (more than a rolled chord or
# rubato around the fitted map moves a note) was paired with the wrong one; 0.8 s let an extra key pair with its
# written key half a second away (ASAP benchmark, 24 tuning pieces: the same false flags either way)
REPAIR_MIN_ERROR_S = 0.15  # a pair this far off its time-map time (over a chord's spread) may be the wrong instance…
REPAIR_GAIN = 3.0  # …and is re-paired when a free note of the same key fits at least three times closer

_PERF_DTYPE = [
    ("onset_sec", "f4"),
    ("duration_sec", "f4"),
    ("onset_tick", "i4"),
    ("duration_tick", "i4"),
    ("pitch", "i4"),
    ("velocity", "i4"),
    ("track", "i4"),
    ("channel", "i4"),
    ("id", "U256"),
]
# The alignment's note pairing: (score, played) index pairs, missed score notes, extra played notes
Pairing = tuple[list[tuple[int, int]], list[int], list[int]]

logging.getLogger("parangonar").setLevel(logging.ERROR)


def performance_note_array(notes: list[Note]) -> np.ndarray:
    """Performed notes as a partitura-style performance note array (ids 'p0', 'p1', …)."""
    na = np.zeros(len(notes), dtype=_PERF_DTYPE)
    for i, n in enumerate(notes):
        dur = max(n.offset - n.onset, MIN_DURATION_S)
        na[i] = (n.onset, dur, int(n.onset * 1000), int(dur * 1000), n.pitch, n.velocity, 0, 0, f"p{i}")
    return na


@dataclass
class TimeMap:
    """Monotone map from score beats to performance seconds, fitted on matched onsets."""

    beats: np.ndarray
    seconds: np.ndarray

    def __call__(self, beat: np.ndarray | float) -> np.ndarray:
        """Performance time of score beat(s); linear extrapolation beyond the ends."""
        beat = np.asarray(beat, dtype=float)
        if len(self.beats) < 2:
            offset = self.seconds[0] - self.beats[0] * DEFAULT_BEAT_S if len(self.beats) else 0.0
            return offset + beat * DEFAULT_BEAT_S
        t = np.interp(beat, self.beats, self.seconds)
        lo_slope = (self.seconds[1] - self.seconds[0]) / (self.beats[1] - self.beats[0])
        hi_slope = (self.seconds[-1] - self.seconds[-2]) / (self.beats[-1] - self.beats[-2])
        t = np.where(beat < self.beats[0], self.seconds[0] + (beat - self.beats[0]) * lo_slope, t)
        return np.where(beat > self.beats[-1], self.seconds[-1] + (beat - self.beats[-1]) * hi_slope, t)


def fit_time_map(score_beats: np.ndarray, perf_seconds: np.ndarray) -> TimeMap:
    """One point per score onset (median performed onset), keeping a strictly increasing chain."""
    if len(score_beats) == 0:
        return TimeMap(np.zeros(0), np.zeros(0))
    unique = np.unique(score_beats)
    medians = np.array([np.median(perf_seconds[score_beats == b]) for b in unique])
    keep_b, keep_s = [unique[0]], [medians[0]]
    for b, s in zip(unique[1:], medians[1:], strict=True):
        if s > keep_s[-1] + MIN_TIME_STEP_S:
            keep_b.append(b)
            keep_s.append(s)
    return TimeMap(np.array(keep_b), np.array(keep_s))


@dataclass
class Restart:
    """An abandoned attempt (`notes`, indices into the performed notes) and where the player took it up
    again: score note `score_note`, at `time_s`."""

    notes: list[int]
    score_note: int
    time_s: float


@dataclass
class Alignment:
    """Indices into the score note array (`score.note_array`) and the performed note list."""

    score: Score
    matched: list[tuple[int, int]] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    extra: list[int] = field(default_factory=list)
    wrong: list[tuple[int, int]] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    ornaments: list[tuple[set[int], int]] = field(default_factory=list)
    time_map: TimeMap | None = None
    summary: AlignmentSummary = field(default_factory=AlignmentSummary)
    in_take: np.ndarray | None = None

    def score_notes(self) -> list[ScoreNote]:
        """Score notes with their bar, expected time and status, for plots and the model."""
        na = self.score.note_array
        status = np.full(len(na), "outside", dtype=object)
        if self.in_take is not None:
            status[self.in_take] = "missed"
        for s, _ in self.matched:
            status[s] = "matched"
        for s, _ in self.wrong:
            status[s] = "wrong"
        times = self.time_map(na["onset_beat"]) if self.time_map is not None else na["onset_beat"]
        ends = (
            self.time_map(na["onset_beat"] + na["duration_beat"])
            if self.time_map is not None
            else na["onset_beat"] + na["duration_beat"]
        )
        return [
            ScoreNote(
                pitch=int(n["pitch"]),
                bar=int(n["bar"]),
                onset_beat=round(float(n["onset_beat"]), 4),
                duration_beat=round(float(n["duration_beat"]), 4),
                expected_s=round(float(t), 3),
                expected_end_s=round(float(e), 3),
                status=str(st),
            )
            for n, t, e, st in zip(na, times, ends, status, strict=True)
        ]


def align_to_score(score: Score, notes: list[Note]) -> Alignment:
    """Align performed notes to the score and classify every note; set restarts' abandoned attempts aside."""
    result = _align(score, notes)
    attempts = _abandoned_attempts(result.extra, notes) if result.summary.matches_score else []
    if not attempts:
        return result
    dropped = set().union(*(abandoned for abandoned, _ in attempts))
    keep = [i for i in range(len(notes)) if i not in dropped]
    again = _align(score, [notes[i] for i in keep])
    again.matched = [(s, keep[p]) for s, p in again.matched]
    again.wrong = [(s, keep[p]) for s, p in again.wrong]
    again.extra = [keep[p] for p in again.extra]
    again.ornaments = [({keep[p] for p in run}, main) for run, main in again.ornaments]
    by_time = sorted(again.matched, key=lambda sp: notes[sp[1]].onset)
    for abandoned, resume in attempts:
        # where the player took up again: the first matched note from the resumed attempt's start on
        taken_up = next((s for s, p in by_time if notes[p].onset >= notes[resume].onset - RESUME_TOLERANCE_S), None)
        if taken_up is not None:
            again.restarts.append(Restart(sorted(abandoned), taken_up, round(notes[resume].onset, 3)))
    again.summary.performed_notes = len(notes)
    again.summary.restarts = len(again.restarts)
    return again


def _abandoned_attempts(extra: list[int], notes: list[Note]) -> list[tuple[set[int], int]]:
    """Runs of extra notes that the take plays twice at one time shift: (the earlier attempt's notes,
    the first note of the later one)."""
    if len(extra) < RESTART_MIN_NOTES:
        return []
    onsets = np.unique([n.onset for n in notes])
    pause = _pause_s(onsets)
    by_pitch: dict[int, list[int]] = {}
    for i, n in enumerate(notes):
        by_pitch.setdefault(n.pitch, []).append(i)
    attempts: list[tuple[set[int], int]] = []
    for run in _runs(sorted(extra, key=lambda i: notes[i].onset), notes, RESTART_GAP_S):
        found = _attempt(run, notes, by_pitch, onsets, pause)
        # the abandoned attempt and the resumed one may both have left extra notes: split at the break
        if found:
            parts = [found]
        else:
            parts = [_attempt(part, notes, by_pitch, onsets, pause) for part in _runs(run, notes, pause)]
        for attempt in filter(None, parts):
            abandoned, resume = attempt
            if attempts and _same_attempt(attempts[-1][0], abandoned, notes):  # both passes left extras
                abandoned |= attempts[-1][0]
                resume = min(resume, attempts.pop()[1], key=lambda i: notes[i].onset)
            attempts.append((abandoned, resume))
    return attempts


def _same_attempt(a: set[int], b: set[int], notes: list[Note]) -> bool:
    """Whether two sets of abandoned notes belong to one attempt (their time spans meet)."""
    span_a = [notes[i].onset for i in a]
    span_b = [notes[i].onset for i in b]
    return min(span_b) <= max(span_a) + RESTART_GAP_S and min(span_a) <= max(span_b) + RESTART_GAP_S


def _runs(ordered: list[int], notes: list[Note], max_gap: float) -> list[list[int]]:
    """Split notes (in onset order) where consecutive onsets are `max_gap` or more apart."""
    runs: list[list[int]] = []
    for p in ordered:
        if runs and notes[p].onset - notes[runs[-1][-1]].onset < max_gap:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def _attempt(
    run: list[int], notes: list[Note], by_pitch: dict[int, list[int]], onsets: np.ndarray, pause: float
) -> tuple[set[int], int] | None:
    """(abandoned notes, first resumed note) when `run` is one of two passes over a passage with a break."""
    if len(run) < RESTART_MIN_NOTES:
        return None
    pairs = _repeated_at_one_shift(run, notes, by_pitch)
    if len(pairs) < RESTART_SUPPORT * len(run):
        return None
    pairs.sort(key=lambda pair: notes[pair[0]].onset)
    if notes[pairs[0][1]].onset > notes[pairs[0][0]].onset:
        abandoned, resume = {p for p, _ in pairs}, pairs[0][1]
    else:
        abandoned, resume = {m for _, m in pairs}, pairs[0][0]
    return (abandoned, resume) if _broke_off(abandoned, resume, notes, onsets, pause) else None


def _pause_s(onsets: np.ndarray) -> float:
    """An onset gap that means the playing stopped: at least RESTART_PAUSE_S and several times the
    take's usual gap (a virtuoso run never breaks off)."""
    usual = float(np.median(np.diff(onsets))) if len(onsets) > 2 else 0.0
    return max(RESTART_PAUSE_S, RESTART_PAUSE_FACTOR * usual)


def _broke_off(abandoned: set[int], resume: int, notes: list[Note], onsets: np.ndarray, pause: float) -> bool:
    """Whether the playing stops between the abandoned attempt and the resumed one."""
    last = max(notes[i].onset for i in abandoned)
    between = onsets[(onsets >= last) & (onsets <= notes[resume].onset)]
    return len(between) > 1 and float(np.diff(between).max()) >= pause


def _repeated_at_one_shift(run: list[int], notes: list[Note], by_pitch: dict[int, list[int]]) -> list[tuple[int, int]]:
    """(run note, other note of the same pitch) pairs at the one time shift that pairs the most run notes
    (the nearest such shift: an exercise repeats its pattern every bar, a restart goes back a little)."""
    inside = set(run)
    t0 = notes[run[0]].onset
    gap = notes[run[-1]].onset - t0 + RESTART_MIN_SHIFT_S  # one attempt comes after the other, never inside it
    near = {
        p: [
            (m, notes[m].onset - notes[p].onset)
            for m in by_pitch[notes[p].pitch]
            if m not in inside and gap < abs(notes[m].onset - notes[p].onset) < RESTART_WINDOW_S
        ]
        for p in run
    }
    best: list[tuple[int, int]] = []
    shifts = {round(d / RESTART_SHIFT_STEP_S) * RESTART_SHIFT_STEP_S for options in near.values() for _, d in options}
    for shift in sorted(shifts, key=abs):
        pairs = []
        for p, options in near.items():
            tolerance = RESTART_TOLERANCE_S + RESTART_TOLERANCE_GROWTH * (notes[p].onset - t0)
            fits = [(abs(d - shift), m) for m, d in options if abs(d - shift) <= tolerance]
            if fits:
                pairs.append((p, min(fits)[1]))
        if len(pairs) > len(best):
            best = pairs
    return best


def _align(score: Score, notes: list[Note]) -> Alignment:
    """One alignment pass: match, then classify missed, extra and wrong notes."""
    na = score.note_array
    result = Alignment(score=score)
    result.summary.score_notes = len(na)
    result.summary.performed_notes = len(notes)
    if not notes:
        result.missed = list(range(len(na)))
        result.summary = AlignmentSummary(
            coverage=0.0, missed=len(na), score_notes=len(na), performed_notes=0, matches_score=False
        )
        return result
    pna = performance_note_array(notes)
    matcher = pa.DualDTWNoteMatcher()
    try:
        raw = matcher(na, pna, process_ornaments=True, score_part=score.part)
    except (ValueError, TypeError, IndexError):  # parangonar's ornament pass fails on some scores
        raw = matcher(na, pna, process_ornaments=False)
    s_index = {str(i): k for k, i in enumerate(na["id"])}
    p_index = {str(i): k for k, i in enumerate(pna["id"])}
    matched: list[tuple[int, int]] = []
    missed: list[int] = []
    extra: list[int] = []
    for entry in raw:
        if entry["label"] == "match":
            matched.append((s_index[str(entry["score_id"])], p_index[str(entry["performance_id"])]))
        elif entry["label"] == "deletion":
            missed.append(s_index[str(entry["score_id"])])
        elif entry["label"] == "insertion":
            extra.append(p_index[str(entry["performance_id"])])
    result.time_map = _fit(matched, na, notes)
    expected = result.time_map(na["onset_beat"])
    pairing = _repair_far_matches(expected, na["pitch"], (matched, missed, extra), notes)
    matched, missed, extra = _repair_instances(expected, na["pitch"], pairing, notes)
    matched.sort(key=lambda sp: na["onset_beat"][sp[0]])
    s_beats = np.array([na["onset_beat"][s] for s, _ in matched], dtype=float)
    result.time_map = _fit(matched, na, notes)
    result.matched = matched

    # Score notes in bars before the first / after the last matched note were not part of this take.
    first_beat, last_beat = _take_span(score, s_beats)
    in_take = (na["onset_beat"] >= first_beat) & (na["onset_beat"] < last_beat)
    # Grace notes, ornamented notes and notes still held in another voice may rightly go unplayed.
    optional = na["is_grace"].astype(bool) | na["ornamented"] | na["held_over"]
    missed = [s for s in missed if in_take[s]]
    result.in_take = in_take
    missed, extra = _pair_wrong_notes(result, missed, extra, notes)
    result.missed = [s for s in missed if not optional[s]]
    result.extra = [p for p in extra if not _ornamental(result, notes[p], notes)]
    result.ornaments = added_trills(result.extra, notes)
    in_ornament = set().union(*(run for run, _ in result.ornaments))
    result.extra = [p for p in result.extra if p not in in_ornament]

    expected = int(in_take.sum())
    coverage = len(matched) / expected if expected else 0.0
    played_fraction = (len(matched) + len(result.wrong)) / len(notes)
    score_fraction = (len(matched) + len(result.wrong)) / len(na)
    result.summary = AlignmentSummary(
        coverage=round(coverage, 4),
        matched=len(matched),
        missed=len(result.missed),
        extra=len(result.extra),
        wrong=len(result.wrong),
        ornaments=len(result.ornaments),
        score_notes=len(na),
        performed_notes=len(notes),
        matches_score=coverage >= MIN_COVERAGE
        and played_fraction >= MIN_COVERAGE
        and score_fraction >= MIN_SCORE_FRACTION,
    )
    return result


def _fit(matched: list[tuple[int, int]], na: np.ndarray, notes: list[Note]) -> TimeMap:
    """The time map through the matched pairs."""
    beats = np.array([na["onset_beat"][s] for s, _ in matched], dtype=float)
    return fit_time_map(beats, np.array([notes[p].onset for _, p in matched], dtype=float))


def _repair_far_matches(expected: np.ndarray, written: np.ndarray, pairing: Pairing, notes: list[Note]) -> Pairing:
    """Undo matches played more than MATCH_REACH_S from where the time map puts their score note (the
    matcher paired a note left out with a later one of the same key), then pair each freed or missed score
    note with an unmatched played note of its key within reach, nearest first. A note left out stays
    missed instead of taking its neighbour's partner, which then leaves a missed and an extra note elsewhere.
    `expected`: each score note's time-map time; `written`: its key; `pairing`: (matched, missed, extra)."""
    matched, missed, extra = pairing
    far = {(s, p) for s, p in matched if abs(notes[p].onset - expected[s]) > MATCH_REACH_S}
    if not far:
        return matched, missed, extra
    matched = [sp for sp in matched if sp not in far]
    free_s = set(missed) | {s for s, _ in far}
    free_p = set(extra) | {p for _, p in far}
    pairs = sorted(
        (abs(notes[p].onset - expected[s]), s, p)
        for s in free_s
        for p in free_p
        if notes[p].pitch == written[s] and abs(notes[p].onset - expected[s]) <= MATCH_REACH_S
    )
    for _, s, p in pairs:
        if s in free_s and p in free_p:
            matched.append((s, p))
            free_s.discard(s)
            free_p.discard(p)
    return matched, sorted(free_s), sorted(free_p)


def _repair_instances(expected: np.ndarray, written: np.ndarray, pairing: Pairing, notes: list[Note]) -> Pairing:
    """Move a match to the neighbouring instance of the same key where that fits far better in time. With a key
    repeated (an accompaniment's repeated chord, a repeated melody note) the matcher may pair the one played
    note with the written instance before or after the one it belongs to: a re-strike left out is then
    reported at the wrong time (where the key did sound), and an extra strike of the key is taken for the
    next written one. A pair more than `REPAIR_MIN_ERROR_S` off its time-map time moves to a missed written note
    of its key that is `REPAIR_GAIN` times closer (the left-out note is then the other instance), and a written
    note so paired takes an extra played note of its key that is that much closer (the far note is extra).
    Arguments as for `_repair_far_matches`."""
    matched, missed, extra = pairing
    missed_set, extra_set = set(missed), set(extra)
    repaired: list[tuple[int, int]] = []
    for s, p in sorted(matched, key=lambda sp: -abs(notes[sp[1]].onset - expected[sp[0]])):
        error = abs(notes[p].onset - expected[s])
        if error > REPAIR_MIN_ERROR_S:
            pitch = notes[p].pitch
            other_s = [o for o in missed_set if written[o] == pitch]
            other_p = [o for o in extra_set if notes[o].pitch == pitch]
            best_s = min(other_s, key=lambda o: abs(notes[p].onset - expected[o]), default=None)
            best_p = min(other_p, key=lambda o: abs(notes[o].onset - expected[s]), default=None)
            if best_s is not None and REPAIR_GAIN * abs(notes[p].onset - expected[best_s]) <= error:
                missed_set.discard(best_s)
                missed_set.add(s)
                s = best_s
            elif best_p is not None and REPAIR_GAIN * abs(notes[best_p].onset - expected[s]) <= error:
                extra_set.discard(best_p)
                extra_set.add(p)
                p = best_p
        repaired.append((s, p))
    return repaired, sorted(missed_set), sorted(extra_set)


def added_trills(extra: list[int], notes: list[Note]) -> list[tuple[set[int], int]]:
    """Extra notes that, with the notes around them, alternate quickly between two neighbouring keys: a trill or
    mordent the player added. One (extra-note indices, ornamented pitch) per ornament, at least two extra notes
    each; the ornamented pitch is that of a played note in it that is not extra."""
    extra_set = set(extra)
    runs: list[tuple[set[int], int]] = []
    for e in sorted(extra, key=lambda p: notes[p].onset):
        if runs and e in runs[-1][0]:
            continue
        pitch, onset = notes[e].pitch, notes[e].onset
        near = sorted(
            (
                i
                for i, n in enumerate(notes)
                if abs(n.pitch - pitch) <= TRILL_MAX_INTERVAL and abs(n.onset - onset) <= TRILL_REACH_S
            ),
            key=lambda i: notes[i].onset,
        )
        best: list[int] = []
        for partner in (d for d in range(-TRILL_MAX_INTERVAL, TRILL_MAX_INTERVAL + 1) if d):
            line = [i for i in near if notes[i].pitch in (pitch, pitch + partner)]
            run = _alternating_run(line, line.index(e), notes)
            if len(run) > len(best):
                best = run
        added = {i for i in best if i in extra_set}
        if len(best) < TRILL_MIN_NOTES or len(added) < 2:
            continue
        main = next((notes[i].pitch for i in best if i not in extra_set), notes[best[0]].pitch)
        last = max((notes[i].onset for i in runs[-1][0]), default=-1.0) if runs else -1.0
        if runs and onset - last <= TRILL_GAP_S[1] and abs(runs[-1][1] - main) <= TRILL_MAX_INTERVAL:
            runs[-1] = (runs[-1][0] | added, runs[-1][1])  # the same ornament, broken by a slower note
        else:
            runs.append((added, main))
    return runs


def _alternating_run(line: list[int], at: int, notes: list[Note]) -> list[int]:
    """The longest stretch of `line` (note indices in onset order) around position `at` whose consecutive notes
    change key and follow each other within TRILL_GAP_S."""

    def linked(a: int, b: int) -> bool:
        gap = notes[b].onset - notes[a].onset
        return notes[a].pitch != notes[b].pitch and TRILL_GAP_S[0] <= gap <= TRILL_GAP_S[1]

    lo = hi = at
    while lo > 0 and linked(line[lo - 1], line[lo]):
        lo -= 1
    while hi < len(line) - 1 and linked(line[hi], line[hi + 1]):
        hi += 1
    return line[lo : hi + 1]


def _ornamental(alignment: Alignment, note: Note, notes: list[Note]) -> bool:
    """An extra note that realises a written ornament (trill, turn, mordent) or grace note nearby. The notes
    of a trill or turn follow each other, so a key struck together with its neighbour (one or two semitones
    away) is a brushed key beside a written ornament, not part of it; a grace note may be crushed into its
    main note, so beside a written grace note it still counts as the grace note."""
    na = alignment.score.note_array
    special = np.flatnonzero(na["ornamented"] | na["is_grace"].astype(bool))
    if len(special) == 0 or alignment.time_map is None:
        return False
    times = alignment.time_map(na["onset_beat"][special] + na["duration_beat"][special] / 2)
    grace = na["is_grace"][special].astype(bool)
    reach = np.where(grace, GRACE_WINDOW_S, ORNAMENT_WINDOW_S)
    near = (np.abs(times - note.onset) < reach) & (np.abs(na["pitch"][special] - note.pitch) <= ORNAMENT_MAX_INTERVAL)
    if struck_beside(note.pitch, note.onset, notes, STRUCK_TOGETHER_S):
        near &= grace
    return bool(np.any(near))


def _take_span(score: Score, matched_beats: np.ndarray) -> tuple[float, float]:
    """Beats from the start of the first played bar to the end of the last played bar."""
    if len(matched_beats) == 0:
        return np.inf, -np.inf
    starts, ends = score.bars["start_beat"], score.bars["end_beat"]
    first = np.searchsorted(starts, matched_beats.min(), side="right") - 1
    last = np.searchsorted(starts, matched_beats.max(), side="right") - 1
    return float(starts[max(first, 0)]), float(ends[max(last, 0)])


def _pair_wrong_notes(
    alignment: Alignment, missed: list[int], extra: list[int], notes: list[Note]
) -> tuple[list[int], list[int]]:
    """Pair a missed score note with an extra played note at the same score position → wrong note. The
    position is the span of onsets its chord-mates were played at (an arpeggiated or rolled chord spreads
    them), else its time-map time; the pair nearest in time, then in pitch, is taken first."""
    na = alignment.score.note_array
    time_map = alignment.time_map
    if time_map is None or not missed or not extra:
        return missed, extra
    played_at: dict[float, list[float]] = {}
    for s, p in alignment.matched:
        played_at.setdefault(float(na["onset_beat"][s]), []).append(notes[p].onset)

    def distance(s: int, onset: float) -> float:
        mates = played_at.get(float(na["onset_beat"][s]))
        if not mates:
            return abs(onset - float(time_map(na["onset_beat"][s])))
        return max(min(mates) - onset, onset - max(mates), 0.0)

    candidates = sorted(
        (distance(s, notes[p].onset), abs(notes[p].pitch - int(na["pitch"][s])), s, p)
        for s in missed
        for p in extra
        if 0 < abs(notes[p].pitch - int(na["pitch"][s])) <= WRONG_NOTE_MAX_INTERVAL
    )
    candidates = [c for c in candidates if c[0] <= WRONG_NOTE_WINDOW_S]
    used_s: set[int] = set()
    used_p: set[int] = set()
    for _, _, s, p in candidates:
        if s in used_s or p in used_p:
            continue
        used_s.add(s)
        used_p.add(p)
        alignment.wrong.append((s, p))
    return [s for s in missed if s not in used_s], [p for p in extra if p not in used_p]
