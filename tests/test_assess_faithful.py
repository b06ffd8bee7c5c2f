"""Generated feedback never tells a musician about a bar where the analysis found nothing."""

from __future__ import annotations

from llaqo_model.model.assess import faithful_sentences


def test_sentences_naming_unflagged_bars_are_withheld() -> None:
    text = "The tempo is steady. In bar 6 a D♯4 was played for D4. A note was left out in bar 11."
    assert faithful_sentences(text, {6}) == "The tempo is steady. In bar 6 a D♯4 was played for D4."


def test_a_bar_comment_about_another_bar_is_dropped() -> None:
    assert faithful_sentences("In bar 4 the pedal blurs the harmony.", {6}) == ""
    assert faithful_sentences("Bar 6: the left hand is too heavy.", {6}) == "Bar 6: the left hand is too heavy."
