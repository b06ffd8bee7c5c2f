"""Evaluate a checkpoint on a manifest split: rating accuracy / MAE (arg-max and expected value), difficulty,
technique accuracy, prompt-following rate, against a predict-the-training-mode baseline."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from llaqo_model.analysis.report import RUBRIC_KEYS
from llaqo_model.model.checkpoint import from_pretrained
from llaqo_model.model.llaqo import LlaqoModel
from llaqo_model.model.prompts import DIFFICULTY, TECHNIQUE, QuestionType, canonical_questions, options_for, rating
from llaqo_training.dataset import TrainTake, load_takes, read_manifest


def predict(model: LlaqoModel, takes: list[TrainTake], batch_takes: int = 4) -> list[dict[QuestionType, Any]]:
    """Constrained answers (and expected values) for every canonical question of every take."""
    questions = canonical_questions()
    out = []
    for start in range(0, len(takes), batch_takes):
        batch = takes[start : start + batch_takes]
        audio = model.encode_audio([t.prepared for t in batch])
        rows = [(i, qt, q) for i in range(len(batch)) for qt, q in questions.items()]
        choices = model.choose(
            audio.select([i for i, _, _ in rows]),
            [q for _, _, q in rows],
            [batch[i].report_text for i, _, _ in rows],
            [qt for _, qt, _ in rows],
        )
        preds: list[dict[QuestionType, Any]] = [{} for _ in batch]
        for (i, qt, _), c in zip(rows, choices, strict=True):
            preds[i][qt] = c
        out += preds
    return out


def score_predictions(
    takes: list[TrainTake], preds: list[dict[QuestionType, Any]], mode: dict[str, int]
) -> dict[str, Any]:
    """Metrics of the model and of always answering the training `mode`."""
    hits = total = within1 = followed = 0
    err_argmax = err_expected = err_mode = mode_hits = 0.0
    diff_err = diff_hits = diff_n = tech_hits = tech_n = 0
    for take, pred in zip(takes, preds, strict=True):
        for qt, choice in pred.items():
            followed += choice.answer in (options_for(qt) or [])
        for key in RUBRIC_KEYS:
            truth = int(take.labels["ratings"][key])
            c = pred[rating(key)]
            total += 1
            hits += int(c.answer) == truth
            within1 += abs(int(c.answer) - truth) <= 1
            err_argmax += abs(int(c.answer) - truth)
            err_expected += abs(c.expected() - truth)
            err_mode += abs(mode[key] - truth)
            mode_hits += mode[key] == truth
        if take.labels.get("difficulty") is not None:
            diff_n += 1
            diff_err += abs(int(pred[DIFFICULTY].answer) - int(take.labels["difficulty"]))
            diff_hits += int(pred[DIFFICULTY].answer) == int(take.labels["difficulty"])
        if take.labels.get("technique"):
            tech_n += 1
            tech_hits += pred[TECHNIQUE].answer == take.labels["technique"]
    n_answers = sum(len(p) for p in preds)
    return {
        "takes": len(takes),
        "rating_accuracy": round(hits / total, 4),
        "rating_within_1": round(within1 / total, 4),
        "rating_mae_argmax": round(err_argmax / total, 4),
        "rating_mae_expected": round(err_expected / total, 4),
        "baseline_mode_rating_accuracy": round(mode_hits / total, 4),
        "baseline_mode_rating_mae": round(err_mode / total, 4),
        "difficulty_accuracy": round(diff_hits / diff_n, 4) if diff_n else None,
        "difficulty_mae": round(diff_err / diff_n, 4) if diff_n else None,
        "technique_accuracy": round(tech_hits / tech_n, 4) if tech_n else None,
        "prompt_following_rate": round(followed / n_answers, 4) if n_answers else None,
    }


def training_mode(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Most frequent training rating per rubric key (the baseline)."""
    return {key: Counter(int(e["ratings"][key]) for e in entries).most_common(1)[0][0] for key in RUBRIC_KEYS}


def evaluate(
    checkpoint: str | Path,
    manifest: str | Path,
    split: str = "val",
    cache_dir: str | None = None,
    shuffle_audio: bool = False,
) -> dict:
    """Load a checkpoint and score it on `split` of the manifest.

    `shuffle_audio` gives every take another take's audio (a check of how much the answers use the audio).
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
    mode = training_mode([e for e in entries if e.get("split", "train") == "train"] or chosen)
    metrics = score_predictions(takes, predict(model, takes), mode)
    return {"checkpoint": str(checkpoint), "split": split, "shuffled_audio": shuffle_audio, **metrics}
