"""What to write into a score: a typed plan built from the report (and the assessment).

The plan is independent of how it is written: `apply.py` writes it with music21 (`llaqo annotate`), the
MuseScore plugin receives it as JSON from the loopback HTTP endpoint and writes it with MuseScore's API.

Bars: every issue belongs to a bar of the report, numbered as printed (pickup = bar 0). The analysis
unfolds repeats, so a written bar inside a repeat can be played twice; the plan maps each pass back to
the one written measure that carries that number (its first occurrence) and prefixes what was heard with
"1st time:" / "2nd time:" whenever the analysed score plays that bar more than once. A note wrong on
either pass is coloured once. Positions inside a bar come from the analysed score's own beats (converted
to quarter notes from the bar's start), so they match the written notes exactly for MusicXML and to the
quantisation grid for a MIDI score.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llaqo_model.analysis.report import Bar, Issue, IssueKind, PerformanceReport, ScoreNote
from llaqo_model.analysis.score import Score, pitch_name
from llaqo_model.annotate.written import WrittenScore
from llaqo_model.errors import ScoreError
from llaqo_model.model.assessment import Assessment

WRONG_COLOUR = "#D62728"  # red: this note was played as another pitch (the pitch played is named at it)
MISSED_COLOUR = "#1F77B4"  # blue: this note was not played (distinct from red for colour-blind readers too)
COMMENT_COLOUR = "#A0182A"  # dark red, a teacher's pen, readable in greyscale print
NO_BREAK = "\u00a0"  # a space that line wrapping (ours and the notation program's) keeps
LINE_CHARS = 34  # a comment line about as wide as one bar of a printed chorale system
MAX_FEEDBACK_CHARS = 360  # "a few lines" of the model's feedback at the top of the page
LEGEND = ((WRONG_COLOUR, "red note: played as another pitch (named at the note)"),
          (MISSED_COLOUR, "blue note: not played"))

SHORT: dict[IssueKind, str] = {  # bar-level issues in a few words (the note errors are spelled out)
    IssueKind.RUSHING: "rushed",
    IssueKind.DRAGGING: "held back",
    IssueKind.UNEVEN: "uneven timing",
    IssueKind.DYNAMICS: "sudden change of dynamics",
    IssueKind.BALANCE: "melody covered",
    IssueKind.ARTICULATION: "notes cut short",
    IssueKind.ASYNCHRONY: "chords not together",
    IssueKind.PEDAL_BLUR: "pedal blurs the harmony",
    IssueKind.UNCLEAR: "many notes differ: play it slowly with the score",
    IssueKind.RESTART: "stopped and started again",
}


@dataclass
class BarText:
    """A comment above a written measure."""

    measure_index: int
    bar: int
    text: str


@dataclass
class NoteMark:
    """A written note to colour; `label` names the pitch played instead (empty for a missed note)."""

    part: int
    measure_index: int
    bar: int
    offset_ql: float
    pitch: int
    colour: str
    label: str = ""


@dataclass
class PositionMark:
    """A short text at a position in a measure: an extra note ('+E♭4') or where the player restarted."""

    part: int
    measure_index: int
    bar: int
    offset_ql: float
    text: str


@dataclass
class ScoreAnnotations:
    """Everything `annotate` writes into a score; `header` goes at the top of the first page (one
    paragraph per line, unwrapped: each writer wraps it to the width its text size allows)."""

    header: str
    bar_texts: list[BarText] = field(default_factory=list)
    notes: list[NoteMark] = field(default_factory=list)
    marks: list[PositionMark] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON the MuseScore plugin reads (documented in docs/protocol.md)."""
        return asdict(self)


def plan_annotations(
    report: PerformanceReport, analysed: Score, written: WrittenScore, assessment: Assessment | None = None
) -> ScoreAnnotations:
    """Turn the report's bar issues (and the model's bar comments) into marks on the written score."""
    if report.score_mismatch or (report.alignment is not None and not report.alignment.matches_score):
        raise ScoreError(f"{report.score_mismatch or 'the take does not match the score'}; nothing was written")
    located = _Locator(report, analysed)
    plan = ScoreAnnotations(header="")
    phrases: dict[int, list[str]] = {}
    for bar in report.bars:
        index = written.measure_index(bar.bar)
        stated = bar.stated_issues(report.min_confidence)
        if index is None or not stated:
            continue
        said = []
        for issue in stated:
            said.append(_place(issue, bar, located, written, index, analysed.key_fifths, plan))
        prefix = located.pass_label(bar)
        phrases.setdefault(index, []).append(prefix + "; ".join(_merge(said)))
    if assessment is not None:
        for comment in assessment.bar_comments:
            index = written.measure_index(comment.bar)
            if index is not None:
                phrases.setdefault(index, []).append(f"LLaQo: {comment.text}")
    for index, lines in sorted(phrases.items()):
        wrapped = [textwrap.fill(line, LINE_CHARS) for line in lines]
        plan.bar_texts.append(BarText(index, written.bar_numbers[index], "\n".join(wrapped)))
    plan.header = header_text(report, assessment, plan)
    return plan


def header_text(report: PerformanceReport, assessment: Assessment | None, plan: ScoreAnnotations) -> str:
    """The block at the top of the first page: what was found, the ratings, a few lines of feedback, and
    a key to the colours and marks the page uses."""
    line = "LLaQo · " + report.audio.replace("\\", "/").rsplit("/", 1)[-1]
    a = report.alignment
    if a is not None:
        line += f" · {a.matched} of {a.score_notes} notes as written, {a.wrong} wrong, {a.missed} missed"
        line += f", {a.extra} extra" + (f", {a.restarts} restart(s)" if a.restarts else "")
    lines = [line]
    if assessment is not None:
        ratings = " · ".join(f"{k.replace('_', ' ')} {v}" for k, v in assessment.ratings.items())
        lines.append(
            f"Overall {assessment.overall}/6 · difficulty {assessment.difficulty}/9 · technique "
            f"{assessment.technique} · ratings (1–6): {ratings}"
        )
        if assessment.feedback:
            lines.append(textwrap.shorten(assessment.feedback, MAX_FEEDBACK_CHARS))
    colours = {n.colour for n in plan.notes}
    key = [text for colour, text in LEGEND if colour in colours]
    key += ["+: an extra note"] if any(m.text.startswith("+") for m in plan.marks) else []
    if key:
        lines.append("Key: " + " · ".join(key))
    return "\n".join(lines)


def _merge(said: list[str]) -> list[str]:
    """Combine phrases of one kind ('wrong: D♯4 for D4', 'wrong: F4 for E4' → 'wrong: D♯4 for D4, F4 for E4')."""
    merged: dict[str, list[str]] = {}
    for phrase in said:
        head, sep, rest = phrase.partition(": ")
        key = head if sep else phrase
        merged.setdefault(key, [])
        if sep and rest not in merged[key]:
            merged[key].append(rest)
    # spaces inside one item do not break, so a line never ends between 'D♯4 for' and 'D4'
    return [f"{k}: {', '.join(i.replace(' ', NO_BREAK) for i in v)}" if v else k for k, v in merged.items()]


def _place(
    issue: Issue, bar: Bar, located: _Locator, written: WrittenScore, index: int, fifths: int, plan: ScoreAnnotations
) -> str:
    """Add the issue's note or position marks to `plan`; return its phrase for the bar comment."""
    if issue.kind in (IssueKind.WRONG_NOTE, IssueKind.MISSED_NOTE) and issue.expected_pitch is not None:
        wrong = issue.kind == IssueKind.WRONG_NOTE
        played = pitch_name(issue.pitch, fifths) if wrong and issue.pitch is not None else ""
        offset = located.score_note_offset(issue, bar)
        found = written.find(bar.bar, offset, issue.expected_pitch) if offset is not None else []
        for k, note in enumerate(found):  # a unison of two voices is one key: both coloured, named once
            mark = NoteMark(
                note.part, note.measure_index, note.bar, note.offset_ql, note.pitch,
                WRONG_COLOUR if wrong else MISSED_COLOUR, played if k == 0 else "",
            )
            if mark not in plan.notes:
                plan.notes.append(mark)
        name = found[0].element.pitch.unicodeNameWithOctave if found else pitch_name(issue.expected_pitch, fifths)
        voice = written.voice_name(found[0].part) if found else ""
        name += f" ({voice})" if voice else ""
        return f"wrong: {played} for {name}" if wrong else f"missed: {name}"
    if issue.kind == IssueKind.EXTRA_NOTE and issue.pitch is not None:
        text = f"+{pitch_name(issue.pitch, fifths)}"
        _mark_at(issue, bar, located, written, index, text, plan)
        return f"extra: {pitch_name(issue.pitch, fifths)}"
    if issue.kind == IssueKind.RESTART:
        _mark_at(issue, bar, located, written, index, "restart", plan)
    if issue.kind in SHORT:
        return SHORT[issue.kind]
    return issue.detail.split(": ", 1)[-1]  # e.g. an added ornament, in the analysis's own words


def _mark_at(
    issue: Issue, bar: Bar, located: _Locator, written: WrittenScore, index: int, text: str, plan: ScoreAnnotations
) -> None:
    """A position mark at the written onset nearest the issue's time, in the part nearest its pitch."""
    offset = located.time_offset(issue.time_s, bar)
    onsets = written.onsets(index)
    part = 0
    if onsets:
        nearest = min(abs(o - offset) for o, _, _ in onsets)
        at = [(o, p, s) for o, p, s in onsets if abs(abs(o - offset) - nearest) < 1e-6]
        offset = at[0][0]
        if issue.pitch is not None:
            part = min(at, key=lambda ops: abs(ops[1] - issue.pitch))[2]
    plan.marks.append(PositionMark(part, index, bar.bar, round(offset, 4), text))


class _Locator:
    """Maps report times and score notes to the analysed score's (unfolded) bars and quarter offsets."""

    def __init__(self, report: PerformanceReport, analysed: Score) -> None:
        self.rows = analysed.bars
        part = analysed.part
        self._quarter = lambda beats: np.asarray(part.quarter_map(part.inv_beat_map(np.asarray(beats, float))))
        self._row_start_q = self._quarter(self.rows["start_beat"])
        timed = sorted((n.onset_beat, n.expected_s) for n in report.score_notes if n.status != "outside")
        if not timed:
            raise ScoreError("the report has no score notes to place comments with (was it made with a score?)")
        self._beats = np.array([b for b, _ in timed])
        self._times = np.maximum.accumulate(np.array([t for _, t in timed]))
        self.score_notes = report.score_notes
        numbers = list(self.rows["bar"])
        self._passes = [numbers[:i].count(n) for i, n in enumerate(numbers)]
        self._repeated = {n for n in numbers if numbers.count(n) > 1}

    def row_at_time(self, time_s: float) -> int:
        """The analysed bar row sounding at `time_s`."""
        beat = float(np.interp(time_s, self._times, self._beats))
        return self.row_at_beat(beat)

    def row_at_beat(self, beat: float) -> int:
        """The analysed bar row containing `beat`."""
        row = int(np.searchsorted(self.rows["start_beat"], beat + 1e-6, side="right")) - 1
        return min(max(row, 0), len(self.rows) - 1)

    def bar_row(self, bar: Bar) -> int:
        """The analysed row of a report bar (its middle, so bar lines never tip it into a neighbour)."""
        row = self.row_at_time((bar.start_s + bar.end_s) / 2)
        if self.rows["bar"][row] != bar.bar:  # a tempo map too coarse to tell: the first row of that number
            row = next((i for i, n in enumerate(self.rows["bar"]) if n == bar.bar), row)
        return row

    def pass_label(self, bar: Bar) -> str:
        """'2nd time: ' for a repeated bar's second pass; '' for a bar played once."""
        if bar.bar not in self._repeated:
            return ""
        n = self._passes[self.bar_row(bar)] + 1
        return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n, 'th') } time: "

    def quarter_in_row(self, beat: float, row: int) -> float:
        """Quarter notes from the start of `row` to `beat`."""
        return round(float(self._quarter([beat])[0] - self._row_start_q[row]), 4)

    def score_note_offset(self, issue: Issue, bar: Bar) -> float | None:
        """Offset in its bar of the score note a wrong/missed issue is about (nearest in time, same pitch)."""
        row = self.bar_row(bar)
        lo, hi = self.rows["start_beat"][row], self.rows["end_beat"][row]
        status = "wrong" if issue.kind == IssueKind.WRONG_NOTE else "missed"
        candidates: list[ScoreNote] = [
            n
            for n in self.score_notes
            if n.status == status and n.pitch == issue.expected_pitch and lo - 1e-6 <= n.onset_beat < hi - 1e-6
        ]
        if not candidates:
            return None
        best = min(candidates, key=lambda n: abs(n.expected_s - issue.time_s))
        return self.quarter_in_row(best.onset_beat, row)

    def time_offset(self, time_s: float, bar: Bar) -> float:
        """Offset in its bar of a moment of the take (an extra note, a restart)."""
        row = self.bar_row(bar)
        beat = float(np.interp(time_s, self._times, self._beats))
        beat = min(max(beat, self.rows["start_beat"][row]), self.rows["end_beat"][row] - 1e-6)
        return max(self.quarter_in_row(beat, row), 0.0)
