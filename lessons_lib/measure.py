"""Measuring what a mask does to a layer's output."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .sparsity import unpruned_weight
from .validate import require_tensor

MaskFn = Callable[[torch.Tensor, float], torch.Tensor]


def relative_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``||approx - reference|| / ||reference||`` (Frobenius norms), a number >= 0.

    0 means identical; 1 means as far off as outputting zeros would be.
    """
    reference = require_tensor(reference, "reference")
    approx = require_tensor(approx, "approx")
    if reference.shape != approx.shape:
        raise ValueError(
            f"approx must have reference's shape {tuple(reference.shape)}, got {tuple(approx.shape)}"
        )
    norm = reference.norm()
    if norm == 0:
        raise ValueError("reference must not be all zeros: relative error is undefined")
    return ((approx - reference).norm() / norm).item()


def _check_linear_input(layer: nn.Module, x: torch.Tensor) -> None:
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    x = require_tensor(x, "x")
    if x.shape[-1] != layer.in_features:
        raise ValueError(
            f"x must have {layer.in_features} features in its last dimension (layer.in_features), "
            f"got shape {tuple(x.shape)}"
        )


@torch.no_grad()
def output_error(layer: nn.Linear, x: torch.Tensor, mask: torch.Tensor) -> float:
    """Relative error of ``layer``'s output on ``x`` when its weight is multiplied by ``mask``.

    The reference is the *unpruned* layer (``weight_orig`` if the layer is pruned). The layer
    itself is not changed.

    Args:
        layer: an ``nn.Linear(in_features, out_features)``.
        x: inputs of shape ``(batch, in_features)``.
        mask: shape ``(out_features, in_features)``, bool or 0/1 (1 = keep).
    """
    _check_linear_input(layer, x)
    weight = unpruned_weight(layer)
    mask = require_tensor(mask, "mask")
    if mask.shape != weight.shape:
        raise ValueError(f"mask must have the weight's shape {tuple(weight.shape)}, got {tuple(mask.shape)}")
    reference = F.linear(x, weight, layer.bias)
    pruned = F.linear(x, weight * mask, layer.bias)
    return relative_error(reference, pruned)


def error_vs_sparsity(
    layer: nn.Linear, x: torch.Tensor, amounts: Sequence[float], mask_fn: MaskFn
) -> list[float]:
    """:func:`output_error` of ``layer`` on ``x`` for each fraction in ``amounts``.

    ``mask_fn(weight, amount)`` returns the mask, e.g. ``sparsity.magnitude_mask``. Every mask
    is computed from the unpruned weight, so nothing compounds.
    """
    _check_linear_input(layer, x)
    if len(amounts) == 0:
        raise ValueError("amounts must hold at least one fraction, got an empty sequence")
    weight = unpruned_weight(layer)
    return [output_error(layer, x, mask_fn(weight, a)) for a in amounts]
