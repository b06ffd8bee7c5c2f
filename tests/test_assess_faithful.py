"""Generated feedback never tells a musician about a bar where the analysis found nothing."""

from __future__ import annotations

from llaqo_model.model.assess import faithful_sentences


def test_sentences_naming_unflagged_bars_are_withheld() -> None:
    text = "The tempo is steady. In bar 6 a D♯4 was played for D4. A note was left out in bar 11."
    assert faithful_sentences(text, {6}) == "The tempo is steady. In bar 6 a D♯4 was played for D4."


def test_a_bar_comment_about_another_bar_is_dropped() -> None:
    assert faithful_sentences("In bar 4 the pedal blurs the harmony.", {6}) == ""
    assert faithful_sentences("Bar 6: the left hand is too heavy.", {6}) == "Bar 6: the left hand is too heavy."


def test_a_bar_with_only_an_added_ornament_has_no_problem_to_comment_on() -> None:
    from llaqo_model.analysis.report import Bar, Issue

    ornament = Bar(bar=4, start_s=0.0, end_s=2.0, issues=[Issue("ornament", "bar 4: added a trill on B4", 1.0)])
    slip = Bar(bar=6, start_s=2.0, end_s=4.0, issues=[Issue("wrong_note", "bar 6: played D♯4 where …", 3.0)])
    assert not ornament.has_problems and slip.has_problems
