"""`llaqo analyze` and `llaqo batch`: takes in, reports (and, with a model, assessments) out."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from llaqo_model.errors import LlaqoError


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `analyze` and `batch`."""
    p = subparsers.add_parser("analyze", help="analyse one take against its score")
    p.add_argument("take", help="audio file (wav, flac, ogg, … any rate, mono or stereo)")
    p.add_argument("--score", help="MusicXML (.musicxml/.xml/.mxl) or MIDI score of what was played")
    p.add_argument("--bars", type=_bar_span, help="the passage played, as printed bar numbers: e.g. 12-20")
    p.add_argument("--json", dest="json_out", help="write the report as JSON to this file, or - for stdout")
    p.add_argument("--html", dest="html_out", help="write a self-contained HTML page for a teacher")
    _model_args(p)
    p.set_defaults(func=run_analyze)

    b = subparsers.add_parser(
        "batch", help="analyse every take listed in a CSV manifest (header: audio,score)"
    )
    b.add_argument("manifest", help="CSV with columns audio,score (score may be empty); paths relative to it")
    b.add_argument("--out", required=True, help="JSON-lines results; re-running with the same file resumes")
    b.add_argument("--retry-errors", action="store_true", help="redo takes whose earlier line was an error")
    _model_args(b)
    b.set_defaults(func=run_batch)


def _bar_span(text: str) -> tuple[int, int]:
    """'12-20' → (12, 20); '7' → (7, 7)."""
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected bars like 12-20, got '{text}'") from None


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model checkpoint directory, or 'embedded' (default: the installed model)")
    p.add_argument("--no-model", action="store_true", help="report only; skip the model's assessment")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _load_assessor(args: argparse.Namespace) -> Any | None:
    """The model named by --model, else the installed default, else None (report only)."""
    if args.no_model:
        return None
    from llaqo_model.model.assess import Assessor, default_model_path

    path = args.model or default_model_path()
    return Assessor.load(path, device=args.device) if path else None


def _assess(assessor: Any | None, analyzer: Any, audio: str, report: Any) -> dict[str, Any]:
    """The report dict plus the model's fields when a model is loaded."""
    out = report.to_dict()
    if assessor is not None:
        from llaqo_model.analysis.audio import load_audio

        samples, rate = load_audio(audio, max_duration_s=analyzer.max_duration_s)
        out.update(assessor.assess(samples, rate, report))
        out["model"] = assessor.name
    return out


def run_analyze(args: argparse.Namespace) -> int:
    """Analyse one take; print a summary, or write JSON / HTML."""
    from llaqo_model.analysis.pipeline import Analyzer
    from llaqo_model.analysis.transcribe import TranscriberConfig

    assessor = _load_assessor(args)
    analyzer = Analyzer(config=TranscriberConfig(device=args.device))
    report = analyzer.analyze_file(args.take, args.score, bars=args.bars)
    result = _assess(assessor, analyzer, args.take, report)
    if args.json_out == "-":
        print(json.dumps(result, ensure_ascii=False, indent=1))
    elif args.json_out:
        Path(args.json_out).write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.html_out:
        from llaqo_model.analysis.html import render_html

        Path(args.html_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.html_out).write_text(render_html(report, result), encoding="utf-8")
    if args.json_out != "-":
        print(summary_text(result))
    return 0


def summary_text(result: dict[str, Any]) -> str:
    """A short human-readable summary of a result dict."""
    lines = [f"{result['audio']}: {result['duration_s']:.1f} s, {len(result['notes'])} notes"]
    alignment = result.get("alignment")
    if alignment:
        lines.append(
            f"score coverage {100 * alignment['coverage']:.0f}%: {alignment['matched']} matched, "
            f"{alignment['wrong']} wrong, {alignment['missed']} missed, {alignment['extra']} extra"
        )
    for warning in result.get("warnings", []):
        lines.append(f"note: {warning}")
    for bar in result.get("bars", []):
        lines.extend(f"  {issue['detail']}" for issue in bar["issues"])
    if "ratings" in result:
        lines.append("ratings: " + ", ".join(f"{k} {v}" for k, v in result["ratings"].items()))
        lines.append(
            f"overall {result['overall']}, difficulty {result['difficulty']}, technique {result['technique']}"
        )
        if result["feedback"]:
            lines.append(f"feedback: {result['feedback']}")
        lines.extend(f"  bar {c['bar']} (model): {c['text']}" for c in result.get("bar_comments", []))
        if result.get("withheld_comments"):
            lines.append(
                f"note: {result['withheld_comments']} generated comment(s) withheld: "
                "they named bars where the analysis found nothing"
            )
    return "\n".join(lines)


def read_manifest(path: Path) -> list[tuple[str, str | None]]:
    """Rows (audio, score) with paths resolved against the manifest's folder."""
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


def _done(out: Path, retry_errors: bool) -> set[str]:
    """Audio paths already in the results file (error lines dropped first when retrying them)."""
    if not out.is_file():
        return set()
    kept, done = [], set()
    for line in out.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            continue
        if retry_errors and "error" in item:
            continue
        kept.append(line)
        done.add(item.get("audio"))
    if retry_errors:
        out.write_text("".join(k + "\n" for k in kept), encoding="utf-8")
    return done


def run_batch(args: argparse.Namespace) -> int:
    """Analyse every row; a failing take writes an `error` line and the batch goes on."""
    from tqdm import tqdm

    from llaqo_model.analysis.pipeline import Analyzer
    from llaqo_model.analysis.transcribe import TranscriberConfig

    rows = read_manifest(Path(args.manifest))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = _done(out, args.retry_errors)
    todo = [r for r in rows if r[0] not in done]
    assessor = _load_assessor(args)
    analyzer = Analyzer(config=TranscriberConfig(device=args.device))
    failures = 0
    with out.open("a", encoding="utf-8") as sink:
        for audio, score in tqdm(todo, desc="takes", unit="take", file=sys.stderr):
            try:
                report = analyzer.analyze_file(audio, score)
                line = _assess(assessor, analyzer, audio, report)
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
    print(
        f"{len(todo) - failures} analysed, {failures} failed, {len(rows) - len(todo)} already done → {out}",
        file=sys.stderr,
    )
    return 0
