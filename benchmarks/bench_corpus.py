"""Corpus benchmark: build throughput, label diversity, and fidelity (re-analysis finds the injected notes).

    python benchmarks/bench_corpus.py --takes 60 --workers 2 --fidelity 20
    python benchmarks/bench_corpus.py --manifest corpus/manifest.jsonl --fidelity 20   # no build

Throughput builds a fresh corpus and projects the time for 2,000 takes. Diversity checks that every rubric
dimension uses all six values with none above 40 % of takes, all seven techniques, ≥ 100 pieces and
≥ 3 piano sounds. Fidelity re-analyses takes with note faults: from the performance MIDI (fast, no
transcription) over all of them, and from the rendered audio with `llaqo analyze`'s Analyzer (Transkun)
on a sample; a fault counts as found when the report flags a note error in one of its recorded bars.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from llaqo_model.analysis.pipeline import Analyzer, report_from_notes
from llaqo_model.analysis.report import RUBRIC_KEYS, TECHNIQUES, PerformanceReport
from llaqo_model.analysis.score import load_score
from llaqo_model.io import read_performance_midi
from llaqo_training.corpus import build, default_config, format_summary

NOTE_KINDS = ("wrong_note", "missed_note", "extra_note")


def load(manifest: Path) -> list[dict[str, Any]]:
    """Manifest entries with paths made absolute."""
    out = []
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            for k in ("audio", "score", "performance_midi"):
                if e.get(k):
                    e[k] = str(manifest.parent / e[k])
            out.append(e)
    return out


def diversity(entries: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """The diversity targets, one line each, and whether all are met."""
    lines, ok = [], True
    n = len(entries)
    for key in list(RUBRIC_KEYS) + ["overall"]:
        counts = Counter(e["ratings"][key] if key in e["ratings"] else e[key] for e in entries)
        share = max(counts.values()) / n
        good = set(counts) == set(range(1, 7)) and share <= 0.4
        ok &= good or key == "overall"
        lines.append(f"  {key:20s} values {sorted(counts)} max share {100 * share:.0f}% {'ok' if good else 'MISS'}")
    techniques = Counter(e["technique"] for e in entries)
    pieces = len({e["piece"] for e in entries})
    sounds = Counter(e["sound"] for e in entries)
    sample_sets = {s.split("_")[0] for s in sounds}
    ok &= set(techniques) == set(TECHNIQUES) and pieces >= 100 and len(sample_sets) >= 3
    lines.append(f"  techniques {len(techniques)}/7: {dict(techniques)}")
    lines.append(f"  pieces: {pieces} (target ≥ 100)")
    lines.append(
        f"  piano sounds: {len(sounds)} presets from {len(sample_sets)} sample sets "
        f"{sorted(sample_sets)}: {dict(sounds)}"
    )
    return ok, lines


def _flagged(report: PerformanceReport, kinds: tuple[str, ...]) -> set[int]:
    return {b.bar for b in report.bars if any(i.kind in kinds for i in b.issues)}


def recall(entries: list[dict[str, Any]], analyse: Any) -> tuple[Counter, Counter]:
    """Per note-fault kind: how many clear injected errors (magnitude 1; a brushed key is not one) the
    analysis flags in their recorded bars — strictly as a note error, and also counting an 'unclear' bar."""
    strict: Counter = Counter()
    lenient: Counter = Counter()
    for e in entries:
        faults = [f for f in e["faults"] if f["kind"] in NOTE_KINDS and f["magnitude"] >= 1]
        report = analyse(e)
        exact, unclear = _flagged(report, NOTE_KINDS), _flagged(report, (*NOTE_KINDS, "unclear"))
        for f in faults:
            strict[f["kind"], any(b in exact for b in f["bars"])] += 1
            lenient[f["kind"], any(b in unclear for b in f["bars"])] += 1
    return strict, lenient


def _rate(counts: Counter) -> tuple[float, str]:
    found = sum(v for (_, hit), v in counts.items() if hit)
    total = sum(counts.values())
    kinds = {k: f"{counts[k, True]}/{counts[k, True] + counts[k, False]}" for k in NOTE_KINDS}
    return found / max(total, 1), f"{found}/{total} {kinds}"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures; exit 1 when a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--takes", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=123)
    parser.add_argument("--out", help="corpus folder to build (default: a temporary folder)")
    parser.add_argument("--manifest", help="measure this existing corpus instead of building one")
    parser.add_argument("--fidelity", type=int, default=20, help="takes to re-analyse from audio (0: skip)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    ok = True
    if args.manifest:
        manifest = Path(args.manifest)
    else:
        out = Path(args.out or tempfile.mkdtemp(prefix="llaqo_corpus_"))
        config = default_config(out, args.takes, args.seed, args.workers)
        t0 = time.time()
        summary = build(config, progress=False)
        elapsed = time.time() - t0
        print(format_summary(summary))
        per_min = summary["built"] / (elapsed / 60)
        hours_per_take = summary["hours"] / max(summary["takes"], 1)
        print(
            f"\nthroughput: {per_min:.1f} takes/min with {args.workers} worker(s) on {elapsed:.0f} s; "
            f"2,000 takes ≈ {2000 / per_min:.0f} min for ≈ {2000 * hours_per_take:.1f} h of audio"
        )
        manifest = out / "manifest.jsonl"
    entries = load(manifest)
    div_ok, lines = diversity(entries)
    print(f"\ndiversity over {len(entries)} takes ({'ok' if div_ok else 'MISSED'}):")
    print("\n".join(lines))
    ok &= div_ok

    with_notes = [e for e in entries if e.get("score") and any(f["kind"] in NOTE_KINDS for f in e["faults"])]

    def from_midi(e: dict[str, Any]) -> PerformanceReport:
        notes, _ = read_performance_midi(e["performance_midi"])
        return report_from_notes(notes, [], e["duration_s"], e["id"], load_score(e["score"]))

    strict, lenient = recall(with_notes, from_midi)
    print(
        f"\nfidelity from performance MIDI ({len(with_notes)} takes): "
        f"recall {_rate(strict)[1]} = {_rate(strict)[0]:.3f}"
    )
    print(f"  counting bars marked 'unclear' as found: {_rate(lenient)[0]:.3f}")
    if args.fidelity and with_notes:
        sample = random.Random(args.seed).sample(with_notes, min(args.fidelity, len(with_notes)))
        analyzer = Analyzer()
        t0 = time.time()
        strict, lenient = recall(sample, lambda e: analyzer.analyze_file(e["audio"], e["score"]))
        rate, text = _rate(strict)
        print(
            f"fidelity from audio (Transkun, {len(sample)} takes, {time.time() - t0:.0f} s): recall {text} = {rate:.3f}"
        )
        print(f"  counting bars marked 'unclear' as found: {_rate(lenient)[0]:.3f} (target ≥ 0.9 on the strict figure)")
        ok &= rate >= 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
