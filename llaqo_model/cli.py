"""`llaqo analyze`, `llaqo annotate` and `llaqo batch`: takes in, reports (and, with a model, assessments
and annotated scores) out."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llaqo_model.analysis.report import DEFAULT_MIN_CONFIDENCE, PerformanceReport
from llaqo_model.errors import LlaqoError
from llaqo_model.model.assessment import Assessment

if TYPE_CHECKING:
    from llaqo_model.coach import Coach


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `analyze`, `annotate` and `batch`."""
    p = subparsers.add_parser("analyze", help="analyse one take against its score")
    p.add_argument("take", help="audio file (wav, flac, ogg, … any rate, mono or stereo)")
    p.add_argument("--score", help="MusicXML (.musicxml/.xml/.mxl) or MIDI score of what was played")
    p.add_argument("--bars", type=_bar_span, help="the passage played, as printed bar numbers: e.g. 12-20")
    p.add_argument("--json", dest="json_out", help="write the report as JSON to this file, or - for stdout")
    p.add_argument("--html", dest="html_out", help="write a self-contained HTML page for a teacher")
    _model_args(p)
    p.set_defaults(func=run_analyze)

    a = subparsers.add_parser(
        "annotate", help="write the comments on one take into its score (MusicXML for MuseScore and others)"
    )
    a.add_argument("take", help="audio file of the take")
    a.add_argument("--score", required=True, help="the score played: MusicXML (.musicxml/.xml/.mxl) or MIDI")
    a.add_argument("--out", required=True, help="annotated score to write (.musicxml, .xml or .mxl)")
    a.add_argument("--bars", type=_bar_span, help="the passage played, as printed bar numbers: e.g. 12-20")
    _model_args(a)
    a.set_defaults(func=run_annotate)

    b = subparsers.add_parser(
        "batch", help="analyse every take listed in a CSV manifest (header: audio,score)"
    )
    b.add_argument("manifest", help="CSV with columns audio,score (score may be empty); paths relative to it")
    b.add_argument("--out", required=True, help="JSON-lines results; re-running with the same file resumes")
    b.add_argument("--retry-errors", action="store_true", help="redo takes whose earlier line was an error")
    b.add_argument("--annotate", metavar="DIR",
                   help="also write each take's annotated score here (DIR/<take name>.musicxml; takes with a score)")
    _model_args(b)
    b.set_defaults(func=run_batch)


def _bar_span(text: str) -> tuple[int, int]:
    """'12-20' → (12, 20); '7' → (7, 7)."""
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bars like 12-20, got '{text}'") from None


def _confidence(text: str) -> float:
    """'0.7' → 0.7, refusing anything outside 0–1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a confidence between 0 and 1, got '{text}'")
    return value


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-confidence",
        type=_confidence,
        default=DEFAULT_MIN_CONFIDENCE,
        help="state only issues at least this confident (0–1; the JSON keeps all, each with its confidence; "
        f"default {DEFAULT_MIN_CONFIDENCE})",
    )
    p.add_argument("--model", help="model checkpoint directory, or 'embedded' (default: the installed model)")
    p.add_argument("--no-model", action="store_true", help="report only; skip the model's assessment")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _coach(args: argparse.Namespace) -> Coach:
    from llaqo_model.coach import Coach

    return Coach.load(
        args.model, use_model=not args.no_model, device=args.device, min_confidence=args.min_confidence
    )


def result_dict(report: PerformanceReport, assessment: Assessment | None) -> dict[str, Any]:
    """The JSON of one take: the report's keys, plus the assessment's when a model ran."""
    out = report.to_dict()
    if assessment is not None:
        out.update(assessment.to_dict())
    return out


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse one take; print a summary, or write JSON / HTML."""
    report, assessment = _coach(args).assess_file(args.take, args.score, bars=args.bars)
    result = result_dict(report, assessment)
    if args.json_out == "-":
        print(json.dumps(result, ensure_ascii=False, indent=1))
    elif args.json_out:
        Path(args.json_out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.html_out:
        from llaqo_model.html import render_html

        Path(args.html_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html_out).write_text(render_html(report, assessment), encoding="utf-8")
    if args.json_out != "-":
        print(summary_text(report, assessment))
    return 0


def run_annotate(args: argparse.Namespace) -> int:
    """Analyse one take and write the annotated score; print the summary."""
    from llaqo_model.annotate import check_writable

    check_writable(args.out)  # before loading the transcriber: a mistyped path costs nothing
    report, assessment, plan = _coach(args).annotate_file(args.take, args.score, args.out, bars=args.bars)
    print(summary_text(report, assessment))
    print(
        f"annotated score → {args.out} ({len(plan.bar_texts)} bar comment(s), {len(plan.notes)} coloured note(s), "
        f"{len(plan.marks)} mark(s))"
    )
    return 0


def annotation_paths(rows: list[tuple[str, str | None]], folder: Path) -> dict[str, Path]:
    """One output file per take with a score, named after the take (numbered when two names clash)."""
    paths: dict[str, Path] = {}
    taken: set[str] = set()
    for audio, score in rows:
        if score is None or audio in paths:
            continue
        stem, n = Path(audio).stem, 1
        name = stem
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        paths[audio] = folder / f"{name}.musicxml"
    return paths


def summary_text(report: PerformanceReport, assessment: Assessment | None = None) -> str:
    """A short human-readable summary of one take."""
    lines = [f"{report.audio}: {report.duration_s:.1f} s, {len(report.notes)} notes"]
    a = report.alignment
    if a is not None:
        lines.append(
            f"score coverage {100 * a.coverage:.0f}%: {a.matched} matched, "
            f"{a.wrong} wrong, {a.missed} missed, {a.extra} extra"
        )
    m = report.measures
    if m.tempo_bpm is not None:
        marked = f" (the score marks {m.written_tempo_bpm:.0f})" if m.written_tempo_bpm else ""
        lines.append(f"tempo about {m.tempo_bpm:.0f} beats a minute{marked}")
    lines += [f"note: {warning}" for warning in report.warnings]
    lines += [f"  {issue.detail}" for _, issue in report.stated_issues()]
    if assessment is not None:
        lines.append("ratings: " + ", ".join(f"{k} {v}" for k, v in assessment.ratings.items()))
        lines.append(
            f"overall {assessment.overall}, difficulty {assessment.difficulty}, technique {assessment.technique}"
        )
        if assessment.feedback:
            lines.append(f"feedback: {assessment.feedback}")
        lines += [f"  bar {c.bar} (model): {c.text}" for c in assessment.bar_comments]
        if assessment.withheld_comments:
            lines.append(
                f"note: {assessment.withheld_comments} generated comment(s) withheld: "
                "they named bars where the analysis found nothing"
            )
    return "\n".join(lines)


def read_batch_csv(path: Path) -> list[tuple[str, str | None]]:
    """Rows (audio, score) of a batch CSV, with paths resolved against the CSV's folder."""
    if not path.is_file():
        raise LlaqoError(f"no manifest at {path}")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "audio" not in reader.fieldnames:
            raise LlaqoError(f"{path.name} needs a header line 'audio,score'")
        rows = []
        for row in reader:
            audio = (row.get("audio") or "").strip()
            if not audio:
                continue
            score = (row.get("score") or "").strip() or None
            rows.append((str(path.parent / audio), str(path.parent / score) if score else None))
    return rows


def resume_results(out: Path, retry_errors: bool) -> set[str]:
    """Audio paths already done in a results file, after making the file safe to append to.

    A line torn by a kill (no newline, or not a JSON object) is dropped; with `retry_errors` error lines
    are dropped too. Any rewrite goes to a temporary file that replaces the original in one step, so a
    kill during the rewrite loses nothing.
    """
    if not out.is_file():
        return set()
    raw = out.read_text(encoding="utf-8", errors="replace")
    kept, done = [], set()
    for line in raw.splitlines(keepends=True):
        try:
            item = json.loads(line) if line.endswith("\n") else None
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict) or not isinstance(item.get("audio"), str):
            continue
        if retry_errors and "error" in item:
            continue
        kept.append(line)
        done.add(item["audio"])
    if "".join(kept) != raw:
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        os.replace(tmp, out)
    return done


def run_batch(args: argparse.Namespace) -> int:
    """Analyse every row; a failing take writes an `error` line and the batch goes on.

    Exits non-zero (saying how many) when any take failed; re-running resumes after the last whole line.
    """
    from tqdm import tqdm

    rows = read_batch_csv(Path(args.manifest))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = resume_results(out, args.retry_errors)
    todo = [r for r in rows if r[0] not in done]
    annotated: dict[str, Path] = {}
    if args.annotate:
        Path(args.annotate).mkdir(parents=True, exist_ok=True)
        annotated = annotation_paths(rows, Path(args.annotate))
    coach = _coach(args).with_model_loaded()  # a model error stops the batch, not each take
    failures = 0
    with out.open("a", encoding="utf-8") as sink:
        for audio, score in tqdm(todo, desc="takes", unit="take", file=sys.stderr):
            try:
                if audio in annotated:
                    report, assessment, _ = coach.annotate_file(audio, score, annotated[audio])
                    line = {**result_dict(report, assessment), "annotated": str(annotated[audio])}
                else:
                    line = result_dict(*coach.assess_file(audio, score))
            except LlaqoError as exc:
                failures += 1
                line = {"audio": audio, "score": score, "error": str(exc), "code": exc.code}
            except Exception as exc:  # a take must never stop the batch
                failures += 1
                line = {
                    "audio": audio,
                    "score": score,
                    "error": f"unexpected {type(exc).__name__}: {exc}",
                    "code": "internal",
                }
            sink.write(json.dumps(line, ensure_ascii=False) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
    print(
        f"{len(todo) - failures} analysed, {failures} failed, {len(rows) - len(todo)} already done → {out}",
        file=sys.stderr,
    )
    if failures:
        raise LlaqoError(f"{failures} of {len(todo)} takes failed (their lines in {out} say why)")
    return 0
