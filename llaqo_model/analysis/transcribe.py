"""Piano transcription with the pretrained Transkun model shipped inside the `transkun` package."""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from importlib import resources

import moduleconf
import numpy as np
import torch
import torch.nn.functional as F
from transkun.LayersTransformer import MultiHeadAttentionKernel
from transkun.Util import MelSpectrum

from llaqo_model.analysis.report import Note, PedalInterval
from llaqo_model.io import pick_device

SUSTAIN_PEDAL = -64


@dataclass
class TranscriberConfig:
    """Segmenting and device settings; the defaults trade no accuracy for less overlap than Transkun's 16/8 s."""

    segment_s: float = 16.0
    hop_s: float = 12.0
    device: str = "cpu"
    threads: int | None = None
    precision: str = "auto"  # "fp32", "bf16", or "auto": bf16 on CPUs with native bf16 (AVX512-BF16/AMX), else fp32


def resolve_precision(precision: str, device: str) -> str:
    """'auto' → 'bf16' on a CPU that computes bf16 natively (half the time, same notes), else 'fp32'."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, not {precision!r}")
    if precision != "auto":
        return precision
    return "bf16" if device == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


class FlatAttention(MultiHeadAttentionKernel):
    """Transkun's attention with the pitch and time axes folded into the batch before the attention
    product: PyTorch's fused CPU attention kernel takes 4-d inputs only, and Transkun's 5-d ones fall
    back to the unfused path (a quarter slower). Same weights, same arithmetic."""

    def forward(self, query: torch.Tensor, key: torch.Tensor | None = None, value: torch.Tensor | None = None):
        key = query if key is None else key
        value = key if value is None else value

        def heads(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
            x = (x @ weight).unflatten(-1, (self.num_heads, self.head_dim)).transpose(-2, -3)
            return x.reshape(-1, *x.shape[-3:])

        q, k, v = heads(query, self.q_proj_weight), heads(key, self.k_proj_weight), heads(value, self.v_proj_weight)
        fetched = F.scaled_dot_product_attention(q, k, v)
        fetched = fetched.reshape(*query.shape[:-2], *fetched.shape[-3:])
        return self.out_proj(fetched.transpose(-2, -3).flatten(-2, -1))


class ContiguousMel(MelSpectrum):
    """Transkun's mel front end with the spectrogram made contiguous before the filterbank product,
    which is then one matrix product instead of the filterbank copied for every frame. Same output."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        power = self.spectrogramExtractor(frames).abs().pow(2)
        if self.toMono and power.dim() >= 4:
            power = power.mean(dim=-4, keepdim=True)
        mel = (power.transpose(-1, -2).contiguous() @ self.freq2mels).transpose(-1, -2)
        if self.log:
            mel = ((mel + self.eps).log() - math.log(self.eps)) / (-math.log(self.eps))
        return mel


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(), *args[1:])


def _use_fast_cpu_paths(model: torch.nn.Module) -> None:
    """Same model, faster kernels: fused attention (`FlatAttention`), one filterbank product
    (`ContiguousMel`), and linear layers fed contiguous inputs — Transkun alternates time and pitch
    axes by transposing, and a transposed input makes a linear layer copy its weight once per time
    step instead of running one matrix product."""
    for module in model.modules():
        if type(module) is MultiHeadAttentionKernel and module.kernel is None:
            module.__class__ = FlatAttention
        elif type(module) is MelSpectrum:
            module.__class__ = ContiguousMel
        elif isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(_contiguous_input)


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
        _use_fast_cpu_paths(self.model)
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
