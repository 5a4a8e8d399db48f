"""Masks on one weight tensor: which entries go (magnitude, random, N:M, Wanda-style), and how
much of a tensor is zero. Model-level pruning and a model's sparsity are in ``pruning``.

``sparsity`` is always the fraction of entries zeroed, in [0, 1]. The masks here are plain
tensors (True = keep). To apply one to a module, use torch's own
``torch.nn.utils.prune.custom_from_mask``; for the usual magnitude criterion,
``prune.l1_unstructured`` computes exactly the mask :func:`magnitude_mask` does.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from .validate import require_fraction, require_generator, require_parameter, require_tensor


def _count(sparsity: object, n: int) -> int:
    """How many of ``n`` entries a ``sparsity`` (a fraction in [0, 1]) zeroes: ``round(sparsity * n)``,
    Python's round (halves to even), exactly as ``torch.nn.utils.prune`` rounds a float amount."""
    return round(require_fraction(sparsity, "sparsity") * n)


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the largest-magnitude entries of ``weight``; prune the rest.

    Args:
        weight: any shape, e.g. ``(out_features, in_features)`` for a Linear layer.
        sparsity: the fraction of entries to prune, in [0, 1]: ``round(sparsity * weight.numel())``
            of them (Python's round, halves to even, as ``torch.nn.utils.prune`` rounds).

    Returns:
        A bool tensor with ``weight``'s shape; True = keep. It has exactly the requested
        number of False entries.

    Ties: when several entries share the cut-off magnitude, the ones that come first in
    ``weight.flatten()`` order are pruned first (a stable sort). ``prune.l1_unstructured``
    also prunes exactly the requested count, but which of the tied entries it drops is left to
    ``torch.topk``, so with ties the two masks can differ in *which* entries, never in how many.
    """
    weight = require_tensor(weight, "weight")
    k = _count(sparsity, weight.numel())
    scores = weight.detach().abs().flatten()                     # (n,)
    order = torch.sort(scores, stable=True).indices              # smallest first, ties by index
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[order[:k]] = False
    return keep.view_as(weight)


def random_mask(
    weight: torch.Tensor, sparsity: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Prune a uniformly random set of entries: the baseline any criterion must beat.

    Args:
        weight: any shape; only its shape and size are used.
        sparsity: the fraction of entries to prune, in [0, 1], as in :func:`magnitude_mask`.
        generator: optional ``torch.Generator`` (on the CPU) for a repeatable draw.

    Returns:
        A bool tensor with ``weight``'s shape and device (True = keep) with exactly the
        requested number of False entries.
    """
    weight = require_tensor(weight, "weight")
    k = _count(sparsity, weight.numel())
    require_generator(generator)
    chosen = torch.randperm(weight.numel(), generator=generator)[:k].to(weight.device)
    keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    keep[chosen] = False
    return keep.view(weight.shape)


def tensor_sparsity(tensor: torch.Tensor) -> float:
    """Fraction of entries of ``tensor`` that are exactly zero, in [0, 1]."""
    tensor = require_tensor(tensor, "tensor")
    return (tensor == 0).sum().item() / tensor.numel()


def unpruned_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The weight before any mask: ``<name>_orig`` on a pruned module, else ``<name>``.

    Returns a detached tensor (same storage, so do not modify it in place).
    """
    require_parameter(module, name)
    params = dict(module.named_parameters(recurse=False))
    return params.get(name + "_orig", params.get(name)).detach()


def n_m_mask(weight: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """N:M semi-structured mask: in every group of ``m`` consecutive weights along the input
    dimension (the last one), keep the ``n`` largest by magnitude. ``2:4`` is what NVIDIA's
    sparse tensor cores accelerate (exactly 50% sparsity).

    Args:
        weight: ``(out_features, in_features)`` with ``in_features`` divisible by ``m``.

    Returns:
        A bool mask of ``weight``'s shape, True = keep, with exactly ``n`` True per group.
    """
    weight = require_tensor(weight, "weight")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D (out_features, in_features), got shape {tuple(weight.shape)}")
    if isinstance(n, bool) or isinstance(m, bool) or not (
            isinstance(m, numbers.Integral) and isinstance(n, numbers.Integral) and 0 < n < m):
        raise ValueError(f"n and m must be ints with 0 < n < m, got n={n!r}, m={m!r}")
    n, m = int(n), int(m)
    if weight.shape[1] % m:
        raise ValueError(f"weight.shape[1] must be divisible by m={m}, got {weight.shape[1]}")
    groups = weight.detach().abs().reshape(weight.shape[0], -1, m)       # (out, in/m, m)
    top = groups.topk(n, dim=-1).indices                                  # (out, in/m, n)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return keep.reshape(weight.shape)


def wanda_mask(weight: torch.Tensor, norms: torch.Tensor | None, sparsity: float) -> torch.Tensor:
    """Activation-aware mask in the spirit of Wanda (Sun et al., 2023, arXiv:2306.11695).

    Score ``|W_ij| * ||X_j||`` and prune the ``round(sparsity * in_features)`` lowest scores *within
    each output row*. With ``norms=None`` the score is plain ``|W_ij|`` (row-wise magnitude).

    Args:
        weight: ``(out_features, in_features)``; norms: ``(in_features,)`` from :func:`pruning.input_norms`.
        sparsity: the fraction of each row to prune, in [0, 1].

    Returns:
        bool ``(out_features, in_features)``, True = keep.
    """
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"weight must be a 2-D tensor, got {getattr(weight, 'shape', type(weight).__name__)}")
    if norms is not None and not isinstance(norms, torch.Tensor):
        raise TypeError(f"norms must be a torch.Tensor or None, got {type(norms).__name__}")
    if norms is not None and norms.shape != (weight.shape[1],):
        raise ValueError(f"norms must have shape ({weight.shape[1]},) (one per input feature), "
                         f"got {tuple(norms.shape)}")
    if norms is not None and not torch.isfinite(norms).all():
        raise ValueError("norms must be finite (no NaN or inf): a NaN score would rank arbitrarily")
    if norms is not None and norms.device != weight.device:
        raise ValueError(f"norms must be on the weight's device {weight.device}, got {norms.device}")
    scores = weight.detach().abs() * (1 if norms is None else norms[None, :])
    k = _count(sparsity, weight.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        keep.scatter_(1, scores.topk(k, dim=1, largest=False).indices, False)
    return keep


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every entry of ``weight`` (any shape; same shape back), after Lee et al.,
    "Layer-adaptive Sparsity for the Magnitude-based Pruning" (ICLR 2021): ``w**2`` divided by the
    sum of ``w**2`` over the entries of the same tensor at least as large (itself included), in the
    order of a stable sort by magnitude. The largest entry of every tensor scores 1, so one global
    threshold on these scores never empties a layer; zeros score 0.
    """
    require_tensor(weight, "weight")
    if not weight.is_floating_point():
        raise TypeError(f"weight must be a float tensor, got dtype {weight.dtype}")
    squared = weight.detach().flatten().double().pow(2)                      # (n,)
    order = squared.argsort(stable=True)                                     # smallest first
    ranked = squared[order]
    at_least_as_large = ranked.flip(0).cumsum(0).flip(0)                      # (n,) sum of this and all larger
    scores = torch.zeros_like(squared)
    scores[order] = torch.where(at_least_as_large > 0, ranked / at_least_as_large, torch.zeros_like(ranked))
    return scores.to(weight.dtype).view_as(weight)
