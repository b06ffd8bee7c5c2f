"""Analysis benchmark on real ASAP performances (needs ../shared/data/asap).

For each sampled performance: cut an excerpt at annotated downbeats, render it with every SoundFont
available, transcribe it, and analyse it against the matching bars of the score — once clean and once
with a wrong, a missed and an extra note injected into known bars. Prints:

* mistake localisation: recall of injected bars, falsely flagged bars per minute on clean takes (and
  how many of those the performance MIDI itself does not show, i.e. what transcription adds);
* transcription onset F1 (50 ms, mir_eval) per SoundFont;
* real-time factor of transcription and of the whole analysis (40 s take), and peak memory of
  `llaqo analyze` on a 5-minute take.

    python benchmarks/bench_analysis.py --pieces 12
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import mir_eval
import numpy as np
import pretty_midi
import soundfile as sf
import torch

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.analysis.transcribe import Transcriber, TranscriberConfig
from llaqo_model.io import read_performance_midi
from llaqo_training.render import available_soundfonts, render_notes

REPO = Path(__file__).resolve().parents[1]
NOTE_ERRORS = {"wrong_note", "missed_note", "extra_note"}
NOTE_TROUBLE = NOTE_ERRORS | {"unclear", "restart"}  # what a clean take must not be told
LEAD_S = 0.08


def downbeats(annotation_path: Path) -> tuple[list[float], bool]:
    """Downbeat times, and whether the performance starts with a pickup (beats before the first downbeat)."""
    times, labels = [], []
    for line in annotation_path.read_text().splitlines():
        parts = line.split("\t")
        times.append(float(parts[0]))
        labels.append(parts[2])
    return [t for t, lab in zip(times, labels, strict=True) if lab.startswith("db")], not labels[0].startswith("db")


def excerpt(notes: list[Note], pedal: list[PedalInterval], t0: float, t1: float) -> tuple[list[Note], list]:
    """Notes with onsets in [t0, t1), shifted so the excerpt starts at 0.5 s."""
    shift = 0.5 - t0
    cut = [
        Note(round(n.onset + shift, 4), round(min(n.offset, t1 + 1.0) + shift, 4), n.pitch, n.velocity)
        for n in notes
        if t0 <= n.onset < t1
    ]
    ped = [
        PedalInterval(max(p.onset, t0) + shift, min(p.offset, t1) + shift)
        for p in pedal
        if p.offset > t0 and p.onset < t1
    ]
    return cut, ped


def inject(notes: list[Note], bar_windows: list[tuple[int, float, float]], rng: random.Random) -> list[Note]:
    """A wrong, a missed and an extra note, one per given bar (window in excerpt seconds)."""
    notes = list(notes)
    for kind, (_, a, b) in zip(("wrong", "missed", "extra"), bar_windows, strict=True):
        inside = [i for i, n in enumerate(notes) if a + 0.05 <= n.onset < b - 0.1]
        i = rng.choice(inside)
        if kind == "wrong":
            sounding = {n.pitch for n in notes if abs(n.onset - notes[i].onset) < 0.5}
            step = next(s for s in (1, -1, 2, -2, 3, -3) if notes[i].pitch + s not in sounding)
            notes[i] = replace(notes[i], pitch=notes[i].pitch + step)
        elif kind == "missed":
            notes.pop(i)
        else:
            t = (a + b) / 2
            near = {n.pitch for n in notes if abs(n.onset - t) < 1.0}
            pitch = next(
                p
                for p in range(int(np.median([n.pitch for n in notes[inside[0] : inside[-1] + 1]])) + 5, 100)
                if p not in near
            )
            notes.append(Note(t, t + 0.25, pitch, int(np.median([n.velocity for n in notes]))))
    return sorted(notes, key=lambda n: n.onset)


def onset_f1(reference: list[Note], estimate: list[Note]) -> float:
    """Note onset F1 at 50 ms (pitch must match), offsets ignored."""

    def arrays(ns: list[Note]) -> tuple[np.ndarray, np.ndarray]:
        iv = np.array([[n.onset, max(n.offset, n.onset + 0.01)] for n in ns]).reshape(-1, 2)
        return iv, np.array([pretty_midi.note_number_to_hz(n.pitch) for n in ns])

    ri, rp = arrays(reference)
    ei, ep = arrays(estimate)
    return mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, onset_tolerance=0.05, offset_ratio=None)[
        2
    ]


def flagged_bars(report, kinds: set[str] = NOTE_ERRORS) -> set[int]:
    """Bars with an issue of one of `kinds`."""
    return {bar for bar, issue in report.issues() if issue.kind in kinds}


def sample_pieces(asap: Path, count: int, seed: int) -> list[dict]:
    """One performance per piece that has a MusicXML score, sampled reproducibly."""
    with (asap / "metadata.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["xml_score"]]
    by_piece: dict[str, dict] = {}
    for r in rows:
        by_piece.setdefault(r["folder"], r)
    pieces = sorted(by_piece.values(), key=lambda r: r["folder"])
    random.Random(seed).shuffle(pieces)
    return pieces[: count * 3]


def prepare(asap: Path, row: dict, length_s: float) -> tuple[Score, list[Note], list, list[tuple[int, float, float]]]:
    """Score passage, performance excerpt and per-bar windows, or raise ValueError when unusable."""
    score = load_score(asap / row["xml_score"])
    beats, pickup = downbeats(asap / row["performance_annotations"])
    offset = 1 if pickup else 0
    if len(score.bars) - offset != len(beats):
        raise ValueError("score unfolding does not match the performance")
    k0 = 2
    k1 = next((k for k in range(k0 + 4, len(beats)) if beats[k] - beats[k0] >= length_s), None)
    if k1 is None:
        raise ValueError("performance too short")
    notes, pedal = read_performance_midi(asap / row["midi_performance"])
    cut, ped = excerpt(notes, pedal, beats[k0] - LEAD_S, beats[k1] - LEAD_S)
    passage = score.excerpt(k0 + offset, k1 - 1 + offset)
    shift = 0.5 - (beats[k0] - LEAD_S)
    windows = [(int(score.bars["bar"][k + offset]), beats[k] + shift, beats[k + 1] + shift) for k in range(k0, k1)]
    return passage, cut, ped, windows


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asap", type=Path, default=REPO.parent / "shared" / "data" / "asap")
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--length", type=float, default=30.0, help="excerpt length in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hop", type=float, default=TranscriberConfig.hop_s, help="Transkun segment hop (s)")
    parser.add_argument("--fonts", type=int, default=None, help="use only the first N SoundFonts")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="Transkun precision")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if not (args.asap / "metadata.csv").is_file():
        print(f"ASAP not found at {args.asap}; nothing to measure", file=sys.stderr)
        return 1
    transcriber = Transcriber(TranscriberConfig(hop_s=args.hop, precision=args.precision))
    fonts = available_soundfonts()[: args.fonts]
    rng = random.Random(args.seed)
    print(
        f"threads={torch.get_num_threads()} hop={args.hop}s precision={transcriber.precision} "
        f"soundfonts={[f.name for f in fonts]}"
    )
    recall_hits = recall_total = 0
    false_bars, added_bars, clean_minutes = 0, 0, 0.0
    f1: dict[str, list[float]] = {f.name: [] for f in fonts}
    false_by_font: dict[str, list[float]] = {f.name: [0, 0.0] for f in fonts}  # flagged bars, minutes
    rtf_tr, rtf_all = [], []
    done = 0
    for row in sample_pieces(args.asap, args.pieces, args.seed):
        if done >= args.pieces:
            break
        try:
            score, notes, pedal, windows = prepare(args.asap, row, args.length)
            chosen = rng.sample(windows[1:-1], 3)
            faulty = inject(notes, chosen, rng)
        except Exception as exc:
            print(f"skip {row['folder']}: {exc}")
            continue
        # What the pianist's own MIDI shows against the score: real slips and edition differences.
        own = flagged_bars(report_from_notes(notes, pedal, notes[-1].offset + 0.5, "midi", score), NOTE_TROUBLE)
        for font in fonts:
            for label, take in (("clean", notes), ("faulty", faulty)):
                audio = render_notes(take, pedal, soundfont=font)
                t = time.perf_counter()
                est, est_pedal = transcriber.transcribe(audio)
                t_tr = time.perf_counter() - t
                report = report_from_notes(est, est_pedal, len(audio) / 44100, label, score)
                t_all = time.perf_counter() - t
                rtf_tr.append(t_tr / (len(audio) / 44100))
                rtf_all.append(t_all / (len(audio) / 44100))
                flagged = flagged_bars(report, NOTE_TROUBLE if label == "clean" else NOTE_ERRORS)
                if label == "clean":
                    f1[font.name].append(onset_f1(take, est))
                    false_bars += len(flagged)
                    false_by_font[font.name][0] += len(flagged)
                    false_by_font[font.name][1] += (len(audio) / 44100) / 60
                    added_bars += len(flagged - own)
                    clean_minutes += (len(audio) / 44100) / 60
                else:
                    hits = sum(b in flagged for b, _, _ in chosen)
                    recall_hits += hits
                    recall_total += len(chosen)
                print(
                    f"{row['folder']:40s} {font.name:14s} {label:6s} F1={onset_f1(take, est):.3f} "
                    f"flagged={sorted(flagged)} in-midi={sorted(own)} "
                    f"injected={[b for b, _, _ in chosen] if label == 'faulty' else []} "
                    f"rtf={rtf_all[-1]:.2f}",
                    flush=True,
                )
        done += 1
    print("\n== mistake localisation ==")
    print(
        f"pieces: {done}, recall of injected bars: {recall_hits}/{recall_total} = "
        f"{recall_hits / max(recall_total, 1):.3f}"
    )
    print(
        f"falsely flagged bars on clean takes: {false_bars} in {clean_minutes:.1f} min = "
        f"{false_bars / max(clean_minutes, 1e-9):.2f} per minute"
    )
    print(
        f"  of which not flagged on the performance MIDI itself (added by transcription): {added_bars} = "
        f"{added_bars / max(clean_minutes, 1e-9):.2f} per minute"
    )
    print(
        "  per sound: "
        + ", ".join(f"{name} {bars / max(minutes, 1e-9):.2f}/min" for name, (bars, minutes) in false_by_font.items())
    )
    print("== transcription onset F1 (50 ms) ==")
    for name, values in f1.items():
        print(f"{name}: {np.mean(values):.3f} over {len(values)} excerpts")
    print("== speed ==")
    print(
        f"real-time factor: transcription {np.mean(rtf_tr):.2f}, whole analysis {np.mean(rtf_all):.2f} "
        f"(excerpts of ~{args.length:.0f} s)"
    )
    if not args.skip_memory:
        memory_and_40s(args.asap, transcriber)
    return 0


def memory_and_40s(asap: Path, transcriber: Transcriber) -> None:
    """RTF on a 40 s take and peak RSS of `llaqo analyze` on a 5-minute take (separate process)."""
    row = next(r for r in sample_pieces(asap, 50, 1) if r["folder"].startswith("Chopin"))
    notes, pedal = read_performance_midi(asap / row["midi_performance"])
    with tempfile.TemporaryDirectory() as tmp:
        forty, ped40 = excerpt(notes, pedal, notes[0].onset, notes[0].onset + 40)
        audio = render_notes(forty, ped40)[: 40 * 44100]
        t = time.perf_counter()
        est, est_pedal = transcriber.transcribe(audio)
        t_tr = time.perf_counter() - t
        report_from_notes(est, est_pedal, 40.0, "forty", None)
        t_all = time.perf_counter() - t
        print(
            f"40 s take: transcription {t_tr:.1f} s (RTF {t_tr / 40:.2f}), whole analysis {t_all:.1f} s "
            f"(RTF {t_all / 40:.2f})"
        )
        five, ped5 = excerpt(notes, pedal, notes[0].onset, notes[0].onset + 300)
        while five[-1].offset < 300:  # a shorter performance is played again until five minutes are filled
            shift = five[-1].offset + 1.0
            five += [replace(n, onset=n.onset + shift, offset=n.offset + shift) for n in five]
            ped5 += [replace(p, onset=p.onset + shift, offset=p.offset + shift) for p in ped5]
        five, ped5 = excerpt(five, ped5, 0.0, 300.0)
        path = Path(tmp) / "five_minutes.flac"
        sf.write(path, render_notes(five, ped5)[: 300 * 44100], 44100)
        log = Path(tmp) / "stderr.txt"
        t = time.perf_counter()
        with log.open("wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "llaqo_cli", "analyze", str(path), "--json", str(Path(tmp) / "r.json")],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the SoundFont renderers'
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"llaqo analyze failed: {log.read_text()[-300:]}")
        peak = usage.ru_maxrss / 1024
        print(
            f"5-minute take ({sf.info(str(path)).duration:.0f} s): llaqo analyze (with the installed model) "
            f"peak RSS {peak:.0f} MB, "
            f"wall {wall:.0f} s"
        )


if __name__ == "__main__":
    sys.exit(main())
