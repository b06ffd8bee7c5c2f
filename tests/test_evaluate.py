"""`llaqo evaluate` figures on the synthetic corpus are computed correctly: Acc1, R², rank correlations, the
median/majority/chance baselines, and whether a free answer to a rating question is a valid rating."""

from __future__ import annotations

import pytest
import torch

from llaqo_model.analysis.report import RUBRIC_KEYS
from llaqo_model.model.llaqo import Choice
from llaqo_model.model.prompts import DIFFICULTY, OVERALL, TECHNIQUE, rating
from llaqo_training.dataset import TrainTake
from llaqo_training.evaluate import follows_prompt, score_predictions, training_baselines

# per take: true overall, model's overall distribution, note-error share, difficulty (truth, model), technique
TAKES = [
    (1, {"1": 1.0}, 0.4, (4, 3), "scales", "scales"),
    (2, {"2": 1.0}, 0.3, (2, 5), "scales", "octaves"),
    (3, {"3": 1.0}, 0.1, (1, 1), "octaves", "scales"),
    (4, {"4": 0.5, "6": 0.5}, 0.0, (6, 7), "scales", "scales"),
]


def hand_made() -> tuple[list[TrainTake], list[dict]]:
    takes, preds = [], []
    for overall, dist, share, (diff, diff_pred), technique, technique_pred in TAKES:
        labels = {"ratings": {k: overall for k in RUBRIC_KEYS}, "overall": overall, "difficulty": diff,
                  "technique": technique, "note_error_share": share}  # fmt: skip
        takes.append(TrainTake(f"t{overall}", (torch.zeros(1), torch.zeros(1)), None, [], labels))
        pred = {rating(k): Choice(str(min(6, overall + 1)), {str(min(6, overall + 1)): 1.0}) for k in RUBRIC_KEYS}
        pred[OVERALL] = Choice(max(dist, key=dist.get), dist)
        pred[DIFFICULTY] = Choice(str(diff_pred), {str(diff_pred): 1.0})
        pred[TECHNIQUE] = Choice(technique_pred, {technique_pred: 1.0})
        preds.append(pred)
    return takes, preds


def test_figures_on_a_hand_made_example() -> None:
    takes, preds = hand_made()
    train = [{"ratings": {k: v for k in RUBRIC_KEYS}, "technique": t} for v, t in
             [(1, "scales"), (2, "octaves"), (6, "octaves"), (6, "scales"), (6, "octaves")]]  # fmt: skip
    baselines = training_baselines(train)
    assert baselines.mode[RUBRIC_KEYS[0]] == 6 and baselines.median[RUBRIC_KEYS[0]] == 6
    assert baselines.technique == "octaves"
    free = [{rating(k): "4" for k in RUBRIC_KEYS} | {OVERALL: "It was good."} for _ in takes]
    m = score_predictions(takes, preds, baselines, free)
    assert m["rating_accuracy"] == 0.0 and m["rating_within_1"] == 1.0  # every rating one too high
    assert m["baseline_median_rating_accuracy"] == 0.0 and m["baseline_median_rating_within_1"] == 0.0
    assert m["difficulty_accuracy"] == 0.25 and m["difficulty_within_1"] == 0.75  # 3 vs 4, 1 vs 1, 7 vs 6
    assert m["technique_accuracy"] == 0.5
    assert m["baseline_majority_technique_accuracy"] == 0.25
    assert m["baseline_chance_technique_accuracy"] == pytest.approx(1 / 7, abs=1e-4)
    # overall: expected values 1, 2, 3, 5 against 1, 2, 3, 4 → ranks agree, R² = 1 - 1/5
    assert m["overall_spearman"] == 1.0 and m["overall_r2"] == pytest.approx(0.8)
    assert m["baseline_note_error_share_spearman"] == -1.0  # more wrong notes, lower overall
    assert m["prompt_following_rate_free"] == pytest.approx(12 / 13, abs=1e-4)
    assert m["prompt_following_rate_constrained"] == 1.0
    assert m["rating_keys_answered_one_value_on_most_takes"] == []  # each key answered 2, 3, 4 and 5
    for pred in preds[1:]:
        pred[rating("evenness")] = Choice("6", {"6": 1.0})
    m = score_predictions(takes, preds, baselines, free)
    assert m["rating_keys_answered_one_value_on_most_takes"] == ["evenness"]  # 6 on three takes of four
    assert m["rating_mae_per_key"]["pitch_accuracy"] == 1.0  # still one too high everywhere
    assert m["rating_mae_per_key"]["evenness"] == 2.5  # 6 against 2, 3 and 4, and 2 against 1


@pytest.mark.parametrize(
    ("text", "valid"), [("4", True), ("I would say 5 out of 6.", True), ("7", False), ("Good timing.", False)]
)
def test_a_free_rating_answer_follows_the_prompt_only_with_a_valid_rating(text: str, valid: bool) -> None:
    assert follows_prompt(rating(RUBRIC_KEYS[0]), text) is valid
