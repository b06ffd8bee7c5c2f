"""Audio encoders. Each has `prepare` (frozen, no-grad work on raw audio; cacheable) and `forward`.

- `AudioMAEEncoder`: the paper's AudioMAE ViT-B/16 over the fbank, penultimate-block features, frozen.
- `ConvEncoder`: a small trainable CNN over the fbank, for the embedded model.
- `TranskunEncoder`: hidden states of the pretrained Transkun backbone (piano-specialised, offline).

`forward(windows, lengths)` returns features (n_windows, tokens, dim) and a validity mask (n_windows, tokens).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from llaqo_model.errors import ModelError
from llaqo_model.model.frontend import FrontendConfig, audio_windows


@dataclass
class EncoderConfig:
    """Which encoder and its shape. kind: 'audiomae', 'cnn' or 'transkun'."""

    kind: str = "audiomae"
    dim: int = 768
    depth: int = 12
    n_head: int = 12
    patch: int = 16
    mlp_ratio: float = 4.0
    feature_layer: int = -2  # AudioMAE: output of the penultimate block
    channels: tuple[int, ...] = (16, 32, 64, 64)  # cnn: conv stack, each stride 2
    window_s: float = 40.0  # transkun: seconds of audio per window
    checkpoint: str | None = None  # audiomae: local path to an official AudioMAE checkpoint
    frozen: bool = True


def sincos_2d(grid_t: int, grid_f: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding (as AudioMAE), shape (grid_t * grid_f, dim)."""

    def axis(pos: torch.Tensor, d: int) -> torch.Tensor:
        omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float32) / (d / 2))
        out = pos.float().reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([out.sin(), out.cos()], dim=1)

    t, f = torch.meshgrid(torch.arange(grid_t), torch.arange(grid_f), indexing="ij")
    return torch.cat([axis(f, dim // 2), axis(t, dim // 2)], dim=1)


class Attention(nn.Module):
    """timm-style multi-head self-attention (qkv / proj names match AudioMAE checkpoints)."""

    def __init__(self, dim: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.n_head, c // self.n_head).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    """fc1 → GELU → fc2."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm ViT block."""

    def __init__(self, dim: int, n_head: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, n_head)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """16×16 patches of the (time, mel) fbank image."""

    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.unsqueeze(1))  # (n, dim, T/16, F/16)


class FbankEncoder(nn.Module):
    """Shared `prepare` for encoders that read the Kaldi fbank."""

    def __init__(self, frontend: FrontendConfig) -> None:
        super().__init__()
        self.frontend = frontend

    def prepare(self, samples: np.ndarray, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio → fbank windows (n, frames, mels) and valid frame counts (n,)."""
        return audio_windows(samples, sample_rate, self.frontend)


class AudioMAEEncoder(FbankEncoder):
    """AudioMAE ViT-B/16 encoder; returns the penultimate block's patch features (no CLS)."""

    def __init__(self, config: EncoderConfig, frontend: FrontendConfig) -> None:
        super().__init__(frontend)
        self.config = config
        self.out_dim = config.dim
        self.patch_embed = PatchEmbed(config.dim, config.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.dim))
        self.blocks = nn.ModuleList(Block(config.dim, config.n_head, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.dim, eps=1e-6)

    def forward(self, windows: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.config.patch
        x = self.patch_embed(windows.to(self.cls_token.dtype))
        n, c, gt, gf = x.shape
        x = x.flatten(2).transpose(1, 2) + sincos_2d(gt, gf, c).to(x)
        valid_t = torch.arange(gt, device=x.device)[None, :] < ((lengths.to(x.device) + p - 1) // p)[:, None]
        mask = valid_t[:, :, None].expand(n, gt, gf).reshape(n, gt * gf)
        x = torch.cat([self.cls_token.expand(n, -1, -1), x], dim=1)
        attn_mask = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=x.device), mask], dim=1)
        last = len(self.blocks) + self.config.feature_layer + 1
        for block in self.blocks[:last]:
            x = block(x, attn_mask)
        return x[:, 1:], mask

    def load_official(self, path: str | Path) -> None:
        """Load an official AudioMAE checkpoint (pretrained or fine-tuned .pth) from a local path."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"no AudioMAE checkpoint at {path}")
        try:  # never unpickle arbitrary objects from a path a config names: tensors and plain containers only
            blob = torch.load(str(path), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ModelError(
                f"{path.name} holds objects other than tensors, which are not loaded (unpickling them could "
                "run code); save its state_dict alone with torch.save"
            ) from exc
        state = blob.get("model", blob) if isinstance(blob, dict) else blob
        own = self.state_dict()
        picked = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(picked))
        if missing:
            raise ModelError(f"{path.name} is not an AudioMAE ViT-B/16 checkpoint (missing {missing[0]} …)")
        bad = [k for k, v in picked.items() if v.shape != own[k].shape]
        if bad:
            raise ModelError(f"{path.name}: shape mismatch for {bad[0]} ({tuple(picked[bad[0]].shape)})")
        self.load_state_dict(picked)


class ConvEncoder(FbankEncoder):
    """Small trainable CNN over the fbank: stride-2 convs, then one linear over (channels × mel bands)."""

    def __init__(self, config: EncoderConfig, frontend: FrontendConfig) -> None:
        super().__init__(frontend)
        self.config = config
        self.out_dim = config.dim
        layers: list[nn.Module] = []
        c_in = 1
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, kernel_size=3, stride=2, padding=1), nn.GELU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.stride = 2 ** len(config.channels)
        n_mels = math.ceil(frontend.n_mels / self.stride)
        self.proj = nn.Linear(c_in * n_mels, config.dim)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, windows: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.convs(windows.to(self.proj.weight.dtype).unsqueeze(1))  # (n, c, T', F')
        x = self.norm(self.proj(x.permute(0, 2, 1, 3).flatten(2)))
        steps = (lengths.to(x.device) + self.stride - 1) // self.stride
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < steps[:, None]
        return x, mask


class TranskunEncoder(nn.Module):
    """Pretrained Transkun backbone hidden states (frozen, computed in `prepare`) + a trainable projection.

    The backbone's per-pitch context (90 pitch/pedal rows × 256) is pooled over pitch (mean and max)
    and over pairs of 23 ms frames, giving a 512-d token every ≈46 ms.
    """

    feature_dim = 512

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.out_dim = config.dim
        self.proj = nn.Linear(self.feature_dim, config.dim)
        self.norm = nn.LayerNorm(config.dim)
        self._transkun: list[nn.Module] = []  # a plain list keeps Transkun out of this module's state_dict

    def _backbone(self) -> nn.Module:
        if not self._transkun:
            from llaqo_model.analysis.transcribe import Transcriber

            self._transkun.append(Transcriber().model)
        return self._transkun[0]

    @torch.no_grad()
    def prepare(self, samples: np.ndarray, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Audio → pooled Transkun features (n, tokens, 512) and valid token counts (n,)."""
        from transkun.Util import makeFrame

        from llaqo_model.io import resample

        model = self._backbone()
        audio = torch.from_numpy(np.ascontiguousarray(resample(samples, sample_rate, int(model.fs))))
        size = int(self.config.window_s * model.fs)
        feats, counts = [], []
        for start in range(0, max(1, audio.shape[0]), size):
            chunk = audio[start : start + size].unsqueeze(0)
            frames = makeFrame(chunk, model.hopSize, model.windowSize).unsqueeze(0)
            frames = (frames - frames.mean()) / (frames.std() + 1e-8)
            spec = model.framewiseFeatureExtractor(frames).contiguous()
            ctx = model.backbone(spec.view(1, *spec.shape[-3:]), outputIndices=torch.tensor(model.targetMIDIPitch))
            ctx = ctx[0]  # (pitches, frames, 256)
            pooled = torch.cat([ctx.mean(0), ctx.amax(0)], dim=-1)  # (frames, 512)
            pooled = F.avg_pool1d(pooled.T.unsqueeze(0), 2, 2, ceil_mode=True)[0].T
            feats.append(pooled)
            counts.append(pooled.shape[0])
        width = max(counts)
        out = torch.zeros(len(feats), width, self.feature_dim)
        for i, f in enumerate(feats):
            out[i, : f.shape[0]] = f
        return out, torch.tensor(counts, dtype=torch.long)

    def forward(self, windows: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.norm(self.proj(windows.to(self.proj.weight.dtype)))
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths.to(x.device)[:, None]
        return x, mask


def build_encoder(config: EncoderConfig, frontend: FrontendConfig) -> nn.Module:
    """The encoder named by `config.kind` (AudioMAE weights are loaded when `config.checkpoint` is set)."""
    if config.kind == "audiomae":
        encoder: nn.Module = AudioMAEEncoder(config, frontend)
        if config.checkpoint:
            encoder.load_official(config.checkpoint)
    elif config.kind == "cnn":
        encoder = ConvEncoder(config, frontend)
    elif config.kind == "transkun":
        encoder = TranskunEncoder(config)
    else:
        raise ModelError(f"unknown encoder kind {config.kind!r} (audiomae, cnn or transkun)")
    if config.frozen:
        encoder.requires_grad_(False)
    return encoder
