"""The prompt format and the questions: `QuestionType` says what kind of answer a question takes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES

USER = "USER:"
ASSISTANT = "ASSISTANT:"
RATING_RANGE = (1, 6)
DIFFICULTY_RANGE = (1, 9)


class AnswerKind(StrEnum):
    """The kinds of answer: constrained (a fixed option list) or open (free text)."""

    RATING = "rating"
    OVERALL = "overall"
    DIFFICULTY = "difficulty"
    TECHNIQUE = "technique"
    OPEN = "open"


CONSTRAINED = frozenset({AnswerKind.RATING, AnswerKind.OVERALL, AnswerKind.DIFFICULTY, AnswerKind.TECHNIQUE})


@dataclass(frozen=True)
class QuestionType:
    """A question's answer kind, and for ratings the rubric key (or an open question's topic).

    Written in manifests as `str(qtype)`: 'rating:evenness', 'overall', 'technique', 'open:tempo'.
    """

    kind: AnswerKind
    key: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}" if self.key else str(self.kind)

    @classmethod
    def parse(cls, text: str) -> QuestionType:
        """Read the manifest spelling; unknown kinds are open questions on that topic."""
        kind, _, key = text.partition(":")
        try:
            return cls(AnswerKind(kind), key or None)
        except ValueError:
            return cls(AnswerKind.OPEN, text)

    @property
    def constrained(self) -> bool:
        """Whether the answer is one of a fixed list of options."""
        return self.kind in CONSTRAINED


def rating(key: str) -> QuestionType:
    """The question type of one rubric dimension."""
    return QuestionType(AnswerKind.RATING, key)


OVERALL = QuestionType(AnswerKind.OVERALL)
DIFFICULTY = QuestionType(AnswerKind.DIFFICULTY)
TECHNIQUE = QuestionType(AnswerKind.TECHNIQUE)


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


def options_for(qtype: QuestionType) -> list[str] | None:
    """The allowed answers for a constrained question type, or None for free text."""
    if qtype.kind in (AnswerKind.RATING, AnswerKind.OVERALL):
        return [str(i) for i in range(RATING_RANGE[0], RATING_RANGE[1] + 1)]
    if qtype.kind == AnswerKind.DIFFICULTY:
        return [str(i) for i in range(DIFFICULTY_RANGE[0], DIFFICULTY_RANGE[1] + 1)]
    if qtype.kind == AnswerKind.TECHNIQUE:
        return list(TECHNIQUES)
    return None


def canonical_questions() -> dict[QuestionType, str]:
    """Question type → question for every constrained field of an assessment."""
    questions = {rating(k): rating_question(k) for k in RUBRIC_KEYS}
    questions[OVERALL] = OVERALL_QUESTION
    questions[DIFFICULTY] = DIFFICULTY_QUESTION
    questions[TECHNIQUE] = TECHNIQUE_QUESTION
    return questions


def question_type(question: str) -> QuestionType | None:
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
