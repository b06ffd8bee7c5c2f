"""Keys heard struck under the transcriber's threshold: a brushed neighbour of a struck key is a candidate extra
note, what the struck notes explain (their partials, the key's own note, a written key) is not, and a brushed
key is stated less surely than a key struck at full strength."""

from __future__ import annotations

import numpy as np
import pytest

from llaqo_model.analysis.faint import FAINT_FLOOR, faint_strikes
from llaqo_model.analysis.report import Issue, IssueKind, Note
from llaqo_model.analysis.transcribe import LOWEST_KEY, OnsetEvidence
from llaqo_model.analysis.verify import confidence, issue_features

FRAME_S = 0.02
CHORD_S = 1.0  # the chord C4 E4 G4 is struck at 1 s
CHORD = (60, 64, 67)


def _evidence(peaks: dict[tuple[int, float], float]) -> OnsetEvidence:
    """Evidence of a take with the chord struck clearly at 1 s, and the given (key, time) → score peaks."""
    scores = np.full((150, 88), -9.0, dtype=np.float32)
    for (pitch, time_s), score in {**{(p, CHORD_S): 6.0 for p in CHORD}, **peaks}.items():
        scores[round(time_s / FRAME_S), pitch - LOWEST_KEY] = score
    return OnsetEvidence(scores=scores, frame_s=FRAME_S)


def _chord() -> list[Note]:
    return [Note(CHORD_S, CHORD_S + 0.5, p, 70) for p in CHORD]


def _written() -> list[tuple[int, float]]:
    return [(p, CHORD_S) for p in CHORD]


def test_a_neighbour_heard_under_the_threshold_with_the_chord_is_a_candidate():
    strikes = faint_strikes(_evidence({(62, CHORD_S): -1.0}), _chord(), _written())
    assert [(s.pitch, s.time_s, s.score) for s in strikes] == [(62, CHORD_S, -1.0)]


@pytest.mark.parametrize(
    ("pitch", "time_s", "why"),
    [
        (72, CHORD_S, "an octave above C4: its second partial"),
        (79, CHORD_S, "a twelfth above C4: its third partial"),
        (84, CHORD_S, "a double octave above C4: its fourth partial"),
        (64, CHORD_S + 0.2, "E4's own note heard again as it sounds"),
        (62, CHORD_S + 0.6, "no key struck with it"),
        (50, CHORD_S, "an octave from any key struck, not a neighbour"),
    ],
)
def test_what_the_struck_notes_explain_is_no_candidate(pitch, time_s, why):
    assert faint_strikes(_evidence({(pitch, time_s): -1.0}), _chord(), _written()) == [], why


def test_a_soft_written_key_is_left_to_the_missed_note_check():
    written = [*_written(), (62, CHORD_S + 0.04)]
    assert faint_strikes(_evidence({(62, CHORD_S): -1.0}), _chord(), written) == []


def test_background_under_the_floor_is_no_candidate():
    assert faint_strikes(_evidence({(62, CHORD_S): FAINT_FLOOR - 0.5}), _chord(), _written()) == []


def test_a_full_strength_extra_key_outranks_a_brushed_one_and_a_clearer_brush_a_fainter_one():
    """An extra D4 struck with the chord: transcribed at full strength, or heard only under the threshold
    (clearly, or barely)."""
    full = [*_chord(), Note(CHORD_S, CHORD_S + 0.5, 62, 70)]
    issue = Issue(IssueKind.EXTRA_NOTE, "bar 1: an extra D4", CHORD_S, pitch=62)
    struck = confidence(issue.kind, issue_features(issue, _evidence({(62, CHORD_S): 5.0}), full))
    clear = confidence(issue.kind, issue_features(issue, _evidence({(62, CHORD_S): -0.5}), _chord()))
    faint = confidence(issue.kind, issue_features(issue, _evidence({(62, CHORD_S): -3.5}), _chord()))
    assert 1.0 >= struck > clear > faint >= 0.0


def test_a_key_between_two_struck_semitone_neighbours_is_no_candidate():
    """B3 and C♯4 struck together: a peak at C4 is their bleed added up, not a brushed key; beside only one of
    them (C4 with C♯4 alone) it is a candidate."""
    scores = np.full((150, 88), -9.0, dtype=np.float32)
    frame = round(CHORD_S / FRAME_S)
    scores[frame, [59 - LOWEST_KEY, 61 - LOWEST_KEY]] = 6.0
    scores[frame, 60 - LOWEST_KEY] = -1.0
    evidence = OnsetEvidence(scores=scores, frame_s=FRAME_S)
    cluster = [Note(CHORD_S, CHORD_S + 0.5, p, 85) for p in (59, 61)]
    assert faint_strikes(evidence, cluster, [(59, CHORD_S), (61, CHORD_S)]) == []
    scores[frame, 59 - LOWEST_KEY] = -9.0
    alone = faint_strikes(OnsetEvidence(scores=scores, frame_s=FRAME_S), cluster[1:], [(61, CHORD_S)])
    assert [s.pitch for s in alone] == [60]
