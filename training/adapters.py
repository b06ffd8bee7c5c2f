"""`llaqo corpus import`: the paper authors' QA tables (../shared/data/llaqo-qa/*) → the corpus manifest.

Every table has question/answer columns (`Q`, `A`), a split and an audio reference (`audio_path`,
`audio_file` or `filename`) that points into the authors' machines. Audio is resolved against a root the
user gives by trying ever shorter tails of that path. Rows are grouped per audio file into one manifest
entry; rows with no audio, no question or a broken line are counted and reported, never fatal.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from llaqo_model.analysis.report import TECHNIQUES
from llaqo_model.errors import LlaqoError
from llaqo_training.sources import split_of

AUDIO_COLUMNS = ("audio_path", "audio_file", "filename")
AUDIO_SUFFIXES = ("", ".wav", ".flac", ".mp3", ".ogg")
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val"}
SPLITS |= {"test": "test", "eval": "test", "evaluation": "test"}
TECHNIQUE_NAMES = {re.sub(r"[^a-z]", "", t): t for t in TECHNIQUES} | {"octave": "octaves"}


class ImportError_(LlaqoError):
    """The table cannot be imported at all (not a file, no Q/A columns)."""

    code = "bad_table"


@dataclass
class ImportResult:
    """What an import did: entries written and the rows it could not use, with reasons."""

    format: str
    manifest: Path
    rows: int = 0
    entries: int = 0
    qa: int = 0
    missing_audio: dict[str, list[int]] = field(default_factory=dict)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        """Lines printed by the CLI."""
        lines = [
            f"{self.format}: {self.rows} rows → {self.entries} takes, {self.qa} QA pairs → {self.manifest}",
        ]
        if self.missing_audio:
            rows = sum(len(r) for r in self.missing_audio.values())
            lines.append(f"audio missing for {len(self.missing_audio)} files ({rows} rows), e.g.:")
            for path, r in list(self.missing_audio.items())[:10]:
                lines.append(f"  {path} (rows {', '.join(str(x) for x in r[:5])}{'…' if len(r) > 5 else ''})")
        if self.bad_rows:
            lines.append(f"{len(self.bad_rows)} unusable rows, e.g.:")
            lines += [f"  row {i}: {why}" for i, why in self.bad_rows[:10]]
        return "\n".join(lines)


def resolve_audio(reference: str, root: Path, min_parts: int = 1) -> tuple[Path, int] | None:
    """The file under `root` that the authors' path refers to, longest matching tail first (keeping at
    least `min_parts` path parts); returns the file and how many parts matched."""
    parts = [p for p in PurePosixPath(reference.strip().replace("\\", "/")).parts if p not in ("/", "")]
    for start in range(max(len(parts) - min_parts + 1, 0)):
        tail = Path(*parts[start:])
        for suffix in AUDIO_SUFFIXES:
            candidate = root / (str(tail) + suffix)
            if candidate.is_file():
                return candidate, len(parts) - start
    return None


def _label_from(q: str, a: str, labels: dict[str, Any]) -> None:
    """Fill difficulty / technique / composer labels when a row asks for them with a plain answer."""
    ql = q.lower()
    answer = a.strip()
    if "difficulty" in ql and re.fullmatch(r"\d", answer):
        labels["difficulty"] = int(answer)
    elif "technique" in ql:
        name = TECHNIQUE_NAMES.get(re.sub(r"[^a-z]", "", answer.lower()))
        if name:
            labels["technique"] = name


def _qtype(q: str) -> str:
    ql = q.lower()
    if "difficulty" in ql or "difficult" in ql or "challenging" in ql:
        return "difficulty"
    if "technique" in ql:
        return "technique"
    if "composer" in ql or "period" in ql:
        return "composer"
    if "rate" in ql and "scale" in ql:
        return "rating:dataset"
    return "open:dataset"


def read_rows(path: Path) -> tuple[list[dict[str, str]], list[tuple[int, str]]]:
    """CSV rows as dicts (row numbers from 1), plus rows that could not be parsed."""
    bad: list[tuple[int, str]] = []
    rows: list[dict[str, str]] = []
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"Q", "A"} <= {c.strip() for c in reader.fieldnames}:
            raise ImportError_(f"{path.name} has no Q and A columns (columns: {reader.fieldnames})")
        i = 0
        while True:
            i += 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                bad.append((i, f"unreadable line ({exc})"))
                continue
            rows.append({(k or "").strip(): (v or "") for k, v in row.items() if isinstance(v, str) or v is None})
    return rows, bad


def import_table(fmt: str, table: str | Path, audio_root: str | Path, out: str | Path) -> ImportResult:
    """Convert one QA table into DIR/manifest.jsonl (audio paths relative to the manifest when possible)."""
    table, root, out = Path(table), Path(audio_root), Path(out)
    if not table.is_file():
        raise ImportError_(f"no QA table at {table}")
    if not root.is_dir():
        raise ImportError_(f"audio root {root} is not a folder")
    fmt = table.parent.name if fmt == "auto" else fmt
    rows, bad = read_rows(table)
    result = ImportResult(format=fmt, manifest=out / "manifest.jsonl", rows=len(rows), bad_rows=bad)
    takes: dict[str, dict[str, Any]] = {}
    depth = 1
    for i, row in enumerate(rows, start=1):
        ref = next((row[c] for c in AUDIO_COLUMNS if row.get(c, "").strip() not in ("", "N/A")), None)
        q, a = row.get("Q", "").strip(), row.get("A", "").strip()
        if ref is None:
            result.bad_rows.append((i, "no audio reference"))
            continue
        if not q or not a:
            result.bad_rows.append((i, "empty question or answer"))
            continue
        found = resolve_audio(ref, root, depth)
        if found is None:
            result.missing_audio.setdefault(ref.strip(), []).append(i)
            continue
        audio, matched = found
        depth = max(depth, matched)  # once the layout under root is known, never match shorter tails
        key = str(audio.resolve())
        take = takes.get(key)
        if take is None:
            split = SPLITS.get(row.get("split", "").strip().lower()) or split_of(key)
            digest = hashlib.sha1(key.encode()).hexdigest()[:8]
            take = takes[key] = {
                "id": f"{fmt}:{audio.stem}:{digest}",
                "audio": key,
                "score": None,
                "performance_midi": None,
                "split": split,
                "source": f"import:{fmt}",
                "ratings": {},
                "overall": None,
                "difficulty": None,
                "technique": None,
                "composer": _composer(row),
                "faults": [],
                "qa": [],
            }
            if row.get("henle", "").strip().isdigit():
                take["difficulty"] = int(row["henle"])
        _label_from(q, a, take)
        take["qa"].append({"q": q, "a": a, "type": _qtype(q)})
    out.mkdir(parents=True, exist_ok=True)
    with result.manifest.open("w", encoding="utf-8") as f:
        for take in takes.values():
            try:
                take["audio"] = str(Path(take["audio"]).relative_to(out.resolve()))
            except ValueError:
                pass
            f.write(json.dumps(take, ensure_ascii=False) + "\n")
    result.entries = len(takes)
    result.qa = sum(len(t["qa"]) for t in takes.values())
    return result


def _composer(row: dict[str, str]) -> str | None:
    name = row.get("Composer", "").strip()
    return name.title() if name else None
