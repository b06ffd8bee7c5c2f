"""Training data from a corpus manifest: per take, prepared audio, the report text and question/answer pairs."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llaqo_model.analysis.report import RUBRIC_KEYS, PerformanceReport
from llaqo_model.model.prompts import DIFFICULTY, OVERALL, TECHNIQUE, QuestionType, canonical_questions, rating

log = logging.getLogger(__name__)


@dataclass
class QA:
    """One question with its reference answer and its answer kind."""

    question: str
    answer: str
    qtype: QuestionType


@dataclass
class TrainTake:
    """A take ready for training: prepared audio (encoder input), grounding text, questions."""

    id: str
    prepared: tuple[torch.Tensor, torch.Tensor]
    report_text: str | None
    qa: list[QA]
    labels: dict[str, Any] = field(default_factory=dict)


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Manifest lines, with audio/score/MIDI paths made absolute."""
    path = Path(path)
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        for key in ("audio", "score", "performance_midi"):
            if entry.get(key):
                entry[key] = str((path.parent / entry[key]).resolve())
        entries.append(entry)
    return entries


def label_qa(entry: dict[str, Any]) -> list[QA]:
    """The canonical constrained questions answered from the take's labels, plus the corpus's own QA."""
    questions = canonical_questions()
    out = [QA(questions[rating(k)], str(int(entry["ratings"][k])), rating(k)) for k in RUBRIC_KEYS]
    for key, qtype in (("overall", OVERALL), ("difficulty", DIFFICULTY)):
        if entry.get(key) is not None:
            out.append(QA(questions[qtype], str(int(entry[key])), qtype))
    if entry.get("technique"):
        out.append(QA(questions[TECHNIQUE], entry["technique"], TECHNIQUE))
    out += [QA(x["q"], str(x["a"]), QuestionType.parse(x.get("type", "open"))) for x in entry.get("qa", [])]
    return out


def take_report(entry: dict[str, Any]) -> PerformanceReport | None:
    """The analysis's report of the take, built from its performance MIDI (and score when it loads)."""
    midi = entry.get("performance_midi")
    if not midi or not Path(midi).is_file():
        return None
    from llaqo_model.analysis.pipeline import report_from_notes
    from llaqo_model.analysis.score import load_score
    from llaqo_model.io import read_performance_midi

    notes, pedal = read_performance_midi(midi)
    duration = max((n.offset for n in notes), default=0.0) + 0.5
    score = None
    if entry.get("score"):
        try:
            score = load_score(entry["score"])
        except Exception as exc:  # a bad score must not stop training; the report is then score-free
            log.warning("%s: score not used (%s)", entry.get("id"), exc)
    try:
        return report_from_notes(notes, pedal, duration, entry["audio"], score)
    except Exception as exc:
        log.warning("%s: score alignment failed (%s); score-free report", entry.get("id"), exc)
        return report_from_notes(notes, pedal, duration, entry["audio"], None)


def note_error_share(report: PerformanceReport | None) -> float | None:
    """Share of the score's notes the analysis found wrong, missed or extra; None without a score alignment."""
    summary = report.alignment if report is not None else None
    if summary is None or not summary.score_notes:
        return None
    return (summary.wrong + summary.missed + summary.extra) / summary.score_notes


def load_takes(
    entries: list[dict[str, Any]], prepare: Any, cache_dir: str | Path | None = None, grounding: bool = True
) -> list[TrainTake]:
    """Prepare every take (audio features via `prepare(samples, rate)`, report text), cached on disk."""
    from llaqo_model.io import load_audio

    cache = Path(cache_dir) if cache_dir else None
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    takes = []
    for entry in entries:
        hit = cache / f"{entry['id']}.pt" if cache else None
        if hit is not None and hit.is_file():
            blob = torch.load(str(hit), weights_only=True)
            prepared, text = (blob["windows"], blob["lengths"]), blob.get("report") or None
            share = blob.get("note_error_share")
        else:
            samples, rate = load_audio(entry["audio"])
            prepared = prepare(samples, rate)
            report = take_report(entry)
            text = report.to_prompt_text() if grounding and report is not None else None
            share = note_error_share(report)
            if hit is not None:
                blob = {"windows": prepared[0], "lengths": prepared[1], "report": text or "", "note_error_share": share}
                torch.save(blob, str(hit))
        labels = {k: entry.get(k) for k in ("ratings", "overall", "difficulty", "technique", "composer")}
        labels["note_error_share"] = share
        takes.append(TrainTake(entry["id"], prepared, text, label_qa(entry), labels))
    return takes


def write_dev_manifest(out_dir: str | Path, n_takes: int = 120, seed: int = 0, seconds: float = 8.0) -> Path:
    """A small development corpus in the manifest format: rendered exercises with known tempo, dynamics,
    timing jitter and wrong notes; labels follow from those settings (for use until a real corpus exists)."""
    import pretty_midi
    import soundfile as sf

    from llaqo_model.analysis.report import TECHNIQUES, Note
    from llaqo_training.render import render_notes

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n_takes):
        technique = TECHNIQUES[i % len(TECHNIQUES)]
        bpm, vel, spread = rng.uniform(60, 150), rng.uniform(35, 105), rng.uniform(0, 40)
        jitter_ms, wrong = rng.uniform(0, 70), rng.uniform(0, 0.2)
        step = 60.0 / bpm / (4 if technique in ("scales", "ornaments", "repeated_notes") else 2)
        root = int(rng.integers(55, 67))
        pattern = {
            "scales": [0, 2, 4, 5, 7, 9, 11, 12, 11, 9, 7, 5, 4, 2],
            "arpeggios": [0, 4, 7, 12, 16, 12, 7, 4],
            "ornaments": [0, 2, 0, 2, 0, -1, 0, 4],
            "repeated_notes": [0, 0, 0, 0, 7, 7, 7, 7],
            "double_notes": [0, 2, 4, 5, 7, 5, 4, 2],
            "octaves": [0, 2, 4, 5, 7, 5, 4, 2],
            "staccato": [0, 4, 7, 4, 0, 5, 9, 5],
        }[technique]
        notes, t, k = [], 0.3, 0
        while t < seconds - 0.5:
            pitch = root + pattern[k % len(pattern)] + (int(rng.choice([-1, 1])) if rng.random() < wrong else 0)
            onset = max(0.0, t + rng.normal(0, jitter_ms / 1000))
            length = step * (0.35 if technique == "staccato" else 0.95)
            v = int(np.clip(vel + spread * np.sin(2 * np.pi * t / 4) + rng.normal(0, 4), 5, 127))
            extra = {"double_notes": [3], "octaves": [12]}.get(technique, [])
            for dp in [0, *extra]:
                notes.append(Note(round(onset, 4), round(onset + length, 4), pitch + dp, v))
            t, k = t + step, k + 1
        notes.sort(key=lambda n: (n.onset, n.pitch))
        audio = render_notes(notes, sample_rate=16000)
        sf.write(str(out / f"take{i:04d}.flac"), audio, 16000)
        pm = pretty_midi.PrettyMIDI()
        inst = pretty_midi.Instrument(0)
        inst.notes = [pretty_midi.Note(n.velocity, n.pitch, n.onset, n.offset) for n in notes]
        pm.instruments.append(inst)
        pm.write(str(out / f"take{i:04d}.mid"))
        clip = lambda x: int(np.clip(round(x), 1, 6))  # noqa: E731
        ratings = {
            "pitch_accuracy": clip(6 - wrong * 25),
            "rhythm_accuracy": clip(6 - jitter_ms / 14),
            "tempo_stability": clip(6 - jitter_ms / 16),
            "tempo_choice": clip(6 - abs(bpm - 100) / 12),
            "dynamic_range": clip(1 + spread / 8),
            "dynamic_shaping": clip(1.5 + spread / 9),
            "articulation": clip(6 - jitter_ms / 25 - wrong * 8),
            "attack_cleanliness": clip(6 - wrong * 20),
            "evenness": clip(6 - jitter_ms / 12),
            "hand_balance": clip(3 + (vel - 70) / 25),
            "pedaling": 4,
            "expressiveness": clip(1 + spread / 10 + (vel - 35) / 60),
        }
        overall = clip(float(np.mean(list(ratings.values()))))
        difficulty = int(
            np.clip(round(1 + (bpm - 60) / 15 + (2 if technique in ("octaves", "double_notes") else 0)), 1, 9)
        )
        pace = "rushed and uneven" if jitter_ms > 40 else "steady"
        qa = [
            {"q": "How was the timing?", "a": f"The timing was {pace}.", "type": "open:timing"},
            {
                "q": "How loud was the playing?",
                "a": "loud" if vel > 80 else "soft" if vel < 55 else "moderately loud",
                "type": "open:dynamics",
            },
        ]
        split = "val" if i % 10 == 9 else "train"
        lines.append(
            json.dumps(
                {
                    "id": f"dev{i:04d}",
                    "audio": f"take{i:04d}.flac",
                    "score": None,
                    "performance_midi": f"take{i:04d}.mid",
                    "split": split,
                    "source": "dev-synthetic",
                    "ratings": ratings,
                    "overall": overall,
                    "difficulty": difficulty,
                    "technique": technique,
                    "composer": None,
                    "faults": [],
                    "qa": qa,
                }
            )
        )
    manifest = out / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest
