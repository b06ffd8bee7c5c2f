"""Q-former aligner: learnable queries read the question (self-attention) and the audio (cross-attention).

The audio of every window is seen at once, tagged with a learnable window-position embedding, so a take
longer than one 40 s window is assessed whole. Outputs are projected into the language model's space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class QFormerConfig:
    """Aligner shape: blocks, queries, width; audio_dim / lm_dim are set from the encoder and the LM."""

    n_layer: int = 4
    n_query: int = 32
    dim: int = 768
    n_head: int = 12
    mlp_ratio: float = 4.0
    max_windows: int = 32
    max_text: int = 128
    audio_dim: int = 768
    lm_dim: int = 4096
    out_norm: str = "layer"  # or "batch": standardise each feature over takes (see `TokenBatchNorm`)


class MultiHeadAttention(nn.Module):
    """Attention from `x` to `context` with a key-validity mask (True = attend)."""

    def __init__(self, dim: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h = self.n_head
        q = self.q(x).view(b, n, h, c // h).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, h, c // h).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask[:, None, None, :])
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class QFormerBlock(nn.Module):
    """Self-attention over [queries; question], queries cross-attend to audio, then an MLP."""

    def __init__(self, config: QFormerConfig) -> None:
        super().__init__()
        d = config.dim
        self.ln_self = nn.LayerNorm(d)
        self.self_attn = MultiHeadAttention(d, config.n_head)
        self.ln_cross = nn.LayerNorm(d)
        self.cross_attn = MultiHeadAttention(d, config.n_head)
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            nn.Linear(d, int(d * config.mlp_ratio)), nn.GELU(), nn.Linear(int(d * config.mlp_ratio), d)
        )

    def forward(
        self,
        x: torch.Tensor,
        x_mask: torch.Tensor,
        n_query: int,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
    ) -> torch.Tensor:
        h = self.ln_self(x)
        x = x + self.self_attn(h, h, x_mask)
        queries = x[:, :n_query]
        queries = queries + self.cross_attn(self.ln_cross(queries), audio, audio_mask)
        x = torch.cat([queries, x[:, n_query:]], dim=1)
        return x + self.mlp(self.ln_mlp(x))


class TokenBatchNorm(nn.BatchNorm1d):
    """BatchNorm over all (take, query) tokens. Removes the component shared by every take, so a from-scratch
    LM sees take-to-take differences at full scale from the first step (with LayerNorm they start at ~2 %)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.flatten(0, 1)).view_as(x)


class QFormer(nn.Module):
    """(audio windows, question embeddings) → `n_query` soft tokens in the LM's embedding space."""

    def __init__(self, config: QFormerConfig, text_dim: int) -> None:
        super().__init__()
        self.config = config
        d = config.dim
        self.query = nn.Parameter(torch.randn(1, config.n_query, d) * 0.02)
        self.audio_in = nn.Linear(config.audio_dim, d)
        self.window_pos = nn.Embedding(config.max_windows, d)
        self.text_in = nn.Linear(text_dim, d)
        self.text_pos = nn.Embedding(config.max_text, d)
        self.blocks = nn.ModuleList(QFormerBlock(config) for _ in range(config.n_layer))
        self.ln_out = TokenBatchNorm(d) if config.out_norm == "batch" else nn.LayerNorm(d)
        self.out_proj = nn.Linear(d, config.lm_dim)
        # small position embeddings: at N(0, 1) they would swamp the take-to-take differences in the audio
        nn.init.normal_(self.window_pos.weight, std=0.02)
        nn.init.normal_(self.text_pos.weight, std=0.02)

    def forward(
        self,
        audio: torch.Tensor,
        audio_mask: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> torch.Tensor:
        """audio (B, windows, tokens, audio_dim), audio_mask (B, windows, tokens), text (B, T, text_dim),
        text_mask (B, T) with T ≤ max_text → (B, n_query, lm_dim)."""
        b, w, n, _ = audio.shape
        a = self.audio_in(audio) + self.window_pos.weight[:w][None, :, None, :]
        a, a_mask = a.reshape(b, w * n, -1), audio_mask.reshape(b, w * n)
        x = torch.cat(
            [self.query.expand(b, -1, -1), self.text_in(text) + self.text_pos.weight[: text.shape[1]][None]], dim=1
        )
        q_mask = torch.ones(b, self.config.n_query, dtype=torch.bool, device=x.device)
        x_mask = torch.cat([q_mask, text_mask.bool()], dim=1)
        for block in self.blocks:
            x = block(x, x_mask, self.config.n_query, a, a_mask.bool())
        return self.out_proj(self.ln_out(x[:, : self.config.n_query]))
