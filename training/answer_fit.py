"""Fit the answer head on a corpus: per take, the head's inputs (every stream) and the option index of each
constrained answer its labels give; per question an ordinal fit (ordered answers) or a logistic regression,
then boosted trees (LightGBM) starting from those linear scores.

The takes' reports are those of their performance MIDI (`reports="midi"`, built on first use) or of their
transcription (`reports="transcribed"`, the takes `llaqo corpus analyse` has done). Inputs are cached per
take beside the manifest, so refitting takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold

from llaqo_model.io import torch_threads
from llaqo_model.model.answer_head import (
    ABSENT_ANSWER_LOGIT,
    AnswerHead,
    AnswerHeadConfig,
    head_questions,
    is_ordered,
)
from llaqo_model.model.answer_trees import TreeTables
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
# Boosted trees from the linear scores (LightGBM): small trees, a slow rate, half the inputs per tree, so that
# they correct the linear answer rather than memorise takes. On the 799-take corpus's training pieces (5-fold CV
# over pieces) 200 rounds took the rating MAE from 0.815 (linear) to 0.718 (100 rounds of 4 leaves: 0.730);
# the number of rounds is chosen per question by held-out log-loss over folds of whole pieces (0: no trees).
BOOST_ROUNDS_MAX = 400
BOOST_PARAMS = {
    "learning_rate": 0.03,
    "num_leaves": 6,
    "min_data_in_leaf": 15,
    "lambda_l2": 3.0,
    "feature_fraction": 0.5,
    "seed": 0,
    "deterministic": True,
    "num_threads": 1,
    "verbose": -1,
}


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
    """Every labelled entry with a report, as one table (inputs cached under `head_inputs_<reports>_<width>/`).
    `reports="both"`: a row from each take's MIDI report and another from its transcribed one where it has one
    (the same piece, so folds over pieces keep both rows of a take on one side)."""
    if reports == "both":
        parts = [build_answer_table(entries, manifest, kind) for kind in ("midi", "transcribed")]
        return AnswerTable(
            inputs=np.concatenate([p.inputs for p in parts]),
            answers={q: np.concatenate([p.answers[q] for p in parts]) for q in head_questions()},
            ids=[i for p in parts for i in p.ids],
            groups=[g for p in parts for g in p.groups],
        )
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


def tables_from_lightgbm(model: dict[str, Any], first_column: int) -> TreeTables:
    """A LightGBM multiclass model (its `dump_model()`) as flat node tables; tree i adds to option i mod K,
    written to score column `first_column` + that option."""
    feature, threshold, left, right, value, root, column = [], [], [], [], [], [], []
    depth = 0

    def add(node: dict[str, Any], level: int) -> int:
        nonlocal depth
        me = len(feature)
        feature.append(0)
        threshold.append(np.inf)
        left.append(me)
        right.append(me)
        value.append(float(node.get("leaf_value", 0.0)))
        if "split_index" not in node:
            depth = max(depth, level)
            return me
        if node["decision_type"] != "<=":
            raise ValueError(f"unsupported LightGBM split {node['decision_type']!r}")
        feature[me], threshold[me], value[me] = int(node["split_feature"]), float(node["threshold"]), 0.0
        left[me] = add(node["left_child"], level + 1)
        right[me] = add(node["right_child"], level + 1)
        return me

    per_iteration = int(model["num_tree_per_iteration"])
    for i, tree in enumerate(model["tree_info"]):
        root.append(add(tree["tree_structure"], 0))
        column.append(first_column + i % per_iteration)
    return TreeTables(
        feature=np.array(feature, dtype=np.int64),
        threshold=np.array(threshold, dtype=np.float64),
        left=np.array(left, dtype=np.int64),
        right=np.array(right, dtype=np.int64),
        value=np.array(value, dtype=np.float32),
        root=np.array(root, dtype=np.int64),
        column=np.array(column, dtype=np.int64),
        depth=depth,
    )


def _boost(z: np.ndarray, y: np.ndarray, start: np.ndarray, rounds: int, valid=None) -> lightgbm.Booster:
    params = {**BOOST_PARAMS, "objective": "multiclass", "num_class": start.shape[1]}
    return lightgbm.train(params, lightgbm.Dataset(z, y, init_score=start), num_boost_round=rounds, **(valid or {}))


def _log_loss(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean log-loss of the start scores, as LightGBM's `multi_logloss` computes it (probabilities clipped at
    1e-15), so that round 0 stands on the same footing as the rounds LightGBM reports."""
    logp = torch.from_numpy(scores).log_softmax(-1).numpy()
    return float(-np.maximum(logp[np.arange(len(y)), y], np.log(1e-15)).mean())


def boost_rounds(
    q: QuestionType, z: np.ndarray, y: np.ndarray, n_options: int, groups: np.ndarray, setting: float
) -> int:
    """Rounds of boosting with the best mean held-out log-loss over folds of whole pieces, each fold's trees
    grown from that fold's own linear fit (0 when no round beats the linear answer)."""
    splits = _folds(z, groups)
    if splits is None:
        return 0
    curves = []
    for train, test in splits:
        w, b, _ = linear_fit(q, z[train], y[train], n_options, groups[train], setting)
        start, held = z[train] @ w.T + b, z[test] @ w.T + b
        record: dict = {}
        valid = lightgbm.Dataset(z[test], y[test], init_score=held)
        _boost(
            z[train], y[train], start, BOOST_ROUNDS_MAX,
            {"valid_sets": [valid], "callbacks": [lightgbm.record_evaluation(record)]},
        )  # fmt: skip
        curves.append([_log_loss(held, y[test]), *record["valid_0"]["multi_logloss"]])
    return int(np.argmin(np.mean(curves, axis=0)))


def linear_fit(
    q: QuestionType, z: np.ndarray, y: np.ndarray, n_options: int, groups: np.ndarray, setting: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """The linear scores of one question, (weight (options, inputs), bias, regularisation): ordered answers the
    adjacent-category model, technique a multinomial logistic regression; the regularisation is chosen by CV
    over pieces unless `setting` gives it. An option never seen scores `ABSENT_ANSWER_LOGIT`."""
    weight, bias = np.zeros((n_options, z.shape[1])), np.full(n_options, ABSENT_ANSWER_LOGIT)
    seen = sorted(set(y))
    if len(seen) == 1:
        bias[seen[0]] = 0.0
        return weight, bias, 0.0
    if is_ordered(q):
        if setting is None:
            w, b, setting = fit_ordinal(z, y, n_options, groups)
        else:
            w, b = fit_adjacent_category(z, y, n_options, setting)
        return np.arange(n_options)[:, None] * w[None, :], b, setting
    c = _best_c(z, y, groups) if setting is None else setting
    model = LogisticRegression(C=c, max_iter=MAX_ITER).fit(z, y)
    coef = model.coef_ if len(seen) > 2 else np.vstack([-model.coef_[0] / 2, model.coef_[0] / 2])
    intercept = model.intercept_ if len(seen) > 2 else np.array([-model.intercept_[0] / 2, model.intercept_[0] / 2])
    weight[model.classes_], bias[model.classes_] = coef, intercept
    return weight, bias, c


@torch.no_grad()
def fit_answer_head(
    table: AnswerTable, config: AnswerHeadConfig, trees: bool = True
) -> tuple[AnswerHead, dict[str, dict[str, float]]]:
    """Per question on the standardised inputs: the linear scores (`linear_fit`), then (`trees`) boosted trees
    from them, as many rounds as held-out pieces support. Returns the head (its config carries the trees' size)
    and what was chosen per question."""
    with torch_threads(FIT_THREADS):
        return _fit_answer_head(table, config, trees)


def _fit_answer_head(
    table: AnswerTable, config: AnswerHeadConfig, trees: bool
) -> tuple[AnswerHead, dict[str, dict[str, float]]]:
    head = AnswerHead(replace(config, tree_nodes=0, trees=0, tree_depth=0))
    x = torch.from_numpy(table.stream(config.streams)).float()
    head.fit_normalisation(x)
    z = head.standardise(x).double().numpy()
    groups = np.array(table.groups)
    chosen, fitted = {}, []
    for q in head_questions():
        y, layer = table.answers[q], head.layers[str(q)]
        have = y >= 0
        layer.weight.zero_()
        layer.bias.fill_(ABSENT_ANSWER_LOGIT)
        if not have.any():
            continue
        zq, yq, gq = z[have], y[have], groups[have]
        w, b, setting = linear_fit(q, zq, yq, layer.out_features, gq)
        layer.weight.copy_(torch.from_numpy(w).float())
        layer.bias.copy_(torch.from_numpy(b).float())
        chosen[str(q)] = {"ordinal_penalty" if is_ordered(q) else "logistic_C": setting, "boost_rounds": 0}
        if not trees or len(set(yq)) < 2:
            continue
        rounds = boost_rounds(q, zq, yq, layer.out_features, gq, setting)
        chosen[str(q)]["boost_rounds"] = rounds
        if rounds:
            booster = _boost(zq, yq, zq @ w.T + b, rounds)
            fitted.append(tables_from_lightgbm(booster.dump_model(), head.columns[str(q)].start))
    head.set_trees(TreeTables.concat(fitted))
    return head.eval(), chosen
