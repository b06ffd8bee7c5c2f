"""Evaluate a checkpoint on a manifest split: rating accuracy / within-one / MAE (arg-max and expected value),
difficulty Acc0/Acc1, technique accuracy, the overall rating's rank correlation and R², and how often a free
(unconstrained) answer to a rating question is a valid rating; beside answering the training mode or median,
the majority technique, chance, and (for `overall`) the share of notes the analysis finds wrong/missed/extra."""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import r2_score

from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES, PerformanceReport
from llaqo_model.model.answer_head import AnswerHead, AnswerHeadConfig, head_answer
from llaqo_model.model.answer_trees import TreeTables
from llaqo_model.model.checkpoint import from_pretrained
from llaqo_model.model.llaqo import Choice, LlaqoModel
from llaqo_model.model.prompts import (
    DIFFICULTY,
    OVERALL,
    TECHNIQUE,
    AnswerKind,
    QuestionType,
    canonical_questions,
    options_for,
    rating,
)
from llaqo_model.model.take_features import stream_slices
from llaqo_training.answer_fit import AnswerTable, build_answer_table, fit_answer_head, report_source
from llaqo_training.dataset import TrainTake, load_takes, read_manifest
from llaqo_training.descriptor_fit import derangement
from llaqo_training.feedback_eval import feedback_scores
from llaqo_training.reports import analyse_entries

FREE_ANSWER_TOKENS = 16  # room for a number and a short sentence; a rating needs one token


def answer_all(
    model: LlaqoModel,
    takes: list[TrainTake],
    questions: dict[QuestionType, str],
    answer: Callable[..., list[Any]],
    batch_takes: int = 4,
) -> list[dict[QuestionType, Any]]:
    """`answer(audio, questions, reports, qtypes)` for every question of every take, a few takes at a time."""
    out = []
    for start in range(0, len(takes), batch_takes):
        batch = takes[start : start + batch_takes]
        audio = model.encode_audio([t.prepared for t in batch])
        rows = [(i, qt, q) for i in range(len(batch)) for qt, q in questions.items()]
        results = answer(
            audio.select([i for i, _, _ in rows]),
            [q for _, _, q in rows],
            [batch[i].report_text for i, _, _ in rows],
            [qt for _, qt, _ in rows],
        )
        answers: list[dict[QuestionType, Any]] = [{} for _ in batch]
        for (i, qt, _), result in zip(rows, results, strict=True):
            answers[i][qt] = result
        out += answers
    return out


def predict(model: LlaqoModel, takes: list[TrainTake], batch_takes: int = 4) -> list[dict[QuestionType, Any]]:
    """Constrained answers (and expected values) for every canonical question of every take."""
    return answer_all(model, takes, canonical_questions(), model.choose, batch_takes)


def free_answers(model: LlaqoModel, takes: list[TrainTake], batch_takes: int = 4) -> list[dict[QuestionType, str]]:
    """Unconstrained (greedy, free-text) answers to every rating question of every take."""
    questions = {qt: q for qt, q in canonical_questions().items() if qt.kind in (AnswerKind.RATING, AnswerKind.OVERALL)}

    def generate(audio: Any, asked: list[str], reports: list[str | None], _: list[QuestionType]) -> list[str]:
        return model.generate(audio, asked, reports, max_new_tokens=FREE_ANSWER_TOKENS)

    return answer_all(model, takes, questions, generate, batch_takes)


def follows_prompt(qtype: QuestionType, text: str) -> bool:
    """A free answer follows a rating question when the first number in it is one of the allowed ratings."""
    number = re.search(r"\d+", text)
    return number is not None and number.group() in (options_for(qtype) or [])


def within_one(predicted: list[int], truth: list[int]) -> float:
    """Share of predictions at most one level from the truth (Acc1)."""
    return sum(abs(p - t) <= 1 for p, t in zip(predicted, truth, strict=True)) / len(truth)


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation (None when either side is constant or there are fewer than 3 pairs)."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return round(float(spearmanr(x, y).statistic), 4)


@dataclass
class Baselines:
    """Answers that ignore the take, from the training split: per-dimension mode and median, majority technique."""

    mode: dict[str, int]
    median: dict[str, int]
    technique: str | None


def training_baselines(entries: list[dict[str, Any]]) -> Baselines:
    """Most frequent and median training rating per rubric key, and the most frequent technique."""
    values = {key: [int(e["ratings"][key]) for e in entries] for key in RUBRIC_KEYS}
    techniques = Counter(e["technique"] for e in entries if e.get("technique"))
    return Baselines(
        mode={key: Counter(v).most_common(1)[0][0] for key, v in values.items()},
        median={key: int(np.median(v)) for key, v in values.items()},  # numpy's midpoint, floored to a level
        technique=techniques.most_common(1)[0][0] if techniques else None,
    )


def score_predictions(
    takes: list[TrainTake],
    preds: list[dict[QuestionType, Any]],
    baselines: Baselines,
    free: list[dict[QuestionType, str]] | None = None,
) -> dict[str, Any]:
    """Metrics of the model beside answering the training mode/median/majority, and beside chance. A rating
    "answered" is the one the model states: the LM's most likely option, or the answer head's median."""
    truth, answers, expected = [], [], []
    mode, median = [], []
    for take, pred in zip(takes, preds, strict=True):
        for key in RUBRIC_KEYS:
            truth.append(int(take.labels["ratings"][key]))
            answers.append(int(pred[rating(key)].answer))
            expected.append(pred[rating(key)].expected())
            mode.append(baselines.mode[key])
            median.append(baselines.median[key])
    diff = [(int(p[DIFFICULTY].answer), int(t.labels["difficulty"])) for t, p in zip(takes, preds, strict=True)
            if t.labels.get("difficulty") is not None]  # fmt: skip
    tech = [(p[TECHNIQUE].answer, t.labels["technique"]) for t, p in zip(takes, preds, strict=True)
            if t.labels.get("technique")]  # fmt: skip
    overall = [(p[OVERALL].expected(), int(t.labels["overall"]), t.labels.get("note_error_share"))
               for t, p in zip(takes, preds, strict=True) if t.labels.get("overall") is not None]  # fmt: skip
    with_share = [(m, o, s) for m, o, s in overall if s is not None]
    constrained = [c.answer in (options_for(qt) or []) for p in preds for qt, c in p.items()]
    free_follow = [follows_prompt(qt, text) for answers in free or [] for qt, text in answers.items()]
    n = len(truth)
    answered = {key: Counter(int(p[rating(key)].answer) for p in preds) for key in RUBRIC_KEYS}
    errors = np.subtract(answers, truth).reshape(len(takes), len(RUBRIC_KEYS))  # take by take, key by key
    return {
        "takes": len(takes),
        "rating_accuracy": round(sum(a == t for a, t in zip(answers, truth, strict=True)) / n, 4),
        "rating_within_1": round(within_one(answers, truth), 4),
        "rating_mae_answered": round(float(np.mean(np.abs(np.subtract(answers, truth)))), 4),
        "rating_mae_expected": round(float(np.mean(np.abs(np.subtract(expected, truth)))), 4),
        "rating_mae_per_key": {key: round(float(np.abs(errors[:, k]).mean()), 4) for k, key in enumerate(RUBRIC_KEYS)},
        "baseline_mode_rating_accuracy": round(sum(a == t for a, t in zip(mode, truth, strict=True)) / n, 4),
        "baseline_mode_rating_mae": round(float(np.mean(np.abs(np.subtract(mode, truth)))), 4),
        "baseline_median_rating_accuracy": round(sum(a == t for a, t in zip(median, truth, strict=True)) / n, 4),
        "baseline_median_rating_within_1": round(within_one(median, truth), 4),
        "baseline_median_rating_mae": round(float(np.mean(np.abs(np.subtract(median, truth)))), 4),
        "rating_keys_answered_one_value_on_most_takes": sorted(
            key for key, counts in answered.items() if counts.most_common(1)[0][1] > len(preds) / 2
        ),
        "difficulty_accuracy": round(sum(p == t for p, t in diff) / len(diff), 4) if diff else None,
        "difficulty_within_1": round(within_one(*map(list, zip(*diff, strict=True))), 4) if diff else None,
        "difficulty_mae": round(float(np.mean([abs(p - t) for p, t in diff])), 4) if diff else None,
        "technique_accuracy": round(sum(p == t for p, t in tech) / len(tech), 4) if tech else None,
        "baseline_chance_technique_accuracy": round(1 / len(TECHNIQUES), 4),
        "baseline_majority_technique_accuracy": round(sum(t == baselines.technique for _, t in tech) / len(tech), 4)
        if tech
        else None,
        "overall_spearman": spearman([m for m, _, _ in overall], [o for _, o, _ in overall]),
        "overall_r2": round(float(r2_score([o for _, o, _ in overall], [m for m, _, _ in overall])), 4)
        if len(overall) > 1
        else None,
        "takes_with_note_error_share": len(with_share),
        "baseline_note_error_share_spearman": spearman([s for _, _, s in with_share], [o for _, o, _ in with_share]),
        "model_overall_vs_note_error_share_spearman": spearman(
            [s for _, _, s in with_share], [m for m, _, _ in with_share]
        ),
        "prompt_following_rate_constrained": round(sum(constrained) / len(constrained), 4) if constrained else None,
        "prompt_following_rate_free": round(sum(free_follow) / len(free_follow), 4) if free_follow else None,
    }


def head_predictions(
    head: AnswerHead, table: AnswerTable, shuffle: tuple[str, ...] = (), seed: int = 0
) -> list[dict[QuestionType, Choice]]:
    """The answer head's answers for every take of `table`; streams named in `shuffle` get another take's
    values (an ablation)."""
    x = torch.from_numpy(table.stream(head.config.streams)).float()
    slices = stream_slices(head.config.streams)
    order = torch.from_numpy(derangement(len(x), np.random.default_rng(seed)))
    for name in shuffle:
        if name in slices:
            x[:, slices[name]] = x[order][:, slices[name]]
    return [{q: Choice(head_answer(q, p), p) for q, p in take.items()} for take in head.answer_probs(x)]


def without_trees(head: AnswerHead) -> AnswerHead:
    """The same head with its boosted trees taken out: its linear part alone."""
    linear = copy.deepcopy(head)
    linear.set_trees(TreeTables.concat([]))
    return linear


def head_figures(
    model: LlaqoModel,
    entries: list[dict[str, Any]],
    chosen: list[TrainTake],
    manifest: str | Path,
    reports: tuple[str, str],
    baselines: Baselines,
) -> dict[str, Any]:
    """The answer head beside a logistic regression over the 16 note statistics alone (fitted on the training
    takes), and with the audio stream or the analysis streams shuffled between takes; `reports` are the
    (training, evaluated) takes' report sources."""
    assert model.answer_head is not None
    train_entries = [e for e in entries if e.get("split", "train") == "train"]
    train = build_answer_table(train_entries, manifest, reports[0])
    test = build_answer_table([e for e in entries if e["id"] in {t.id for t in chosen}], manifest, reports[1])
    by_id = {t.id: t for t in chosen}
    takes = [by_id[i] for i in test.ids]
    statistics_head, _ = fit_answer_head(train, AnswerHeadConfig(streams=("statistics",)), trees=False)
    analysis = ("statistics", "aligned", "rubric")
    runs = {
        "answer_head": head_predictions(model.answer_head, test),
        "ablation_trees_removed": head_predictions(without_trees(model.answer_head), test),
        "baseline_statistics_logistic": head_predictions(statistics_head, test),
        "ablation_audio_shuffled": head_predictions(model.answer_head, test, ("audio",)),
        "ablation_analysis_shuffled": head_predictions(model.answer_head, test, analysis),
        "ablation_tempo_shuffled": head_predictions(model.answer_head, test, ("tempo",)),
        # every input comes from the take's audio (its transcription, alignment, analysis, log-mel):
        # another take's audio in full
        "ablation_all_inputs_shuffled": head_predictions(model.answer_head, test, model.answer_head.config.streams),
    }
    return {
        "train_reports": reports[0],
        "reports": reports[1],
        "train_takes": len(train.ids),
        **{name: score_predictions(takes, preds, baselines) for name, preds in runs.items()},
        "feedback": feedback_figures(entries, test.ids, runs["answer_head"], report_source(manifest, reports[1])),
    }


def feedback_figures(
    entries: list[dict[str, Any]],
    ids: list[str],
    answers: list[dict[QuestionType, Choice]],
    report_for: Callable[[dict[str, Any]], PerformanceReport | None],
) -> dict[str, float | int]:
    """The composed feedback of each evaluated take (its report and the head's ratings, as `assess` composes
    it) scored against the take's analysis: precision, top-three recall, withheld share."""
    by_id = {e["id"]: e for e in entries}
    reports, ratings = [], []
    for take_id, answered in zip(ids, answers, strict=True):
        report = report_for(by_id[take_id])
        if report is not None:
            reports.append(report)
            ratings.append({q.key: int(c.answer) for q, c in answered.items() if q.kind == AnswerKind.RATING})
    return feedback_scores(reports, ratings)


def evaluate(
    checkpoint: str | Path,
    manifest: str | Path,
    split: str = "val",
    cache_dir: str | None = None,
    shuffle_audio: bool = False,
    reports: str = "midi",
    train_reports: str = "midi",
    max_takes: int | None = None,
) -> dict:
    """Load a checkpoint and score it on `split` of the manifest.

    `shuffle_audio` gives every take another take's audio (a check of how much the answers use the audio).
    With an answer head, its figures (`reports`: the takes' reports from their performance MIDI or their
    cached transcription) stand beside the statistics baseline and its ablations.
    """
    model = from_pretrained(checkpoint)
    entries = read_manifest(manifest)
    chosen = [e for e in entries if e.get("split") == split]
    if not chosen:
        raise ValueError(f"{manifest} has no '{split}' takes")
    cache = Path(cache_dir) / model.config.encoder.kind if cache_dir else None
    takes = load_takes(chosen, model.prepare, cache, grounding=model.config.grounding)
    if shuffle_audio:
        prepared = [t.prepared for t in takes]
        for i, t in enumerate(takes):
            t.prepared = prepared[(i + 1) % len(takes)]
    baselines = training_baselines([e for e in entries if e.get("split", "train") == "train"] or chosen)
    head = None
    if model.answer_head is not None:
        if reports == "transcribed":  # resumable; the takes not transcribed within `max_takes` are left out
            analyse_entries(chosen[:max_takes], Path(manifest).parent / "reports")
        head = head_figures(model, entries, takes, manifest, (train_reports, reports), baselines)
    if head is not None:  # the LM is not asked what the head answers
        model.answer_head = None
    metrics = score_predictions(takes, predict(model, takes), baselines, free_answers(model, takes))
    out = {"checkpoint": str(checkpoint), "split": split, "shuffled_audio": shuffle_audio}
    if head is None:
        return {**out, **metrics}
    answered = {k: v for k, v in head["answer_head"].items() if not k.startswith("prompt_following_rate_free")}
    return {
        **out,
        **answered,  # what a user gets: the head's answers, and the LM's free answers
        "prompt_following_rate_free": metrics["prompt_following_rate_free"],
        "answer_head_figures": head,
        "language_model": metrics,
    }
