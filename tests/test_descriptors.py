"""Perceptual descriptors: the model answers the 19 questions, `ask` agrees with the assessment, the figures
are computed correctly, rows with missing labels train on the labels they have, PercePiano imports by passage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

from llaqo_model.analysis.report import Note, PedalInterval, PerformanceReport
from llaqo_model.errors import LlaqoError
from llaqo_model.model.assess import Assessor
from llaqo_model.model.checkpoint import from_pretrained, save_pretrained
from llaqo_model.model.descriptor_head import DescriptorConfig, DescriptorHead
from llaqo_model.model.descriptors import DESCRIPTOR_KEYS, answer_text, descriptor_of, descriptor_question
from llaqo_model.model.llaqo import LlaqoModel, tiny_config
from llaqo_model.model.take_features import ALL_STREAMS, STREAMS, stream_slices
from llaqo_model.model.tokenizer import train_tokenizer
from llaqo_training.descriptor_data import DescriptorTable, label_arrays
from llaqo_training.descriptor_fit import HeadFit, fit_head, predict_head, scale_scores, statistics_baseline
from llaqo_training.transcription_noise import TranscriptionNoise

RATE = 16000
N_IN = sum(w for _, w in STREAMS)


def played(seed: int, loud: int) -> tuple[np.ndarray, PerformanceReport]:
    """A take: a few notes of random pitch at velocity around `loud`, and noise audio of the same length."""
    rng = np.random.default_rng(seed)
    notes = [
        Note(0.3 * i, 0.3 * i + 0.25, int(rng.integers(50, 80)), int(loud + rng.integers(-5, 5))) for i in range(12)
    ]
    report = PerformanceReport(
        audio="take.wav", score=None, duration_s=4.0, notes=notes, pedal=[PedalInterval(0.5, 2.0)]
    )
    audio = (rng.standard_normal(4 * RATE) * 0.05 * loud / 64).astype(np.float32)
    return audio, report


@pytest.fixture(scope="module")
def assessor(tmp_path_factory: pytest.TempPathFactory) -> Assessor:
    """A tiny random model with a descriptor head whose output weights are not zero, saved and reloaded."""
    torch.manual_seed(0)
    tokenizer = train_tokenizer([], vocab_size=512)
    config = tiny_config(len(tokenizer))
    config.descriptors = DescriptorConfig(hidden=8)
    model = LlaqoModel(config, tokenizer)
    torch.nn.init.normal_(model.descriptor_head.net[-1].weight, std=0.3)
    path = save_pretrained(model.eval(), tmp_path_factory.mktemp("ck") / "model")
    return Assessor(from_pretrained(path), "tiny")


def test_assessment_carries_19_descriptors_in_range(assessor: Assessor) -> None:
    audio, report = played(0, 60)
    descriptors = assessor.assess(audio, RATE, report).descriptors
    assert list(descriptors) == list(DESCRIPTOR_KEYS)
    assert all(0.0 <= v <= 1.0 for v in descriptors.values())


def test_descriptors_depend_on_the_playing(assessor: Assessor) -> None:
    soft, loud = assessor.assess_batch(
        [(*played(1, 30)[:1], RATE, played(1, 30)[1]), (*played(2, 110)[:1], RATE, played(2, 110)[1])]
    )
    assert soft.descriptors != loud.descriptors


def test_ask_and_batch_give_the_same_number(assessor: Assessor) -> None:
    takes = [played(s, 40 + 20 * s) for s in range(3)]
    batch = assessor.assess_batch([(a, RATE, r) for a, r in takes])
    for (audio, report), assessment in zip(takes, batch, strict=True):
        for key in ("timing_stable_unstable", "pedal_clean_blurred"):
            answer = "".join(assessor.ask(audio, RATE, report, descriptor_question(key)))
            assert answer == answer_text(assessment.descriptors[key])
    short = "".join(assessor.ask(*takes[0][:1], RATE, takes[0][1], "How stable is the timing?"))
    assert short == answer_text(batch[0].descriptors["timing_stable_unstable"])


def test_questions_name_their_scale_and_are_recognised() -> None:
    assert descriptor_question("timing_stable_unstable") == "How stable is the timing, from 1 (stable) to 7 (unstable)?"
    assert all(descriptor_of(descriptor_question(k)) == k for k in DESCRIPTOR_KEYS)
    assert descriptor_of("What feedback would you give this pianist?") is None
    assert answer_text(2 / 7) == "2.0" and answer_text(1.0) == "7.0"


def table(labels: np.ndarray, mask: np.ndarray, inputs: np.ndarray | None = None) -> DescriptorTable:
    n = len(labels)
    x = inputs if inputs is not None else np.zeros((n, N_IN), np.float32)
    return DescriptorTable(
        x,
        labels.astype(np.float32),
        mask.astype(np.float32),
        [str(i) for i in range(n)],
        [f"p{i % 8}" for i in range(n)],
        ["val"] * n,
        ["s"] * n,
    )


def test_r2_mae_and_pearson_match_their_definitions_and_skip_missing_labels() -> None:
    truth = np.tile(np.array([[0.2], [0.4], [0.6], [0.8]]), (1, len(DESCRIPTOR_KEYS)))
    pred = truth + np.array([[0.1], [-0.1], [0.0], [0.05]])
    mask = np.ones_like(truth)
    mask[3, 0] = 0  # the first scale's last take has no label: it must not count
    pred[3, 0] = 100.0
    scores = scale_scores(pred, table(truth, mask))
    first = scores["per_scale"][DESCRIPTOR_KEYS[0]]
    assert first["r2"] == pytest.approx(r2_score(truth[:3, 0], pred[:3, 0]))
    assert first["mae"] == pytest.approx(np.mean([0.1, 0.1, 0.0]))
    second = scores["per_scale"][DESCRIPTOR_KEYS[1]]
    assert second["r2"] == pytest.approx(1 - (0.01 + 0.01 + 0 + 0.0025) / 0.2)
    assert scores["mean"]["r2"] == pytest.approx(np.mean([v["r2"] for v in scores["per_scale"].values()]))


@pytest.mark.parametrize("hidden", [0, 8])
def test_rows_missing_labels_train_on_the_labels_they_have(hidden: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, N_IN)).astype(np.float32)
    y = np.clip(0.5 + 0.1 * x[:, :1].repeat(len(DESCRIPTOR_KEYS), 1), 0, 1)
    labels, mask = zip(
        *(
            label_arrays({k: float(y[i, j]) for j, k in enumerate(DESCRIPTOR_KEYS) if i % 2 == 0 or j < 5})
            for i in range(80)
        ),
        strict=True,
    )
    labels, mask = np.stack(labels), np.stack(mask)
    assert mask[1, 10] == 0 and labels[1, 10] == 0
    poisoned = labels.copy()
    poisoned[mask == 0] = 1e3  # whatever sits where a label is missing changes nothing
    fit = HeadFit(epochs=150)
    a = fit_head(table(labels, mask, x), DescriptorConfig(hidden=hidden), fit)
    b = fit_head(table(poisoned, mask, x), DescriptorConfig(hidden=hidden), fit)
    t = table(y, np.ones_like(y), x)
    assert np.allclose(predict_head(a, t), predict_head(b, t), atol=1e-5)
    assert scale_scores(predict_head(a, t), t)["mean"]["r2"] > 0.5  # it learned the labelled signal
    assert scale_scores(statistics_baseline(table(labels, mask, x), t), t)["mean"]["r2"] > 0.5


def test_shuffling_a_stream_gives_each_take_another_takes_values() -> None:
    x = np.random.default_rng(0).standard_normal((5, N_IN)).astype(np.float32)
    head = DescriptorHead(DescriptorConfig(streams=("audio",))).eval()
    torch.nn.init.normal_(head.net[-1].weight)
    t = table(np.zeros((5, len(DESCRIPTOR_KEYS))), np.ones((5, len(DESCRIPTOR_KEYS))), x)
    plain, shuffled = predict_head(head, t), predict_head(head, t, ("audio",))
    assert not np.allclose(plain, shuffled)
    assert sorted(map(tuple, np.round(plain, 5))) == sorted(map(tuple, np.round(shuffled, 5)))


def test_percepiano_import_renders_by_passage_with_labels_and_questions(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llaqo_training.percepiano as percepiano
    from llaqo_training.percepiano import HELD_OUT_SOUND, import_percepiano, passage_split

    monkeypatch.setattr(percepiano, "sampled_piano", lambda skipped: None)  # as where its samples are not fetched

    root = shared_dir / "data" / "percepiano"
    if not (root / "labels.jsonl").is_file():
        pytest.skip("PercePiano not in ../shared")
    rows = [json.loads(line) for line in (root / "labels.jsonl").read_text().splitlines()[:2]]
    rows[1]["labels"].pop("timing_stable_unstable")  # a row without some labels keeps the others
    fake = tmp_path / "pp"
    fake.mkdir()
    for sub in ("performance", "score"):
        (fake / sub).symlink_to(root / sub)
    (fake / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = import_percepiano(fake, tmp_path / "out")
    entries = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert summary.rows == len(entries) == 4  # two sounds per segment
    for e in entries:
        assert (tmp_path / "out" / e["audio"]).stat().st_size > 10_000
        assert e["split"] == passage_split(e["passage"])
        assert all(0 < v <= 1 for v in e["descriptors"].values())
        assert {q["type"] for q in e["qa"]} == {f"descriptor:{k}" for k in e["descriptors"]}
        assert (e["split"] != "train") == (
            HELD_OUT_SOUND in {x["sound"] for x in entries if x["segment"] == e["segment"]}
        )
    assert len({e["sound"] for e in entries if e["segment"] == rows[0]["id"]}) == 2
    assert "timing_stable_unstable" not in entries[-1]["descriptors"] and len(entries[-1]["descriptors"]) == 18
    again = import_percepiano(fake, tmp_path / "out")
    assert again.rendered == 0 and again.rows == 4  # resumes


def test_training_segments_are_also_rendered_with_the_sampled_piano_and_held_out_ones_are_not() -> None:
    from llaqo_training.percepiano import HELD_OUT_SOUND, sounds_for

    sounds = [(name, Path(name), 0) for name in ("a", "b", "c", HELD_OUT_SOUND)]
    sampled = ("sampled", Path("sampled"), 0)
    train = sounds_for("seg", "train", sounds, sampled)
    assert [s[0] for s in train[:2]] == [s[0] for s in sounds_for("seg", "train", sounds)]  # earlier renders kept
    assert train[2] == sampled and HELD_OUT_SOUND not in {s[0] for s in train}
    for split in ("val", "test"):
        assert sounds_for("seg", split, sounds, sampled) == sounds_for("seg", split, sounds)


def test_a_long_transcription_job_does_the_held_out_takes_first_then_one_rendering_per_segment() -> None:
    from llaqo_training.reports import analysis_order

    def take(segment: str, passage: str, split: str, sound: str) -> dict:
        return {"id": f"{segment}__{sound}", "segment": segment, "passage": passage, "split": split, "sound": sound}

    entries = [
        take("a1", "a", "train", "x"),
        take("a1", "a", "train", "y"),
        take("a2", "a", "train", "y"),
        take("b1", "b", "train", "x"),
        take("t1", "t", "test", "held"),
        take("t1", "t", "test", "x"),
        take("v1", "v", "val", "held"),
    ]
    order = [e["id"] for e in analysis_order(entries, "held")]
    assert order[:2] == ["v1__held", "t1__held"]
    assert set(order[2:4]) == {"a1__x", "b1__x"}  # each passage's first segment, first rendering
    assert order.index("a2__y") < order.index("a1__y")  # every first rendering before any second one
    assert order[-1] == "t1__x" and sorted(order) == sorted(e["id"] for e in entries)


def test_a_head_fitted_on_simulated_reports_leans_on_what_transcription_keeps() -> None:
    """Two inputs carry the label equally in the performance MIDI; transcription keeps the first and scrambles
    the second (as Transkun does with a rendered take's pedal). Fitted on the MIDI, the head splits its weight
    and does badly on transcribed takes; fitted on the MIDI passed through the learned transcription noise, it
    moves its weight to the first input and does well."""
    rng = np.random.default_rng(1)
    n, stats = 400, slice(0, 2)  # the first two columns of the statistics stream

    def takes(count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        signal = rng.standard_normal(count)
        midi = rng.standard_normal((count, N_IN)).astype(np.float32) * 0.1
        midi[:, stats] = signal[:, None] + rng.standard_normal((count, 2)) * 0.3
        heard = midi.copy()
        heard[:, 0] = 0.8 * midi[:, 0] + 0.1 + rng.standard_normal(count) * 0.05  # kept, rescaled
        heard[:, 1] = rng.standard_normal(count)  # scrambled
        y = np.clip(0.5 + 0.1 * signal, 0, 1)[:, None].repeat(len(DESCRIPTOR_KEYS), 1)
        return midi, heard, y

    midi, heard, y = takes(n)
    noise = TranscriptionNoise.fit(midi[:60], heard[:60])  # only 60 takes were transcribed
    assert abs(noise.slope[0] - 0.8) < 0.1 and abs(noise.slope[1]) < 0.3 and noise.spread[1] > 0.8
    _, test_heard, test_y = takes(200)
    config, fit = DescriptorConfig(streams=("statistics",)), HeadFit(trees=False)  # the ridge's weights are read
    on_midi = fit_head(table(y, np.ones_like(y), midi), config, fit)
    simulated = table(y, np.ones_like(y), midi).repeated(noise.apply(midi, copies=3))
    on_simulated = fit_head(simulated, config, fit)
    test = table(test_y, np.ones_like(test_y), test_heard)
    r2_midi = scale_scores(predict_head(on_midi, test), test)["mean"]["r2"]
    r2_simulated = scale_scores(predict_head(on_simulated, test), test)["mean"]["r2"]
    assert r2_simulated > 0.6 and r2_simulated > r2_midi + 0.15
    weights = on_simulated.net[-1].weight[0, :2].abs()
    assert weights[0] > 3 * weights[1]
    with pytest.raises(LlaqoError, match="at least 20 training takes transcribed"):
        TranscriptionNoise.fit(midi[:5], heard[:5])


def test_a_head_trained_on_both_reports_sees_each_segments_midi_and_the_transcribed_takes(tmp_path: Path) -> None:
    """`--descriptor-reports both`: one row per SoundFont take from its segment's performance MIDI, plus one row per
    transcribed sampled-piano take from its own transcription (what a user's take gives), labels alike."""
    import soundfile as sf

    from llaqo_training.descriptor_eval import percepiano_dirs, training_table
    from llaqo_training.render import SAMPLED_SOUND

    manifest = tmp_path / "manifest.jsonl"
    dirs = percepiano_dirs(manifest)
    entries = []
    for i, segment in enumerate(("s1", "s2", "s3")):
        labels = {k: 0.2 + 0.2 * i for k in DESCRIPTOR_KEYS}
        audio, midi_report = played(i, 40 + 20 * i)
        dirs["midi"].mkdir(parents=True, exist_ok=True)
        (dirs["midi"] / f"{segment}.json").write_text(midi_report.to_json())
        for sound in ("fluidr3_grand", SAMPLED_SOUND):
            take = f"{segment}__{sound}"
            sf.write(tmp_path / f"{take}.flac", audio, RATE)
            entries.append({"id": take, "segment": segment, "passage": segment, "split": "train", "sound": sound,
                            "audio": str(tmp_path / f"{take}.flac"), "descriptors": labels})  # fmt: skip
    _, heard = played(10, 100)  # the transcription of s1's sampled take reads it louder than its MIDI
    dirs["transcribed"].mkdir(parents=True)
    (dirs["transcribed"] / f"s1__{SAMPLED_SOUND}.json").write_text(heard.to_json())

    both = training_table(entries, manifest, "both")
    midi = training_table(entries, manifest, "midi")
    assert midi.ids == ["s1__fluidr3_grand", "s2__fluidr3_grand", "s3__fluidr3_grand"]
    assert both.ids == [*midi.ids, f"s1__{SAMPLED_SOUND}"]  # only the transcribed take joins
    assert np.allclose(both.labels[3], both.labels[0])  # with its segment's labels
    velocity = 2  # the statistics stream's mean velocity column
    assert both.stream(("statistics",))[3, velocity] > both.stream(("statistics",))[0, velocity] + 0.3


def test_choosing_streams_per_scale_leaves_out_a_stream_that_only_adds_noise() -> None:
    """The label follows one column of the statistics stream; the written stream is noise that a few training
    passages happen to share. Chosen per scale, the fit reads no written column and does no worse on new
    passages than the fit that reads every stream."""
    rng = np.random.default_rng(3)
    written = stream_slices(ALL_STREAMS)["written"]

    def takes(count: int, offset: int) -> DescriptorTable:
        x = rng.standard_normal((count, N_IN)).astype(np.float32)
        y = np.clip(0.5 + 0.1 * x[:, :1] + 0.03 * rng.standard_normal((count, 1)), 0, 1)
        passage_noise = rng.standard_normal((8, written.stop - written.start))
        x[:, written] = passage_noise[np.arange(count) % 8]
        t = table(y.repeat(len(DESCRIPTOR_KEYS), 1), np.ones((count, len(DESCRIPTOR_KEYS))), x)
        t.passages = [f"p{offset + i % 8}" for i in range(count)]
        return t

    train, test = takes(160, 0), takes(80, 100)
    config = DescriptorConfig(streams=("statistics", "written"))
    chosen = fit_head(train, config, HeadFit(select_streams=True, trees=False))
    every = fit_head(train, config, HeadFit(trees=False))
    columns = stream_slices(config.streams)["written"]
    assert torch.all(chosen.net[-1].weight[:, columns] == 0)
    assert all(streams == ["statistics"] for streams in chosen.scale_streams.values())
    r2_chosen = scale_scores(predict_head(chosen, test), test)["mean"]["r2"]
    r2_every = scale_scores(predict_head(every, test), test)["mean"]["r2"]
    assert r2_chosen > 0.5 and r2_chosen >= r2_every - 0.01


def test_a_scale_that_turns_at_a_threshold_is_fitted_by_trees_and_reloads_the_same(tmp_path: Path) -> None:
    """One scale jumps where the first input passes 0.5 (touch that turns hard past a loudness), the others follow
    it in a straight line: the first gets trees (it beats the ridge there on new passages), the others keep the
    ridge, and a model saved with that head answers the same after it is read back."""
    rng = np.random.default_rng(5)

    def takes(count: int, offset: int) -> DescriptorTable:
        x = rng.standard_normal((count, N_IN)).astype(np.float32)
        y = np.clip(0.5 + 0.05 * x[:, :1] + 0.02 * rng.standard_normal((count, 1)), 0, 1).repeat(19, 1)
        y[:, 0] = np.where(x[:, 0] > 0.5, 0.8, 0.3) + 0.02 * rng.standard_normal(count)
        t = table(y, np.ones_like(y), x)
        t.passages = [f"p{offset + i % 10}" for i in range(count)]
        return t

    train, test = takes(300, 0), takes(200, 100)
    head = fit_head(train, DescriptorConfig(), HeadFit())
    linear = fit_head(train, DescriptorConfig(), HeadFit(trees=False))
    first = DESCRIPTOR_KEYS[0]
    assert head.scale_fits[first].startswith("trees") and head.config.trees > 0
    assert sum(fit == "ridge" for fit in head.scale_fits.values()) >= 15
    r2 = lambda h: scale_scores(predict_head(h, test), test)["per_scale"][first]["r2"]  # noqa: E731
    assert r2(head) > 0.75 and r2(head) > r2(linear) + 0.1

    tokenizer = train_tokenizer([], vocab_size=512)
    config = tiny_config(len(tokenizer))
    config.descriptors = head.config
    model = LlaqoModel(config, tokenizer)
    model.descriptor_head = head
    again = from_pretrained(save_pretrained(model.eval(), tmp_path / "model")).descriptor_head
    assert again.config.trees == head.config.trees
    assert np.allclose(predict_head(again, test), predict_head(head, test), atol=1e-6)
