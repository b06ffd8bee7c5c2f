"""The prompt format and the fixed questions with constrained answers (ratings, difficulty, technique)."""

from __future__ import annotations

from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES

USER = "USER:"
ASSISTANT = "ASSISTANT:"
RATING_RANGE = (1, 6)
DIFFICULTY_RANGE = (1, 9)


def rating_question(key: str) -> str:
    """The canonical question for one rubric dimension."""
    return f"Rate the {key.replace('_', ' ')} of this performance from 1 to 6."


OVERALL_QUESTION = "Rate this performance overall from 1 to 6."
DIFFICULTY_QUESTION = "How difficult is this piece, from 1 to 9?"
TECHNIQUE_QUESTION = "Which technique does this piece mainly practise?"
FEEDBACK_QUESTION = "What feedback would you give this pianist?"


def bar_question(bar: int) -> str:
    """The question asked for each bar the report flags."""
    return f"What happened in bar {bar}?"


def options_for(qtype: str) -> list[str] | None:
    """The allowed answers for a constrained question type, or None for free text.

    Types: 'rating:<key>', 'overall', 'difficulty', 'technique'.
    """
    if qtype.startswith("rating:") or qtype == "overall":
        return [str(i) for i in range(RATING_RANGE[0], RATING_RANGE[1] + 1)]
    if qtype == "difficulty":
        return [str(i) for i in range(DIFFICULTY_RANGE[0], DIFFICULTY_RANGE[1] + 1)]
    if qtype == "technique":
        return list(TECHNIQUES)
    return None


def canonical_questions() -> dict[str, str]:
    """qtype → question for every constrained field of an assessment."""
    questions = {f"rating:{k}": rating_question(k) for k in RUBRIC_KEYS}
    questions["overall"] = OVERALL_QUESTION
    questions["difficulty"] = DIFFICULTY_QUESTION
    questions["technique"] = TECHNIQUE_QUESTION
    return questions


def question_type(question: str) -> str | None:
    """Recognise a canonical constrained question (so `ask` answers it under the constraint too)."""
    q = question.strip().lower()
    for qtype, text in canonical_questions().items():
        if q == text.lower():
            return qtype
    return None


def prompt_parts(question: str, report_text: str | None) -> tuple[str, str]:
    """Text before the audio tokens, and text after them up to where the answer starts."""
    before = f"{USER} "
    grounding = f"\nReport: {report_text}" if report_text else ""
    after = f"{grounding}\n{question} {ASSISTANT}"
    return before, after
