"""One analysis per take, cached on disk: the transcription-based `PerformanceReport` the model sees.

Training reads the same report inference makes (Transkun on the take's audio, aligned to its score), so the
grounding text and the descriptor features are built the same way in both. A take's report is written to
`CACHE/<id>.json` once; re-running skips the takes already done (the job is resumable).
"""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

from llaqo_model.analysis.marks import mark_written
from llaqo_model.analysis.pipeline import Analyzer, report_from_notes
from llaqo_model.analysis.report import Note, PedalInterval, PerformanceReport
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.errors import LlaqoError
from llaqo_model.io import read_performance_midi

log = logging.getLogger(__name__)


def cache_path(cache_dir: str | Path, take_id: str) -> Path:
    """Where a take's report is cached."""
    return Path(cache_dir) / f"{take_id}.json"


def cached_report(entry: dict[str, Any], cache_dir: str | Path) -> PerformanceReport | None:
    """The cached report of a manifest entry, or None when it has not been analysed yet. A report cached
    before the analysis recorded the score's marks (`Measures.written_marks`) gets them from the entry's
    score, as the analysis would now (only where the take was aligned to it)."""
    path = cache_path(cache_dir, entry["id"])
    if not path.is_file():
        return None
    report = PerformanceReport.from_json(path.read_text(encoding="utf-8"))
    if report.bars and report.measures.written_marks is None and entry.get("score"):
        mark_written(report, _score(str(entry["score"])))
    return report


@functools.lru_cache(maxsize=256)
def _score(path: str) -> Score:
    """A score loaded once per process (many takes share one passage's score)."""
    return load_score(path)


def analyse_entries(
    entries: list[dict[str, Any]],
    cache_dir: str | Path,
    analyzer: Analyzer | None = None,
    limit: int | None = None,
    progress: bool = False,
) -> tuple[int, list[str]]:
    """Analyse every entry not cached yet, in order (audio + score → report; at most `limit` now);
    returns (analysed now, failures). `progress` prints one line per take."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    todo = [e for e in entries if not cache_path(cache, e["id"]).is_file()][:limit]
    if not todo:
        return 0, []
    analyzer = analyzer or Analyzer()
    done, failed = 0, []
    for entry in todo:
        started = time.perf_counter()
        try:
            report = analyzer.analyze_file(entry["audio"], entry.get("score"))
        except (LlaqoError, OSError, ValueError, RuntimeError) as exc:
            failed.append(f"{entry['id']}: {exc}")
            continue
        tmp = cache_path(cache, entry["id"]).with_suffix(".tmp")
        tmp.write_text(report.to_json(), encoding="utf-8")
        tmp.replace(cache_path(cache, entry["id"]))
        done += 1
        line = f"{entry['id']} analysed in {time.perf_counter() - started:.1f} s ({done}/{len(todo)})"
        if progress:
            print(line, flush=True)
        else:
            log.info(line)
    return done, failed


def analysis_order(entries: list[dict[str, Any]], held_out_sound: str | None = None) -> list[dict[str, Any]]:
    """The order a long transcription job takes entries in, so that a job stopped early is still useful:
    the held-out takes (validation, then test, rendered with `held_out_sound`) first, then every training
    segment's first rendering before any second one, passages interleaved; held-out takes in other sounds last."""
    held_out = [e for e in entries if e.get("split") != "train"]
    held = sorted((e for e in held_out if e.get("sound") == held_out_sound), key=lambda e: e.get("split") != "val")
    other = [e for e in held_out if e.get("sound") != held_out_sound]
    rest = [e for e in entries if e.get("split") == "train"]
    seen: dict[str, int] = {}
    nth_of_passage: dict[str, int] = {}
    keyed = []
    for e in rest:
        segment = e.get("segment", e["id"])
        nth = seen[segment] = seen.get(segment, -1) + 1
        if nth == 0:
            nth_of_passage[e.get("passage", "")] = nth_of_passage.get(e.get("passage", ""), -1) + 1
        keyed.append(((nth, nth_of_passage.get(e.get("passage", ""), 0)), e))
    keyed.sort(key=lambda k: k[0])
    return held + [e for _, e in keyed] + other


RENDER_LEAD_S = 0.5  # percepiano.py starts the audio this long before the first note
RENDER_TAIL_S = 1.0  # render_notes' tail after the last release


def midi_report(entry: dict[str, Any], score: Score | None) -> PerformanceReport:
    """The report of the take's own performance MIDI, on the rendered audio's timeline (a perfect transcription).

    Used where transcribing every training take is out of reach; evaluation says which reports it used.
    """
    notes, pedal = read_performance_midi(entry["performance_midi"])
    shift = RENDER_LEAD_S - min(n.onset for n in notes)
    notes = [Note(n.onset + shift, n.offset + shift, n.pitch, n.velocity) for n in notes]
    pedal = [PedalInterval(p.onset + shift, p.offset + shift) for p in pedal]
    duration = max(n.offset for n in notes) + RENDER_TAIL_S
    return report_from_notes(notes, pedal, duration, entry["audio"], score)


def midi_reports(entries: list[dict[str, Any]], cache_dir: str | Path) -> tuple[int, list[str]]:
    """`midi_report` of every entry not cached yet (scores loaded once per file); (made now, failures)."""
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    scores: dict[str, Score | None] = {}
    done, failed = 0, []
    for entry in entries:
        path = cache_path(cache, entry["id"])
        if path.is_file():
            continue
        try:
            if entry.get("score") and entry["score"] not in scores:
                scores[entry["score"]] = load_score(entry["score"])
            report = midi_report(entry, scores.get(entry.get("score") or ""))
        except (LlaqoError, OSError, ValueError, RuntimeError) as exc:
            failed.append(f"{entry['id']}: {exc}")
            continue
        path.write_text(report.to_json(), encoding="utf-8")
        done += 1
    return done, failed
