"""Write a `ScoreAnnotations` plan into the score with music21 and save it as MusicXML.

Only elements are added: text directions (bar comments above the top staff, the played pitch below a
wrong note, position marks), note colours, and the assessment as a text block above the first bar (a
direction, not a credit: a notation program that meets a score's first credit drops the title and
composer it would otherwise take from the header fields). Nothing already in the score is changed.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import music21
from music21 import expressions

from llaqo_model.annotate.plan import COMMENT_COLOUR, ScoreAnnotations
from llaqo_model.annotate.written import WrittenScore
from llaqo_model.errors import LlaqoError

OUTPUT_FORMATS = {".musicxml": "musicxml", ".xml": "musicxml", ".mxl": "mxl"}
COMMENT_SIZE_PT = 9  # bar comments smaller than the default staff text, so two lines fit above a bar
MARK_SIZE_PT = 8  # the played pitch under a wrong note, extra notes and restarts
HEADER_SIZE_PT = 7.5  # the assessment block: small, so a short piece still fits its page
HEADER_CHARS = 150  # a header line across an A4 system at that size
HEADER_COLOUR = "#202020"  # near black: the assessment reads as print, the bar comments as a teacher's pen


def apply_annotations(written: WrittenScore, plan: ScoreAnnotations) -> music21.stream.Score:
    """Add the plan's texts, colours and header to `written.score` (in place) and return it."""
    for bar_text in plan.bar_texts:
        _direction(written, 0, bar_text.measure_index, 0.0, bar_text.text, "above", COMMENT_SIZE_PT)
    by_position = {(n.part, n.measure_index, n.offset_ql, n.pitch): n for n in written.notes}
    for mark in plan.notes:
        note = by_position.get((mark.part, mark.measure_index, mark.offset_ql, mark.pitch))
        if note is None:
            continue
        note.element.style.color = mark.colour
        if mark.label:
            _direction(written, mark.part, mark.measure_index, mark.offset_ql, mark.label, "below", MARK_SIZE_PT,
                       mark.colour)
    for mark in plan.marks:
        _direction(written, mark.part, mark.measure_index, mark.offset_ql, mark.text, "above", MARK_SIZE_PT)
    header = "\n".join(textwrap.fill(line, HEADER_CHARS) for line in plan.header.splitlines())
    _direction(written, 0, 0, 0.0, header, "above", HEADER_SIZE_PT, HEADER_COLOUR)
    return written.score


def _direction(
    written: WrittenScore, part: int, measure_index: int, offset: float, words: str, placement: str, size: float,
    colour: str = COMMENT_COLOUR,
) -> None:
    direction = expressions.TextExpression(words)
    direction.placement = placement
    direction.style.color = colour
    direction.style.fontSize = size
    written.measure(part, measure_index).insert(offset, direction)


def check_writable(out: str | Path) -> Path:
    """The output path, after checking it can be written (before any long analysis)."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_FORMATS:
        raise LlaqoError(f"cannot write '{out.suffix}': the annotated score is .musicxml, .xml or .mxl")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise LlaqoError(f"cannot write {out}: folder {folder} does not exist")
    if out.is_dir() or not os.access(folder, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise LlaqoError(f"cannot write {out}: permission denied")
    return out


def write_score(score: music21.stream.Score, out: str | Path) -> Path:
    """Save as MusicXML (or compressed .mxl); the file appears whole or not at all."""
    out = check_writable(out)
    try:
        # a same-named file in a private folder beside `out` (an .mxl names its inner file after it)
        with tempfile.TemporaryDirectory(prefix=f".{out.stem}-", dir=out.parent) as folder:
            staged = Path(folder) / out.name
            score.write(OUTPUT_FORMATS[out.suffix.lower()], fp=str(staged))
            os.replace(staged, out)
    except OSError as exc:
        raise LlaqoError(f"cannot write {out}: {exc.strerror or exc}") from exc
    return out
