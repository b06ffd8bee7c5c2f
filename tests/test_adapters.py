"""`llaqo corpus import` on the paper authors' real QA tables, with audio stand-ins rendered here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf

from llaqo_cli import main
from llaqo_model.analysis.report import TECHNIQUES, Note
from llaqo_training.adapters import import_table, read_rows, resolve_audio
from llaqo_training.render import render_notes
from llaqo_training.sources import shared_root

QA_ROOT = shared_root() / "data" / "llaqo-qa"
TABLES = sorted(QA_ROOT.glob("*/*.csv")) if QA_ROOT.is_dir() else []
AUDIO_COLUMNS = ("audio_path", "audio_file", "filename")


def _stand_in(path: Path) -> None:
    """A short rendered piano phrase standing in for the dataset's recording."""
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = [Note(0.1 + 0.25 * i, 0.3 + 0.25 * i, 60 + i, 70) for i in range(4)]
    sf.write(str(path), render_notes(notes, sample_rate=16000, tail_s=0.2), 16000)


def _references(table: Path) -> list[str]:
    rows, _ = read_rows(table)
    refs = []
    for row in rows:
        ref = next((row[c] for c in AUDIO_COLUMNS if row.get(c, "").strip() not in ("", "N/A")), None)
        if ref and ref not in refs:
            refs.append(ref)
    return refs


@pytest.mark.skipif(not TABLES, reason="../shared/data/llaqo-qa is not available")
@pytest.mark.parametrize("table", TABLES, ids=lambda p: p.parent.name)
def test_real_table_imports_with_partial_audio(table: Path, tmp_path: Path) -> None:
    refs = _references(table)
    assert refs, f"{table} has no audio references"
    root = tmp_path / "audio"
    present = refs[:2]
    for ref in present:
        parts = Path(ref.strip().lstrip("/")).parts
        dataset = table.parent.name
        kept = parts[parts.index(dataset) + 1 :] if dataset in parts else parts[-1:]
        stand_in = root / Path(*kept)
        if not stand_in.suffix:
            stand_in = stand_in.with_suffix(".wav")
        _stand_in(stand_in)
    result = import_table("auto", table, root, tmp_path / "out")
    lines = (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()
    entries = [json.loads(x) for x in lines]
    assert result.entries == len(entries) == len(present)
    assert len(result.missing_audio) == len(refs) - len(present)
    for e in entries:
        assert Path(e["audio"]).is_file()
        assert e["split"] in ("train", "val", "test")
        assert e["qa"] and all(q["q"] and q["a"] for q in e["qa"])
        assert e["source"] == f"import:{table.parent.name}"
        if e["technique"] is not None:
            assert e["technique"] in TECHNIQUES
    assert table.parent.name in result.summary()


def test_bad_rows_are_reported_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "audio"
    _stand_in(root / "set" / "a.wav")
    table = tmp_path / "t.csv"
    table.write_text(
        ",audio_path,split,Q,A\n"
        '0,/far/away/set/a.wav,train,"Which difficulty level is the piece, in a scale of 9?",4\n'
        "1,/far/away/set/a.wav,train,What's the most salient technique used?,Repeatednotes\n"
        "2,,train,Orphan question?,yes\n"
        "3,/far/away/set/b.wav,test,Missing audio?,yes\n"
        "4,/far/away/set/a.wav,train,,no question\n"
    )
    result = import_table("mine", table, root, tmp_path / "out")
    assert result.entries == 1
    entry = json.loads((tmp_path / "out" / "manifest.jsonl").read_text())
    assert entry["difficulty"] == 4 and entry["technique"] == "repeated_notes"
    assert len(entry["qa"]) == 2
    assert list(result.missing_audio) == ["/far/away/set/b.wav"]
    assert {i for i, _ in result.bad_rows} == {3, 5}


def test_resolve_audio_tries_shorter_tails(tmp_path: Path) -> None:
    _stand_in(tmp_path / "Burgmuller" / "b-01.wav")
    found = resolve_audio("/data/lab/datasets/LLaQo/Burgmuller/b-01.wav", tmp_path)
    assert found == (tmp_path / "Burgmuller" / "b-01.wav", 2)
    assert resolve_audio("/data/x/none.wav", tmp_path) is None
    assert resolve_audio("/data/Other/b-01.wav", tmp_path, min_parts=2) is None


def test_cli_import_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "no_qa.csv"
    bad.write_text("a,b\n1,2\n")
    code = main(["corpus", "import", "x", str(bad), "--audio-root", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Q and A columns" in err[0]
