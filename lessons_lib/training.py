"""Training and evaluation, shared by every lesson that trains.

The loop works unchanged on pruned models: ``torch.nn.utils.prune``'s hooks rebuild each
``weight = weight_orig * weight_mask`` on every forward call, so pruned weights stay exactly zero
while the optimizer updates ``weight_orig``. (What the optimizer does *under* the mask is
lesson 03's subject.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import Split
from .validate import require_positive_int


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` (``(n, features)``) whose arg-max logit equals ``y`` (``(n,)``)."""
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same, non-zero number of examples, got {x.shape[0]} and {y.shape[0]}")
    was_training = model.training
    model.eval()
    correct = (model(x).argmax(dim=1) == y).sum().item()
    model.train(was_training)
    return correct / len(y)


def train(
    model: nn.Module,
    data: Split,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    progress: bool = True,
    desc: str = "training",
) -> list[float]:
    """Train ``model`` on ``data.x_train`` with cross-entropy; return validation accuracy per epoch.

    Args:
        epochs: number of passes over the training set.
        lr: learning rate of the default optimizer, Adam.
        batch_size: examples per step; the order is shuffled by a generator seeded with ``seed``,
            so the same call gives the same weights.
        optimizer: use this one instead of a fresh Adam (e.g. to keep momentum across calls).
        on_epoch_start: called as ``on_epoch_start(epoch)`` before each epoch (0-based): the
            hook gradual pruning uses to prune on a schedule.
        progress: show a ``tqdm`` progress bar.
    """
    require_positive_int(epochs, "epochs")
    require_positive_int(batch_size, "batch_size")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    history = []
    for epoch in tqdm(range(epochs), desc=desc, disable=not progress, leave=False):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            loss = F.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        history.append(accuracy(model, data.x_val, data.y_val))
    return history
