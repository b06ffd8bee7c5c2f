"""Analysis benchmark on real ASAP performances (needs ../shared/data/asap).

For each sampled performance: cut an excerpt at annotated downbeats, inject mistakes like real ones into
some bars — on any note, each with its role recorded (melody / inner / bass voice; soft / loud against its
neighbours; in a chord or not): wrong notes one or two semitones or a third away, missed notes, extra keys
struck at full strength beside a chord or brushed — render the clean and the faulty take with every piano
sound available through a recording chain with room reverberation, transcribe each once (notes and onset
evidence, cached under --cache), and analyse them against the matching bars of the score. Prints:

* recall of mistaken bars at the default confidence, overall and per role, kind and variant;
* falsely flagged bars per minute on the clean takes, split into those the performance MIDI itself shows
  (edition and performer differences; a key pressed under velocity 12 makes no sound and counts as left out)
  and those the analysis adds. A key the performer did strike (velocity 12 or more) that the MIDI rule
  calls grazed — softer than its neighbours or shorter than 50 ms, so the analysis of the MIDI drops it — is
  counted as shown by the MIDI: it sounds in the recording, it is the same event as an injected brushed key
  (which the analysis is asked to find), and the audio cannot tell a slip from the performer's intent, so
  reporting it is hearing what was played, not adding a fault. The other split (those keys counted as added,
  the headline before) is printed beside it;
* calibration: of the note issues stated at confidence >= c, the share that are real (the analysis of the
  take's own MIDI — what was played — finds the same wrong, missed or extra note), and precision;
* all of it separately for held-out pieces, chosen by a hash of the piece's folder (fixed before any
  tuning) and never looked at while tuning;
* transcription onset F1 per sound; real-time factor of a 40 s take; peak memory of `llaqo analyze`.

`--fit [KIND ...]` refits the confidence model's weights (`verify.WEIGHTS`, of the kinds named or all) on the
tuning pieces and prints them; `--no-spectrum` analyses without the audio's spectrum, so keys heard under the
transcriber's threshold are not candidates (`faint.py`; `llaqo analyze` checks them in the spectrum);
`--explain` lists every false flag the analysis adds on a clean take, with its evidence, to find its cause.

    python benchmarks/bench_analysis.py --pieces 10 --held-out 5
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple
from unittest import mock

import mir_eval
import numpy as np
import pretty_midi
import soundfile as sf
import torch

from llaqo_model.analysis import metrics
from llaqo_model.analysis.align import align_to_score
from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import (
    DEFAULT_MIN_CONFIDENCE,
    NOTE_ERROR_KINDS,
    IssueKind,
    Note,
    PedalInterval,
    PerformanceReport,
)
from llaqo_model.analysis.score import Score, load_score
from llaqo_model.analysis.spectrum import OnsetSpectrum
from llaqo_model.analysis.transcribe import OnsetEvidence, Transcriber, TranscriberConfig, Transcription
from llaqo_model.analysis.verify import SIGNS, WEIGHTS, confidence, issue_features
from llaqo_model.io import read_performance_midi
from llaqo_training.augment import apply_chain, draw_chain
from llaqo_training.render import available_soundfonts, render_notes

REPO = Path(__file__).resolve().parents[1]
NOTE_TROUBLE = NOTE_ERROR_KINDS | {IssueKind.UNCLEAR, IssueKind.RESTART}  # what a clean take must not be told
LEAD_S = 0.08
RATE = 44100
HELD_OUT_SHARE = 4  # one piece in four (by a hash of its folder) is held out from tuning
MISTAKES_PER_TAKE = 4
CHORD_S = 0.05  # notes struck within 50 ms are one chord (as metrics.CHORD_WINDOW_S)
SAME_ISSUE_S = 0.25  # an audio issue and a MIDI issue this close in time (same kind and keys) are the same
BRUSH_VELOCITY = 0.45  # a brushed key: under half its neighbour's velocity…
BRUSH_S = 0.08  # …and short
CALIBRATION_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)
FIT_L2 = 0.01  # pull on the confidence weights: a few hundred candidates from a dozen pieces must not over-fit


def held_out(folder: str) -> bool:
    """Whether a piece belongs to the held-out set (fixed by a hash of its folder, decided before tuning)."""
    return hashlib.sha1(folder.encode()).digest()[0] % HELD_OUT_SHARE == 0


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


@dataclass
class Mistake:
    """One injected mistake: kind, variant, bar, where and which keys, and the role of the note."""

    kind: str  # wrong | missed | extra
    variant: str  # semitone | tone | third | (missed) plain | (extra) full | brushed
    bar: int
    time_s: float
    pitch: int  # the key played (wrong, extra) or left out (missed)
    voice: str  # melody | inner | bass
    level: str  # soft | loud (against its neighbours' median velocity)
    chord: bool  # struck together with other notes


def role(notes: list[Note], i: int, pitch: int | None = None) -> tuple[str, str, bool]:
    """Voice (highest / lowest / between the notes sounding then), loudness against the neighbours, chord."""
    n = notes[i]
    pitch = n.pitch if pitch is None else pitch
    together = [m for j, m in enumerate(notes) if j != i and abs(m.onset - n.onset) <= CHORD_S]
    sounding = [m.pitch for j, m in enumerate(notes) if j != i and m.onset - CHORD_S <= n.onset < m.offset]
    voice = "melody" if all(pitch > q for q in sounding) else "bass" if all(pitch < q for q in sounding) else "inner"
    around = [m.velocity for j, m in enumerate(notes) if j != i and abs(m.onset - n.onset) < 1.0]
    level = "soft" if around and n.velocity < np.median(around) else "loud"
    return voice, level, bool(together)


def inject(
    notes: list[Note], windows: list[tuple[int, float, float]], rng: random.Random
) -> tuple[list[Note], list[Mistake]]:
    """One mistake in each of `windows` (bar, start s, end s): kind and variant drawn, on any note."""
    notes = list(notes)
    mistakes: list[Mistake] = []
    for bar, a, b in windows:
        inside = [i for i, n in enumerate(notes) if a + 0.05 <= n.onset < b - 0.1 and n.velocity >= 10]
        if not inside:
            continue
        i = rng.choice(inside)
        n = notes[i]
        sounding = {m.pitch for m in notes if abs(m.onset - n.onset) < 0.5 or m.onset <= n.onset < m.offset}
        kind = rng.choice(["wrong", "missed", "extra", "extra"])
        if kind == "wrong":
            variant = rng.choice(["semitone", "tone", "third"])
            steps = {"semitone": (1,), "tone": (2,), "third": (3, 4)}[variant]
            options = [n.pitch + d * s for s in steps for d in (1, -1) if n.pitch + d * s not in sounding]
            if not options:
                continue
            pitch = rng.choice(options)
            voice, level, chord = role(notes, i, pitch)
            notes[i] = replace(n, pitch=pitch)
            mistakes.append(Mistake(kind, variant, bar, n.onset, pitch, voice, level, chord))
        elif kind == "missed":
            voice, level, chord = role(notes, i)
            notes.pop(i)
            mistakes.append(Mistake(kind, "plain", bar, n.onset, n.pitch, voice, level, chord))
        else:
            variant = rng.choice(["full", "brushed"])
            options = [n.pitch + d for d in (-2, -1, 1, 2) if n.pitch + d not in sounding]
            if not options:
                continue
            pitch = rng.choice(options)
            together = [m.velocity for m in notes if abs(m.onset - n.onset) <= CHORD_S]
            if variant == "full":
                extra = Note(n.onset + 0.005, n.offset, pitch, max(together))
            else:
                extra = Note(n.onset + 0.01, n.onset + 0.01 + BRUSH_S, pitch, max(int(BRUSH_VELOCITY * n.velocity), 8))
            notes.append(extra)
            voice, level, chord = role(notes, len(notes) - 1)
            mistakes.append(Mistake(kind, variant, bar, extra.onset, pitch, voice, level, chord))
    return sorted(notes, key=lambda m: (m.onset, m.pitch)), mistakes


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


def flagged_bars(report: PerformanceReport, kinds: frozenset[IssueKind] | set[IssueKind]) -> set[int]:
    """Bars with a stated issue of one of `kinds`."""
    return {bar for bar, issue in report.stated_issues() if issue.kind in kinds}


def sample_pieces(asap: Path, seed: int) -> list[dict]:
    """One performance per piece that has a MusicXML score, in a reproducible random order."""
    with (asap / "metadata.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["xml_score"]]
    by_piece: dict[str, dict] = {}
    for r in rows:
        by_piece.setdefault(r["folder"], r)
    pieces = sorted(by_piece.values(), key=lambda r: r["folder"])
    random.Random(seed).shuffle(pieces)
    return pieces


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


@dataclass
class RenderedTake:
    """One rendered take: what was played, what the transcriber heard, and the mistakes injected."""

    piece: str
    font: str
    label: str  # clean | faulty
    held_out: bool
    score: Score
    played: list[Note]
    pedal: list[PedalInterval]
    heard: Transcription
    audio: np.ndarray  # what the transcriber heard (for the spectrum check of keys heard under its threshold)
    seconds: float
    transcribe_s: float
    mistakes: list[Mistake]


def render(notes: list[Note], pedal: list[PedalInterval], font: Path, rng: np.random.Generator) -> np.ndarray:
    """The take played by `font` and recorded through a drawn chain, always in a reverberant room."""
    chain = draw_chain(rng)
    if chain["rt60_s"] == 0:
        chain.update(room="room", rt60_s=0.4, wet=0.25)
    return apply_chain(render_notes(notes, pedal, soundfont=font), RATE, chain, rng)


def transcribed(
    cache: Path, key: str, notes: list[Note], pedal: list[PedalInterval], font: Path, transcriber: Transcriber
) -> tuple[Transcription, np.ndarray, float, float]:
    """(transcription, audio, audio seconds, transcription seconds), from `cache` when this take was done
    before (the rendering is seeded by the take's key, so the audio is rendered again when not cached)."""
    path = cache / f"{key}.npz"
    sound = cache / f"{key}.audio.npy"
    seed = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "little")
    if path.is_file():
        z = np.load(path)
        heard = Transcription(
            [Note(*map(float, row[:2]), int(row[2]), int(row[3])) for row in z["notes"]],
            [PedalInterval(float(a), float(b)) for a, b in z["pedal"]],
            OnsetEvidence(z["evidence"].astype(np.float32), float(z["frame_s"])),
        )
        if not sound.is_file():
            np.save(sound, render(notes, pedal, font, np.random.default_rng(seed)).astype(np.float16))
        return heard, np.load(sound).astype(np.float32), float(z["seconds"]), float(z["transcribe_s"])
    audio = render(notes, pedal, font, np.random.default_rng(seed))
    np.save(sound, audio.astype(np.float16))
    t = time.perf_counter()
    heard = transcriber.transcribe_with_evidence(audio)
    spent = time.perf_counter() - t
    np.savez_compressed(
        path,
        notes=np.array([[n.onset, n.offset, n.pitch, n.velocity] for n in heard.notes]).reshape(-1, 4),
        pedal=np.array([[p.onset, p.offset] for p in heard.pedal]).reshape(-1, 2),
        evidence=heard.evidence.scores.astype(np.float16),
        frame_s=heard.evidence.frame_s,
        seconds=len(audio) / RATE,
        transcribe_s=spent,
    )
    return heard, audio, len(audio) / RATE, spent


with_spectrum = True  # whether `analyse` checks keys heard under the threshold in the spectrum (off: --no-spectrum)


def spectrum_of(take: RenderedTake) -> OnsetSpectrum | None:
    """The spectrum check `llaqo analyze` makes of the take's audio (None with --no-spectrum)."""
    return OnsetSpectrum(take.audio, RATE) if with_spectrum else None


def analyse(take: RenderedTake) -> PerformanceReport:
    """The report of the take as `llaqo analyze` makes it (audio evidence, default confidence)."""
    heard = take.heard
    return report_from_notes(
        heard.notes, heard.pedal, take.seconds, take.label, take.score, heard.evidence, spectrum_of(take)
    )


def sounded(played: list[Note]) -> list[Note]:
    """The performed notes that made a sound: a key pressed under `MIN_EXTRA_VELOCITY` (ASAP has written notes
    at velocity 3–9) is as silent in the recording as a key not pressed, so it counts as left out."""
    return [n for n in played if n.velocity >= metrics.MIN_EXTRA_VELOCITY]


def truth(score: Score, played: list[Note]) -> list[tuple[IssueKind, int, int | None, float]]:
    """What was really played wrong, left out or added: (kind, key, written key, time) from aligning the
    performance MIDI itself (the keys that sounded)."""
    played = sounded(played)
    al = align_to_score(score, played)
    na = score.note_array
    found = [(IssueKind.WRONG_NOTE, played[p].pitch, int(na["pitch"][s]), played[p].onset) for s, p in al.wrong]
    found += [(IssueKind.EXTRA_NOTE, played[p].pitch, None, played[p].onset) for p in al.extra]
    if al.time_map is not None:
        found += [
            (IssueKind.MISSED_NOTE, int(na["pitch"][s]), int(na["pitch"][s]), float(al.time_map(na["onset_beat"][s])))
            for s in al.missed
        ]
    return found


def is_real(issue, facts: list[tuple[IssueKind, int, int | None, float]]) -> bool:
    """Whether the analysis of what was played finds the same fact (a wrong note may show there as a missed
    written key plus an extra played one, and the other way round)."""
    near = [(k, key, written) for k, key, written, t in facts if abs(t - issue.time_s) <= SAME_ISSUE_S]
    missed = {written for k, _, written in near if k in (IssueKind.MISSED_NOTE, IssueKind.WRONG_NOTE)}
    added = {key for k, key, _ in near if k in (IssueKind.EXTRA_NOTE, IssueKind.WRONG_NOTE)}
    if issue.kind == IssueKind.MISSED_NOTE:
        return issue.expected_pitch in missed
    if issue.kind == IssueKind.EXTRA_NOTE:
        return issue.pitch in added
    return issue.pitch in added and issue.expected_pitch in missed


class Candidate(NamedTuple):
    """One wrong, missed or extra note the analysis proposes, with its audio features and whether it is real."""

    piece: str
    kind: IssueKind
    features: tuple[float, ...]
    confidence: float
    real: bool


def candidates(take: RenderedTake) -> list[Candidate]:
    """Every wrong, missed and extra note the analysis proposes (none hidden under `unclear`)."""
    with mock.patch.object(metrics, "UNCLEAR_MIN_ERRORS", 10**9):
        report = analyse(take)
    facts = truth(take.score, take.played)
    spectrum = spectrum_of(take)
    return [
        Candidate(
            take.piece,
            i.kind,
            issue_features(i, take.heard.evidence, take.heard.notes, spectrum),
            i.confidence,
            is_real(i, facts),
        )
        for _, i in report.issues()
        if i.kind in NOTE_ERROR_KINDS
    ]


def logistic(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, signs: tuple[int, ...]) -> torch.Tensor:
    """Bias and weights of a weighted logistic regression of `y` on `x` whose weights keep the given signs
    (each weight is sign × softplus(free parameter)), with a strong L2 pull towards 0 (`FIT_L2`)."""
    free = torch.zeros(x.shape[1] + 1, dtype=torch.float64, requires_grad=True)
    sign = torch.tensor(signs, dtype=torch.float64)
    opt = torch.optim.LBFGS([free], max_iter=500, line_search_fn="strong_wolfe")

    def weights() -> torch.Tensor:
        return torch.cat([free[:1], sign * torch.nn.functional.softplus(free[1:])])

    def loss() -> torch.Tensor:
        opt.zero_grad()
        w = weights()
        fitted = torch.nn.functional.binary_cross_entropy_with_logits(w[0] + x @ w[1:], y, weight=weight)
        value = fitted / weight.mean() + FIT_L2 * (w[1:] ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    return weights().detach()


def fit(rows: list[Candidate], kinds: list[IssueKind]) -> dict[IssueKind, tuple[float, ...]]:
    """Logistic regression per kind, the weights `verify.WEIGHTS` holds: each feature's weight keeps the sign
    physics gives it (`verify.SIGNS`), strongly regularised, and every piece weighs the same (one piece
    with many candidates — an edition that differs throughout — must not decide the model)."""
    weights = {}
    for kind in kinds:
        chosen = [r for r in rows if r.kind == kind]
        per_piece = Counter(r.piece for r in chosen)
        x = torch.tensor([r.features for r in chosen], dtype=torch.float64)
        y = torch.tensor([float(r.real) for r in chosen], dtype=torch.float64)
        weight = torch.tensor([1.0 / per_piece[r.piece] for r in chosen], dtype=torch.float64)
        if len(y) < 5 or y.min() == y.max():
            print(f"fit {kind}: too few or one-sided examples ({len(y)}); kept")
            weights[kind] = WEIGHTS[kind]
            continue
        w = logistic(x, y, weight, SIGNS[kind])
        weights[kind] = tuple(round(float(v), 3) for v in w)
        print(f"fit {kind}: {len(y)} candidates from {len(per_piece)} pieces, {int(y.sum())} real → {weights[kind]}")
    return weights


def calibration(rows: list[Candidate], name: str) -> None:
    """Of the note issues at confidence >= c, the share that are real; and per confidence bin."""
    conf = np.array([r.confidence for r in rows])
    real = np.array([r.real for r in rows])
    print(f"calibration ({name}, {len(rows)} candidate note issues, {int(real.sum())} real):")
    for c in CALIBRATION_LEVELS:
        at = conf >= c
        share = f"{real[at].mean():.3f}" if at.any() else "–"
        print(f"  confidence >= {c:.1f}: {int(at.sum()):4d} stated, real {share}")
    bins = []
    for a in np.linspace(0, 0.8, 5):
        inside = (conf >= a) & (conf < a + 0.2 + 1e-9 * (a >= 0.8))
        if inside.any():
            bins.append(f"[{a:.1f},{a + 0.2:.1f}) {real[inside].mean():.2f} (n={int(inside.sum())})")
    print("  per bin, share real: " + ", ".join(bins))
    for kind in sorted({r.kind for r in rows}):
        sel = [r.real for r in rows if r.kind == kind and r.confidence >= DEFAULT_MIN_CONFIDENCE]
        print(f"  {kind}: stated {len(sel)}, real {np.mean(sel) if sel else float('nan'):.3f}")


def midi_flags(take: RenderedTake, keep_grazed: bool = False) -> set[int]:
    """Bars the analysis of the performance MIDI itself (the keys that sounded) flags: differences between the
    performer and the edition. `keep_grazed` also counts extra keys the MIDI rule drops as grazed (softer than
    60 % of their neighbours or held under 50 ms) — the same event as an injected brushed key, which the
    analysis of the audio is asked to find."""
    with mock.patch.object(metrics, "_audible", lambda *_: True) if keep_grazed else contextlib.nullcontext():
        report = report_from_notes(sounded(take.played), take.pedal, take.seconds, "midi", take.score)
    return flagged_bars(report, NOTE_TROUBLE)


SWEEP_THRESHOLDS = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)  # where the default confidence could sit: what each would give


@dataclass
class BarFigures:
    """Bar-level figures at one confidence threshold."""

    hits: dict[str, list[bool]]  # per group of mistakes (all, kind, role…): was its bar flagged
    false_bars: int  # bars flagged on clean takes
    added: int  # …of which not shown by the performance MIDI itself
    added_with_grazed: int  # …counting keys the MIDI rule calls grazed as added too
    minutes: float  # of clean takes


def bar_figures(
    reports: list[tuple[RenderedTake, PerformanceReport]], own: dict[int, tuple[set[int], set[int]]], threshold: float
) -> BarFigures:
    """Recall of mistaken bars per group, and false flags on the clean takes, stating issues at `threshold`;
    `own` holds each clean take's bars flagged by its performance MIDI (without and with grazed keys)."""
    figures = BarFigures(defaultdict(list), 0, 0, 0, 0.0)
    for take, report in reports:
        report.min_confidence = threshold
        if take.label == "faulty":
            flagged = flagged_bars(report, NOTE_ERROR_KINDS)
            for m in take.mistakes:
                groups = ("all", m.kind, f"{m.kind}/{m.variant}", m.voice, m.level, "chord" if m.chord else "single")
                for group in groups:
                    figures.hits[group].append(m.bar in flagged)
        else:
            flagged = flagged_bars(report, NOTE_TROUBLE)
            midi, midi_grazed = own[id(take)]
            figures.false_bars += len(flagged)
            figures.added += len(flagged - midi - midi_grazed)
            figures.added_with_grazed += len(flagged - midi)
            figures.minutes += take.seconds / 60
    return figures


def localisation(takes: list[RenderedTake], name: str) -> None:
    """Recall of mistaken bars per role, and false flags per minute on the clean takes: at the default
    confidence, with every candidate stated (the baseline without the audio check), and in brief at the
    other thresholds the default could take."""
    reports = [(take, analyse(take)) for take in takes]
    own = {id(t): (midi_flags(t), midi_flags(t, keep_grazed=True)) for t in takes if t.label == "clean"}
    for threshold, what in (
        (DEFAULT_MIN_CONFIDENCE, f"at confidence >= {DEFAULT_MIN_CONFIDENCE}"),
        (0.0, "baseline: every candidate stated"),
    ):
        f = bar_figures(reports, own, threshold)
        print(f"== {name}: mistake localisation, {what} ==")
        print(
            "recall of mistaken bars: "
            + ", ".join(f"{g} {np.mean(h):.3f} ({sum(h)}/{len(h)})" for g, h in f.hits.items())
        )
        per_min = 1 / max(f.minutes, 1e-9)
        print(
            f"false flags on clean takes: {f.false_bars} bars in {f.minutes:.1f} min = "
            f"{f.false_bars * per_min:.2f}/min; "
            f"shown by the performance MIDI itself {(f.false_bars - f.added) * per_min:.2f}/min (of which keys the "
            f"performer struck that the MIDI rule calls grazed, as an injected brushed key is, "
            f"{(f.added_with_grazed - f.added) * per_min:.2f}/min), added by the analysis {f.added * per_min:.2f}/min; "
            f"with those grazed keys counted as added: {f.added_with_grazed * per_min:.2f}/min"
        )
    print(f"== {name}: by threshold (recall all / soft / inner; false flags added per minute) ==")
    for threshold in SWEEP_THRESHOLDS:
        f = bar_figures(reports, own, threshold)
        recall = {g: f"{np.mean(f.hits[g]):.3f}" if f.hits[g] else "-" for g in ("all", "soft", "inner")}
        print(
            f"  confidence >= {threshold:.1f}: recall {recall['all']} / {recall['soft']} / {recall['inner']}; "
            f"added {f.added / max(f.minutes, 1e-9):.2f}/min"
        )


def explain(takes: list[RenderedTake], name: str) -> None:
    """Every false flag the analysis adds on a clean take (stated at the default confidence, not shown by the
    performance MIDI itself, grazed keys included): the issue, its confidence and evidence features, and the
    velocity the performer gave that key and its neighbours — to classify the causes."""
    print(f"== {name}: false flags the analysis adds on clean takes ==")
    for take in (t for t in takes if t.label == "clean"):
        report = analyse(take)
        own = midi_flags(take) | midi_flags(take, keep_grazed=True)
        for bar, issue in report.stated_issues():
            if issue.kind not in NOTE_TROUBLE or bar in own:
                continue
            key = issue.expected_pitch if issue.kind == IssueKind.MISSED_NOTE else issue.pitch
            played = [n for n in take.played if n.pitch == key and abs(n.onset - issue.time_s) <= SAME_ISSUE_S]
            together = sorted(
                (n.pitch, n.velocity) for n in take.played if abs(n.onset - issue.time_s) <= SAME_ISSUE_S / 2
            )
            features = (
                issue_features(issue, take.heard.evidence, take.heard.notes, spectrum_of(take))
                if issue.kind in WEIGHTS
                else ()
            )
            print(
                f"{take.piece} bar {bar} {issue.kind} key {key} (written {issue.expected_pitch}) at "
                f"{issue.time_s:.2f} s conf {issue.confidence:.2f} features {features}; performed "
                f"{[(n.pitch, n.velocity, round(n.onset - issue.time_s, 3)) for n in played]} among {together}"
            )


def gather(args: argparse.Namespace, transcriber: Transcriber) -> list[RenderedTake]:
    """Prepare, inject, render and transcribe (or read from the cache) the takes of the sampled pieces."""
    fonts = available_soundfonts()[: args.fonts]
    args.cache.mkdir(parents=True, exist_ok=True)
    takes: list[RenderedTake] = []
    wanted = {False: args.pieces, True: args.held_out}
    used = {False: 0, True: 0}  # sounds rotate within each set, so one set's size never changes the other's
    for row in sample_pieces(args.asap, args.seed):
        hold = held_out(row["folder"])
        if wanted[hold] <= 0:
            if not any(wanted.values()):
                break
            continue
        try:
            score, notes, pedal, windows = prepare(args.asap, row, args.length)
            if len(windows) < MISTAKES_PER_TAKE + 2:
                raise ValueError("too few bars")
        except Exception as exc:  # noqa: BLE001 - an unusable piece is skipped with its reason
            print(f"skip {row['folder']}: {exc}")
            continue
        wanted[hold] -= 1
        per_piece = args.fonts_per_piece or len(fonts)
        chosen_fonts = [fonts[(used[hold] + k) % len(fonts)] for k in range(min(per_piece, len(fonts)))]
        used[hold] += per_piece
        for font in chosen_fonts:
            rng = random.Random(f"{args.seed}/{row['folder']}/{font.name}")
            faulty, mistakes = inject(notes, rng.sample(windows[1:-1], MISTAKES_PER_TAKE), rng)
            for label, played, injected in (("clean", notes, []), ("faulty", faulty, mistakes)):
                key = f"{row['folder'].replace('/', '_')}-{font.stem}-{label}-{args.seed}-{args.length:g}"
                heard, audio, seconds, spent = transcribed(args.cache, key, played, pedal, font, transcriber)
                take = RenderedTake(
                    row["folder"], font.stem, label, hold, score, played, pedal, heard, audio, seconds, spent, injected
                )
                takes.append(take)
                print(
                    f"{'held-out' if hold else 'tuning':8s} {row['folder']:36s} {font.stem:18s} {label:6s} "
                    f"F1={onset_f1(played, heard.notes):.3f} rtf={spent / seconds:.2f} "
                    f"mistakes={[(m.bar, m.kind, m.variant, m.voice) for m in injected]}",
                    flush=True,
                )
    return takes


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--asap", type=Path, default=REPO.parent / "shared" / "data" / "asap")
    parser.add_argument("--pieces", type=int, default=10, help="tuning pieces")
    parser.add_argument("--held-out", type=int, default=5, help="held-out pieces (never used to tune)")
    parser.add_argument("--length", type=float, default=25.0, help="excerpt length in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fonts", type=int, default=None, help="use only the first N SoundFonts")
    parser.add_argument(
        "--fonts-per-piece", type=int, default=None, help="render each piece with N of the sounds, in turn"
    )
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"], help="Transkun precision")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "bench_analysis", help="transcriptions")
    parser.add_argument(
        "--fit",
        nargs="*",
        type=IssueKind,
        help="refit verify.WEIGHTS on the tuning pieces (of the kinds named; all when none is)",
    )
    parser.add_argument("--skip-speed", action="store_true", help="skip the 40 s take and the 5-minute take")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 5-minute take")
    parser.add_argument("--dump", type=Path, help="write every candidate note issue as JSON lines")
    parser.add_argument(
        "--explain", action="store_true", help="list the false flags the analysis adds on clean takes, and stop"
    )
    parser.add_argument(
        "--transcribe-only", action="store_true", help="fill the cache and stop (no figures: held-out stays unseen)"
    )
    parser.add_argument(
        "--no-spectrum",
        action="store_true",
        help="no spectrum check: keys heard under the transcriber's threshold are not candidates (faint.py)",
    )
    args = parser.parse_args()
    global with_spectrum
    with_spectrum = not args.no_spectrum
    if not (args.asap / "metadata.csv").is_file():
        print(f"ASAP not found at {args.asap}; nothing to measure", file=sys.stderr)
        return 1
    transcriber = Transcriber(TranscriberConfig(precision=args.precision))
    print(f"threads={torch.get_num_threads()} precision={transcriber.precision}")
    takes = gather(args, transcriber)
    if args.transcribe_only:
        return 0
    if args.explain:
        for hold, name in ((False, "tuning pieces"), (True, "held-out pieces")):
            explain([t for t in takes if t.held_out == hold], name)
        return 0
    rows = {hold: [r for t in takes if t.held_out == hold for r in candidates(t)] for hold in (False, True)}
    if args.fit is not None:
        for hold, name in ((False, "tuning pieces"), (True, "held-out pieces")):
            if rows[hold]:
                calibration(rows[hold], f"{name}, weights before the refit")
        print("== refit on the tuning pieces (the figures below use the new weights) ==")
        WEIGHTS.update(fit(rows[False], args.fit or list(WEIGHTS)))
        print(f"WEIGHTS = {json.dumps({str(k): v for k, v in WEIGHTS.items()})}")
        rows = {
            hold: [r._replace(confidence=confidence(r.kind, r.features)) for r in found] for hold, found in rows.items()
        }
    if args.dump:
        with args.dump.open("w") as f:
            for hold, found in rows.items():
                for r in found:
                    f.write(json.dumps({"held_out": hold, **r._asdict()}) + "\n")
    for hold, name in ((False, "tuning pieces"), (True, "held-out pieces")):
        chosen = [t for t in takes if t.held_out == hold]
        if not chosen:
            continue
        localisation(chosen, name)
        calibration(rows[hold], name)
        print(
            "transcription onset F1 (50 ms): "
            + ", ".join(
                f"{font} {np.mean([onset_f1(t.played, t.heard.notes) for t in chosen if t.font == font]):.3f}"
                for font in sorted({t.font for t in chosen})
            )
        )
    fresh = [t.transcribe_s / t.seconds for t in takes]
    print(f"transcription RTF over the takes (cached ones as first measured): {np.mean(fresh):.2f}")
    if not args.skip_speed:
        memory_and_40s(args.asap, transcriber, args.skip_memory)
    return 0


def memory_and_40s(asap: Path, transcriber: Transcriber, skip_memory: bool) -> None:
    """RTF of the whole analysis (transcription with evidence, alignment, verification with the spectrum check,
    as `llaqo analyze` makes it) of a 40 s take against its score, and peak RSS of `llaqo analyze` on a
    5-minute take (separate process)."""
    for row in sample_pieces(asap, 1):
        if row["folder"].startswith("Chopin"):
            try:
                score, forty, ped40, _ = prepare(asap, row, 40.0)
                break
            except ValueError:
                continue
    notes, pedal = read_performance_midi(asap / row["midi_performance"])
    with tempfile.TemporaryDirectory() as tmp:
        audio = render_notes(forty, ped40)[: 40 * RATE]
        t = time.perf_counter()
        heard = transcriber.transcribe_with_evidence(audio)
        t_tr = time.perf_counter() - t
        report_from_notes(heard.notes, heard.pedal, 40.0, "forty", score, heard.evidence, OnsetSpectrum(audio, RATE))
        t_all = time.perf_counter() - t
        print(
            f"40 s take ({row['folder']}): transcription with evidence {t_tr:.1f} s (RTF {t_tr / 40:.2f}), "
            f"whole analysis against the score {t_all:.1f} s (RTF {t_all / 40:.2f})"
        )
        if skip_memory:
            return
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
