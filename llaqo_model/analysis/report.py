"""The one typed result of analysing a take: `PerformanceReport`.

Every later part (model prompt, server messages, corpus labels, HTML page) reads this type;
nobody re-parses another part's output. `to_dict()` gives the JSON contract documented in README.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
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
ISSUE_KINDS: tuple[str, ...] = (
    "wrong_note",
    "missed_note",
    "extra_note",
    "rushing",
    "dragging",
    "uneven",
    "dynamics",
    "balance",
    "articulation",
    "asynchrony",
    "pedal_blur",
    "restart",
    "unclear",
    "ornament",
)
NOT_FAULTS: tuple[str, ...] = ("ornament",)  # kinds that describe a choice, not a problem


@dataclass
class Note:
    """A performed (transcribed) note; times in seconds, MIDI pitch and velocity."""

    onset: float
    offset: float
    pitch: int
    velocity: int


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

    kind: str
    detail: str
    time_s: float
    severity: float = 1.0
    pitch: int | None = None
    expected_pitch: int | None = None


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

    @property
    def has_problems(self) -> bool:
        """Whether any issue in this bar is a fault (an added ornament alone is not)."""
        return any(i.kind not in NOT_FAULTS for i in self.issues)


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
    measures: dict[str, Any] = field(default_factory=dict)
    available_measures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    score_notes: list[dict[str, Any]] = field(default_factory=list)

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
            bars=[Bar(**{**b, "issues": [Issue(**i) for i in b.get("issues", [])]}) for b in data.get("bars", [])],
            measures=dict(data.get("measures", {})),
            available_measures=list(data.get("available_measures", [])),
            warnings=list(data.get("warnings", [])),
            score_notes=list(data.get("score_notes", [])),
        )

    @classmethod
    def from_json(cls, text: str) -> PerformanceReport:
        """Parse `to_json()` output."""
        return cls.from_dict(json.loads(text))

    def issues(self) -> list[tuple[int, Issue]]:
        """All bar issues as (bar number, issue), in time order."""
        found = [(b.bar, i) for b in self.bars for i in b.issues]
        return sorted(found, key=lambda bi: bi[1].time_s)

    def bars_with(self, kind: str) -> list[int]:
        """Bar numbers that carry at least one issue of `kind`."""
        return [b.bar for b in self.bars if any(i.kind == kind for i in b.issues)]

    def to_prompt_text(self, max_issues: int = 12) -> str:
        """A compact text rendering for a language model prompt (grounding)."""
        m = self.measures
        parts = [f"duration {self.duration_s:.0f}s"]
        if m.get("tempo_bpm") is not None:
            parts.append(f"tempo {m['tempo_bpm']:.0f} bpm")
        if m.get("tempo_cv") is not None:
            parts.append(f"tempo variation {100 * m['tempo_cv']:.0f}%")
        if m.get("velocity_mean") is not None:
            parts.append(f"velocity {m['velocity_mean']:.0f} range {m.get('velocity_range', 0):.0f}")
        if self.alignment is not None:
            a = self.alignment
            if not a.matches_score:
                parts.append("take does not match the score")
            else:
                parts.append(f"coverage {100 * a.coverage:.0f}% wrong {a.wrong} missed {a.missed} extra {a.extra}")
        lines = ["; ".join(parts)]
        for bar, issue in self.issues()[:max_issues]:
            lines.append(f"bar {bar}: {issue.kind}")
        return "\n".join(lines)
