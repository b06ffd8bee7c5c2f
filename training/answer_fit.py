"""Fit the answer head on a corpus: per take, the head's inputs (every stream) and the option index of each
constrained answer its labels give; per question an ordinal fit (ordered answers) or a logistic regression.

The takes' reports are those of their performance MIDI (`reports="midi"`, built on first use) or of their
transcription (`reports="transcribed"`, the takes `llaqo corpus analyse` has done). Inputs are cached per
take beside the manifest, so refitting takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from llaqo_model.io import torch_threads
from llaqo_model.model.answer_head import ABSENT_ANSWER_LOGIT, AnswerHead, AnswerHeadConfig, head_questions, is_ordered
from llaqo_model.model.frontend import FrontendConfig
from llaqo_model.model.prompts import AnswerKind, QuestionType, options_for
from llaqo_model.model.take_features import INPUT_WIDTH, select_streams
from llaqo_training.dataset import take_report
from llaqo_training.descriptor_data import cached_inputs
from llaqo_training.reports import cached_report

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse L2 strength on standardised inputs; chosen by CV over pieces
MAX_ITER = 2000
ORDINAL_PENALTIES = (1e-3, 1e-2, 1e-1)  # L2 per take on the ordinal direction; chosen by CV over pieces
LBFGS_STEPS = 200  # the ordinal fit is convex and small (one direction, one bias per option)


@dataclass
class AnswerTable:
    """Rows of takes: inputs (every stream), each question's option index (-1: no label), and the piece."""

    inputs: np.ndarray
    answers: dict[QuestionType, np.ndarray]
    ids: list[str]
    groups: list[str]

    def stream(self, streams: tuple[str, ...]) -> np.ndarray:
        """The input columns of `streams` (in the head's order)."""
        return select_streams(self.inputs, streams)


def label_of(entry: dict[str, Any], qtype: QuestionType) -> str | None:
    """The take's labelled answer to a constrained question, as option text (None when unlabelled)."""
    if qtype.kind == AnswerKind.RATING:
        value = (entry.get("ratings") or {}).get(qtype.key)
    else:
        value = entry.get(qtype.kind.value)
    return None if value is None else str(value)


def answer_indices(entry: dict[str, Any]) -> dict[QuestionType, int]:
    """Each question's option index for this take (-1 when unlabelled or not an allowed option)."""
    out = {}
    for q in head_questions():
        label, options = label_of(entry, q), options_for(q) or []
        out[q] = options.index(label) if label in options else -1
    return out


def report_source(manifest: str | Path, reports: str):
    """The report of an entry: its cached transcription, or its performance MIDI's (None when unavailable)."""
    if reports == "transcribed":
        folder = Path(manifest).parent / "reports"
        return lambda entry: cached_report(entry, folder)
    return take_report


def build_answer_table(entries: list[dict[str, Any]], manifest: str | Path, reports: str = "midi") -> AnswerTable:
    """Every labelled entry with a report, as one table (inputs cached under `head_inputs_<reports>_<width>/`)."""
    cache = Path(manifest).parent / f"head_inputs_{reports}_{INPUT_WIDTH}"  # a new stream layout: a new cache
    cache.mkdir(parents=True, exist_ok=True)
    report_for, frontend = report_source(manifest, reports), FrontendConfig()
    rows = []
    for entry in entries:
        labels = answer_indices(entry)
        if all(v < 0 for v in labels.values()):
            continue
        x = cached_inputs(entry, report_for, cache, frontend)
        if x is not None:
            rows.append((x, labels, entry))
    return AnswerTable(
        inputs=np.stack([x for x, _, _ in rows]) if rows else np.zeros((0, INPUT_WIDTH), np.float32),
        answers={q: np.array([lab[q] for _, lab, _ in rows], dtype=int) for q in head_questions()},
        ids=[e["id"] for _, _, e in rows],
        groups=[e.get("piece", e["id"]) for _, _, e in rows],
    )


def _held_out_log_likelihood(c: float, z: np.ndarray, y: np.ndarray, splits: list) -> float:
    """Mean log-probability of the true answer on held-out folds (an answer a fold never saw gets ~0)."""
    total = []
    for train, test in splits:
        if len(set(y[train])) < 2:
            continue
        model = LogisticRegression(C=c, max_iter=MAX_ITER).fit(z[train], y[train])
        column = {cls: j for j, cls in enumerate(model.classes_)}
        probs = model.predict_proba(z[test])
        true = np.array([probs[i, column[v]] if v in column else 0.0 for i, v in enumerate(y[test])])
        total.append(np.log(np.maximum(true, 1e-6)).mean())
    return float(np.mean(total)) if total else -np.inf


def _best_c(z: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    """The C of `C_GRID` with the best held-out log-likelihood over folds of whole pieces (the larger on a tie)."""
    splits = _folds(z, groups)
    if splits is None:
        return C_GRID[-1]
    scores = np.array([_held_out_log_likelihood(c, z, y, splits) for c in C_GRID])
    return C_GRID[int(np.flatnonzero(scores == scores.max())[-1])]


def _folds(z: np.ndarray, groups: np.ndarray) -> list | None:
    """Folds of whole pieces (at most 5), or None with fewer than two pieces."""
    folds = min(5, len(set(groups)))
    return list(GroupKFold(n_splits=folds).split(z, groups=groups)) if folds >= 2 else None


def adjacent_category_logits(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The ordinal model's scores: option k scores k·(w·x) + b_k (an adjacent-category logit model: one
    direction in the inputs moves every answer up or down the scale; the free b_k place the levels)."""
    k = torch.arange(len(b), dtype=z.dtype)
    return (z @ w)[:, None] * k[None, :] + b[None, :]


def fit_adjacent_category(
    z: np.ndarray, y: np.ndarray, n_options: int, penalty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum likelihood with an L2 `penalty` on w (per take), by L-BFGS: (w, b)."""
    zt, yt = torch.from_numpy(z).double(), torch.from_numpy(y).long()
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros(n_options, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=LBFGS_STEPS, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(adjacent_category_logits(zt, w, b), yt) + penalty * (w**2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(loss)
    return w.detach().numpy(), b.detach().numpy()


def fit_ordinal(
    z: np.ndarray, y: np.ndarray, n_options: int, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """The adjacent-category model of an ordered answer, its penalty chosen by held-out log-likelihood over
    folds of whole pieces: (w, b, penalty)."""
    splits = _folds(z, groups)
    best, scores = ORDINAL_PENALTIES[-1], []
    if splits is not None:
        for penalty in ORDINAL_PENALTIES:
            folds = []
            for train, test in splits:
                w, b = fit_adjacent_category(z[train], y[train], n_options, penalty)
                held = torch.from_numpy(z[test]).double()
                logp = adjacent_category_logits(held, torch.from_numpy(w), torch.from_numpy(b)).log_softmax(-1)
                folds.append(float(logp[torch.arange(len(test)), torch.from_numpy(y[test])].mean()))
            scores.append(np.mean(folds))
        best = ORDINAL_PENALTIES[int(np.argmax(scores))]
    w, b = fit_adjacent_category(z, y, n_options, best)
    return w, b, best


FIT_THREADS = 1  # the fits are small (hundreds of rows, 61 inputs): one thread is 7-15x faster than a busy pool


@torch.no_grad()
def fit_answer_head(table: AnswerTable, config: AnswerHeadConfig) -> tuple[AnswerHead, dict[str, float]]:
    """Per question on the standardised inputs, written into the head's layers: ordered answers (ratings,
    overall, difficulty) an adjacent-category ordinal model (one direction: few weights, since the order is
    known), technique a multinomial logistic regression. Returns the head and the regularisation chosen."""
    with torch_threads(FIT_THREADS):
        return _fit_answer_head(table, config)


def _fit_answer_head(table: AnswerTable, config: AnswerHeadConfig) -> tuple[AnswerHead, dict[str, float]]:
    head = AnswerHead(config)
    x = torch.from_numpy(table.stream(config.streams)).float()
    head.fit_normalisation(x)
    z = head.standardise(x).numpy()
    groups = np.array(table.groups)
    chosen = {}
    for q in head_questions():
        y = table.answers[q]
        have = y >= 0
        layer = head.layers[str(q)]
        layer.weight.zero_()
        layer.bias.fill_(ABSENT_ANSWER_LOGIT)
        seen = sorted(set(y[have]))
        if not seen:
            continue
        if len(seen) == 1:
            layer.bias[seen[0]] = 0.0
            continue
        if is_ordered(q):
            w, b, penalty = fit_ordinal(z[have], y[have], layer.out_features, groups[have])
            k = torch.arange(layer.out_features, dtype=torch.float32)
            layer.weight.copy_(k[:, None] * torch.from_numpy(w).float()[None, :])
            layer.bias.copy_(torch.from_numpy(b).float())
            chosen[str(q)] = {"ordinal_penalty": penalty}
            continue
        c = _best_c(z[have], y[have], groups[have])
        model = LogisticRegression(C=c, max_iter=MAX_ITER).fit(z[have], y[have])
        coef = model.coef_ if len(seen) > 2 else np.vstack([-model.coef_[0] / 2, model.coef_[0] / 2])
        bias = model.intercept_ if len(seen) > 2 else np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2])
        for row, cls in enumerate(model.classes_):
            layer.weight[cls] = torch.from_numpy(coef[row]).float()
            layer.bias[cls] = float(bias[row])
        chosen[str(q)] = {"logistic_C": c}
    return head.eval(), chosen
