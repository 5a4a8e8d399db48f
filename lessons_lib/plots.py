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

from .validate import require_tensor


def _axes(ax: Axes | None, figsize: tuple[float, float] = (4.5, 3.2)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_mask(mask: torch.Tensor, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Heatmap of a 2-D mask ``(out_features, in_features)``: dark = kept, white = pruned."""
    mask = require_tensor(mask, "mask")
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (out_features, in_features), got shape {tuple(mask.shape)}")
    ax = _axes(ax)
    kept = mask.detach().bool()
    ax.imshow(kept.cpu().numpy(), cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_title(title or f"mask: {kept.float().mean().item():.0%} of weights kept")
    ax.set_xlabel("input feature (column)")
    ax.set_ylabel("output neuron (row)")
    return ax


def plot_weight_histogram(
    weight: torch.Tensor, mask: torch.Tensor | None = None, ax: Axes | None = None, bins: int = 60
) -> Axes:
    """Histogram of all weights, and of the survivors when ``mask`` (same shape) is given.

    Magnitude pruning cuts a gap around zero: the survivors' histogram has a hole in the middle.
    """
    weight = require_tensor(weight, "weight").detach().flatten().cpu()
    ax = _axes(ax)
    edges = np.linspace(weight.min().item(), weight.max().item(), bins + 1)
    counts, _ = np.histogram(weight.numpy(), bins=edges)
    label = "before" if mask is not None else "weights"
    ax.stairs(counts, edges, fill=True, color="lightgray", label=f"{label}: {weight.numel():,}")
    if mask is not None:
        mask = require_tensor(mask, "mask").detach().flatten().bool().cpu()
        if mask.numel() != weight.numel():
            raise ValueError(f"mask must have as many entries as weight ({weight.numel()}), got {mask.numel()}")
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
    amounts: Sequence[float],
    curves: Mapping[str, Sequence[float]],
    spreads: Mapping[str, Sequence[float]] | None = None,
    ax: Axes | None = None,
    title: str = "output error vs sparsity",
) -> Axes:
    """One line per method: relative output error (y) against sparsity in percent (x).

    Args:
        amounts: the sparsity fractions, length m.
        curves: method name -> m errors.
        spreads: optional method name -> m standard deviations, drawn as a band.
    """
    if len(amounts) == 0 or not curves:
        raise ValueError("amounts and curves must both be non-empty")
    for name, ys in {**curves, **(spreads or {})}.items():
        if len(ys) != len(amounts):
            raise ValueError(f"curve {name!r} must have {len(amounts)} values (one per amount), got {len(ys)}")
    ax = _axes(ax)
    x = 100 * np.asarray(amounts, dtype=float)
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


def plot_pruned_layer(weight: torch.Tensor, mask: torch.Tensor, axes: Sequence[Axes] | None = None):
    """Mask heatmap (left) and weight histogram (right) for one 2-D weight and its mask."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
    plot_mask(mask, ax=axes[0])
    plot_weight_histogram(weight, mask, ax=axes[1])
    return axes


def plot_plans(plans: Mapping[str, Sequence[tuple[int, float]]], epochs: int, ax: Axes | None = None,
               title: str = "pruning schedules with the same training budget") -> Axes:
    """Sparsity in force at each epoch, one step line per plan (``schedules`` plans)."""
    from .schedules import sparsity_per_epoch

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


def plot_accuracy_vs_sparsity(amounts: Sequence[float], curves: Mapping[str, Sequence[float]],
                              spreads: Mapping[str, Sequence[float]] | None = None, ax: Axes | None = None,
                              title: str = "accuracy vs sparsity", chance: float | None = None) -> Axes:
    """Accuracy in percent (y) against sparsity in percent (x), one line per method."""
    ax = plot_error_vs_sparsity(amounts, {k: [100 * v for v in vs] for k, vs in curves.items()},
                                spreads={k: [100 * v for v in vs] for k, vs in (spreads or {}).items()},
                                ax=ax, title=title)
    ax.set_ylabel("test accuracy (%)")
    if chance is not None:
        ax.axhline(100 * chance, color="gray", linestyle=":", label="chance")
        ax.legend()
    return ax


def plot_latency(amounts: Sequence[float], curves: Mapping[str, Sequence[float]],
                 reference: float | None = None, ax: Axes | None = None, title: str = "latency vs sparsity") -> Axes:
    """Milliseconds (log scale, y) against sparsity in percent (x); ``reference``: a dense time line."""
    ax = plot_error_vs_sparsity(amounts, curves, ax=ax, title=title)
    ax.set_yscale("log")
    ax.set_ylabel("time per call (ms, log scale)")
    if reference is not None:
        ax.axhline(reference, color="black", linewidth=0.8, label="dense")
        ax.legend(fontsize="small")
    return ax
