"""Figures used across the lessons. Each function draws on ``ax`` (or new axes) and returns it.

One message per figure, titled, with labelled axes (units where there are any) and a legend
whenever more than one thing is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from .validate import (
    is_sequence,
    require_fraction,
    require_mapping,
    require_number,
    require_positive_int,
    require_tensor,
)


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 3.2)) -> Axes:
    if ax is not None and not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_mask(mask: torch.Tensor, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Heatmap of a 2-D mask ``(out_features, in_features)``, bool or 0/1: dark = kept, white = pruned."""
    mask = require_tensor(mask, "mask")
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (out_features, in_features), got shape {tuple(mask.shape)}")
    _require_binary(mask, "mask")
    ax = _axes(ax)
    kept = mask.detach().bool()
    ax.imshow(kept.cpu().numpy(), cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_title(title or f"mask: {kept.float().mean().item():.0%} of weights kept")
    ax.set_xlabel("input feature (column)")
    ax.set_ylabel("output neuron (row)")
    return ax


def _require_binary(mask: torch.Tensor, name: str) -> None:
    if mask.dtype != torch.bool and ((mask != 0) & (mask != 1)).any():
        raise ValueError(f"{name} must hold only 0 and 1 (or False/True), got other values such as "
                         f"{mask[(mask != 0) & (mask != 1)][0].item()!r}")


def plot_weight_histogram(
    weight: torch.Tensor, mask: torch.Tensor | None = None, ax: Axes | None = None, bins: int = 60
) -> Axes:
    """Histogram of all weights, and of the survivors when ``mask`` (same shape) is given.

    Magnitude pruning cuts a gap around zero: the survivors' histogram has a hole in the middle.
    ``weight`` must be finite; ``mask`` bool or 0/1.
    """
    weight = require_tensor(weight, "weight").detach().flatten().cpu()
    if not weight.is_floating_point() or not torch.isfinite(weight).all():
        raise ValueError("weight must hold finite float values (no NaN or inf)")
    require_positive_int(bins, "bins")
    if mask is not None:
        mask = require_tensor(mask, "mask").detach().flatten().cpu()
        if mask.numel() != weight.numel():
            raise ValueError(f"mask must have as many entries as weight ({weight.numel()}), got {mask.numel()}")
        _require_binary(mask, "mask")
        mask = mask.bool()
    ax = _axes(ax)
    low, high = weight.min().item(), weight.max().item()
    if low == high:                                # all equal: one visible bin around the value
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    counts, _ = np.histogram(weight.numpy(), bins=edges)
    label = "before" if mask is not None else "weights"
    ax.stairs(counts, edges, fill=True, color="lightgray", label=f"{label}: {weight.numel():,}")
    if mask is not None:
        kept, _ = np.histogram(weight[mask].numpy(), bins=edges)
        ax.stairs(kept, edges, fill=True, color="tab:blue", label=f"kept: {int(mask.sum()):,}")
    ax.set_title("weight values before and after pruning" if mask is not None else "weight values")
    ax.set_xlabel("weight value")
    ax.set_ylabel("number of weights")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.set_ylim(0, 1.3 * counts.max())             # headroom, so the legend sits above the bars
    ax.legend(loc="upper right", fontsize="small", ncols=2)
    return ax


def plot_error_vs_sparsity(
    sparsities: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    spreads: Mapping[str, Sequence[float]] | None = None,
    ax: Axes | None = None,
    title: str = "output error vs sparsity",
) -> Axes:
    """One line per method: relative output error (y) against sparsity in percent (x).

    Args:
        sparsities: the sparsity fractions in [0, 1], length m.
        curves: method name -> m errors.
        spreads: optional method name -> m standard deviations, drawn as a band.
    """
    _check_curves(sparsities, curves, spreads)
    ax = _axes(ax)
    x = 100 * np.asarray(sparsities, dtype=float)
    for name, ys in curves.items():
        ys = np.asarray(ys, dtype=float)
        (line,) = ax.plot(x, ys, marker="o", markersize=3, label=name)
        if spreads and name in spreads:
            s = np.asarray(spreads[name], dtype=float)
            ax.fill_between(x, ys - s, ys + s, color=line.get_color(), alpha=0.2)
    ax.set_title(title)
    ax.set_xlabel("sparsity (% of weights pruned)")
    ax.set_ylabel("relative output error")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def _check_curves(sparsities: object, curves: object, spreads: object = None) -> None:
    """``sparsities``: fractions in [0, 1]; ``curves`` (and ``spreads``): name -> one number per sparsity."""
    if not isinstance(sparsities, (list, tuple, np.ndarray)):
        raise TypeError(f"sparsities must be a list of fractions, got {type(sparsities).__name__}")
    curves = require_mapping(curves, "curves", "names to lists of values")
    if len(sparsities) == 0 or not curves:
        raise ValueError("sparsities and curves must both be non-empty")
    for i, a in enumerate(sparsities):
        require_fraction(a, f"sparsities[{i}]")
    spreads = {} if spreads is None else require_mapping(spreads, "spreads", "curve names to lists of values")
    if set(spreads) - set(curves):
        raise ValueError(f"spreads must name curves that exist, got {sorted(set(spreads) - set(curves))}")
    for name, ys in {**curves, **spreads}.items():
        if not hasattr(ys, "__len__") or isinstance(ys, str):
            raise TypeError(f"curve {name!r} must be a list of numbers, got {type(ys).__name__}")
        if len(ys) != len(sparsities):
            raise ValueError(f"curve {name!r} must have {len(sparsities)} values (one per sparsity), got {len(ys)}")


def plot_pruned_layer(weight: torch.Tensor, mask: torch.Tensor, axes: Sequence[Axes] | None = None):
    """Mask heatmap (left) and weight histogram (right) for one 2-D weight and its mask."""
    if axes is not None and (not isinstance(axes, (list, tuple, np.ndarray)) or len(axes) != 2):
        raise ValueError(f"axes must be two matplotlib Axes (mask, histogram) or None, got {axes!r}")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    plot_mask(mask, ax=axes[0])
    plot_weight_histogram(weight, mask, ax=axes[1])
    return axes


def plot_plans(plans: Mapping[str, Sequence[tuple[int, float]]], epochs: int, ax: Axes | None = None,
               title: str = "pruning schedules with the same training budget") -> Axes:
    """Sparsity in force at each epoch, one step line per plan (``schedules`` plans)."""
    from .schedules import sparsity_per_epoch

    require_mapping(plans, "plans", "names to plans")
    if not plans:
        raise ValueError("plans must hold at least one plan")
    ax = _axes(ax, figsize=(6, 3.2))
    for name, plan in plans.items():
        curve = sparsity_per_epoch(list(plan), epochs)
        ax.step(range(epochs + 1), [100 * s for s in curve + curve[-1:]], where="post", label=name)
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel("sparsity in force (%)")
    ax.set_xlim(0, epochs)
    ax.set_ylim(0, 100)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return ax


def plot_accuracy_vs_sparsity(sparsities: Sequence[float], curves: Mapping[str, Sequence[float]],
                              spreads: Mapping[str, Sequence[float]] | None = None, ax: Axes | None = None,
                              title: str = "accuracy vs sparsity", chance: float | None = None,
                              ylabel: str = "test accuracy (%)") -> Axes:
    """Accuracy in percent (y, labelled ``ylabel``) against sparsity in percent (x, ``sparsities``
    are fractions in [0, 1]), one line per method; ``chance`` (a fraction in [0, 1]) draws the
    chance level."""
    _check_curves(sparsities, curves, spreads)
    if chance is not None:
        require_fraction(chance, "chance")
    ax = plot_error_vs_sparsity(sparsities, {k: [100 * v for v in vs] for k, vs in curves.items()},
                                spreads={k: [100 * v for v in vs] for k, vs in (spreads or {}).items()},
                                ax=ax, title=title)
    if not isinstance(ylabel, str):
        raise TypeError(f"ylabel must be a str, got {type(ylabel).__name__} {ylabel!r}")
    ax.set_ylabel(ylabel)
    if chance is not None:
        ax.axhline(100 * chance, color="gray", linestyle=":", label="chance")
        ax.legend()
    return ax


def plot_latency(sparsities: Sequence[float], curves: Mapping[str, Sequence[float]],
                 reference: float | None = None, ax: Axes | None = None, title: str = "latency vs sparsity") -> Axes:
    """Milliseconds (log scale, y) against sparsity in percent (x); ``sparsities`` are fractions in
    [0, 1], ``curves`` name -> ms per sparsity, ``reference`` a dense time line (ms > 0)."""
    if reference is not None:
        require_number(reference, "reference", positive=True)
    ax = plot_error_vs_sparsity(sparsities, curves, ax=ax, title=title)
    ax.set_yscale("log")
    ax.set_ylabel("time per call (ms, log scale)")
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, label="dense")
        ax.legend(fontsize="small")
    return ax


def plot_attention(weights: torch.Tensor, labels: Sequence[str] | None = None, ax: Axes | None = None,
                   title: str = "attention weights", colorbar_label: str = "attention weight") -> Axes:
    """Heatmap of one head's attention ``(T, T)``: row ``t`` = the position that looks (query),
    column ``s`` = the position looked at (key). Values in [0, 1]: softmax weights, or a causal
    mask (bool or 0/1, 1 = may look). ``labels``: ``T`` strings (the tokens), on both axes."""
    weights = require_tensor(weights, "weights").detach().cpu()
    if weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
        raise ValueError(f"weights must be a square 2-D tensor (T, T), got shape {tuple(weights.shape)}")
    if weights.is_complex():
        raise ValueError(f"weights must be real numbers in [0, 1], got {weights.dtype}")
    weights = weights.float()
    if not torch.isfinite(weights).all():
        raise ValueError("weights must be finite values in [0, 1], got NaN or inf")
    if weights.min() < 0 or weights.max() > 1:
        raise ValueError(f"weights must hold values in [0, 1] (attention weights or a 0/1 mask), got values "
                         f"from {weights.min().item()} to {weights.max().item()}")
    T = weights.shape[0]
    if labels is not None and (not is_sequence(labels) or len(labels) != T
                               or not all(isinstance(s, str) for s in labels)):
        raise ValueError(f"labels must be {T} strings (one per position), got {labels!r}")
    for name, text in (("title", title), ("colorbar_label", colorbar_label)):
        if not isinstance(text, str):
            raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    ax = _axes(ax, figsize=(4, 3.4))
    image = ax.imshow(weights.numpy(), cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ticks = list(range(T))
    ax.set_xticks(ticks, labels if labels is not None else ticks)
    ax.set_yticks(ticks, labels if labels is not None else ticks)
    ax.set_xlabel("key: position looked at")
    ax.set_ylabel("query: position looking")
    ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, label=colorbar_label, shrink=0.8)
    return ax
