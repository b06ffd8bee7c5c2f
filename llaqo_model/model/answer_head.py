"""The answer head: the model's constrained answers — the 12 ratings, overall, difficulty and technique — from
what the analysis found in the take and how it sounds.

Input per take: the per-take streams of `take_features` (statistics of the transcribed notes, the
score-aligned performance, the rate of each kind of stated issue, the figures the notes make, the sound),
standardised with the training set's mean and spread (buffers, saved with the weights). One linear layer per
question scores each allowed answer, boosted trees (`answer_trees`) add what one direction cannot say; a
softmax over the scores is the answer's distribution (fitted with each question of each take weighing the
same). The model answers these questions from this head when it has one, in `assess` and `ask` alike, so both
give the same number: for an ordered answer (a rating, overall, difficulty) the median of its distribution, for
technique the most likely.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from llaqo_model.model.answer_trees import AnswerTrees, TreeTables
from llaqo_model.model.prompts import AnswerKind, QuestionType, canonical_questions, options_for
from llaqo_model.model.take_features import STREAMS

ABSENT_ANSWER_LOGIT = -30.0  # an answer never seen in training is never chosen (probability ~1e-13)


@dataclass
class AnswerHeadConfig:
    """`streams`: the per-take inputs used (names from `take_features.STREAMS`); `tree_nodes`, `trees` and
    `tree_depth`: the size of the fitted trees (0: a linear head), set when the head is fitted."""

    streams: tuple[str, ...] = ("statistics", "aligned", "rubric", "texture", "audio", "tempo")
    tree_nodes: int = 0
    trees: int = 0
    tree_depth: int = 0

    @property
    def n_in(self) -> int:
        return sum(width for name, width in STREAMS if name in self.streams)


def head_questions() -> list[QuestionType]:
    """The constrained questions the head answers: every field of an assessment."""
    return list(canonical_questions())


def option_columns() -> dict[str, slice]:
    """Where each question's options sit in the trees' flat score vector (questions in `head_questions` order)."""
    out, start = {}, 0
    for q in head_questions():
        width = len(options_for(q) or [])
        out[str(q)] = slice(start, start + width)
        start += width
    return out


def is_ordered(qtype: QuestionType) -> bool:
    """Whether the question's options are levels of one scale (every constrained answer but technique)."""
    return qtype.kind != AnswerKind.TECHNIQUE


def head_answer(qtype: QuestionType, probs: dict[str, float]) -> str:
    """The head's answer from its distribution (options in the scale's order for ordered questions).

    An ordered answer is the distribution's median — the level that minimises the expected distance to the
    truth; the most likely level of a broad distribution over skewed labels sits at the scale's end (with it,
    nine of the twelve ratings got one value on most held-out takes). Technique is the most likely option.
    """
    if not is_ordered(qtype):
        return max(probs, key=probs.get)
    cumulative = 0.0
    for option, p in probs.items():
        cumulative += p
        if cumulative >= 0.5:
            return option
    return next(reversed(probs))


class AnswerHead(nn.Module):
    """Standardise → one Linear per question, plus the trees' scores → log-probabilities over its options."""

    def __init__(self, config: AnswerHeadConfig) -> None:
        super().__init__()
        self.config = config
        self.register_buffer("in_mean", torch.zeros(config.n_in))
        self.register_buffer("in_std", torch.ones(config.n_in))
        self.layers = nn.ModuleDict(
            {str(q): nn.Linear(config.n_in, len(options_for(q) or [])) for q in head_questions()}
        )
        self.columns = option_columns()
        n_out = max(c.stop for c in self.columns.values())
        self.trees = AnswerTrees(config.tree_nodes, config.trees, config.tree_depth, n_out)
        self.requires_grad_(False)  # fitted in closed form (training/answer_fit.py), never by the LM's optimiser

    def fit_normalisation(self, inputs: torch.Tensor) -> None:
        """Set the input standardisation from the training inputs."""
        self.in_mean.copy_(inputs.mean(0))
        self.in_std.copy_(inputs.std(0).clamp_min(1e-4))

    def set_trees(self, tables: TreeTables) -> None:
        """Give the head these fitted trees (empty tables: none), its config sized to match them."""
        self.trees = AnswerTrees.from_tables(tables, self.trees.n_out).to(self.in_mean.device)
        self.config = replace(self.config, **self.trees.sizes())

    def standardise(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, n_in) raw inputs → the standardised inputs the layers read."""
        return ((inputs - self.in_mean) / self.in_std).clamp(-6, 6)

    def forward(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, n_in) → {str(question type): (B, options) log-probabilities}."""
        x = self.standardise(inputs)
        boost = self.trees(x)
        return {name: (layer(x) + boost[:, self.columns[name]]).log_softmax(-1) for name, layer in self.layers.items()}

    @torch.no_grad()
    def answer_probs(self, inputs: torch.Tensor) -> list[dict[QuestionType, dict[str, float]]]:
        """Per take, each question's distribution over its options (option text → probability)."""
        logprobs = self(inputs)
        out: list[dict[QuestionType, dict[str, float]]] = [{} for _ in range(len(inputs))]
        for q in head_questions():
            probs = logprobs[str(q)].exp().cpu()
            for i, row in enumerate(probs):
                out[i][q] = {o: float(p) for o, p in zip(options_for(q) or [], row, strict=True)}
        return out
