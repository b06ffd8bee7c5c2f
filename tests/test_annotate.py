"""Annotated scores as a teacher reads them: comments in the bars where things went wrong, the wrong notes
coloured and named, nothing else in the score changed. Reports come from performed notes (no audio), so
these run in seconds; the CLI tests at the end analyse rendered audio."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import music21
import pytest
import soundfile as sf

from llaqo_model.analysis.score import load_score
from llaqo_model.annotate import annotate_score, plan_annotations, read_written_score
from llaqo_model.annotate.plan import MISSED_COLOUR, WRONG_COLOUR
from llaqo_model.errors import LlaqoError, ScoreError
from llaqo_model.model.assessment import Assessment, BarComment
from llaqo_training.examples import mechanical_performance, note_in_bar
from llaqo_training.render import render_notes

REPO = Path(__file__).resolve().parents[1]
TAKE_BPM = 160.0  # the chorale in 15 s: two of Transkun's 16 s segments (over 16 s takes three)


def directions(path: Path) -> dict[int, list[str]]:
    """Text directions of every part, by printed measure number (the first part's first), with no-break
    spaces read as spaces."""
    found: dict[int, list[str]] = {}
    for part in music21.converter.parse(str(path), forceSource=True).parts:
        for m in part.getElementsByClass(music21.stream.Measure):
            texts = m.recurse().getElementsByClass(music21.expressions.TextExpression)
            found.setdefault(m.number, []).extend(t.content.replace("\u00a0", " ") for t in texts if t.content)
    return found


def coloured(path: Path) -> list[tuple[int, int, str]]:
    """(measure number, MIDI pitch, colour) of every coloured note."""
    found = []
    for part in music21.converter.parse(str(path), forceSource=True).parts:
        for m in part.getElementsByClass(music21.stream.Measure):
            for n in m.recurse().notes:
                for member in n.notes if n.isChord else [n]:
                    if member.style.color:
                        found.append((m.number, member.pitch.midi, member.style.color.upper()))
    return sorted(found)


def test_comments_sit_in_the_bars_where_things_went_wrong(chorale, chorale_path, mistakes_report, tmp_path):
    out = tmp_path / "annotated.musicxml"
    annotate_score(mistakes_report, chorale, chorale_path, out)
    texts = directions(out)
    assert any("wrong: D♯4 for D4" in t for t in texts[6]), texts[6]
    assert any(t.startswith("missed: ") for t in texts[3]), texts[3]
    assert any(t.startswith("extra: ") for t in texts[8]) and any(t.startswith("+") for t in texts[8]), texts[8]
    assert not any(texts.get(bar) for bar in (1, 2, 4, 5, 7, 9)), texts
    assert texts[0] and texts[0][0].startswith("LLaQo · take.flac")  # the assessment block above bar 0


def test_only_the_wrong_and_missed_notes_are_coloured(chorale, chorale_path, mistakes_report, tmp_path):
    out = tmp_path / "annotated.musicxml"
    annotate_score(mistakes_report, chorale, chorale_path, out)
    marks = coloured(out)
    wrong = [(bar, pitch) for bar, pitch, colour in marks if colour == WRONG_COLOUR]
    missed = [bar for bar, _, colour in marks if colour == MISSED_COLOUR]
    # the D4 on beat 1 of bar 6 is doubled by tenor and bass: one key, both written notes coloured
    assert wrong == [(6, 62), (6, 62)]
    assert missed == [3]
    assert len(marks) == 3


def test_several_issues_in_one_bar_share_one_comment(chorale, chorale_path, report_for):
    notes = mechanical_performance(chorale)
    for which in (0, 3):
        i = note_in_bar(chorale, notes, 5, which=which)
        notes[i] = replace(notes[i], pitch=notes[i].pitch + 1)
    report = report_for(chorale, notes)
    plan = plan_annotations(report, chorale, read_written_score(chorale_path))
    in_bar_5 = [t for t in plan.bar_texts if t.bar == 5]
    assert len(in_bar_5) == 1
    text = in_bar_5[0].text.replace("\u00a0", " ")
    assert text.count("wrong:") == 1 and text.count(" for ") == 2
    assert "for\n" not in text  # lines break between notes, never inside one


def test_model_comments_and_ratings_are_written(chorale, chorale_path, mistakes_report, tmp_path):
    assessment = Assessment(
        ratings={"pitch_accuracy": 3, "tempo_stability": 5}, overall=4, difficulty=3, technique="scales",
        feedback="Clean voicing overall; slow down the cadence.",
        bar_comments=[BarComment(bar=6, text="check the tenor's first note")],
    )
    out = tmp_path / "annotated.musicxml"
    annotate_score(mistakes_report, chorale, chorale_path, out, assessment)
    texts = directions(out)
    header = texts[0][0]
    assert "Overall 4/6" in header and "pitch accuracy 3" in header and "slow down the cadence" in header
    assert any("LLaQo: check the tenor's" in t for t in texts[6])


def test_a_take_that_does_not_match_the_score_writes_nothing(
    chorale, chorale_path, other_piece_path, report_for, tmp_path
):
    other = load_score(other_piece_path)
    report = report_for(chorale, mechanical_performance(other))
    assert report.score_mismatch
    out = tmp_path / "annotated.musicxml"
    with pytest.raises(ScoreError, match="does not match"):
        annotate_score(report, chorale, chorale_path, out)
    assert not out.exists()


def test_unwritable_output_is_refused_before_any_work(chorale, chorale_path, mistakes_report, tmp_path):
    with pytest.raises(LlaqoError, match="does not exist"):
        annotate_score(mistakes_report, chorale, chorale_path, tmp_path / "no" / "such" / "dir" / "a.musicxml")
    with pytest.raises(LlaqoError, match=r"\.pdf"):
        annotate_score(mistakes_report, chorale, chorale_path, tmp_path / "a.pdf")


def rich_score(path: Path) -> Path:
    """Two parts, two voices, dynamics, lyrics, a slur and a system break: what must survive untouched."""
    upper, lower = music21.stream.Part(), music21.stream.Part()
    upper.partName, lower.partName = "Right", "Left"
    melody = ["C5", "D5", "E5", "F5", "G5", "F5", "E5", "D5", "C5", "E5", "G5", "C6"]
    words = ["Sing", "a", "song", "of", "praise", "to", "all", "the", "world", "and", "to", "you"]
    for bar in range(3):
        top = music21.stream.Measure(number=bar + 1)
        if bar == 0:
            top.append([music21.meter.TimeSignature("4/4"), music21.key.Key("C")])
            top.insert(0, music21.dynamics.Dynamic("p"))
        if bar == 2:
            top.insert(0, music21.layout.SystemLayout(isNew=True))
            top.insert(0, music21.dynamics.Dynamic("f"))
        v1, v2 = music21.stream.Voice(id="1"), music21.stream.Voice(id="2")
        for k in range(4):
            n = music21.note.Note(melody[4 * bar + k], quarterLength=1)
            n.lyric = words[4 * bar + k]
            v1.append(n)
        v2.append(music21.note.Note("G4", quarterLength=2))
        v2.append(music21.note.Note("A4", quarterLength=2))
        top.append([v1, v2])
        bottom = music21.stream.Measure(number=bar + 1)
        if bar == 0:
            bottom.append([music21.clef.BassClef(), music21.meter.TimeSignature("4/4"), music21.key.Key("C")])
        bottom.append(music21.chord.Chord(["C3", "G3"], quarterLength=4))
        upper.append(top)
        lower.append(bottom)
    upper.insert(0, music21.spanner.Slur([upper.recurse().notes[0], upper.recurse().notes[2]]))
    score = music21.stream.Score([upper, lower])
    score.write("musicxml", fp=str(path))
    return path


def musical_content(path: Path, skip: set[str]) -> list:
    """Everything a musician reads, measure by measure, minus texts in `skip`."""
    parsed = music21.converter.parse(str(path), forceSource=True)
    content = []
    for part in parsed.parts:
        content.append(part.partName)
        for m in part.getElementsByClass(music21.stream.Measure):
            for e in m.recurse():
                if isinstance(e, music21.expressions.TextExpression) and e.content in skip:
                    continue
                if isinstance(e, (music21.note.GeneralNote, music21.dynamics.Dynamic, music21.layout.SystemLayout,
                                  music21.expressions.TextExpression, music21.meter.TimeSignature,
                                  music21.key.KeySignature, music21.clef.Clef)):
                    pitches = [p.nameWithOctave for p in getattr(e, "pitches", ())]
                    content.append((m.number, float(e.getOffsetInHierarchy(m)), type(e).__name__, pitches,
                                    float(e.duration.quarterLength), getattr(e, "lyric", None),
                                    getattr(e, "value", None), getattr(e, "isNew", None),
                                    str(e.tie.type) if getattr(e, "tie", None) else None))
    content.append(len(parsed.recurse().getElementsByClass(music21.spanner.Slur)))
    return content


def test_a_take_with_no_issues_leaves_the_music_identical(report_for, tmp_path):
    source = rich_score(tmp_path / "rich.musicxml")
    analysed = load_score(source)
    report = report_for(analysed, mechanical_performance(analysed))
    assert not [i for b in report.bars for i in b.issues]
    out = tmp_path / "annotated.musicxml"
    plan = annotate_score(report, analysed, source, out)
    assert not plan.bar_texts and not plan.notes and not plan.marks
    assert musical_content(out, skip={plan.header}) == musical_content(source, skip=set())
    assert musical_content(out, skip=set()) != musical_content(source, skip=set())  # the header is there


def repeated_score(path: Path) -> Path:
    """Four bars of quarter notes; bars 1–2 repeated."""
    part = music21.stream.Part()
    pitches = ["C4", "E4", "G4", "C5"]
    for bar in range(4):
        m = music21.stream.Measure(number=bar + 1)
        if bar == 0:
            m.append([music21.meter.TimeSignature("4/4")])
            m.leftBarline = music21.bar.Repeat(direction="start")
        for k in range(4):
            m.append(music21.note.Note(music21.pitch.Pitch(pitches[k]).transpose(bar), quarterLength=1))
        if bar == 1:
            m.rightBarline = music21.bar.Repeat(direction="end")
        part.append(m)
    music21.stream.Score([part]).write("musicxml", fp=str(path))
    return path


def test_a_repeated_bar_says_which_time_through(report_for, tmp_path):
    source = repeated_score(tmp_path / "repeat.musicxml")
    analysed = load_score(source)
    assert list(analysed.bars["bar"]) == [1, 2, 1, 2, 3, 4]
    notes = mechanical_performance(analysed)
    second_pass_bar_2 = [i for i, n in enumerate(notes) if abs(n.onset - (0.5 + 12 * 0.75)) < 1e-3][0]
    notes[second_pass_bar_2] = replace(notes[second_pass_bar_2], pitch=notes[second_pass_bar_2].pitch + 2)
    report = report_for(analysed, notes)
    assert [b.bar for b in report.bars if b.issues] == [2]
    plan = plan_annotations(report, analysed, read_written_score(source))
    assert [(t.bar, t.text.split(":")[0]) for t in plan.bar_texts] == [(2, "2nd time")]
    assert [(n.bar, n.offset_ql) for n in plan.notes] == [(2, 0.0)]


def test_a_midi_score_is_quantised_into_notation(chorale, chorale_path, report_for, tmp_path):
    midi = tmp_path / "chorale.mid"
    music21.converter.parse(str(chorale_path)).write("midi", fp=str(midi))
    analysed = load_score(midi)
    notes = mechanical_performance(analysed)
    bar = int(analysed.bars["bar"][6])
    i = note_in_bar(analysed, notes, bar, which=0)
    written_pitch = notes[i].pitch
    notes[i] = replace(notes[i], pitch=written_pitch + 1)
    out = tmp_path / "annotated.musicxml"
    annotate_score(report_for(analysed, notes), analysed, midi, out)
    assert [(b, p) for b, p, _ in coloured(out)][0] == (bar, written_pitch)
    assert any(t.startswith("wrong: ") for t in directions(out)[bar])


def test_a_score_without_measures_is_refused(tmp_path):
    bare = tmp_path / "bare.musicxml"
    bare.write_text(
        '<?xml version="1.0"?><score-partwise version="4.0"><part-list><score-part id="P1"><part-name>x</part-name>'
        '</score-part></part-list><part id="P1"></part></score-partwise>'
    )
    with pytest.raises(ScoreError, match="no measures|no parts"):
        read_written_score(bare)


# --- the commands, on rendered audio -------------------------------------------------------------


def llaqo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llaqo_cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=900)


@pytest.fixture(scope="module")
def take_bar6(tmp_path_factory, chorale, played_with_mistakes) -> Path:
    path = tmp_path_factory.mktemp("takes") / "wrong_bar6.flac"
    take = played_with_mistakes(chorale, missed_bar=None, extra_bar=None, bpm=TAKE_BPM)
    sf.write(path, render_notes(take), 44100)
    return path


def test_annotate_command_refuses_bad_input_with_one_line(take_bar6, chorale_path, tmp_path, capsys):
    from llaqo_cli import main

    fake = tmp_path / "fake.musicxml"
    fake.write_text("<html><body>hello</body></html>")
    cases = [
        (["--score", str(chorale_path), "--out", str(tmp_path / "missing" / "a.musicxml")], "does not exist"),
        (["--score", str(fake), "--out", str(tmp_path / "a.musicxml")], "cannot read fake.musicxml"),
        (["--score", str(chorale_path), "--out", str(tmp_path / "a.pdf")], "annotated score is .musicxml"),
    ]
    for extra, message in cases:
        code = main(["annotate", str(take_bar6), *extra, "--no-model"])  # in-process: an exception fails here
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("llaqo: error: ") and message in lines[0], err
    run = llaqo("annotate", str(take_bar6), *cases[1][0], "--no-model")  # and as a process: status 2, one line
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert lines[0].startswith("llaqo: error: ") and "cannot read fake.musicxml" in lines[0]


@pytest.mark.slow
def test_annotate_command_writes_the_score(take_bar6, chorale_path, tmp_path):
    out = tmp_path / "annotated.musicxml"
    run = llaqo("annotate", str(take_bar6), "--score", str(chorale_path), "--out", str(out), "--no-model")
    assert run.returncode == 0, run.stderr
    assert f"annotated score → {out}" in run.stdout
    assert any("wrong: D♯4 for D4" in t for t in directions(out)[6])


@pytest.mark.slow
def test_batch_annotates_each_take_and_goes_on_after_a_bad_one(take_bar6, chorale_path, other_piece_path, tmp_path):
    fake = tmp_path / "fake.musicxml"
    fake.write_text("<html/>")
    manifest = tmp_path / "takes.csv"
    manifest.write_text(f"audio,score\n{take_bar6},{chorale_path}\n{take_bar6.with_name('x.flac')},{fake}\n")
    (take_bar6.with_name("x.flac")).write_bytes(take_bar6.read_bytes())
    folder = tmp_path / "annotated"
    run = llaqo("batch", str(manifest), "--out", str(tmp_path / "r.jsonl"), "--annotate", str(folder), "--no-model")
    assert run.returncode == 2 and "1 of 2 takes failed" in run.stderr
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert lines[0]["annotated"] == str(folder / "wrong_bar6.musicxml") and "error" not in lines[0]
    assert lines[1]["code"] == "bad_score"
    assert any("wrong: D♯4 for D4" in t for t in directions(folder / "wrong_bar6.musicxml")[6])
    assert sorted(p.name for p in folder.iterdir()) == ["wrong_bar6.musicxml"]


def test_batch_names_one_annotated_score_per_take_without_clashes(tmp_path):
    from llaqo_model.cli import annotation_paths

    rows = [("a/take.flac", "s.musicxml"), ("b/take.wav", "s.musicxml"), ("c/other.flac", None),
            ("a/take.flac", "s.musicxml")]
    assert annotation_paths(rows, tmp_path) == {"a/take.flac": tmp_path / "take.musicxml",
                                                "b/take.wav": tmp_path / "take-2.musicxml"}


def test_a_compressed_mxl_is_written_too(chorale, chorale_path, mistakes_report, tmp_path):
    out = tmp_path / "annotated.mxl"
    annotate_score(mistakes_report, chorale, chorale_path, out)
    assert any("wrong: D♯4 for D4" in t for t in directions(out)[6])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.mxl"]  # nothing left beside it
