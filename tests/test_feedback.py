"""Feedback for every take: what is good, what to practise first and where, and how, from the analysis."""

from __future__ import annotations

import re

from llaqo_model.analysis.report import Bar, Issue, IssueKind, PerformanceReport
from llaqo_model.model.feedback import compose_feedback
from llaqo_training.feedback_eval import feedback_scores

RATINGS = {k: 3 for k in ("pitch_accuracy", "tempo_stability", "pedaling", "expressiveness")}


def take(bars: dict[int, list[IssueKind]]) -> PerformanceReport:
    out = [
        Bar(bar=b, start_s=b, end_s=b + 1, issues=[Issue(kind=k, detail="", time_s=b + 0.5) for k in kinds])
        for b, kinds in sorted(bars.items())
    ]
    return PerformanceReport(audio="t.wav", score="s.musicxml", duration_s=20.0, bars=out)


def named_bars(text: str) -> set[int]:
    return {int(n) for m in re.findall(r"bars? ([\d, and]+)", text) for n in re.findall(r"\d+", m)}


def test_a_wrong_note_in_bar_12_comes_first_with_a_way_to_practise_it() -> None:
    text = compose_feedback(
        take({3: [IssueKind.RUSHING], 12: [IssueKind.WRONG_NOTE, IssueKind.MISSED_NOTE], 5: []}), RATINGS
    )
    first = text.split("First, ")[1].split(".")[0]
    assert "wrong notes in bar 12" in first and "slowly" in first
    assert "rushing in bar 3" in text


def test_only_bars_with_problems_are_named_and_at_most_three() -> None:
    bars = {b: [IssueKind.UNEVEN] for b in (2, 4, 6, 8, 10)}
    text = compose_feedback(take({**bars, 7: []}), RATINGS)
    assert named_bars(text) <= {2, 4, 6, 8, 10} and len(named_bars(text)) == 3


def test_praise_follows_the_ratings_and_a_clean_take_still_gets_advice() -> None:
    ratings = {**RATINGS, "pedaling": 6, "tempo_stability": 5, "pitch_accuracy": 2}
    text = compose_feedback(take({}), ratings)
    assert text.startswith("What is good: pedaling and tempo stability.")
    assert "pitch accuracy" in text and not named_bars(text)
    assert "What is good" not in compose_feedback(take({}), RATINGS)


def test_feedback_figures_count_the_stated_problems_only() -> None:
    """Precision and top-three recall of the composed feedback, against what the analysis states: an issue
    below the confidence threshold (not shown to the player) is neither a bar the feedback should name nor
    one that makes a sentence precise."""
    report = take({12: [IssueKind.WRONG_NOTE], 3: [IssueKind.RUSHING]})
    doubtful = Issue(kind=IssueKind.MISSED_NOTE, detail="", time_s=7.5, severity=5.0, confidence=0.1)
    report.bars.append(Bar(bar=7, start_s=7, end_s=8, issues=[doubtful]))
    scores = feedback_scores([report], [RATINGS])
    assert scores["precision"] == 1.0 and scores["top3_recall"] == 1.0  # bars 12 and 3, not bar 7
    assert scores["sentences_naming_bars"] >= 1 and scores["withheld_share"] == 0.0
    report.bars[-1].issues[0].confidence = 0.99  # now stated: the heaviest problem, and the feedback names it
    assert 7 in named_bars(compose_feedback(report, RATINGS))
    assert feedback_scores([report], [RATINGS])["top3_recall"] == 1.0
