"""Shared input/output helpers of the core: audio files, performance MIDI files, device choice."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pretty_midi
import soundfile as sf
import soxr
import torch

from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_model.errors import AudioError

DEFAULT_MAX_DURATION_S = 20 * 60.0  # a long lesson piece; longer files are usually whole sessions
SUSTAIN_CC = 64  # MIDI controller number of the sustain (damper) pedal
PEDAL_DOWN = 64  # controller values from this up mean the pedal is down (the MIDI convention)
MAX_FILE_SAMPLE_RATE = 384_000  # the highest rate audio interfaces record at
MAX_VALUES_PER_SECOND = 8 * 48_000  # 8 microphones at 48 kHz (or stereo at 192 kHz): more is a decoding bomb
DECODE_BLOCK_FRAMES = 65_536  # frames decoded at once: memory follows the mono result, not the file


def check_samples(
    samples: np.ndarray, sample_rate: int, max_duration_s: float = DEFAULT_MAX_DURATION_S
) -> None:
    """Raise `AudioError` for empty, silent, non-finite or over-long audio."""
    if sample_rate <= 0:
        raise AudioError(f"invalid sample rate {sample_rate}")
    if samples.size == 0:
        raise AudioError("the audio is empty")
    if not np.all(np.isfinite(samples)):
        raise AudioError("the audio contains NaN or infinite samples")
    duration = samples.shape[0] / sample_rate
    if duration > max_duration_s:
        raise AudioError(
            f"the take is {duration / 60:.1f} min long; the limit is {max_duration_s / 60:.1f} min"
        )
    if duration < 0.5:
        raise AudioError(f"the audio is only {duration:.2f} s long")
    if float(np.max(np.abs(samples))) < 1e-4:
        raise AudioError("the audio is silent")


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: (frames,) or (frames, channels) in, (frames,) float32 out."""
    samples = np.asarray(samples, dtype=np.float32)
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def resample(samples: np.ndarray, sample_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 audio with soxr (no-op when rates match)."""
    if sample_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, sample_rate, target_rate).astype(np.float32, copy=False)


def load_audio(
    source: str | Path | BinaryIO,
    target_rate: int | None = None,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    name: str | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file (a path or an open binary file) as mono float32, optionally resampled.

    The header is checked before anything is decoded (rate, channels × rate, duration), and the file is
    decoded block by block, mixed to mono and resampled as it goes, so memory follows the mono result
    at the target rate, never channels × rate × duration. The result is checked with `check_samples`.
    """
    name = name or (Path(source).name if isinstance(source, (str, Path)) else "the audio")
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise AudioError(f"no audio file at {source}")
    try:
        with sf.SoundFile(source) as f:
            sample_rate, channels, frames = f.samplerate, f.channels, f.frames
            check_header(name, sample_rate, channels, frames, max_duration_s)
            rate = target_rate or sample_rate
            stream = soxr.ResampleStream(sample_rate, rate, 1, dtype="float32") if rate != sample_rate else None
            parts = []
            for block in f.blocks(blocksize=DECODE_BLOCK_FRAMES, dtype="float32", always_2d=True):
                mono = block.mean(axis=1, dtype=np.float32)
                parts.append(stream.resample_chunk(mono) if stream is not None else mono)
            if stream is not None:
                parts.append(stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True))
    except AudioError:
        raise
    except Exception as exc:
        # libsndfile's own reason ("Format not recognised."), not its "Error opening <object at 0x…>" wrapper
        reason = getattr(exc, "error_string", None) or str(exc).splitlines()[0]
        raise AudioError(f"cannot read {name} as audio ({reason.strip()[:120]})") from exc
    mono = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, dtype=np.float32)
    check_samples(mono, rate, max_duration_s)
    return mono, rate


def check_header(name: str, sample_rate: int, channels: int, frames: int, max_duration_s: float) -> None:
    """Refuse, before decoding, audio whose rate, channel count or length would make decoding a bomb."""
    if not 0 < sample_rate <= MAX_FILE_SAMPLE_RATE:
        raise AudioError(f"{name}: sample rate {sample_rate} Hz is outside 1..{MAX_FILE_SAMPLE_RATE} Hz")
    if channels * sample_rate > MAX_VALUES_PER_SECOND:
        raise AudioError(
            f"{name}: {channels} channels at {sample_rate} Hz is more than this program decodes "
            f"({MAX_VALUES_PER_SECOND} samples per second of audio)"
        )
    if frames / sample_rate > max_duration_s:
        raise AudioError(
            f"the take is {frames / sample_rate / 60:.1f} min long; the limit is {max_duration_s / 60:.1f} min"
        )


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with `threads` intra-op threads (None: leave as is), restoring the caller's setting
    after. Small models and small fits run several times faster on one thread than on a busy pool."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def pick_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when available, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def read_performance_midi(path: str | Path) -> tuple[list[Note], list[PedalInterval]]:
    """Notes (sorted by onset, then pitch) and sustain-pedal presses of a performance MIDI file."""
    pm = pretty_midi.PrettyMIDI(str(path))
    notes = sorted(
        (Note(n.start, n.end, n.pitch, n.velocity) for inst in pm.instruments for n in inst.notes),
        key=lambda n: (n.onset, n.pitch),
    )
    pedal: list[PedalInterval] = []
    changes = (c for inst in pm.instruments for c in inst.control_changes if c.number == SUSTAIN_CC)
    down = None
    for cc in sorted(changes, key=lambda c: c.time):
        if cc.value >= PEDAL_DOWN and down is None:
            down = cc.time
        elif cc.value < PEDAL_DOWN and down is not None:
            pedal.append(PedalInterval(down, cc.time))
            down = None
    return notes, pedal


def write_performance_midi(notes: list[Note], pedal: list[PedalInterval], path: str | Path) -> None:
    """Write performed notes and sustain-pedal presses as a one-track piano MIDI file."""
    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0, name="piano")
    inst.notes = [pretty_midi.Note(n.velocity, n.pitch, max(n.onset, 0.0), n.offset) for n in notes]
    for p in pedal:
        inst.control_changes.append(pretty_midi.ControlChange(SUSTAIN_CC, 127, p.onset))
        inst.control_changes.append(pretty_midi.ControlChange(SUSTAIN_CC, 0, p.offset))
    pm.instruments.append(inst)
    pm.write(str(path))
