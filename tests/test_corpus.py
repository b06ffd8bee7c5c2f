"""Corpus generator: labels in range, faults and QA agree, splits by piece, resume, bad input."""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES
from llaqo_model.analysis.score import load_score
from llaqo_training import labels
from llaqo_training.corpus import BuildConfig, build, default_config
from llaqo_training.faults import Fault, inject, wrong_notes
from llaqo_training.qa import make_qa
from llaqo_training.sources import Piece, base_take, exercise_pieces, shared_root, split_of

warnings.filterwarnings("ignore", module="music21")


def _exercise(tmp_path: Path, technique: str = "scales") -> tuple[Piece, object]:
    piece = next(p for p in exercise_pieces() if p.ref["technique"] == technique)
    take = base_take(piece, np.random.default_rng(0), 15.0, tmp_path)
    return piece, take


def test_rating_mapping_is_monotone_and_in_range() -> None:
    values = [labels.rating_from_penalty(p) for p in np.linspace(0, 2, 81)]
    assert values[0] == 6 and values[-1] == 1
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert set(values) == {1, 2, 3, 4, 5, 6}


def test_three_wrong_notes_in_20_s_cannot_be_6() -> None:
    faults = [Fault("wrong_note", [b], 1.0) for b in (2, 4, 6)]
    r = labels.ratings(faults, 20.0)
    assert r["pitch_accuracy"] <= 3
    assert r["tempo_stability"] == 6


def test_wrong_note_in_bar_is_named_and_lowers_pitch_rating(tmp_path: Path) -> None:
    piece, take = _exercise(tmp_path)
    key = take.meta["score_obj"].key_fifths
    faulted, faults = wrong_notes(take, np.random.default_rng(3), 0.45, key)
    assert faults, "a wrong note must be injected"
    bars = {b for f in faults for b in f.bars}
    changed = np.flatnonzero(faulted.notes["pitch"] != take.notes["pitch"])
    assert {int(faulted.notes["bar"][i]) for i in changed} == bars
    ratings = labels.ratings(faults, faulted.duration_s)
    assert ratings["pitch_accuracy"] <= 4
    take_labels = {"ratings": ratings, "overall": labels.overall(ratings), "difficulty": 2, "technique": "scales"}
    info = {"score": take.meta["score"], "source": "exercise"}
    qa = make_qa(take_labels, faults, info, False, np.random.default_rng(0))
    notes_answer = next(x["a"] for x in qa if x["type"] == "open:notes")
    assert bars <= mentioned_bars(notes_answer), notes_answer
    assert any(x["type"] == "open:bar" and f"bar {min(bars)}" in x["q"] for x in qa)
    rating_answers = {x["type"]: x["a"] for x in qa if x["type"].startswith("rating:")}
    assert rating_answers["rating:pitch_accuracy"] == str(ratings["pitch_accuracy"])


def test_timing_faults_keep_bars_and_every_kind_is_recorded(tmp_path: Path) -> None:
    _, take = _exercise(tmp_path, "double_notes")
    plan = {"rushing": 0.8, "hesitation": 0.6, "chord_asynchrony": 0.7, "flat_dynamics": 0.9, "pedal_blur": 0.5}
    faulted, faults = inject(take, plan, np.random.default_rng(1))
    kinds = {f.kind for f in faults}
    assert {"rushing", "hesitation", "chord_asynchrony", "flat_dynamics", "pedal_blur"} <= kinds
    assert faulted.duration_s > take.duration_s  # a hesitation adds time
    assert np.ptp(faulted.notes["velocity"]) < np.ptp(take.notes["velocity"])
    r = labels.ratings(faults, faulted.duration_s)
    for dim in ("tempo_stability", "attack_cleanliness", "dynamic_range", "pedaling"):
        assert r[dim] < 6, dim
    assert r["pitch_accuracy"] == 6
    assert all(1 <= v <= 6 for v in r.values())


def test_chord_asynchrony_is_rated_by_the_spread_it_adds_not_the_performers_own(tmp_path: Path) -> None:
    """A take whose chords a performer already rolls (about 30 ms) is rated 6 without the fault; the fault is
    judged by the spread it adds, so the rolling is not counted against the take (judged by the spread heard,
    the rolled take scored 0.78 against 0.44: two rating steps lower for the performer's own rolling)."""
    from llaqo_model.analysis.metrics import onset_clusters
    from llaqo_training.faults import chord_asynchrony

    _, tidy = _exercise(tmp_path, "double_notes")
    rolled = tidy.copy()
    for c in onset_clusters(rolled.notes["onset_sec"]):
        rolled.notes["onset_sec"][c] += np.linspace(0.0, 0.03, len(c))  # a performer's own rolling
    results = [chord_asynchrony(t, np.random.default_rng(5), 0.2)[1][0] for t in (tidy, rolled)]
    assert all(f.kind == "chord_asynchrony" for f in results)
    assert results[1].detail["spread_ms"] > results[0].detail["spread_ms"] + 10  # the rolled take sounds wider
    assert results[1].magnitude <= results[0].magnitude + 0.1  # 0.04 and 0.28: what the fault added
    ratings = [labels.ratings([f], 20.0)["attack_cleanliness"] for f in results]
    assert ratings[1] >= ratings[0] and min(ratings) >= 3  # 5 and 4


def test_restart_replays_the_bar_after_a_pause(tmp_path: Path) -> None:
    _, take = _exercise(tmp_path, "double_notes")
    faulted, faults = inject(take, {"restart": 0.5}, np.random.default_rng(2))
    assert [f.kind for f in faults] == ["restart"]
    bar = faults[0].bars[0]
    onsets = np.round(faulted.notes["onset_sec"], 3)
    pairs = list(zip(onsets.tolist(), faulted.notes["pitch"].tolist(), strict=True))
    assert len(pairs) == len(set(pairs)), "replayed notes must not double the original ones"
    in_bar = faulted.notes[faulted.notes["bar"] == bar]
    assert len(in_bar) > (take.notes["bar"] == bar).sum()
    gaps = np.diff(np.unique(onsets))
    assert gaps.max() >= 0.5  # the pause before the replay
    assert faulted.duration_s > take.duration_s + 0.5


def test_exercises_cover_all_techniques(tmp_path: Path) -> None:
    for t in TECHNIQUES:
        (tmp_path / t).mkdir()
        _, take = _exercise(tmp_path / t, t)
        assert 10.0 <= take.duration_s <= 45.0, (t, take.duration_s)
        score = load_score(take.meta["score"])
        assert list(score.bars["bar"]) == list(take.bars["bar"])


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[BuildConfig, dict]:
    out = tmp_path_factory.mktemp("corpus")
    config = default_config(out, takes=6, seed=7, workers=1)
    config.with_music21 = False
    config.max_s = 14.0
    summary = build(config, progress=False)
    return config, summary


def _entries(config: BuildConfig) -> list[dict]:
    lines = (config.out / "manifest.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def test_tiny_corpus_labels_files_and_qa(tiny_corpus: tuple[BuildConfig, dict]) -> None:
    config, summary = tiny_corpus
    entries = _entries(config)
    assert len(entries) == 6 == summary["takes"]
    for e in entries:
        assert set(e["ratings"]) == set(RUBRIC_KEYS)
        assert all(1 <= v <= 6 for v in e["ratings"].values())
        assert 1 <= e["overall"] <= 6 and 1 <= e["difficulty"] <= 9
        assert e["technique"] in TECHNIQUES
        assert e["split"] in ("train", "val", "test")
        for key in ("audio", "performance_midi"):
            assert (config.out / e[key]).is_file()
        if e["score"]:
            assert (config.out / e["score"]).is_file()
        answers = {q["type"]: q["a"] for q in e["qa"]}
        assert all(answers[f"rating:{k}"] == str(e["ratings"][k]) for k in RUBRIC_KEYS)
        note_faults = [f for f in e["faults"] if f["kind"] in ("wrong_note", "missed_note")]
        if note_faults:
            assert e["ratings"]["pitch_accuracy"] <= 5
            if e["score"]:
                assert all(str(f["bars"][0]) in answers["open:notes"] for f in note_faults)
        else:
            assert (
                answers["open:notes"] == "All the notes are correct."
                or "extra" in answers["open:notes"]
                or "brushed" in answers["open:notes"]
            )


def mentioned_bars(text: str) -> set[int]:
    """Bar numbers a sentence names: 'bar 3', 'bars 2–4', 'bars 1, 5 and 7'."""
    found: set[int] = set()
    for match in re.finditer(r"\bbars? (\d+(?:(?:–|, | and )\d+)*)", text):
        for part in re.split(r", | and ", match.group(1)):
            first, _, last = part.partition("–")
            found |= set(range(int(first), int(last or first) + 1))
    return found


def test_mentioned_bars_reads_every_phrasing() -> None:
    assert mentioned_bars("a slip in bar 3; rushed in bars 5–7 and bars 9, 11 and 12.") == {3, 5, 6, 7, 9, 11, 12}


def test_splits_never_share_pieces(tiny_corpus: tuple[BuildConfig, dict]) -> None:
    config, _ = tiny_corpus
    split_of_piece: dict[str, str] = {}
    for e in _entries(config):
        assert split_of_piece.setdefault(e["piece"], e["split"]) == e["split"]
        assert e["split"] == split_of(e["piece"])


def test_split_shares_are_close_to_what_was_asked() -> None:
    splits = Counter(split_of(f"piece-{i}", val=0.1, test=0.2) for i in range(3000))
    assert abs(splits["val"] / 3000 - 0.1) < 0.02 and abs(splits["test"] / 3000 - 0.2) < 0.02


def test_resume_builds_only_what_is_missing(tiny_corpus: tuple[BuildConfig, dict]) -> None:
    config, _ = tiny_corpus
    before = {e["id"]: e for e in _entries(config)}
    victim = sorted(before)[0]
    for f in (config.out / "takes" / victim).iterdir():
        f.unlink()
    again = build(config, progress=False)
    assert again["resumed"] == 5 and again["built"] == 1 and again["takes"] == 6
    after = {e["id"]: e for e in _entries(config)}
    assert after[victim]["ratings"] == before[victim]["ratings"]
    assert after[victim]["faults"] == before[victim]["faults"]


def test_bad_sources_are_skipped_with_reasons(tmp_path: Path) -> None:
    asap = shared_root() / "data" / "asap"
    if not (asap / "metadata.csv").is_file():
        pytest.skip("../shared/data/asap is not available")
    fake = tmp_path / "asap"
    (fake / "X" / "Y").mkdir(parents=True)
    (fake / "X" / "Y" / "perf.mid").write_bytes(b"not a midi file")
    (fake / "X" / "Y" / "perf_annotations.txt").write_text("0.5\t0.5\tdb,4/4,0\n")
    (fake / "X" / "Y" / "score.mid").write_bytes(b"garbage")
    (fake / "X" / "Y" / "score_annotations.txt").write_text("0.5\t0.5\tdb,4/4,0\n")
    header = (
        "composer,title,folder,xml_score,midi_score,midi_performance,performance_annotations,midi_score_annotations\n"
    )
    row = "X,Y,X/Y,X/Y/none.mxl,X/Y/score.mid,X/Y/perf.mid,X/Y/perf_annotations.txt,X/Y/score_annotations.txt\n"
    missing = "X,Z,X/Z,X/Z/none.mxl,X/Z/score.mid,X/Z/perf.mid,X/Z/a.txt,X/Z/b.txt\n"
    (fake / "metadata.csv").write_text(header + row + missing)
    config = BuildConfig(out=tmp_path / "out", takes=4, seed=1, asap_root=fake, with_music21=False, max_s=12.0)
    config.soundfonts = [("absent", str(tmp_path / "none.sf2"), 0), ("tim", str(_default_sf()), 0)]
    summary = build(config, progress=False)
    assert summary["takes"] == 4
    reasons = " | ".join(summary["skipped"])
    assert "absent" in reasons and "not found" in reasons
    assert "X/Z" in reasons or "missing" in reasons
    if any(e["source"] == "asap" for e in _entries(config)):
        pytest.fail("the corrupt ASAP piece must not produce a take")
    assert "asap:X/Y" in reasons


def test_missing_shared_still_builds(tmp_path: Path) -> None:
    config = BuildConfig(out=tmp_path / "out", takes=2, seed=3, asap_root=tmp_path / "nowhere", with_music21=False)
    config.max_s = 12.0
    summary = build(config, progress=False)
    assert summary["takes"] == 2
    assert any("not found" in s for s in summary["skipped"])


def _default_sf() -> Path:
    from llaqo_training.render import DEFAULT_SOUNDFONT

    return DEFAULT_SOUNDFONT


def test_cli_build_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from llaqo_cli import main

    assert main(["corpus", "build", "--out", str(tmp_path), "--takes", "0"]) == 2
    assert main(["corpus", "build", "--out", str(tmp_path), "--takes", "2", "--max-seconds", "90"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "--takes" in lines[0] and "--max-seconds" in lines[1]


def test_held_out_phrasings_differ_from_training_ones() -> None:
    fixed = {"ratings": dict.fromkeys(RUBRIC_KEYS, 4), "overall": 4, "difficulty": 3, "technique": "scales"}
    train_q, test_q = set(), set()
    for seed in range(30):
        train_q |= {x["q"] for x in make_qa(fixed, [], {"source": "exercise"}, False, np.random.default_rng(seed))}
        test_q |= {x["q"] for x in make_qa(fixed, [], {"source": "exercise"}, True, np.random.default_rng(seed))}
    assert test_q and not (test_q & train_q)
