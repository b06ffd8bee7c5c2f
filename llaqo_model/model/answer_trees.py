"""Boosted trees on top of the answer head's linear scores: what one direction per question cannot say — a
rating that drops only past a threshold (chord spread past what a performer's own rolling makes), or that
depends on one input only when another is present (pedal use in music that has long notes).

The trees are fitted in training (LightGBM, boosting from the linear scores: `training/answer_fit.py`) and
only evaluated here, as plain tables: every tree walked at once, one level per step. A node is a split
(`x[feature] <= threshold` goes left) or a leaf (its children are itself, its value is added to one option's
score). Inputs are the head's standardised inputs, always finite. The descriptor head holds regression trees in
the same tables (one score column per perceptual scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn


@dataclass
class TreeTables:
    """Trees as flat node tables (node ids are indices into these arrays; a leaf points at itself)."""

    feature: np.ndarray  # (nodes,) input column a split reads (0 at a leaf)
    threshold: np.ndarray  # (nodes,) split threshold (+inf at a leaf: never goes right)
    left: np.ndarray  # (nodes,) child when x <= threshold
    right: np.ndarray  # (nodes,) child otherwise
    value: np.ndarray  # (nodes,) score a leaf adds (0 at a split)
    root: np.ndarray  # (trees,) each tree's first node
    column: np.ndarray  # (trees,) the score column (question option) each tree adds to
    depth: int  # the deepest leaf's depth: steps enough to reach every leaf

    @staticmethod
    def concat(parts: list[TreeTables]) -> TreeTables:
        """One table of several (none: empty tables), node ids shifted to stay each tree's own."""
        if not parts:
            ints = np.zeros(0, dtype=np.int64)
            return TreeTables(ints, np.zeros(0), ints, ints, np.zeros(0, dtype=np.float32), ints, ints, 0)
        offsets = np.cumsum([0] + [len(p.feature) for p in parts[:-1]])
        return TreeTables(
            feature=np.concatenate([p.feature for p in parts]),
            threshold=np.concatenate([p.threshold for p in parts]),
            left=np.concatenate([p.left + o for p, o in zip(parts, offsets, strict=True)]),
            right=np.concatenate([p.right + o for p, o in zip(parts, offsets, strict=True)]),
            value=np.concatenate([p.value for p in parts]).astype(np.float32),
            root=np.concatenate([p.root + o for p, o in zip(parts, offsets, strict=True)]),
            column=np.concatenate([p.column for p in parts]),
            depth=max(p.depth for p in parts),
        )


class AnswerTrees(nn.Module):
    """(B, n_in) standardised inputs → (B, n_out) scores added to the linear layers' (zeros without trees)."""

    def __init__(self, nodes: int, trees: int, depth: int, n_out: int) -> None:
        super().__init__()
        self.depth, self.n_out = depth, n_out
        kept = trees > 0  # a head without trees stores none (and reads checkpoints written before trees)
        self.register_buffer("feature", torch.zeros(nodes, dtype=torch.int32), persistent=kept)
        self.register_buffer("threshold", torch.zeros(nodes, dtype=torch.float64), persistent=kept)  # float64 as fitted
        self.register_buffer("left", torch.zeros(nodes, dtype=torch.int32), persistent=kept)
        self.register_buffer("right", torch.zeros(nodes, dtype=torch.int32), persistent=kept)
        self.register_buffer("value", torch.zeros(nodes), persistent=kept)
        self.register_buffer("root", torch.zeros(trees, dtype=torch.int32), persistent=kept)
        self.register_buffer("column", torch.zeros(trees, dtype=torch.int32), persistent=kept)

    @classmethod
    def from_tables(cls, tables: TreeTables, n_out: int) -> AnswerTrees:
        """A module sized to `tables`, holding them."""
        trees = cls(len(tables.feature), len(tables.root), tables.depth, n_out)
        trees.load_tables(tables)
        return trees

    def sizes(self) -> dict[str, int]:
        """The head config's tree fields for these trees (`tree_nodes`, `trees`, `tree_depth`)."""
        return {"tree_nodes": self.feature.numel(), "trees": self.root.numel(), "tree_depth": self.depth}

    @torch.no_grad()
    def load_tables(self, tables: TreeTables) -> None:
        """Copy fitted tables in (their sizes must be the ones this module was built with)."""
        for name in ("feature", "threshold", "left", "right", "value", "root", "column"):
            buffer = getattr(self, name)
            buffer.copy_(torch.from_numpy(np.asarray(getattr(tables, name))).to(buffer.dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(z.shape[0], self.n_out, dtype=z.dtype, device=z.device)
        if self.root.numel() == 0:
            return out
        x = z.double()
        feature, left, right = self.feature.long(), self.left.long(), self.right.long()  # indices, once a call
        node = self.root.long().expand(z.shape[0], -1)
        for _ in range(self.depth):
            go_left = x.gather(1, feature[node]) <= self.threshold[node]
            node = torch.where(go_left, left[node], right[node])
        return out.index_add_(1, self.column.long(), self.value[node].to(z.dtype))
