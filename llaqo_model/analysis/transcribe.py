"""Piano transcription with the pretrained Transkun model shipped inside the `transkun` package."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from importlib import resources

import moduleconf
import numpy as np
import torch

from llaqo_model.analysis.report import Note, PedalInterval

SUSTAIN_PEDAL = -64


@dataclass
class TranscriberConfig:
    """Segmenting and device settings; the defaults trade no accuracy for less overlap than Transkun's 16/8 s."""

    segment_s: float = 16.0
    hop_s: float = 12.0
    device: str = "cpu"
    threads: int | None = None
    precision: str = "auto"  # "fp32", "bf16", or "auto": bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32


def pick_device(device: str = "auto") -> str:
    """'auto' → 'cuda' when available, else 'cpu'."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_precision(precision: str, device: str) -> str:
    """'auto' → 'bf16' on a CPU that computes bf16 natively (half the time, same notes), else 'fp32'."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


class Transcriber:
    """Loads Transkun once; `transcribe(samples)` returns notes and sustain-pedal intervals."""

    def __init__(self, config: TranscriberConfig | None = None) -> None:
        self.config = config or TranscriberConfig()
        self.device = pick_device(self.config.device)
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        pretrained = resources.files("transkun") / "pretrained"
        conf_manager = moduleconf.parseFromFile(str(pretrained / "2.0.conf"))
        model_cls = conf_manager["Model"].module.TransKun
        self.model = model_cls(conf=conf_manager["Model"].config)
        checkpoint = torch.load(str(pretrained / "2.0.pt"), map_location="cpu", weights_only=False)
        state = checkpoint.get("best_state_dict", checkpoint.get("state_dict"))
        self.model.load_state_dict(state, strict=False)
        self.model.eval().to(self.device)
        self.sample_rate: int = int(self.model.fs)
        self.precision = resolve_precision(self.config.precision, self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the model runs in: bf16 autocast on CPU when `precision` is bf16, else nothing."""
        if self.precision == "bf16" and self.device == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def transcribe(self, samples: np.ndarray) -> tuple[list[Note], list[PedalInterval]]:
        """Transcribe mono float32 audio at `self.sample_rate`."""
        x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).reshape(-1, 1).to(self.device)
        with warnings.catch_warnings(), self.autocast():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            events = self.model.transcribe(
                x, stepInSecond=self.config.hop_s, segmentSizeInSecond=self.config.segment_s
            )
        return split_events(events)


def split_events(events: list) -> tuple[list[Note], list[PedalInterval]]:
    """Turn Transkun events into notes (sorted by onset) and sustain-pedal intervals."""
    notes: list[Note] = []
    pedal: list[PedalInterval] = []
    for e in events:
        if e.pitch == SUSTAIN_PEDAL:
            pedal.append(PedalInterval(onset=round(float(e.start), 4), offset=round(float(e.end), 4)))
        elif e.pitch > 0:
            notes.append(
                Note(
                    onset=round(float(e.start), 4),
                    offset=round(float(e.end), 4),
                    pitch=int(e.pitch),
                    velocity=int(np.clip(round(float(e.velocity)), 1, 127)),
                )
            )
    notes.sort(key=lambda n: (n.onset, n.pitch))
    pedal.sort(key=lambda p: p.onset)
    return notes, pedal
