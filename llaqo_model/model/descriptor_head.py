"""The descriptor head: the model's answers to the 19 perceptual questions, from the analysis and the audio.

Input per take: the per-take streams of `take_features` (transcription statistics, score-aligned
performance, what the analysis found, texture, audio statistics), concatenated; standardised with the
training set's mean and spread (buffers, saved with the weights). A linear layer (a ridge per scale) or a
small MLP predicts each descriptor's offset from its training mean, and boosted regression trees
(`answer_trees`' flat tables, one column per scale) add theirs: a scale fitted by trees has its linear row at 0.
The loss is the mean squared error over the labels a take has (rows missing a label still train on the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from llaqo_model.model.answer_trees import AnswerTrees, TreeTables
from llaqo_model.model.descriptors import DESCRIPTOR_KEYS
from llaqo_model.model.take_features import STREAMS


@dataclass
class DescriptorConfig:
    """Head size (`hidden` 0: one linear layer, fitted as a ridge regression); `streams`: the inputs used;
    `tree_nodes`, `trees`, `tree_depth`: the size of the fitted trees (0: none), set when the head is fitted."""

    hidden: int = 0
    dropout: float = 0.2
    # every stream: in 5-fold CV over PercePiano's training passages (transcribed sampled-piano takes,
    # benchmarks/bench_descriptor_streams.py --reports transcribed) a ridge over all eight reaches mean R² 0.413,
    # without the tonality and the score's marks 0.393, without the tempo against the score's mark 0.365, the
    # statistics baseline 0.341; choosing streams per scale (HeadFit.select_streams) 0.398
    streams: tuple[str, ...] = (
        "statistics",
        "aligned",
        "rubric",
        "texture",
        "audio",
        "tempo",
        "tonality",
        "written",
    )
    tree_nodes: int = 0
    trees: int = 0
    tree_depth: int = 0

    @property
    def n_in(self) -> int:
        return sum(width for name, width in STREAMS if name in self.streams)


class DescriptorHead(nn.Module):
    """Standardise → Linear (→ GELU → Dropout → Linear): 19 descriptors (0–1) as offsets from the training mean."""

    def __init__(self, config: DescriptorConfig) -> None:
        super().__init__()
        self.config = config
        n_out = len(DESCRIPTOR_KEYS)
        self.register_buffer("in_mean", torch.zeros(config.n_in))
        self.register_buffer("in_std", torch.ones(config.n_in))
        self.register_buffer("prior", torch.full((n_out,), 0.5))
        self.scale_streams: dict[str, list[str]] = {}  # the streams each scale's fit kept (the weights say it)
        self.scale_fits: dict[str, str] = {}  # how each scale was fitted (ridge or trees; the weights say it)
        if config.hidden:
            self.net = nn.Sequential(
                nn.Linear(config.n_in, config.hidden),
                nn.GELU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.hidden, n_out),
            )
        else:
            self.net = nn.Sequential(nn.Linear(config.n_in, n_out))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.trees = AnswerTrees(config.tree_nodes, config.trees, config.tree_depth, n_out)

    def fit_normalisation(self, inputs: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> None:
        """Set the input standardisation and the per-descriptor prior from training data."""
        self.in_mean.copy_(inputs.mean(0))
        self.in_std.copy_(inputs.std(0).clamp_min(1e-4))
        counts = mask.sum(0).clamp_min(1)
        self.prior.copy_((labels * mask).sum(0) / counts)

    def set_trees(self, tables: TreeTables) -> None:
        """Give the head these fitted trees (empty tables: none), its config sized to match them."""
        self.trees = AnswerTrees.from_tables(tables, self.trees.n_out).to(self.in_mean.device)
        self.config = replace(self.config, **self.trees.sizes())

    def standardise(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, n_in) raw inputs → the standardised inputs the layers and trees read."""
        return ((inputs - self.in_mean) / self.in_std).clamp(-6, 6)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, n_in) → (B, 19) descriptors."""
        x = self.standardise(inputs)
        return self.prior + self.net(x) + self.trees(x)


def masked_mse(pred: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the labels present (each answer weighs the same, whatever the take)."""
    return ((pred - labels) ** 2 * mask).sum() / mask.sum().clamp_min(1)
