"""Interactive explorers. Each returns an ipywidgets layout; display it as a cell's last line.

Rules every explorer follows: it recomputes from the *unpruned* weights on every change (no
pruning compounds), it never modifies the model it was given, and it draws into its own
image widget, so nothing is printed from inside a callback.

To stay quick (well under a second per update on a laptop CPU), an explorer draws its figure
once and afterwards only swaps the data of the existing artists, then re-renders a PNG.
"""

from __future__ import annotations

import io

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .measure import _check_linear_input, output_error
from .plots import plot_pruned_layer
from .sparsity import magnitude_mask, unpruned_weight
from .validate import amount_to_count, require_positive_int, require_tensor


def layer_readout(weight: torch.Tensor, mask: torch.Tensor, error: float) -> str:
    """One line of text describing a pruned layer (used by explorers and printed in lessons).

    Args:
        weight: the unpruned weight, any shape.
        mask: bool or 0/1, ``weight``'s shape (1 = keep).
        error: the relative output error, a number >= 0.
    """
    weight, mask = require_tensor(weight, "weight"), require_tensor(mask, "mask")
    if mask.shape != weight.shape:
        raise ValueError(f"mask must have the weight's shape {tuple(weight.shape)}, got {tuple(mask.shape)}")
    if not error >= 0:
        raise ValueError(f"error must be a number >= 0, got {error!r}")
    kept = int(mask.sum())
    return (f"sparsity {1 - kept / weight.numel():.0%} · kept {kept:,} of {weight.numel():,} weights"
            f" · relative output error {error:.3f}")


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """Render ``fig`` to PNG bytes (for an ``ipywidgets.Image``)."""
    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    require_positive_int(dpi, "dpi")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def sparsity_explorer(layer: nn.Linear, x: torch.Tensor, amount: float = 0.5) -> widgets.VBox:
    """A sparsity slider over one Linear layer, with mask heatmap, histogram and output error.

    Args:
        layer: ``nn.Linear(in_features, out_features)``, pruned or not; never modified.
        x: inputs ``(batch, in_features)`` on which the output error is measured.
        amount: starting sparsity, a float in [0, 1].

    Returns:
        ``VBox([slider, readout, image])``. Setting ``slider.value`` (by hand or in code)
        redraws; ``readout.value`` holds the text shown.
    """
    _check_linear_input(layer, x)
    amount_to_count(float(amount), 1, "amount")
    weight = unpruned_weight(layer).clone()            # (out, in): the weights we start from
    slider = widgets.FloatSlider(value=amount, min=0.0, max=1.0, step=0.01, description="sparsity",
                                 readout_format=".0%", continuous_update=True)
    readout = widgets.HTML()
    image = widgets.Image(format="png")

    fig, (mask_ax, hist_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.22)
    plt.close(fig)                                     # shown only through `image`
    plot_pruned_layer(weight, magnitude_mask(weight, amount), axes=(mask_ax, hist_ax))
    heatmap, kept_bars = mask_ax.images[0], hist_ax.patches[1]
    edges = kept_bars.get_data().edges
    values = weight.flatten().numpy()

    def redraw(_change: object = None) -> None:
        mask = magnitude_mask(weight, slider.value)    # from the unpruned weights, every time
        readout.value = layer_readout(weight, mask, output_error(layer, x, mask))
        heatmap.set_data(mask.numpy())
        mask_ax.set_title(f"mask: {mask.float().mean().item():.0%} of weights kept")
        kept_bars.set_data(values=np.histogram(values[mask.flatten().numpy()], bins=edges)[0])
        kept_bars.set_label(f"kept: {int(mask.sum()):,}")
        hist_ax.legend(loc="upper right", fontsize="small", ncols=2)
        image.value = figure_png(fig)

    slider.observe(redraw, names="value")
    redraw()
    return widgets.VBox([slider, readout, image])
