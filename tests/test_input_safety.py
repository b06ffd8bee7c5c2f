"""Hostile files are refused quickly with bounded memory: score bombs, audio bombs, code-running pickles."""

from __future__ import annotations

import io
import time
import tracemalloc
import zipfile
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from llaqo_model.analysis.score import MAX_SCORE_NOTES, load_score, score_from_bytes
from llaqo_model.errors import AudioError, ModelError, ScoreError
from llaqo_model.io import load_audio
from llaqo_model.model.encoder import EncoderConfig, build_encoder
from llaqo_model.model.frontend import FrontendConfig

QUICK_S = 10.0  # CPU seconds of this process (other jobs on the machine don't count); unguarded: minutes
SMALL_MEMORY = 64 * 2**20  # Python allocations while refusing a bomb; the bombs would need gigabytes


def refused_quickly(load, error: type[Exception]) -> str:
    """Run `load`, expect `error`; assert it took little CPU time and memory; return the message."""
    tracemalloc.start()
    start = time.process_time()
    with pytest.raises(error) as caught:
        load()
    seconds = time.process_time() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < QUICK_S, seconds
    assert peak < SMALL_MEMORY, peak
    return str(caught.value)


def mxl(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


CONTAINER = (b'<?xml version="1.0"?><container><rootfiles><rootfile full-path="score.xml"/></rootfiles>'
             b"</container>")


def test_an_mxl_member_that_inflates_to_gigabytes_is_refused_before_inflating():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("META-INF/container.xml", CONTAINER)
        with z.open("score.xml", "w", force_zip64=True) as member:
            block = b" " * 2**20
            for _ in range(1024):  # 1 GiB of blanks, about 1 MB compressed
                member.write(block)
    data = buf.getvalue()
    assert len(data) < 4 * 2**20
    message = refused_quickly(lambda: score_from_bytes(data, ".mxl", "bomb.mxl"), ScoreError)
    assert "inflates" in message


@pytest.mark.parametrize("where", ["late", "utf16", "container"])
def test_xml_entities_are_refused_anywhere_in_any_encoding(where, chorale_path):
    """Entities past the first 64 KiB, in UTF-16, or in the .mxl's container.xml: all refused."""
    laughs = '<!DOCTYPE score-partwise [<!ENTITY a "ha"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    text = chorale_path.read_text(encoding="utf-8")
    body = text[text.index("<score-partwise"):]
    if where == "late":
        data = ('<?xml version="1.0" encoding="UTF-8"?>' + "<!--" + "x" * 70_000 + "-->" + laughs + body).encode()
        suffix = ".musicxml"
    elif where == "utf16":
        data = ('<?xml version="1.0" encoding="UTF-16"?>' + laughs + body).encode("utf-16")
        suffix = ".musicxml"
    else:
        container = (b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                     b'<container><rootfiles><rootfile full-path="&x;"/></rootfiles></container>')
        data, suffix = mxl({"META-INF/container.xml": container, "score.xml": body.encode()}), ".mxl"
    message = refused_quickly(lambda: score_from_bytes(data, suffix, f"bomb{suffix}"), ScoreError)
    assert "entities" in message


def test_a_safe_mxl_still_loads(chorale_path):
    data = mxl({"META-INF/container.xml": CONTAINER, "score.xml": chorale_path.read_bytes()})
    assert len(score_from_bytes(data, ".mxl", "chorale.mxl").note_array) == len(load_score(chorale_path).note_array)


@pytest.mark.parametrize(("notes", "why"), [(300_000, "too large"), (MAX_SCORE_NOTES + 5_000, "at most")])
def test_a_midi_with_hundreds_of_thousands_of_notes_on_one_key_is_refused(notes, why, tmp_path: Path):
    track = mido.MidiTrack()
    for _ in range(notes):
        track.append(mido.Message("note_on", note=60, velocity=64, time=0))
        track.append(mido.Message("note_off", note=60, velocity=0, time=1))
    path = tmp_path / "bomb.mid"
    mido.MidiFile(tracks=[track]).save(path)
    assert why in refused_quickly(lambda: load_score(path), ScoreError)


def test_many_notes_on_one_key_below_the_cap_load_in_linear_time(tmp_path: Path):
    """The same-key bookkeeping was quadratic: 20,000 repeated notes took minutes."""
    track = mido.MidiTrack()
    for _ in range(20_000):
        track.append(mido.Message("note_on", note=60, velocity=64, time=0))
        track.append(mido.Message("note_off", note=60, velocity=0, time=120))
    path = tmp_path / "repeated.mid"
    mido.MidiFile(tracks=[track]).save(path)
    start = time.perf_counter()
    score = load_score(path)
    assert len(score.note_array) == 20_000
    assert time.perf_counter() - start < 60


def test_a_flac_with_many_channels_at_a_huge_rate_is_refused_before_decoding(tmp_path: Path):
    path = tmp_path / "bomb.flac"
    with sf.SoundFile(path, "w", samplerate=655_350, channels=8, format="FLAC") as f:
        silence = np.zeros((655_350, 8), dtype=np.float32)
        for _ in range(60):  # one minute: 315 M samples (1.2 GB as float32), a few KB as FLAC
            f.write(silence)
    assert path.stat().st_size < 2**20
    message = refused_quickly(lambda: load_audio(path, 44_100), AudioError)
    assert "655350 Hz" in message
    rate_ok = tmp_path / "channels.flac"
    with sf.SoundFile(rate_ok, "w", samplerate=192_000, channels=8, format="FLAC") as f:
        f.write(np.zeros((192_000, 8), dtype=np.float32))
    assert "8 channels" in refused_quickly(lambda: load_audio(rate_ok, 44_100), AudioError)


def test_decoding_memory_follows_the_mono_result(tmp_path: Path):
    """A 2-minute stereo 96 kHz take is decoded in blocks: peak memory ≈ the 44.1 kHz mono result."""
    rate, seconds = 96_000, 120
    t = np.arange(rate * seconds, dtype=np.float32) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "long.flac"
    sf.write(path, np.stack([tone, tone], axis=1), rate)
    del t, tone
    tracemalloc.start()
    samples, got = load_audio(path, 44_100)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert got == 44_100 and abs(len(samples) - 44_100 * seconds) < 100
    # reading the whole file first held ~7.5× the result (interleaved float32, its mono mix, the resampled copy)
    assert peak < 4 * samples.nbytes


class _RunsCode:
    """A pickle that would call `print` when loaded (a stand-in for anything worse)."""

    def __reduce__(self):
        return (print, ("pickle ran code",))


def test_a_checkpoint_whose_pickle_would_run_code_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "audiomae.pth"
    torch.save({"model": {}, "args": _RunsCode()}, path)
    config = EncoderConfig(kind="audiomae", dim=64, depth=1, n_head=2, checkpoint=str(path))
    with pytest.raises(ModelError, match="not loaded"):
        build_encoder(config, FrontendConfig())
    assert "pickle ran code" not in capsys.readouterr().out
