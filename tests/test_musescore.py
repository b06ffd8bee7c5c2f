"""Annotated scores checked by MuseScore itself, not by our own reading of our own output: MuseScore 3
converts them to its .mscx and to PNG, and its plugin writes comments into a score it has open.
Every test here skips with a reason where MuseScore 3 is not installed (`scripts/setup.sh --test`
installs it where apt is usable)."""

from __future__ import annotations

import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from llaqo_model.annotate import annotate_score

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
    """MuseScore's own view of a score: per staff, per written measure, its staff texts and coloured notes."""
    staves = []
    for staff in ET.parse(path).getroot().find("Score").findall("Staff"):
        measures = []
        for measure in staff.findall("Measure"):
            texts = ["".join(t.find("text").itertext()).strip() for t in measure.iter("StaffText")]
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
