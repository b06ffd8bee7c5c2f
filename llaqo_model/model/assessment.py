"""The one typed result of the model: `Assessment` (what `analyze --json`, `batch` and the server carry)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class BarComment:
    """The model's comment on one bar the analysis flagged."""

    bar: int
    text: str


@dataclass
class Assessment:
    """Ratings on the rubric (1–6), overall, difficulty (1–9), technique, feedback and bar comments.

    `expected_ratings` are the expected values of the constrained rating answers; `descriptors` are
    perceptual descriptors on their labels' own 0–1 scale (empty when the model has none);
    `withheld_comments` counts generated sentences dropped because they named a bar the analysis did not flag.
    """

    ratings: dict[str, int]
    overall: int
    difficulty: int
    technique: str
    feedback: str = ""
    bar_comments: list[BarComment] = field(default_factory=list)
    expected_ratings: dict[str, float] = field(default_factory=dict)
    descriptors: dict[str, float] = field(default_factory=dict)
    withheld_comments: int = 0
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (keys are the public contract, merged into report JSON and server messages)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assessment:
        """Rebuild from `to_dict()` output (extra keys, such as a report's, are ignored)."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        kept["bar_comments"] = [BarComment(**c) for c in data.get("bar_comments", [])]
        return cls(**kept)

