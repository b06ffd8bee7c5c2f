"""The one typed result of analysing a take: `PerformanceReport`.

Every later part (model prompt, server messages, corpus labels, HTML page) reads this type;
nobody re-parses another part's output. `to_dict()` gives the JSON contract documented in README.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

RUBRIC_KEYS: tuple[str, ...] = (
    "pitch_accuracy",
    "rhythm_accuracy",
    "tempo_stability",
    "tempo_choice",
    "dynamic_range",
    "dynamic_shaping",
    "articulation",
    "attack_cleanliness",
    "evenness",
    "hand_balance",
    "pedaling",
    "expressiveness",
)
TECHNIQUES: tuple[str, ...] = (
    "scales",
    "arpeggios",
    "ornaments",
    "repeated_notes",
    "double_notes",
    "octaves",
    "staccato",
)


class IssueKind(StrEnum):
    """What a bar issue is about; the value is the JSON spelling (a contract: extend, never rename)."""

    WRONG_NOTE = "wrong_note"
    MISSED_NOTE = "missed_note"
    EXTRA_NOTE = "extra_note"
    RUSHING = "rushing"
    DRAGGING = "dragging"
    UNEVEN = "uneven"
    DYNAMICS = "dynamics"
    BALANCE = "balance"
    ARTICULATION = "articulation"
    ASYNCHRONY = "asynchrony"
    PEDAL_BLUR = "pedal_blur"
    RESTART = "restart"
    UNCLEAR = "unclear"
    ORNAMENT = "ornament"


NOTE_ERROR_KINDS: frozenset[IssueKind] = frozenset({IssueKind.WRONG_NOTE, IssueKind.MISSED_NOTE, IssueKind.EXTRA_NOTE})
NOT_FAULTS: frozenset[IssueKind] = frozenset({IssueKind.ORNAMENT})  # a choice the player made, not a problem
# Issues below this confidence stay in the JSON but are not stated to the player (summary, HTML, feedback,
# annotated score, server bar messages) nor counted in a bar's decision; calibrated by
# benchmarks/bench_analysis.py (at 0.5, nine stated note issues in ten were real there).
DEFAULT_MIN_CONFIDENCE = 0.5


@dataclass
class Note:
    """A performed (transcribed) note; times in seconds, MIDI pitch and velocity."""

    onset: float
    offset: float
    pitch: int
    velocity: int


NEIGHBOUR_SEMITONES = 2  # a finger slips or brushes onto a key one or two semitones from the one it meant


def struck_beside(pitch: int, time_s: float, notes: list[Note], within_s: float) -> bool:
    """Whether a key one or two semitones from `pitch` was struck within `within_s` of `time_s`: the key a
    finger meant, when `pitch` is one it slipped or brushed onto."""
    return any(
        0 < abs(n.pitch - pitch) <= NEIGHBOUR_SEMITONES and abs(n.onset - time_s) <= within_s for n in notes
    )


@dataclass
class PedalInterval:
    """A sustain-pedal press, in seconds."""

    onset: float
    offset: float


@dataclass
class AlignmentSummary:
    """How much of the score the take covers and how the notes were classified."""

    coverage: float = 0.0
    matched: int = 0
    missed: int = 0
    extra: int = 0
    wrong: int = 0
    restarts: int = 0
    ornaments: int = 0
    score_notes: int = 0
    performed_notes: int = 0
    matches_score: bool = True


@dataclass
class Issue:
    """One problem a teacher would point at, located in a bar and in time."""

    kind: IssueKind
    detail: str
    time_s: float
    severity: float = 1.0
    pitch: int | None = None
    expected_pitch: int | None = None
    confidence: float = 1.0  # how likely the issue is real, 0–1 (note issues: checked against the audio)


@dataclass
class Bar:
    """One bar of the score (its own measure number) as it was played."""

    bar: int
    start_s: float
    end_s: float
    tempo_bpm: float | None = None
    issues: list[Issue] = field(default_factory=list)
    notes_expected: int = 0
    notes_matched: int = 0
    mean_velocity: float | None = None
    onset_deviation_ms: float | None = None
    articulation_ratio: float | None = None
    asynchrony_ms: float | None = None
    balance_db: float | None = None

    def stated_issues(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> list[Issue]:
        """The issues confident enough to tell the player."""
        return [i for i in self.issues if i.confidence >= min_confidence]

    def has_problems_at(self, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> bool:
        """Whether a stated issue in this bar is a fault (an added ornament alone is not)."""
        return any(i.kind not in NOT_FAULTS for i in self.stated_issues(min_confidence))

    @property
    def has_problems(self) -> bool:
        """`has_problems_at` the default confidence."""
        return self.has_problems_at()


@dataclass
class ScoreNote:
    """One note of the score as the alignment saw it: where it should sound and what became of it."""

    pitch: int
    bar: int
    onset_beat: float
    duration_beat: float
    expected_s: float
    expected_end_s: float
    status: str  # matched | wrong | missed | outside (not in the part of the score the take covers)


@dataclass
class WrittenMarks:
    """What a passage's score asks beyond its notes (`marks.written_marks`): the dynamic level in force at its
    notes (mean and span, ppp 1 … fff 8; None where it marks no dynamics), accents (sf, fz, …) and hairpins
    per bar, the shares of its notes that start under a written sustain pedal and under a slur, and the level
    in force over the notes of each bar the take played (in the order of `PerformanceReport.bars`)."""

    dynamic_level: float | None = None
    dynamic_span: float | None = None
    accents_per_bar: float = 0.0
    hairpins_per_bar: float = 0.0
    pedal_share: float = 0.0
    slur_share: float = 0.0
    bar_levels: list[float | None] = field(default_factory=list)


@dataclass
class Measures:
    """Take-level measures: score-free ones always, score-informed ones (None without a score)."""

    note_count: int = 0
    notes_per_s: float = 0.0
    pedal_fraction: float = 0.0
    pedal_presses: int = 0
    asynchrony_ms: float | None = None
    ioi_tempo_bpm: float | None = None
    ioi_cv: float | None = None
    velocity_mean: float | None = None
    velocity_std: float | None = None
    velocity_range: float | None = None
    velocity_contour: list[float] = field(default_factory=list)
    velocity_contour_std: float | None = None
    duration_ioi_ratio: float | None = None
    legato_overlap_fraction: float | None = None
    # score-informed (from the bars)
    tempo_bpm: float | None = None
    written_tempo_bpm: float | None = None  # the score's tempo mark, in the same beats; None when it marks none
    written_key_fifths: int | None = None  # the score's key signature where the take starts (sharps > 0, flats < 0)
    written_marks: WrittenMarks | None = None  # the score's dynamics, accents, hairpins, pedal and slurs
    tempo_cv: float | None = None
    onset_deviation_ms: float | None = None
    bar_articulation_ratio: float | None = None
    chord_asynchrony_ms: float | None = None
    melody_balance: float | None = None
    issue_counts: dict[str, int] = field(default_factory=dict)
    note_errors: int | None = None
    note_errors_per_min: float | None = None
    bars_played: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Measures:
        """Rebuild from `asdict` output (unknown keys from newer versions are ignored)."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        if isinstance(kept.get("written_marks"), dict):
            marks = {f.name for f in fields(WrittenMarks)}
            kept["written_marks"] = WrittenMarks(**{k: v for k, v in kept["written_marks"].items() if k in marks})
        return cls(**kept)


@dataclass
class PerformanceReport:
    """Everything measured about one take, with or without a score."""

    audio: str
    score: str | None
    duration_s: float
    notes: list[Note] = field(default_factory=list)
    pedal: list[PedalInterval] = field(default_factory=list)
    alignment: AlignmentSummary | None = None
    bars: list[Bar] = field(default_factory=list)
    measures: Measures = field(default_factory=Measures)
    available_measures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    score_notes: list[ScoreNote] = field(default_factory=list)
    score_mismatch: str | None = None  # why the take was judged not to be this score (then no bar comments)
    min_confidence: float = DEFAULT_MIN_CONFIDENCE  # issues below it are kept here but not stated

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (keys are the public contract)."""
        return asdict(self)

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to a JSON string."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def save(self, path: str | Path) -> None:
        """Write the JSON to `path`."""
        Path(path).write_text(self.to_json(indent=1), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PerformanceReport:
        """Rebuild a report from `to_dict()` output."""
        alignment = data.get("alignment")
        return cls(
            audio=data["audio"],
            score=data.get("score"),
            duration_s=float(data["duration_s"]),
            notes=[Note(**n) for n in data.get("notes", [])],
            pedal=[PedalInterval(**p) for p in data.get("pedal", [])],
            alignment=AlignmentSummary(**alignment) if alignment else None,
            bars=[
                Bar(**{**b, "issues": [Issue(**{**i, "kind": IssueKind(i["kind"])}) for i in b.get("issues", [])]})
                for b in data.get("bars", [])
            ],
            measures=Measures.from_dict(data.get("measures", {})),
            available_measures=list(data.get("available_measures", [])),
            warnings=list(data.get("warnings", [])),
            score_notes=[ScoreNote(**n) for n in data.get("score_notes", [])],
            score_mismatch=data.get("score_mismatch"),
            min_confidence=float(data.get("min_confidence", DEFAULT_MIN_CONFIDENCE)),
        )

    @classmethod
    def from_json(cls, text: str) -> PerformanceReport:
        """Parse `to_json()` output."""
        return cls.from_dict(json.loads(text))

    def issues(self) -> list[tuple[int, Issue]]:
        """All bar issues as (bar number, issue), in time order."""
        found = [(b.bar, i) for b in self.bars for i in b.issues]
        return sorted(found, key=lambda bi: bi[1].time_s)

    def stated_issues(self) -> list[tuple[int, Issue]]:
        """The issues to tell the player — those at or above `min_confidence` — as (bar, issue), in time
        order. Everything that states issues (summary, HTML, feedback, annotated score, server) uses this."""
        return [(bar, i) for bar, i in self.issues() if i.confidence >= self.min_confidence]

    def problem_bars(self) -> list[int]:
        """Bar numbers with a stated fault (what gets a bar comment and shading)."""
        return [b.bar for b in self.bars if b.has_problems_at(self.min_confidence)]

    def bars_with(self, kind: IssueKind) -> list[int]:
        """Bar numbers that carry at least one stated issue of `kind`."""
        return sorted({bar for bar, i in self.stated_issues() if i.kind == kind})

    def to_prompt_text(self, max_issues: int = 12) -> str:
        """A compact text rendering for a language model prompt (grounding)."""
        m = self.measures
        parts = [f"duration {self.duration_s:.0f}s"]
        if m.tempo_bpm is not None:
            parts.append(f"tempo {m.tempo_bpm:.0f} bpm")
        if m.tempo_cv is not None:
            parts.append(f"tempo variation {100 * m.tempo_cv:.0f}%")
        if m.velocity_mean is not None:
            parts.append(f"velocity {m.velocity_mean:.0f} range {m.velocity_range or 0:.0f}")
        if self.alignment is not None:
            a = self.alignment
            if not a.matches_score:
                parts.append("take does not match the score")
            else:
                parts.append(f"coverage {100 * a.coverage:.0f}% wrong {a.wrong} missed {a.missed} extra {a.extra}")
        lines = ["; ".join(parts)]
        for bar, issue in self.stated_issues()[:max_issues]:
            lines.append(f"bar {bar}: {issue.kind}")
        return "\n".join(lines)
