"""Masks and sparsity: how to choose which weights go, and how much of a model is zero.

The masks here are plain tensors (True = keep). To apply one to a module, use torch's own
``torch.nn.utils.prune.custom_from_mask``; for the usual magnitude criterion,
``prune.l1_unstructured`` computes exactly the mask :func:`magnitude_mask` does.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from torch import nn

from .validate import amount_to_count, is_sequence, require_parameter, require_tensor


def magnitude_mask(weight: torch.Tensor, amount: float | int) -> torch.Tensor:
    """Keep the largest-magnitude entries of ``weight``; prune the rest.

    Args:
        weight: any shape, e.g. ``(out_features, in_features)`` for a Linear layer.
        amount: a float fraction in [0, 1] (prunes ``round(amount * weight.numel())`` entries,
            Python's round, halves to even, exactly as ``torch.nn.utils.prune``) or an int count
            of entries in [0, n] (this function takes counts, like ``prune``). The int 1 is
            refused as ambiguous: write ``1.0`` to prune everything.

    Returns:
        A bool tensor with ``weight``'s shape; True = keep. It has exactly the requested
        number of False entries.

    Ties: when several entries share the cut-off magnitude, the ones that come first in
    ``weight.flatten()`` order are pruned first (a stable sort). ``prune.l1_unstructured``
    also prunes exactly the requested count, but which of the tied entries it drops is left to
    ``torch.topk``, so with ties the two masks can differ in *which* entries, never in how many.
    """
    weight = require_tensor(weight, "weight")
    k = amount_to_count(amount, weight.numel())
    scores = weight.detach().abs().flatten()                     # (n,)
    order = torch.sort(scores, stable=True).indices              # smallest first, ties by index
    keep = torch.ones_like(scores, dtype=torch.bool)
    keep[order[:k]] = False
    return keep.view_as(weight)


def random_mask(
    weight: torch.Tensor, amount: float | int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Prune a uniformly random set of entries: the baseline any criterion must beat.

    Args:
        weight: any shape; only its shape and size are used.
        amount: a float fraction in [0, 1] or an int count of entries, as in :func:`magnitude_mask`
            (the int 1 is refused as ambiguous: write 1.0 to prune everything).
        generator: optional ``torch.Generator`` (on the CPU) for a repeatable draw.

    Returns:
        A bool tensor with ``weight``'s shape and device (True = keep) with exactly the
        requested number of False entries.
    """
    weight = require_tensor(weight, "weight")
    k = amount_to_count(amount, weight.numel())
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
        raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
    chosen = torch.randperm(weight.numel(), generator=generator)[:k].to(weight.device)
    keep = torch.ones(weight.numel(), dtype=torch.bool, device=weight.device)
    keep[chosen] = False
    return keep.view(weight.shape)


def sparsity(tensor: torch.Tensor) -> float:
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


class LayerSparsity(NamedTuple):
    """One row of :func:`sparsity_report`."""

    layer: str          # module path, e.g. "fc1" or "blocks.0.ffn.0"
    shape: tuple        # shape of the weight
    total: int          # number of weights
    zeros: int          # how many are exactly zero (masked or removed)

    @property
    def sparsity(self) -> float:
        """``zeros / total``; a layer with no weights at all counts as 0 (nothing is pruned)."""
        return self.zeros / self.total if self.total else 0.0


def sparsity_report(model: nn.Module, name: str = "weight") -> list[LayerSparsity]:
    """Per-layer zeros of every module in ``model`` that has a parameter called ``name``.

    Works before pruning, while masks are attached (it reads the masked ``weight``) and after
    ``prune.remove``. Biases are not counted: pruning methods leave them alone. A layer with no
    weights at all (a GPT layer pruned to 0 heads or 0 FFN neurons) has no sparsity and no row.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a parameter name), got {type(name).__name__} {name!r}")
    rows = []
    for path, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if name in own or name + "_orig" in own:
            weight = getattr(module, name)
            if weight.numel() == 0:
                continue
            rows.append(LayerSparsity(path or type(module).__name__, tuple(weight.shape),
                                      weight.numel(), int((weight == 0).sum())))
    if not rows:
        raise ValueError(f"model has no module with a parameter named {name!r} (holding at least one entry)")
    return rows


def model_sparsity(model: nn.Module, name: str = "weight") -> float:
    """Overall fraction of zeros over all ``name`` parameters in ``model`` (biases excluded)."""
    rows = sparsity_report(model, name)
    return sum(r.zeros for r in rows) / sum(r.total for r in rows)


def format_sparsity_report(rows: list[LayerSparsity]) -> str:
    """A fixed-width table of :func:`sparsity_report` rows, with a total line."""
    if not is_sequence(rows):
        raise TypeError(f"rows must be a list of LayerSparsity (from sparsity_report), got {type(rows).__name__}")
    if not rows:
        raise ValueError("rows must hold at least one LayerSparsity, got an empty list")
    if not all(isinstance(r, LayerSparsity) for r in rows):
        raise TypeError(f"rows must hold LayerSparsity rows (from sparsity_report), got "
                        f"{sorted({type(r).__name__ for r in rows})}")
    width = max(len("total"), *(len(r.layer) for r in rows))
    lines = [f"{'layer':<{width}}  {'shape':>12}  {'weights':>9}  {'zeros':>9}  sparsity"]
    for r in rows:
        shape = "x".join(map(str, r.shape))
        lines.append(f"{r.layer:<{width}}  {shape:>12}  {r.total:>9,}  {r.zeros:>9,}  {r.sparsity:>7.1%}")
    total, zeros = sum(r.total for r in rows), sum(r.zeros for r in rows)
    lines.append(f"{'total':<{width}}  {'':>12}  {total:>9,}  {zeros:>9,}  {zeros / max(total, 1):>7.1%}")
    return "\n".join(lines)



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
