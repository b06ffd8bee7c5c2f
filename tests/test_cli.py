"""The `llaqo analyze` / `llaqo batch` commands as a user runs them: clear errors, resumable batches."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from llaqo_cli import main
from llaqo_training.examples import mechanical_performance, note_in_bar
from llaqo_training.render import render_notes

REPO = Path(__file__).resolve().parents[1]
BPM = 160.0  # the chorale in 15 s: two of Transkun's 16 s segments (over 16 s takes three)


def llaqo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llaqo_cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


@pytest.fixture(scope="module")
def takes(tmp_path_factory, chorale) -> dict[str, Path]:
    """A take with a wrong note in bar 4 (FLAC), a silent WAV, a NaN WAV, a text file, a bogus score."""
    d = tmp_path_factory.mktemp("takes")
    notes = mechanical_performance(chorale, bpm=BPM)
    i = note_in_bar(chorale, notes, 4, bpm=BPM)
    notes[i] = replace(notes[i], pitch=notes[i].pitch - 2)
    sf.write(d / "wrong_bar4.flac", render_notes(notes), 44100)
    sf.write(d / "silent.wav", np.zeros(44100 * 3, dtype=np.float32), 44100)
    nan = np.full(44100 * 2, np.nan, dtype=np.float32)
    sf.write(d / "nan.wav", nan, 44100, subtype="FLOAT")
    (d / "notes.txt").write_text("not audio")
    (d / "empty.wav").write_bytes(b"")
    good = (d / "wrong_bar4.flac").read_bytes()
    (d / "truncated.flac").write_bytes(good[: len(good) // 50])
    (d / "fake_score.musicxml").write_text("<html><body>hello</body></html>")
    (d / "evil.musicxml").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><score-partwise>&e;'
        "</score-partwise>"
    )
    return {p.stem: p for p in d.iterdir()}


@pytest.mark.slow
def test_analyze_json_and_html(takes, chorale_path, tmp_path):
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    run = llaqo(
        "analyze",
        str(takes["wrong_bar4"]),
        "--score",
        str(chorale_path),
        "--json",
        str(out),
        "--html",
        str(page),
        "--no-model",
    )
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert [
        (b["bar"], i["kind"]) for b in data["bars"] for i in b["issues"] if i["kind"].endswith("_note")
    ] == [(4, "wrong_note")]
    assert "bar 4: played" in run.stdout
    text = page.read_text()
    assert text.startswith("<!doctype html>") and "<svg" in text and "bar 4: played" in text
    assert "http://" not in text and "https://" not in text  # self-contained


def one_error_line(code: int, err: str) -> str:
    """The one `llaqo: error:` line a refused command printed (asserting exit status 2 and nothing else)."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("llaqo: error:"), err
    return lines[0]


def test_a_refused_take_exits_2_with_one_line_and_no_traceback(takes):
    """The command as a process: exit status 2, one line on stderr (every refusal goes through this path)."""
    run = llaqo("analyze", str(takes["nan"]), "--no-model")
    assert "Traceback" not in run.stderr
    assert "NaN" in one_error_line(run.returncode, run.stderr)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("silent", "silent"),
        ("nan", "NaN"),
        ("notes", "cannot read"),
        ("empty", "cannot read"),
        ("truncated", "cannot read"),
        ("missing", "no audio file"),
    ],
)
def test_bad_audio_is_one_clear_line(takes, name, message, capsys):
    path = takes.get(name, Path("/nonexistent/missing.wav"))
    code = main(["analyze", str(path), "--no-model"])  # an uncaught exception would fail the test here
    assert message in one_error_line(code, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("name", "message"), [("fake_score", "score"), ("evil", "entities"), ("notes", "unsupported score type")]
)
def test_bad_score_is_one_clear_line(takes, name, message, capsys):
    code = main(["analyze", str(takes["wrong_bar4"]), "--score", str(takes[name]), "--no-model"])
    assert message in one_error_line(code, capsys.readouterr().err)


def test_take_over_the_length_limit_is_refused(tmp_path):
    from llaqo_model.errors import AudioError
    from llaqo_model.io import load_audio

    path = tmp_path / "long.wav"
    sf.write(path, 0.1 * np.ones(8000 * 30, dtype=np.float32), 8000)
    with pytest.raises(AudioError, match="limit"):
        load_audio(path, max_duration_s=20)


@pytest.mark.slow
def test_batch_goes_on_after_a_bad_take_and_resumes(takes, chorale_path, tmp_path):
    manifest = tmp_path / "session.csv"
    manifest.write_text(
        f"audio,score\n{takes['wrong_bar4']},{chorale_path}\n{takes['silent']},\n"
        f"{takes['notes']},{chorale_path}\n"
    )
    out = tmp_path / "results.jsonl"
    run = llaqo("batch", str(manifest), "--out", str(out), "--no-model")
    assert run.returncode == 2 and "2 of 3 takes failed" in run.stderr.splitlines()[-1], run.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["audio"] for x in lines] == [str(takes[k]) for k in ("wrong_bar4", "silent", "notes")]
    assert "error" not in lines[0] and lines[0]["alignment"]["wrong"] == 1
    assert "silent" in lines[1]["error"] and lines[2]["code"] == "bad_audio"
    again = llaqo("batch", str(manifest), "--out", str(out), "--no-model")
    assert again.returncode == 0 and "3 already done" in again.stderr
    assert len(out.read_text().splitlines()) == 3


def test_min_confidence_outside_0_to_1_is_refused_in_one_line(takes, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["analyze", str(takes["wrong_bar4"]), "--min-confidence", "1.5", "--no-model"])
    assert exited.value.code == 2
    assert "expected a confidence between 0 and 1, got '1.5'" in capsys.readouterr().err.strip().splitlines()[-1]


def test_batch_repairs_a_torn_last_line_and_exits_non_zero_saying_how_many_failed(takes, tmp_path, capsys):
    """A kill tore the last line: the next run drops it, redoes that take, and both lines end up whole."""
    manifest = tmp_path / "session.csv"
    manifest.write_text(f"audio,score\n{takes['silent']},\n{takes['notes']},\n")
    out = tmp_path / "results.jsonl"
    whole = json.dumps({"audio": str(takes["silent"]), "error": "the audio is silent", "code": "bad_audio"})
    out.write_text(whole + "\n" + '{"audio": "' + str(takes["notes"])[:10])  # torn mid-line, no newline
    code = main(["batch", str(manifest), "--out", str(out), "--no-model"])
    assert code == 2
    assert "llaqo: error: 1 of 1 takes failed" in capsys.readouterr().err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["audio"] for x in lines] == [str(takes["silent"]), str(takes["notes"])]
    assert lines[1]["code"] == "bad_audio"


def test_resume_survives_lines_that_are_not_objects(tmp_path):
    from llaqo_model.cli import resume_results

    out = tmp_path / "results.jsonl"
    out.write_text('[1, 2]\n"text"\n{"audio": "a.wav", "duration_s": 3}\nnull\n{"audio": 5}\n')
    assert resume_results(out, retry_errors=False) == {"a.wav"}
    assert out.read_text() == '{"audio": "a.wav", "duration_s": 3}\n'


def test_retry_errors_rewrites_atomically(tmp_path, monkeypatch):
    """--retry-errors rewrites the file through a temporary file and os.replace: a kill during the
    rewrite (here: the replace fails) leaves the original untouched."""
    import os

    from llaqo_model.cli import resume_results

    out = tmp_path / "results.jsonl"
    original = '{"audio": "a.wav", "duration_s": 3}\n{"audio": "b.wav", "error": "bad", "code": "bad_audio"}\n'
    out.write_text(original)
    replaced = []

    def killed(src, dst):
        replaced.append((Path(src), Path(dst)))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        resume_results(out, retry_errors=True)
    assert out.read_text() == original
    assert replaced and replaced[0][1] == out and replaced[0][0] != out
    monkeypatch.undo()
    assert resume_results(out, retry_errors=True) == {"a.wav"}
    assert out.read_text() == '{"audio": "a.wav", "duration_s": 3}\n'
