"""Annotated scores checked by MuseScore itself, not by our own reading of our own output: MuseScore 3
converts them to its .mscx and to PNG, and its plugin writes comments into a score it has open.
Every test here skips with a reason where MuseScore 3 is not installed (`scripts/setup.sh --test`
installs it where apt is usable)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llaqo_model.annotate import annotate_score

REPO = Path(__file__).resolve().parents[1]
MUSESCORE = next((shutil.which(n) for n in ("musescore3", "mscore3") if shutil.which(n)), None)
needs_musescore = pytest.mark.skipif(MUSESCORE is None, reason="MuseScore 3 (musescore3) is not installed")
RED = (214, 39, 40)


def musescore(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run MuseScore 3 headless (no display, no sound)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_RUNTIME_DIR": str(cwd)}
    run = subprocess.run([MUSESCORE, "-s", "-m", *args], capture_output=True, text=True, cwd=cwd, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def read_mscx(path: Path) -> list[list[dict]]:
    """MuseScore's own view of a score: per staff, per written measure, its staff texts (no-break spaces
    read as spaces) and coloured notes."""
    staves = []
    for staff in ET.parse(path).getroot().find("Score").findall("Staff"):
        measures = []
        for measure in staff.findall("Measure"):
            texts = ["".join(t.find("text").itertext()).replace("\u00a0", " ").strip()
                     for t in measure.iter("StaffText")]
            notes = []
            for note in measure.iter("Note"):
                colour = note.find("color")
                if colour is not None:
                    rgb = tuple(int(colour.get(c)) for c in "rgb")
                    notes.append((int(note.find("pitch").text), rgb))
            measures.append({"texts": texts, "coloured": notes})
        staves.append(measures)
    return staves


@needs_musescore
def test_musescore_sees_the_comments_in_their_measures_and_the_wrong_note_red(
    chorale, chorale_path, mistakes_report, tmp_path
):
    annotated = tmp_path / "annotated.musicxml"
    annotate_score(mistakes_report, chorale, chorale_path, annotated)
    musescore("-o", "annotated.mscx", "annotated.musicxml", cwd=tmp_path)
    staves = read_mscx(tmp_path / "annotated.mscx")
    top = staves[0]
    assert len(top) == 10  # pickup (index 0) + bars 1-9: measure index = printed bar number here
    assert any(t.startswith("LLaQo · take.flac") for t in top[0]["texts"])
    assert any("wrong: D♯4 for D4" in t for t in top[6]["texts"])
    assert any(t.startswith("missed: ") for t in top[3]["texts"])
    assert any(t.startswith("extra: ") for t in top[8]["texts"])
    commented = [i for i, m in enumerate(top) if any(not t.startswith("LLaQo ·") for t in m["texts"])]
    assert commented == [3, 6, 8]
    red = [(s, i, pitch) for s, staff in enumerate(staves) for i, m in enumerate(staff)
           for pitch, rgb in m["coloured"] if rgb == RED]
    assert red == [(2, 6, 62), (3, 6, 62)]  # tenor and bass share the written D4 that was played as D♯4
    assert any("D♯4" in t for t in staves[2][6]["texts"])  # the played pitch, named under the note


@needs_musescore
def test_musescore_renders_the_annotated_page(chorale, chorale_path, mistakes_report, tmp_path):
    from PIL import Image

    annotated = tmp_path / "annotated.musicxml"
    annotate_score(mistakes_report, chorale, chorale_path, annotated)
    musescore("-o", "page.png", "annotated.musicxml", cwd=tmp_path)
    pages = sorted(tmp_path.glob("page*.png"))
    assert pages
    ink, red = 0.0, 0
    for page in pages:
        drawn = Image.open(page).convert("RGBA")  # MuseScore draws on a transparent page
        rgb = np.asarray(Image.alpha_composite(Image.new("RGBA", drawn.size, "white"), drawn).convert("RGB"))
        ink = max(ink, float((rgb.mean(axis=2) < 128).mean()))
        red += int(((rgb[..., 0] > 180) & (rgb[..., 1] < 90) & (rgb[..., 2] < 90)).sum())
    assert 0.01 < ink < 0.5  # notes and text on a white page, not blank and not a black square
    assert red > 20  # the wrong note is printed in red


# --- the plugin, run by MuseScore against a real `llaqo serve` ----------------------------------------

PLUGIN = REPO / "plugin_bridge" / "musescore" / "llaqo_assess.qml"
EXAMPLE_TAKE, EXAMPLE_SCORE = REPO / "examples" / "bwv66.6_take.flac", REPO / "examples" / "bwv66.6.musicxml"


@pytest.fixture(scope="module")
def server_port(tmp_path_factory) -> Iterator[int]:
    """`llaqo serve` (reports only) with its plugin endpoint on a free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with log.open("w") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "llaqo_cli", "serve", "--ws-port", "0", "--osc-port", "-1",
             "--http-port", str(port), "--no-model"], cwd=REPO, stdout=sink, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 300
        while "serving" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """The example take where a recording would be: a folder the server reads by default (here the temp folder)."""
    path = tmp_path_factory.mktemp("recordings") / EXAMPLE_TAKE.name
    shutil.copyfile(EXAMPLE_TAKE, path)
    return path


def run_plugin(score: Path, port: int, folder: Path, audio: Path | None = None, recording_beside: Path | None = None,
               interactive: bool = False) -> tuple[dict, Path]:
    """Run the plugin headless on a copy of `score` (named open.*), with `audio` given in the side file, or with
    `recording_beside` copied next to the score as the teacher's take (open_take.*) and `interactive` set: the
    plugin then builds its window and file dialog and presses Assess. Return its log and the saved score path."""
    opened = folder / f"open{score.suffix}"
    shutil.copy(score, opened)
    if recording_beside is not None:
        shutil.copyfile(recording_beside, folder / f"open_take{recording_beside.suffix}")
    saved, log = folder / "saved.mscx", folder / "plugin-log.json"
    job = {"port": port, "save": str(saved), "log": str(log), "interactive": interactive}
    if audio is not None:
        job["audio"] = str(audio)
    (folder / f"{opened.name}.llaqo.json").write_text(json.dumps(job))
    musescore("-p", str(PLUGIN), str(opened), cwd=folder)
    return json.loads(log.read_text()), saved


@needs_musescore
@pytest.mark.slow
def test_the_teacher_runs_the_plugin_and_the_comments_land_in_the_open_score(server_port, tmp_path):
    # the teacher's way: the window and a file dialog are built, the recording next to the score is filled
    # in, Assess is pressed
    outcome, saved = run_plugin(EXAMPLE_SCORE, server_port, tmp_path, recording_beside=EXAMPLE_TAKE, interactive=True)
    assert outcome["ok"] and outcome["error"] == ""
    assert outcome["dialog"] == "QtQuick.Dialogs 1.2"  # MuseScore 3 runs Qt 5: its Browse… button is there
    assert outcome["recording"] == str(tmp_path / "open_take.flac")
    staves = read_mscx(saved)
    commented = [i for i, m in enumerate(staves[0]) if m["texts"]]
    assert commented == [6]  # the wrong D♯4 of the shipped example, bar 6 (the pickup is measure 0)
    assert any("wrong: D♯4 for D4" in t for t in staves[0][6]["texts"])
    red = [(s, i, pitch) for s, staff in enumerate(staves) for i, m in enumerate(staff)
           for pitch, rgb in m["coloured"] if rgb == RED]
    assert red == [(2, 6, 62), (3, 6, 62)]
    frame = ET.parse(saved).getroot().find("Score").find("Staff").find("VBox")
    assert any("".join(t.itertext()).strip().startswith("LLaQo · open_take.flac") for t in frame.iter("text"))


@needs_musescore
@pytest.mark.slow
def test_the_plugin_tells_the_teacher_and_leaves_the_score_alone(server_port, other_piece_path, recording, tmp_path):
    outcome, saved = run_plugin(other_piece_path, server_port, tmp_path, audio=recording)
    assert not outcome["ok"] and "does not match the score" in outcome["error"]
    assert not saved.exists()
    not_audio = tmp_path / "lesson.wav"
    not_audio.write_text("notes from the lesson")
    unreadable, saved = run_plugin(EXAMPLE_SCORE, server_port, tmp_path, audio=not_audio)
    assert not unreadable["ok"] and "cannot read lesson.wav as audio" in unreadable["error"]
    assert "\n" not in unreadable["error"] and not saved.exists()
    refused, _ = run_plugin(EXAMPLE_SCORE, server_port + 1 if server_port < 65535 else 1, tmp_path, audio=recording)
    assert not refused["ok"] and "did not answer" in refused["error"]
    alone = tmp_path / "alone"  # a score with no recording beside it: the window holds its folder
    alone.mkdir()
    unnamed, saved = run_plugin(EXAMPLE_SCORE, server_port, alone, interactive=True)
    assert not unnamed["ok"] and "name the recording first" in unnamed["error"]
    assert unnamed["recording"] == f"{alone}/"
    assert not saved.exists()


# --- loading in MuseScore 4.4+ (Qt 6), checked without MuseScore 4 -----------------------------------

# The imports that load in both MuseScore 3.x (Qt 5.9-5.15) and MuseScore 4.4+ (Qt 6). Qt 6 keeps
# QtQuick's 2.x import versions; MuseScore 4.4 registers `MuseScore 3.0` (the plugin root type and its own
# FileDialog, MessageDialog, Settings, QProcess) and `FileIO 3.0` (musescore/MuseScore,
# src/framework/extensions/api/v1/apiv1.cpp). Gone under MuseScore 4.4: QtQuick.Dialogs 1.x ("module
# "QtQuick.Dialogs" version 1.3 is not installed", jgadsden/tin-whistle-tablature#47; some builds ship no
# QtQuick.Dialogs at all, #45) and QtQuick.Controls 1.x (musescore/musescore_comments#8).
IMPORTS_IN_BOTH = {"QtQuick": "2.", "MuseScore": "3.0", "FileIO": "3.0"}
MUSESCORE44_API = REPO / "tests" / "musescore44_api"  # stand-ins for MuseScore 4.4's plugin types (README there)


def manifest_as_musescore44_reads_it(qml: str) -> dict[str, str]:
    """The properties MuseScore 4.4 lists a plugin by, read as it reads them (ExtPluginsLoader::parseManifest):
    line by line, `//4.4 ` stripped, other comments skipped, up to the first `{` inside the root item."""
    found, inside = {}, False
    for line in (raw.strip().removeprefix("//4.4 ") for raw in qml.splitlines()):
        if line.startswith("/"):
            continue
        if line.endswith("{"):
            if inside:
                break
            inside = True
        elif (key := line.split(":", 1)[0]) in ("title", "description", "pluginType", "categoryCode", "requiresScore"):
            found[key] = line.split(":", 1)[1].strip().strip('"')
    return found


def test_the_plugin_imports_only_what_musescore_3_and_4_4_both_provide():
    qml = PLUGIN.read_text()
    imports = [line.split()[1:3] for line in qml.splitlines() if line.startswith("import ")]
    assert imports and all(module in IMPORTS_IN_BOTH and version.startswith(IMPORTS_IN_BOTH[module])
                           for module, version in imports), imports
    listed = manifest_as_musescore44_reads_it(qml)
    assert listed["title"] == "LLaQo: assess a recording"
    assert listed["pluginType"] == "dialog" and listed["requiresScore"] == "true" and listed["categoryCode"]


def run_under_qt6(api: Path, score: str) -> dict:
    """The plugin in a Qt 6 QML engine with MuseScore 4.4's plugin API stand-ins (tests/musescore44_api)."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    run = subprocess.run([sys.executable, str(MUSESCORE44_API / "run_plugin.py"), str(PLUGIN), str(api), score],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_under_qt6_the_plugin_loads_builds_its_window_and_shows_the_teacher_what_is_wrong(tmp_path):
    pytest.importorskip("PySide6", reason="PySide6 (Qt 6) is not installed (pip install -e '.[test]')")
    shown = run_under_qt6(MUSESCORE44_API, "/home/teacher/scores/student.musicxml")
    assert shown["loaded"], shown.get("errors")
    assert shown["title"] == "LLaQo: assess a recording"
    assert shown["dialog"] == "MuseScore"  # MuseScore 4.4's own file dialog, created at run time
    assert shown["recording"] == "/home/teacher/scores/"  # no take beside the score: its folder, to finish
    assert shown["while_assessing"].startswith("Assessing the recording")  # shown before MuseScore blocks
    assert "name the recording first" in shown["message"] and "The score was not changed" in shown["message"]
    assert not shown["quit"]  # the window stays open for another try

    # a MuseScore 4 without its own FileDialog: Qt 6's QtQuick.Dialogs is used instead
    bare = tmp_path / "api"
    shutil.copytree(MUSESCORE44_API, bare)
    qmldir = bare / "MuseScore" / "qmldir"
    qmldir.write_text("".join(line for line in qmldir.read_text().splitlines(True) if "FileDialog" not in line))
    assert run_under_qt6(bare, "/home/teacher/scores/student.musicxml")["dialog"] == "QtQuick.Dialogs 6"


def test_qt6s_qmllint_finds_nothing_but_names_musescore_provides_at_run_time(tmp_path):
    pyside = pytest.importorskip("PySide6", reason="PySide6 (Qt 6) is not installed (pip install -e '.[test]')")
    report = tmp_path / "lint.json"
    qmllint = Path(pyside.__file__).parent / "qmllint"  # Qt 6's linter, shipped inside PySide6
    subprocess.run([str(qmllint), "-I", str(MUSESCORE44_API), "--json", str(report), str(PLUGIN)],
                   capture_output=True, timeout=120)
    warnings = [w for f in json.loads(report.read_text())["files"] for w in f["warnings"]]
    # `Element` (MuseScore's enums on the root object) and a Repeater's `modelData` are unqualified by nature;
    # `var` inside blocks is deliberate: MuseScore 3.x builds bundle Qt 5 releases whose JavaScript has no `let`
    # (qmllint from PySide6 6.12 on warns about it as style)
    allowed = {"unqualified", "block-scope-var-declaration"}
    assert [w for w in warnings if w.get("id") not in allowed] == []


def piano_score(path: Path) -> Path:
    """Four bars for piano: one part, two staves (a C major arpeggio over a broken chord)."""
    import music21
    from music21 import clef, layout, meter, note, stream

    upper, lower = stream.PartStaff(), stream.PartStaff()
    for bar in range(4):
        top, bottom = stream.Measure(number=bar + 1), stream.Measure(number=bar + 1)
        if bar == 0:
            top.append(meter.TimeSignature("4/4"))
            bottom.append([clef.BassClef(), meter.TimeSignature("4/4")])
        top.append([note.Note(p, quarterLength=1) for p in ("C5", "E5", "G5", "E5")])
        bottom.append([note.Note(p, quarterLength=1) for p in ("C3", "G3", "E3", "G3")])
        upper.append(top)
        lower.append(bottom)
    upper.partName = lower.partName = "Piano"
    grand_staff = layout.StaffGroup([upper, lower], symbol="brace")
    music21.stream.Score([upper, lower, grand_staff]).write("musicxml", fp=str(path))
    return path


@needs_musescore
def test_a_left_hand_mistake_is_marked_on_the_lower_staff(report_for, tmp_path):
    from dataclasses import replace

    from llaqo_model.analysis.score import load_score
    from llaqo_training.examples import mechanical_performance

    source = piano_score(tmp_path / "piano.musicxml")
    analysed = load_score(source)
    notes = mechanical_performance(analysed)
    i = [k for k, n in enumerate(notes) if n.pitch == 55][4]  # the G3 on beat 2 of bar 3 (two per bar)
    notes[i] = replace(notes[i], pitch=57)
    annotate_score(report_for(analysed, notes), analysed, source, tmp_path / "annotated.musicxml")
    musescore("-o", "annotated.mscx", "annotated.musicxml", cwd=tmp_path)
    upper, lower = read_mscx(tmp_path / "annotated.mscx")
    assert [m["coloured"] for m in lower] == [[], [], [(55, RED)], []]
    assert not any(m["coloured"] for m in upper)
    assert upper[2]["texts"] == ["wrong: A3 for G3"] and lower[2]["texts"] == ["A3"]
