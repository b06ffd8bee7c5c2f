"""`llaqo corpus build`: plan takes, perform/cut excerpts, inject faults, label, render, write the manifest.

Every take is made from (seed, index) alone, so a build is reproducible and resumable: a finished take
leaves DIR/takes/<id>/take.json, and a re-run skips those. Takes are built in parallel worker processes.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from llaqo_model.analysis.pipeline import report_from_notes
from llaqo_model.analysis.report import RUBRIC_KEYS
from llaqo_model.errors import LlaqoError
from llaqo_model.io import write_performance_midi
from llaqo_training import labels
from llaqo_training.augment import apply_chain, draw_chain
from llaqo_training.faults import FAMILIES, inject
from llaqo_training.performance import Take
from llaqo_training.qa import make_qa
from llaqo_training.render import piano_sounds, render_notes
from llaqo_training.sources import Piece, base_take, catalog, shared_root, split_of

log = logging.getLogger(__name__)
SOURCE_WEIGHTS = {"asap": 0.4, "music21": 0.3, "exercise": 0.3}
CLEAN_EXPERT_SHARE = 0.2
ATTEMPTS = 3


class CorpusError(LlaqoError):
    """The corpus cannot be built or imported (nothing usable, bad output folder)."""

    code = "bad_corpus"


@dataclass
class BuildConfig:
    """What to build and from where."""

    out: Path
    takes: int
    seed: int = 0
    workers: int = 1
    asap_root: Path | None = None
    cipi_table: Path | None = None
    sample_rate: int = 22050
    min_s: float = 10.0
    max_s: float = 30.0
    with_music21: bool = True
    soundfonts: list[tuple[str, str, int]] = field(default_factory=list)


def default_config(out: str | Path, takes: int, seed: int = 0, workers: int = 1) -> BuildConfig:
    """Sources under ../shared (or $LLAQO_SHARED) and every installed piano sound."""
    shared = shared_root()
    return BuildConfig(
        out=Path(out),
        takes=takes,
        seed=seed,
        workers=workers,
        asap_root=shared / "data" / "asap",
        cipi_table=shared / "data" / "llaqo-qa" / "difficulty_cipi" / "audio_qa.csv",
    )


def plan(pieces: list[Piece], n: int, seed: int) -> list[tuple[str, str]]:
    """(take id, piece id) for takes 0..n-1; each draw depends only on (seed, index)."""
    by_source: dict[str, list[Piece]] = {}
    for p in pieces:
        by_source.setdefault(p.source, []).append(p)
    sources = [s for s in SOURCE_WEIGHTS if by_source.get(s)]
    if not sources:
        raise CorpusError("no source material is available (no ASAP, music21 corpus or exercises)")
    weights = np.array([SOURCE_WEIGHTS[s] for s in sources])
    out = []
    for i in range(n):
        rng = np.random.default_rng([seed, i, 0])
        src = sources[int(rng.choice(len(sources), p=weights / weights.sum()))]
        piece = by_source[src][int(rng.integers(len(by_source[src])))]
        out.append((f"t{seed:03d}_{i:06d}", piece.id))
    return out


def fault_plan(take: Take, rng: np.random.Generator, clean: bool) -> tuple[dict[str, float], float]:
    """Faults to inject (kind → severity) for a player of random skill; returns (plan, skill)."""
    if clean:
        return {}, 1.0
    skill = float(rng.beta(1.6, 1.1))
    chosen: dict[str, float] = {}
    pedalled = float(np.sum(take.pedal["offset_sec"] - take.pedal["onset_sec"])) / max(take.duration_s, 1e-3)
    has_pedal = pedalled >= 0.3
    for family in FAMILIES.values():
        if rng.random() > 0.55 + 0.4 * (1.0 - skill):
            continue
        options = [k for k in family if k != "no_pedal" or has_pedal]
        kind = options[int(rng.integers(len(options)))]
        severity = (1.0 - skill) * float(rng.uniform(0.4, 1.3)) + float(rng.normal(0, 0.12))
        chosen[kind] = float(np.clip(severity, 0.03, 1.0))
    return chosen, skill


_STATE: dict[str, Any] = {}


def _init_worker(config: BuildConfig, pieces: dict[str, Piece], sounds: list[tuple[str, Path, int]]) -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("partitura").setLevel(logging.ERROR)
    _STATE.update(config=config, pieces=pieces, sounds=sounds)


def _make_take(task: tuple[str, str, int]) -> dict[str, Any]:
    """Build one take (retrying with other pieces of the same source); returns the entry or a skip."""
    take_id, piece_id, index = task
    config: BuildConfig = _STATE["config"]
    pieces: dict[str, Piece] = _STATE["pieces"]
    take_dir = config.out / "takes" / take_id
    rng = np.random.default_rng([config.seed, index, 1])
    reasons = []
    piece = pieces[piece_id]
    same_source = [p for p in pieces.values() if p.source == piece.source]
    everything = list(pieces.values())
    for _ in range(ATTEMPTS):
        if take_dir.exists():
            shutil.rmtree(take_dir)
        take_dir.mkdir(parents=True)
        try:
            entry = _build(take_id, piece, take_dir, rng, config)
        except Exception as exc:  # a bad source file skips this piece, never the build
            reasons.append(f"{piece.id}: {type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}")
            pool = same_source if len(reasons) < ATTEMPTS - 1 else everything
            piece = pool[int(rng.integers(len(pool)))]
            continue
        tmp = take_dir / "take.json.tmp"
        tmp.write_text(json.dumps(entry, ensure_ascii=False), encoding="utf-8")
        tmp.rename(take_dir / "take.json")
        return {"entry": entry, "skipped": reasons}
    shutil.rmtree(take_dir, ignore_errors=True)
    return {"entry": None, "skipped": reasons}


def _build(take_id: str, piece: Piece, take_dir: Path, rng: np.random.Generator, config: BuildConfig) -> dict[str, Any]:
    target = float(rng.uniform(config.min_s, config.max_s))
    base = base_take(piece, rng, target, take_dir)
    score = base.meta.pop("score_obj", None)
    key_fifths = score.key_fifths if score is not None else 0
    clean = piece.source == "asap" and rng.random() < CLEAN_EXPERT_SHARE
    faults_plan, skill = fault_plan(base, rng, clean)
    staccato = piece.ref.get("technique") == "staccato"
    take, faults = inject(base, faults_plan, rng, key_fifths=key_fifths, staccato_piece=staccato)
    duration = take.duration_s
    ratings = labels.ratings(faults, duration)
    overall = labels.overall(ratings) if faults else 6
    difficulty = None
    if config.cipi_table is not None:
        difficulty = labels.cipi_difficulty(piece.composer, piece.title, config.cipi_table)
    difficulty_source = "cipi" if difficulty is not None else "estimate"
    if difficulty is None:
        difficulty = labels.estimate_difficulty(base.notes, base.tempo_bpm, base.duration_s)
    technique = piece.ref.get("technique") or labels.technique_of(base.notes)
    notes, pedal = take.to_notes()
    report = report_from_notes(notes, pedal, duration + 1.0, "take.flac", None)
    name, soundfont, program = _STATE["sounds"][int(rng.integers(len(_STATE["sounds"])))]
    audio = render_notes(notes, pedal, config.sample_rate, soundfont, program)
    chain = draw_chain(rng)
    audio = apply_chain(audio, config.sample_rate, chain, rng)
    sf.write(str(take_dir / "take.flac"), audio, config.sample_rate)
    write_performance_midi(*take.to_notes(), take_dir / "performance.mid")
    take_labels = {
        "ratings": ratings,
        "overall": overall,
        "difficulty": difficulty,
        "technique": technique,
        "composer": piece.composer,
    }
    info = {
        "score": base.meta.get("score"),
        "period": piece.period,
        "source": piece.source,
        "tempo_bpm": take.tempo_bpm,
        "velocity_mean": report.measures.velocity_mean,
    }
    split = split_of(piece.id)
    qa = make_qa(take_labels, faults, info, held_out=split != "train", rng=rng)
    rel = Path("takes") / take_id
    return {
        "id": take_id,
        "audio": str(rel / "take.flac"),
        "score": str(rel / Path(base.meta["score"]).name) if base.meta.get("score") else None,
        "performance_midi": str(rel / "performance.mid"),
        "split": split,
        "source": piece.source,
        "piece": piece.id,
        "title": piece.title,
        "composer": piece.composer,
        "period": piece.period,
        "ratings": ratings,
        "overall": overall,
        "difficulty": int(difficulty),
        "difficulty_source": difficulty_source,
        "technique": technique,
        "faults": [f.to_dict() for f in faults],
        "qa": qa,
        "duration_s": round(duration + 1.0, 2),
        "bars": [int(base.bars["bar"][0]), int(base.bars["bar"][-1])],
        "tempo_bpm": round(take.tempo_bpm, 1),
        "skill": round(skill, 3),
        "sound": name,
        "recording": chain,
        "sample_rate": config.sample_rate,
        "performer": base.meta.get("performer"),
    }


def build(config: BuildConfig, progress: bool = True) -> dict[str, Any]:
    """Build (or resume) the corpus; returns the summary dict that `format_summary` prints."""
    from tqdm import tqdm

    start = time.time()
    config.out.mkdir(parents=True, exist_ok=True)
    skipped: list[str] = []
    sounds = piano_sounds(skipped)
    if config.soundfonts:
        sounds = [(n, Path(p), prog) for n, p, prog in config.soundfonts if Path(p).is_file()]
        skipped += [f"piano sound {n}: {p} not found" for n, p, _ in config.soundfonts if not Path(p).is_file()]
    if not sounds:
        raise CorpusError("no piano SoundFont is available to render with")
    pieces = catalog(config.asap_root, skipped, with_music21=config.with_music21)
    by_id = {p.id: p for p in pieces}
    tasks = [(tid, pid, i) for i, (tid, pid) in enumerate(plan(pieces, config.takes, config.seed))]
    todo = [t for t in tasks if not (config.out / "takes" / t[0] / "take.json").is_file()]
    todo.sort(key=lambda t: t[1])
    resumed = len(tasks) - len(todo)
    bar = tqdm(total=len(tasks), initial=resumed, desc="takes", unit="take", disable=not progress)
    if config.workers > 1 and len(todo) > 1:
        ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
        with ctx.Pool(config.workers, initializer=_init_worker, initargs=(config, by_id, sounds)) as pool:
            for result in pool.imap_unordered(_make_take, todo, chunksize=2):
                skipped += result["skipped"]
                bar.update(1)
    else:
        _init_worker(config, by_id, sounds)
        for task in todo:
            result = _make_take(task)
            skipped += result["skipped"]
            bar.update(1)
    bar.close()
    entries = []
    for tid, _, _ in tasks:
        path = config.out / "takes" / tid / "take.json"
        if path.is_file():
            entries.append(json.loads(path.read_text(encoding="utf-8")))
    with (config.out / "manifest.jsonl").open("w", encoding="utf-8") as f:
        for e in entries:
            f.write(json.dumps(e, ensure_ascii=False) + "\n")
    summary = summarize(entries)
    summary.update(
        built=len(todo),
        resumed=resumed,
        missing=len(tasks) - len(entries),
        skipped=skipped,
        seconds=round(time.time() - start, 1),
        workers=config.workers,
    )
    (config.out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    (config.out / "build_config.json").write_text(json.dumps(asdict(config), default=str, indent=1), encoding="utf-8")
    return summary


def summarize(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Takes, hours, label histograms, QA count, pieces, techniques, sounds and split sizes."""
    return {
        "takes": len(entries),
        "hours": round(sum(e["duration_s"] for e in entries) / 3600, 3),
        "histograms": labels.label_summary(entries),
        "qa": sum(len(e["qa"]) for e in entries),
        "pieces": len({e["piece"] for e in entries}),
        "techniques": dict(Counter(e["technique"] for e in entries)),
        "sounds": dict(Counter(e["sound"] for e in entries)),
        "sources": dict(Counter(e["source"] for e in entries)),
        "splits": dict(Counter(e["split"] for e in entries)),
        "fault_kinds": dict(Counter(f["kind"] for e in entries for f in e["faults"])),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable summary printed at the end of a build."""
    lines = [
        f"takes: {summary['takes']} ({summary.get('built', 0)} built, {summary.get('resumed', 0)} resumed, "
        f"{summary.get('missing', 0)} failed) in {summary.get('seconds', 0):.0f} s",
        f"audio: {summary['hours']:.2f} h; pieces: {summary['pieces']}; QA pairs: {summary['qa']}",
        f"splits: {summary['splits']}; sources: {summary['sources']}",
        f"sounds: {summary['sounds']}",
        f"techniques: {summary['techniques']}",
        "label histograms (value: count):",
    ]
    for key in list(RUBRIC_KEYS) + ["overall", "difficulty"]:
        hist = summary["histograms"].get(key, {})
        values = range(1, 10 if key == "difficulty" else 7)
        lines.append(f"  {key:20s} " + " ".join(f"{v}:{hist.get(v, 0)}" for v in values))
    skipped = summary.get("skipped", [])
    if skipped:
        lines.append(f"skipped ({len(skipped)}):")
        for reason, count in Counter(skipped).most_common(15):
            lines.append(f"  {count}× {reason}")
    return "\n".join(lines)
