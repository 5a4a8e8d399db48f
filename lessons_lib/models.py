"""Models used by the lessons."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """A plain multi-layer perceptron: Linear -> ReLU -> ... -> Linear (logits).

    ``MLP((64, 256, 128, 10))`` has layers ``layers.0`` (256x64), ``layers.1`` (128x256) and
    ``layers.2`` (10x128): 50,826 parameters, of which 50,432 are weights.

    Input ``(batch, sizes[0])``, output ``(batch, sizes[-1])`` logits.
    """

    def __init__(self, sizes: Sequence[int] = (64, 256, 128, 10)) -> None:
        super().__init__()
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in sizes):
            raise ValueError(f"sizes must be at least two positive ints, got {tuple(sizes)!r}")
        sizes = self.sizes = tuple(int(s) for s in sizes)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)
