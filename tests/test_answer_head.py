"""The answer head: ratings, overall, difficulty and technique come from what was played — a head fitted on
takes whose rating follows what the analysis found recovers it on new takes, shuffling that input between takes
loses it, `ask` and `assess` give the same answer, and a checkpoint keeps the head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llaqo_model.analysis.report import Bar, Issue, IssueKind, Note, PerformanceReport
from llaqo_model.model.answer_head import AnswerHeadConfig, head_answer
from llaqo_model.model.assess import Assessor
from llaqo_model.model.checkpoint import from_pretrained, save_pretrained
from llaqo_model.model.llaqo import LlaqoModel, tiny_config
from llaqo_model.model.prompts import OVERALL, TECHNIQUE, canonical_questions, rating
from llaqo_model.model.take_features import RUBRIC_KINDS, STREAMS, stream_slices, texture_statistics
from llaqo_model.model.tokenizer import train_tokenizer
from llaqo_training.answer_fit import AnswerTable, answer_indices, fit_answer_head
from llaqo_training.evaluate import head_predictions, without_trees

RATE = 16000
N_IN = sum(w for _, w in STREAMS)
RUBRIC = stream_slices(tuple(name for name, _ in STREAMS))["rubric"]
WRONG_RATE = RUBRIC.start + RUBRIC_KINDS.index(IssueKind.WRONG_NOTE)


def table_where_pitch_accuracy_follows_wrong_notes(n: int, seed: int) -> AnswerTable:
    """Random inputs, except that pitch_accuracy falls as the rate of wrong notes per bar rises."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN)).astype(np.float32)
    x[:, WRONG_RATE] = rng.uniform(0, 1, n)
    answers = {q: np.full(n, -1) for q in canonical_questions()}
    answers[rating("pitch_accuracy")] = (5 - np.floor(x[:, WRONG_RATE] * 5.999)).astype(int)  # option 0–5 ≙ 1–6
    answers[TECHNIQUE] = rng.integers(0, 7, n)
    ids, pieces = [f"t{i}" for i in range(n)], [f"p{i % 10}" for i in range(n)]
    return AnswerTable(inputs=x, answers=answers, ids=ids, groups=pieces)


def accuracy(preds: list, table: AnswerTable) -> float:
    q = rating("pitch_accuracy")
    return float(np.mean([int(p[q].answer) - 1 == y for p, y in zip(preds, table.answers[q], strict=True)]))


def test_a_rating_that_follows_the_analysis_is_recovered_and_lost_when_the_analysis_is_shuffled() -> None:
    head, _ = fit_answer_head(table_where_pitch_accuracy_follows_wrong_notes(400, 0), AnswerHeadConfig())
    new = table_where_pitch_accuracy_follows_wrong_notes(200, 1)
    assert accuracy(head_predictions(head, new), new) > 0.5  # answering the mode: 0.23
    assert accuracy(head_predictions(head, new, ("rubric",)), new) < 0.3
    # every question has a distribution over its own options only; an unlabelled one answers something valid
    preds = head_predictions(head, new)
    assert abs(sum(preds[0][OVERALL].probs.values()) - 1) < 1e-5 and preds[0][OVERALL].answer in "123456"


def test_a_rating_is_the_middle_of_a_broad_distribution_not_its_most_likely_end() -> None:
    broad = {"1": 0.05, "2": 0.1, "3": 0.15, "4": 0.2, "5": 0.15, "6": 0.35}
    assert head_answer(rating("evenness"), broad) == "4"  # half the probability lies at 4 or below
    assert head_answer(TECHNIQUE, {"scales": 0.3, "octaves": 0.45, "trills": 0.25}) == "octaves"


def test_ratings_follow_the_input_when_many_takes_are_rated_6_whatever_was_played() -> None:
    """Labels skewed like the corpus's: 30 % of takes get a 6 whatever the input, the others follow it. The
    answers still follow the input rather than sitting on 6 (answering the most likely level: 6 on 73 % of the
    new takes, correlation -0.76), and the trees find the levels the linear part alone cannot place."""
    rng = np.random.default_rng(3)
    table = table_where_pitch_accuracy_follows_wrong_notes(500, 4)
    q = rating("pitch_accuracy")
    table.answers[q] = np.where(rng.random(500) < 0.3, 5, table.answers[q])
    head, _ = fit_answer_head(table, AnswerHeadConfig())
    new = table_where_pitch_accuracy_follows_wrong_notes(200, 5)
    answered = np.array([int(p[q].answer) for p in head_predictions(head, new)])
    truth = new.answers[q] + 1  # without the noise
    assert np.mean(answered == 6) < 0.6  # 0.37; truly 6: 0.17
    assert np.mean(np.abs(answered - truth)) < 0.8  # 0.61 (the linear part alone: 1.0)
    linear = np.array([int(p[q].answer) for p in head_predictions(without_trees(head), new)])
    assert np.mean(answered == truth) > np.mean(linear == truth) + 0.2  # 0.77 against 0.27
    assert np.corrcoef(linear, new.inputs[:, WRONG_RATE])[0, 1] < -0.8  # -0.90: the linear part follows it too


def test_labels_become_option_indices_and_missing_labels_are_skipped() -> None:
    entry = {"ratings": {"evenness": 2}, "overall": 6, "difficulty": 9, "technique": "scales"}
    idx = answer_indices(entry)
    assert idx[rating("evenness")] == 1 and idx[OVERALL] == 5 and idx[TECHNIQUE] == 0
    assert idx[rating("pitch_accuracy")] == -1


def take(wrong_bars: int, seed: int) -> tuple[np.ndarray, PerformanceReport]:
    """A four-bar take with a wrong note stated in the first `wrong_bars` bars."""
    rng = np.random.default_rng(seed)
    notes = [Note(0.5 * i, 0.5 * i + 0.4, 60 + i % 7, 64) for i in range(16)]
    bars = [
        Bar(bar=b + 1, start_s=2.0 * b, end_s=2.0 * b + 2.0,
            issues=[Issue(IssueKind.WRONG_NOTE, f"bar {b + 1}: wrong", 2.0 * b)] if b < wrong_bars else [])
        for b in range(4)
    ]  # fmt: skip
    report = PerformanceReport(audio="take.wav", score="s.musicxml", duration_s=8.0, notes=notes, pedal=[], bars=bars)
    return (rng.standard_normal(8 * RATE) * 0.05).astype(np.float32), report


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    """A tiny model whose answer head was fitted on takes where pitch accuracy follows the wrong notes."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer([], vocab_size=512)
    config = tiny_config(len(tokenizer))
    model = LlaqoModel(config, tokenizer)
    head, _ = fit_answer_head(table_where_pitch_accuracy_follows_wrong_notes(400, 2), AnswerHeadConfig())
    model.config.answers, model.answer_head = head.config, head
    path = save_pretrained(model.eval(), tmp_path_factory.mktemp("ck") / "model")
    return Assessor(from_pretrained(path), "tiny")


def test_ratings_depend_on_the_mistakes_found_and_ask_agrees_with_assess(assessor: Assessor) -> None:
    (clean_audio, clean_report), (sloppy_audio, sloppy_report) = take(0, 0), take(4, 1)
    clean, sloppy = assessor.assess_batch([(clean_audio, RATE, clean_report), (sloppy_audio, RATE, sloppy_report)])
    assert clean.ratings["pitch_accuracy"] > sloppy.ratings["pitch_accuracy"]
    for (audio, report), assessment in ((take(0, 0), clean), (take(4, 1), sloppy)):
        asked = "".join(assessor.ask(audio, RATE, report, canonical_questions()[rating("pitch_accuracy")]))
        assert asked == str(assessment.ratings["pitch_accuracy"])
        assert "".join(assessor.ask(audio, RATE, report, canonical_questions()[TECHNIQUE])) == assessment.technique


def notes_report(notes: list[Note]) -> PerformanceReport:
    return PerformanceReport(audio="t.wav", score=None, duration_s=notes[-1].offset + 0.5, notes=notes, pedal=[])


def test_the_texture_of_a_scale_a_trill_and_octaves_is_told_apart() -> None:
    c_major = [60, 62, 64, 65, 67, 69, 71, 72]
    scale = notes_report([Note(0.2 * i, 0.2 * i + 0.18, c_major[i % 8], 64) for i in range(16)])
    trill = notes_report([Note(0.1 * i, 0.1 * i + 0.09, 72 + (i % 2) * 2, 64) for i in range(16)])
    broken = [60, 64, 67, 72, 67, 64] * 2
    tops = [Note(0.4 * i, 0.4 * i + 0.1, p + o, 64) for i, p in enumerate(broken) for o in (0, 12)]
    bass = [Note(0.4 * i, 0.4 * i + 0.1, b, 64) for i in range(12) for b in (36, 40)]  # the octaves are above it
    octaves = notes_report(sorted(tops + bass, key=lambda n: n.onset))
    step, trilled, octave, leap, detached = (
        lambda r: texture_statistics(r)[3],
        lambda r: texture_statistics(r)[5],
        lambda r: texture_statistics(r)[0],
        lambda r: texture_statistics(r)[4],
        lambda r: texture_statistics(r)[7],
    )
    assert step(scale) > 0.8 and trilled(scale) < 0.1
    assert trilled(trill) > 0.8
    assert octave(octaves) == 1.0 and leap(octaves) > 0.8
    assert detached(octaves) < 0.5 < detached(scale)


def test_the_heads_trees_give_lightgbms_own_scores_and_survive_a_checkpoint(tmp_path) -> None:
    """The trees are evaluated by the model itself (no LightGBM at run time): the same scores as LightGBM's,
    and the same answers after saving and loading."""
    import lightgbm

    from llaqo_model.model.answer_trees import AnswerTrees
    from llaqo_training.answer_fit import tables_from_lightgbm

    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 5))
    y = (x[:, 0] > 0.3).astype(int) + (x[:, 1] * x[:, 2] > 0).astype(int)  # thresholds and an interaction
    params = {"objective": "multiclass", "num_class": 3, "num_leaves": 6, "verbose": -1, "num_threads": 1}
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=20)
    tables = tables_from_lightgbm(booster.dump_model(), first_column=2)
    trees = AnswerTrees(len(tables.feature), len(tables.root), tables.depth, n_out=6)
    trees.load_tables(tables)
    new = rng.standard_normal((50, 5))
    ours = trees(torch.from_numpy(new).float()).double().numpy()
    assert np.allclose(ours[:, 2:5], booster.predict(new, raw_score=True), atol=1e-5)
    assert np.all(ours[:, [0, 1, 5]] == 0)  # other questions' columns untouched

    head, _ = fit_answer_head(table_where_pitch_accuracy_follows_wrong_notes(400, 0), AnswerHeadConfig())
    assert head.config.trees > 0
    torch.manual_seed(0)
    tokenizer = train_tokenizer([], vocab_size=512)
    model = LlaqoModel(tiny_config(len(tokenizer)), tokenizer)
    model.config.answers, model.answer_head = head.config, head
    loaded = from_pretrained(save_pretrained(model.eval(), tmp_path / "model")).answer_head
    table = table_where_pitch_accuracy_follows_wrong_notes(50, 9)
    before, after = head_predictions(head, table), head_predictions(loaded, table)
    assert [p[rating("pitch_accuracy")].answer for p in before] == [p[rating("pitch_accuracy")].answer for p in after]


def test_the_head_can_train_on_both_a_takes_midi_report_and_its_transcribed_one(tmp_path) -> None:
    """`--answer-reports both`: every take's MIDI report, plus its transcribed report where `corpus analyse`
    made one — a second row of the same take, in the same piece (so CV folds keep the two together)."""
    from llaqo_training.answer_fit import build_answer_table
    from llaqo_training.dataset import read_manifest, take_report, write_dev_manifest
    from llaqo_training.reports import cache_path

    manifest = write_dev_manifest(tmp_path / "corpus", n_takes=4, seconds=2.0)
    entries = read_manifest(manifest)
    transcribed = entries[1]
    path = cache_path(manifest.parent / "reports", transcribed["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    report = take_report(transcribed)
    report.notes = report.notes[::2]  # a transcription that missed every other note
    path.write_text(report.to_json(), encoding="utf-8")

    midi = build_answer_table(entries, manifest, "midi")
    both = build_answer_table(entries, manifest, "both")
    assert len(both.ids) == len(midi.ids) + 1 and both.ids.count(transcribed["id"]) == 2
    rows = [i for i, t in enumerate(both.ids) if t == transcribed["id"]]
    assert both.groups[rows[0]] == both.groups[rows[1]]
    assert not np.allclose(both.inputs[rows[0]], both.inputs[rows[1]])  # what each report heard
    assert all(both.answers[q][rows[0]] == both.answers[q][rows[1]] for q in both.answers)
