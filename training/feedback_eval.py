"""Feedback figures over analysed takes: precision of named bars, recall of the top-three problem bars, withheld.

A sentence is precise when every bar it names carries, in the analysis, the problem the sentence names.
The analysis's top problem bars are its three bars with the largest total severity of stated issues (those
at or above the report's confidence threshold, as everything shown to the player; ornaments, a player's
choice, excluded); recall is the share of them that the feedback names.
"""

from __future__ import annotations

import re

from llaqo_model.analysis.report import NOT_FAULTS, PerformanceReport
from llaqo_model.model.feedback import PRACTICE, compose_feedback

TOP = 3  # the issue's "top three" problem bars

BARS = re.compile(r"\bbars? ((?:\d+(?:, | and )?)+)")


def sentence_bars(sentence: str) -> set[int]:
    """The bar numbers a sentence names."""
    return {int(n) for m in BARS.findall(sentence) for n in re.findall(r"\d+", m)}


def feedback_scores(reports: list[PerformanceReport], ratings: list[dict[str, int]]) -> dict[str, float | int]:
    """Precision, top-three recall and withheld share of the composed feedback over `reports`."""
    precise = naming = hit = wanted = withheld = 0
    for report, rated in zip(reports, ratings, strict=True):
        text = compose_feedback(report, rated)
        withheld += not text
        stated = {b.bar: b.stated_issues(report.min_confidence) for b in report.bars}
        by_bar = {bar: {i.kind for i in issues} for bar, issues in stated.items()}
        for sentence in re.split(r"(?<=\.)\s+", text):
            named = sentence_bars(sentence)
            if not named:
                continue
            naming += 1
            kinds = {k for k, (problem, _) in PRACTICE.items() if f"the {problem} in" in sentence}
            precise += all(kinds & by_bar.get(b, set()) for b in named)
        severity = {bar: sum(i.severity for i in issues if i.kind not in NOT_FAULTS) for bar, issues in stated.items()}
        top = sorted((b for b in severity if severity[b] > 0), key=lambda b: (-severity[b], b))[:TOP]
        wanted += len(top)
        hit += len(set(top) & sentence_bars(text))
    return {
        "takes": len(reports),
        "precision": round(precise / naming, 4) if naming else 1.0,
        "top3_recall": round(hit / wanted, 4) if wanted else 1.0,
        "withheld_share": round(withheld / len(reports), 4) if reports else 0.0,
        "sentences_naming_bars": naming,
    }
