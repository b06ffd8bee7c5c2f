"""Model comments written into the student's score: the report (and assessment) → an annotated MusicXML.

`plan.py` decides what goes where (typed, also sent to the MuseScore plugin), `written.py` reads the score
with music21, `apply.py` writes the plan into it. `annotate_score` is the whole step.
"""

from __future__ import annotations

from pathlib import Path

from llaqo_model.analysis.report import PerformanceReport
from llaqo_model.analysis.score import Score
from llaqo_model.annotate.apply import apply_annotations, check_writable, write_score
from llaqo_model.annotate.plan import ScoreAnnotations, plan_annotations
from llaqo_model.annotate.written import WrittenScore, read_written_score
from llaqo_model.model.assessment import Assessment

__all__ = [
    "ScoreAnnotations",
    "WrittenScore",
    "annotate_score",
    "check_writable",
    "plan_annotations",
    "read_written_score",
]


def annotate_score(
    report: PerformanceReport,
    analysed: Score,
    score_path: str | Path,
    out: str | Path,
    assessment: Assessment | None = None,
) -> ScoreAnnotations:
    """Write `score_path` with the report's comments to `out` (MusicXML); return what was written."""
    check_writable(out)
    written = read_written_score(score_path)
    plan = plan_annotations(report, analysed, written, assessment)
    write_score(apply_annotations(written, plan), out)
    return plan
