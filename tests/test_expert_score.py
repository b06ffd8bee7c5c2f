"""A corpus excerpt's score follows what the expert played, so its clean take is analysed as clean."""

from __future__ import annotations

from dataclasses import replace

import music21

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import NOTE_ERROR_KINDS, IssueKind, Note
from llaqo_model.analysis.score import load_score
from llaqo_training.examples import mechanical_performance, note_in_bar
from llaqo_training.expert_score import follow_expert

BPM = 90.0


def _note_errors(score, notes: list[Note]) -> list[tuple[int, str]]:
    report = report_from_notes(notes, [], notes[-1].offset + 1, "take", score)
    return [(bar, issue.kind) for bar, issue in report.stated_issues() if issue.kind in NOTE_ERROR_KINDS]


def test_the_experts_own_departures_leave_the_score_and_an_injected_mistake_is_still_found(tmp_path):
    path = tmp_path / "excerpt.mid"
    music21.corpus.parse("bach/bwv66.6").write("midi", fp=str(path))
    score = load_score(path)
    notes = mechanical_performance(score, bpm=BPM)
    # the expert's own reading: a note of bar 3 left out, a note of bar 5 another key, one more in bar 7
    left_out = note_in_bar(score, notes, 3, bpm=BPM)
    other_key = note_in_bar(score, notes, 5, bpm=BPM)
    added = notes[note_in_bar(score, notes, 7, bpm=BPM)]
    expert = [replace(n, pitch=n.pitch + 1) if i == other_key else n for i, n in enumerate(notes) if i != left_out]
    expert = sorted([*expert, replace(added, pitch=added.pitch + 16)], key=lambda n: (n.onset, n.pitch))
    assert {bar for bar, _ in _note_errors(score, expert)} >= {3, 5, 7}

    followed = follow_expert(score, path, expert)

    assert list(followed.bars["bar"]) == list(score.bars["bar"])
    assert _note_errors(followed, expert) == []
    assert _note_errors(load_score(path), expert) == []  # the file itself was rewritten
    slip = note_in_bar(followed, expert, 2, bpm=BPM)
    student = [replace(n, pitch=n.pitch - 1) if i == slip else n for i, n in enumerate(expert)]
    assert _note_errors(followed, student) == [(2, IssueKind.WRONG_NOTE)]
