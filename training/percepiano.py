"""`llaqo corpus import percepiano`: render PercePiano's real performances and write manifest rows.

Every segment is rendered with two piano sounds, each through its own drawn recording chain. The split is by
`passage` (every player's take of the same music lands in the same split). Validation and test segments are
rendered first with a sound no training segment uses (`HELD_OUT_SOUND`), so the held-out figures are on a
sound the model never trained on. Training segments are rendered a third time with the velocity-layered sampled
piano where its samples are installed (`scripts/get_sounds.sh`): the one training sound whose dynamics the
transcriber hears, so transcribed reports of training takes carry touch. A finished rendering is kept, so
re-running the command resumes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from llaqo_model.io import read_performance_midi
from llaqo_model.model.descriptors import DESCRIPTOR_KEYS, answer_text, descriptor_question
from llaqo_training.augment import apply_chain, draw_chain
from llaqo_training.corpus import CorpusError
from llaqo_training.render import piano_sounds, render_notes, sampled_piano
from llaqo_training.sources import split_of

HELD_OUT_SOUND = "musescore_grand"  # distinct samples from every training sound; val/test only
SOUNDS_PER_SEGMENT = 2
VAL_SHARE = 0.15  # of passages (78 in the shared copy: about 12 validation, 12 test passages)
TEST_SHARE = 0.15
SAMPLE_RATE = 22050  # as `corpus build`; the transcriber resamples


@dataclass
class ImportSummary:
    """What the import wrote, and what it skipped and why."""

    rows: int = 0
    rendered: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def text(self) -> str:
        """One readable paragraph."""
        lines = [f"{self.rows} takes ({self.rendered} rendered now); splits {self.splits}"]
        lines += [f"skipped: {s}" for s in self.skipped[:10]]
        return "\n".join(lines)


def passage_split(passage: str) -> str:
    """train / val / test, by passage alone."""
    return split_of(passage, val=VAL_SHARE, test=TEST_SHARE)


def _seed(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def sounds_for(
    segment: str, split: str, sounds: list[tuple[str, Path, int]], sampled: tuple[str, Path, int] | None = None
) -> list[tuple[str, Path, int]]:
    """The sounds one segment is rendered with: two training sounds, or the held-out sound first (val/test).
    A training segment is also rendered with the velocity-layered `sampled` piano when it is installed."""
    if split == "train" and sampled is not None:
        return [*sounds_for(segment, split, sounds), sampled]
    train = [s for s in sounds if s[0] != HELD_OUT_SOUND]
    held = [s for s in sounds if s[0] == HELD_OUT_SOUND]
    start = _seed(segment) % len(train)
    rotated = train[start:] + train[:start]
    if split != "train" and held:
        return [held[0], *rotated[: SOUNDS_PER_SEGMENT - 1]]
    return rotated[:SOUNDS_PER_SEGMENT]


def render_order(
    rows: list[dict[str, Any]], sounds: list[tuple[str, Path, int]], sampled: tuple[str, Path, int] | None = None
) -> list[tuple[dict[str, Any], tuple[str, Path, int]]]:
    """(segment, sound) pairs: every segment's first rendering before any second one, passages interleaved,
    so a partly finished import already covers every passage."""
    rank: dict[str, int] = {}
    keyed = []
    for row in rows:
        nth = rank[row["passage"]] = rank.get(row["passage"], -1) + 1
        for i, sound in enumerate(sounds_for(row["id"], passage_split(row["passage"]), sounds, sampled)):
            keyed.append(((i, nth, _seed(row["passage"])), row, sound))
    keyed.sort(key=lambda k: k[0])
    return [(row, sound) for _, row, sound in keyed]


def descriptor_qa(descriptors: dict[str, float]) -> list[dict[str, str]]:
    """Paper-style question/answer pairs, one per label the segment has."""
    return [
        {"q": descriptor_question(k), "a": answer_text(v), "type": f"descriptor:{k}"} for k, v in descriptors.items()
    ]


def read_labels(root: Path) -> list[dict[str, Any]]:
    """labels.jsonl rows; CorpusError when the folder is not a PercePiano copy."""
    path = root / "labels.jsonl"
    if not path.is_file():
        raise CorpusError(f"{root} is not a PercePiano folder (no labels.jsonl)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _render(midi: Path, out: Path, sound: tuple[str, Path, int], rng: np.random.Generator) -> dict[str, Any]:
    notes, pedal = read_performance_midi(midi)
    if not notes:
        raise ValueError("the performance has no notes")
    start = min(n.onset for n in notes)  # recordings start with the first note, as a take would
    audio = render_notes(notes, pedal, SAMPLE_RATE, sound[1], sound[2])
    audio = audio[max(0, int((start - 0.5) * SAMPLE_RATE)) :]
    chain = draw_chain(rng)
    sf.write(str(out), apply_chain(audio, SAMPLE_RATE, chain, rng), SAMPLE_RATE)
    return chain


def import_percepiano(root: str | Path, out: str | Path, limit: int | None = None) -> ImportSummary:
    """Render every segment (first `limit` only when given) and write `out/manifest.jsonl`."""
    root, out = Path(root), Path(out)
    rows = read_labels(root)[:limit]
    skipped: list[str] = []
    sounds = piano_sounds(skipped)
    if len(sounds) < SOUNDS_PER_SEGMENT:
        raise CorpusError(f"need at least {SOUNDS_PER_SEGMENT} piano sounds, found {len(sounds)}")
    sampled = sampled_piano(skipped)
    summary = ImportSummary(skipped=skipped)
    entries = []
    for row, sound in render_order(rows, sounds, sampled):
        split = passage_split(row["passage"])
        midi, score = root / row["performance_midi"], root / row["score"]
        descriptors = {k: float(row["labels"][k]) for k in DESCRIPTOR_KEYS if row.get("labels", {}).get(k) is not None}
        take_id = f"{row['id']}__{sound[0]}"
        take_dir = out / "takes" / take_id
        audio, meta = take_dir / "take.flac", take_dir / "take.json"
        if meta.is_file():
            entries.append(json.loads(meta.read_text(encoding="utf-8")))
            continue
        take_dir.mkdir(parents=True, exist_ok=True)
        try:
            chain = _render(midi, audio, sound, np.random.default_rng(_seed(take_id)))
        except (OSError, ValueError, RuntimeError) as exc:
            summary.skipped.append(f"{take_id}: {exc}")
            continue
        entry = {
            "id": take_id,
            "dataset": "percepiano",
            "audio": str(audio.relative_to(out)),
            "score": str(score.resolve()),
            "performance_midi": str(midi.resolve()),
            "split": split,
            "segment": row["id"],
            "passage": row["passage"],
            "player": row.get("player"),
            "descriptors": descriptors,
            "descriptor_std": row.get("label_std", {}),
            "qa": descriptor_qa(descriptors),
            "sound": sound[0],
            "recording": chain,
            "sample_rate": SAMPLE_RATE,
        }
        meta.write_text(json.dumps(entry), encoding="utf-8")
        entries.append(entry)
        summary.rendered += 1
    entries.sort(key=lambda e: e["id"])
    (out / "manifest.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    summary.rows = len(entries)
    for e in entries:
        summary.splits[e["split"]] = summary.splits.get(e["split"], 0) + 1
    return summary
