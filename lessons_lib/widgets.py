"""Interactive explorers. Each returns an :class:`Explorer` (an ipywidgets ``VBox``); display it
as a cell's last line.

Rules every explorer follows: it recomputes from the *unpruned* weights on every change (no
pruning compounds), it never modifies the model it was given, and it draws into its own
image widget, so nothing is printed from inside a callback.

To stay quick (tens of milliseconds per update on a laptop CPU), an explorer draws its figure
once and afterwards only swaps the data of the existing artists. Most explorers also keep the
pixels of everything that never changes (axes, ticks, labels: most of the drawing time goes into
text) and redraw only the changing artists on top of them (:class:`PartialRedraw`).
"""

from __future__ import annotations

import io
import numbers
import statistics
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn
from torch.nn.utils import prune

from .measure import count_parameters, latency_ms, output_error
from .plots import plot_latency, plot_plans, plot_pruned_layer
from .pruning import copy_model, layer_sparsities, linear_layers, masked_copy, prune_global, prune_layerwise
from .schedules import cubic_plan, iterative_plan, one_shot_plan, sparsity_per_epoch
from .slimming import keep_top
from .sparsity import magnitude_mask, unpruned_weight, wanda_mask
from .validate import (
    is_sequence,
    require_fraction,
    require_layers,
    require_linear_input,
    require_mapping,
    require_number,
    require_positive_int,
    require_tensor,
)


class Explorer(widgets.VBox):
    """A ``VBox`` whose plain-text form says what it is.

    A viewer that draws no widgets (GitHub, nbviewer without the widget state, an untrusted
    notebook) shows a display's plain text instead of the widget; for a bare ``VBox`` that is
    ``VBox(children=(IntSlider(...``, which reads like an error. An Explorer shows
    ``[sparsity explorer: interactive, drawn when the notebook runs]`` instead.
    """

    def __init__(self, children: list[widgets.Widget], name: str) -> None:
        if not isinstance(name, str) or not name.strip() or len(name) > 60:
            raise ValueError(f"name must be a short str (1 to 60 characters: ipywidgets cuts a widget's plain "
                             f"text at 110), got {name!r}")
        super().__init__(children)
        self.name = name

    def __repr__(self) -> str:
        return f"[{self.name}: interactive, drawn when the notebook runs]"


def _require_cpu(model: nn.Module, name: str = "model") -> None:
    """Explorers draw with numpy, so every tensor of ``model`` must be on the CPU."""
    devices = {t.device.type for t in (*model.parameters(), *model.buffers())}
    if devices - {"cpu"}:
        raise ValueError(f"{name} must be on the CPU for an explorer (they draw with numpy), got {sorted(devices)}: "
                         f"pass {name}.cpu() or a copy")


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
    if isinstance(error, bool) or not isinstance(error, numbers.Real) or not error >= 0:
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


class PartialRedraw:
    """PNG frames of ``fig`` in which only ``changing`` artists are redrawn ("blitting").

    The figure is drawn once at ``dpi`` without those artists (matplotlib leaves artists marked
    *animated* out of a full draw) and its pixels are kept. Each :meth:`png` pastes them back,
    draws the changing artists on top, and encodes the image with light compression: a few
    milliseconds instead of a full draw. Artists outside ``changing`` must not change afterwards,
    and the changing ones are drawn on top of everything (e.g. over an axes frame or a legend).
    Meant for a figure the explorer owns: it sets the figure's dpi and an Agg canvas, and leaves
    the changing artists marked animated.
    """

    def __init__(self, fig: Figure, changing: list[Artist], dpi: int = 80) -> None:
        if not isinstance(fig, Figure):
            raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
        if not isinstance(changing, (list, tuple)) or not all(isinstance(a, Artist) for a in changing):
            raise TypeError(f"changing must be a list of matplotlib artists, got {changing!r}")
        self.fig, self.changing = fig, list(changing)
        fig.set_dpi(require_positive_int(dpi, "dpi"))
        FigureCanvasAgg(fig)                               # draw with Agg, whatever the notebook's backend
        for artist in self.changing:
            artist.set_animated(True)
        fig.canvas.draw()
        self.background = fig.canvas.copy_from_bbox(fig.bbox)

    def png(self) -> bytes:
        """The current frame as PNG bytes (for an ``ipywidgets.Image``)."""
        canvas = self.fig.canvas
        canvas.restore_region(self.background)
        for artist in self.changing:
            self.fig.draw_artist(artist)
        buffer = io.BytesIO()
        plt.imsave(buffer, np.asarray(canvas.buffer_rgba()), format="png", pil_kwargs={"compress_level": 1})
        return buffer.getvalue()


def _layer_bars(names: list[str], title: str, height: float, left: float) -> tuple[Figure, object, object]:
    """A closed figure with one horizontal bar per layer name (0-100%), for explorers to update."""
    fig, ax = plt.subplots(figsize=(6, height))
    few = len(names) < 5                                   # short figures need relatively larger margins
    fig.subplots_adjust(left=left, right=0.97, bottom=0.3 if few else 0.12, top=0.85 if few else 0.93)
    plt.close(fig)
    bars = ax.barh(names, [0.0] * len(names), color="tab:blue")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.tick_params(labelsize="small")
    ax.set_title(title, fontsize="medium")
    return fig, ax, bars


def sparsity_explorer(layer: nn.Linear, x: torch.Tensor, sparsity: float = 0.5) -> Explorer:
    """A sparsity slider over one Linear layer, with mask heatmap, histogram and output error.

    Args:
        layer: ``nn.Linear(in_features, out_features)``, pruned or not; never modified.
        x: inputs ``(batch, in_features)`` on which the output error is measured.
        sparsity: starting sparsity, a fraction in [0, 1].

    Returns:
        ``VBox([slider, readout, image])``. Setting ``slider.value`` (by hand or in code)
        redraws; ``readout.value`` holds the text shown.
    """
    require_linear_input(layer, x)
    _require_cpu(layer, "layer")
    require_fraction(sparsity, "sparsity")
    weight = unpruned_weight(layer).clone()            # (out, in): the weights we start from
    slider = widgets.FloatSlider(value=sparsity, min=0.0, max=1.0, step=0.01, description="sparsity",
                                 readout_format=".0%", continuous_update=True)
    readout = widgets.HTML()
    image = widgets.Image(format="png")

    fig, (mask_ax, hist_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.9, wspace=0.22)
    plt.close(fig)                                     # shown only through `image`
    plot_pruned_layer(weight, magnitude_mask(weight, sparsity), axes=(mask_ax, hist_ax))
    heatmap, kept_bars, legend = mask_ax.images[0], hist_ax.patches[1], hist_ax.get_legend()
    kept_label = legend.get_texts()[1]                 # the legend's second entry is the kept weights
    edges = kept_bars.get_data().edges
    values = weight.flatten().numpy()
    frames = PartialRedraw(fig, [heatmap, mask_ax.title, kept_bars, legend])

    def redraw(_change: object = None) -> None:
        mask = magnitude_mask(weight, slider.value)    # from the unpruned weights, every time
        readout.value = layer_readout(weight, mask, output_error(layer, x, mask))
        heatmap.set_data(mask.numpy())
        mask_ax.set_title(f"mask: {mask.float().mean().item():.0%} of weights kept")
        kept_bars.set_data(values=np.histogram(values[mask.flatten().numpy()], bins=edges)[0])
        kept_label.set_text(f"kept: {int(mask.sum()):,}")
        image.value = frames.png()

    slider.observe(redraw, names="value")
    redraw()
    return Explorer([slider, readout, image], "sparsity explorer")


def layer_sparsity_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                            sparsities: dict[str, float] | None = None) -> Explorer:
    """One magnitude-sparsity slider per Linear layer, with live accuracy, overall sparsity and
    the number of weights left.

    Args:
        model: a model without pruning masks (its Linear weights are the starting point).
        x: inputs ``(n, features)``; y: labels ``(n,)`` on which accuracy is measured.
        sparsities: optional starting sparsity per layer name, fractions in [0, 1] (default 0 for all).

    Returns:
        ``VBox([sliders..., readout, image])``; ``readout.value`` holds the text shown.
    """
    from .training import accuracy, check_examples

    layers = linear_layers(model)
    if any(prune.is_pruned(m) for m in model.modules()):
        raise ValueError("model must not carry pruning masks; pass the dense model (the explorer masks it itself)")
    _require_cpu(model)
    check_examples(model, x, y)
    if sparsities is not None:
        require_mapping(sparsities, "sparsities", "layer names to fractions")
    sparsities = dict(sparsities or {})
    for name, sparsity in sparsities.items():
        if name not in layers:
            raise ValueError(f"sparsities has a key {name!r} that is not a Linear layer; expected one of "
                             f"{list(layers)}")
        require_fraction(sparsity, f"sparsities[{name!r}]")
    weights = {name: layer.weight.detach().clone() for name, layer in layers.items()}   # unpruned
    total = sum(w.numel() for w in weights.values())
    sliders = {name: widgets.FloatSlider(value=sparsities.get(name, 0.0), min=0.0, max=1.0, step=0.01,
                                         description=name, readout_format=".0%") for name in layers}
    readout = widgets.HTML()
    image = widgets.Image(format="png")
    fig, ax, bars = _layer_bars(list(layers), "per-layer sparsity", 0.6 + 0.45 * len(layers), left=0.18)
    ax.set_xlabel("sparsity of the layer (%)")
    labels = [ax.text(2, i, "", va="center", fontsize="small") for i in range(len(layers))]
    frames = PartialRedraw(fig, [*bars, *labels])

    def redraw(_change: object = None) -> None:
        masks = {name: magnitude_mask(w, sliders[name].value) for name, w in weights.items()}
        kept = sum(int(m.sum()) for m in masks.values())
        acc = accuracy(masked_copy(model, masks), x, y)
        readout.value = (f"accuracy {acc:.1%} · overall sparsity {1 - kept / total:.1%}"
                         f" · {kept:,} of {total:,} weights left")
        for bar, label, name in zip(bars, labels, layers, strict=True):
            bar.set_width(100 * sliders[name].value)
            label.set_text(f"{int(masks[name].sum()):,} of {masks[name].numel():,} left")
            label.set_x(min(100 * sliders[name].value, 62) + 2)
        image.value = frames.png()

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    redraw()
    return Explorer([*sliders.values(), readout, image], "layer sparsity explorer")


def schedule_explorer(epochs: int = 30, final_sparsity: float = 0.9, steps: int = 5) -> Explorer:
    """Sliders for final sparsity (a fraction in [0, 1], at most 0.99 here), number of pruning
    steps and the epoch by which the cubic schedule ends; draws the one-shot, iterative and
    cubic plans of ``schedules``.

    The cubic end shown is the one last chosen on its slider, raised to ``steps`` while steps
    exceed it (a plan needs end >= steps); lowering steps again brings it back to that choice.
    Returns ``VBox([final, steps, end, readout, image])``.
    """
    epochs = require_positive_int(epochs, "epochs")
    if require_fraction(final_sparsity, "final_sparsity") > 0.99:
        raise ValueError(f"final_sparsity must be in [0, 0.99] (the slider's range), got {final_sparsity!r}")
    steps = require_positive_int(steps, "steps")
    if epochs < 2 or steps > epochs:
        raise ValueError(f"need epochs >= 2 and steps <= epochs, got epochs={epochs}, steps={steps}")
    final_slider = widgets.FloatSlider(value=final_sparsity, min=0.0, max=0.99, step=0.01, description="final",
                                       readout_format=".0%")
    steps_slider = widgets.IntSlider(value=steps, min=1, max=epochs, description="steps")
    end_slider = widgets.IntSlider(value=max(steps, round(2 * epochs / 3)), min=1, max=epochs,
                                   description="cubic end")
    readout = widgets.HTML()
    image = widgets.Image(format="png")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.16, top=0.9)
    plt.close(fig)

    def plans_now() -> dict[str, list[tuple[int, float]]]:
        return {"one-shot": one_shot_plan(final_slider.value),
                "iterative": iterative_plan(final_slider.value, epochs, steps_slider.value),
                "cubic": cubic_plan(final_slider.value, epochs, steps_slider.value, end_slider.value)}

    plot_plans(plans_now(), epochs, ax=ax)
    lines = list(ax.get_lines())                       # one step line per plan, in the order above
    frames = PartialRedraw(fig, lines)

    state = {"end": end_slider.value, "syncing": False}    # the end last chosen on its own slider

    def on_change(change: dict) -> None:
        if state["syncing"]:                               # our own correction of the end slider
            return
        if change["owner"] is end_slider:
            state["end"] = change["new"]
        shown = max(state["end"], steps_slider.value)      # a plan needs end >= steps
        if end_slider.value != shown:
            state["syncing"] = True
            try:
                end_slider.value = shown
            finally:
                state["syncing"] = False
        redraw()

    def redraw() -> None:
        plans = plans_now()
        cubic = plans["cubic"]
        readout.value = (f"cubic: {len(cubic)} prunings, to {cubic[0][1]:.1%} at epoch {cubic[0][0]} and "
                         f"{cubic[-1][1]:.1%} at epoch {cubic[-1][0]}; {epochs - cubic[-1][0]} epochs at "
                         f"final sparsity")
        for line, plan in zip(lines, plans.values(), strict=True):
            curve = sparsity_per_epoch(plan, epochs)
            line.set_ydata([100 * v for v in curve + curve[-1:]])
        image.value = frames.png()

    for slider in (final_slider, steps_slider, end_slider):
        slider.observe(on_change, names="value")
    redraw()
    return Explorer([final_slider, steps_slider, end_slider, readout, image], "schedule explorer")


def neuron_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> Explorer:
    """One slider per hidden layer of an ``MLP``: how many neurons to keep (highest L2 norm
    first). Shows live accuracy on ``(x, y)``, parameter count and measured latency of the
    slim model on a batch of ``batch`` inputs, next to the dense model's.

    The slim model is rebuilt from the dense one on every change (``structured.slim_mlp``, with
    the removed neurons' ``relu(bias)`` folded into the next layer); ``model`` is not modified.
    Returns ``VBox([sliders..., readout])``.
    """
    from .structured import neuron_scores_l2, slim_mlp
    from .training import accuracy, check_examples

    scores = neuron_scores_l2(model)
    _require_cpu(model)
    check_examples(model, x, y)
    require_positive_int(batch, "batch")
    inputs = x[:batch] if len(x) >= batch else x.repeat(batch // len(x) + 1, 1)[:batch]
    sliders = {name: widgets.IntSlider(value=len(s), min=1, max=len(s), description=name)
               for name, s in scores.items()}
    readout = widgets.HTML()

    def quick_latency_ms(m: nn.Module) -> float:   # median of 15 timed calls: a live estimate
        with torch.no_grad():
            return latency_ms(lambda: m(inputs), calls=15)

    dense_params, dense_ms = count_parameters(model), quick_latency_ms(model)

    def redraw(_change: object = None) -> None:
        keep = {name: keep_top(scores[name], slider.value) for name, slider in sliders.items()}
        slim = slim_mlp(model, keep, activation=torch.relu)
        params, ms = count_parameters(slim), quick_latency_ms(slim)
        readout.value = (f"accuracy {accuracy(slim, x, y):.1%} · {params:,} parameters "
                         f"({params / dense_params:.0%} of dense) · {ms:.2f} ms per batch of {batch} "
                         f"(dense {dense_ms:.2f} ms)")

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    redraw()
    return Explorer([*sliders.values(), readout], "neuron explorer")


def latency_explorer(sparsities: list[float], curves: dict[str, list[float]], dense_ms: float,
                     title: str = "measured latency") -> Explorer:
    """A sparsity slider over *measured* latency curves (``curves``: name -> ms per sparsity).

    Nothing is re-timed while sliding: the slider picks one of ``sparsities`` and the readout shows
    each method's time there and its speed-up over ``dense_ms``. Returns ``VBox([slider, readout, image])``.

    ``sparsities``: fractions in [0, 1]; ``curves``: name -> one time in ms (> 0) per sparsity;
    ``dense_ms``: the dense time in ms (> 0).
    """
    _check_latency_curves(sparsities, curves)
    require_number(dense_ms, "dense_ms", positive=True)
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, got {type(title).__name__}")
    slider = widgets.SelectionSlider(options=[(f"{a:.0%}", i) for i, a in enumerate(sparsities)], value=0,
                                     description="sparsity")
    readout = widgets.HTML()
    image = widgets.Image(format="png")
    fig, ax = plt.subplots(figsize=(6, 3.2))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.16, top=0.9)
    plt.close(fig)
    plot_latency(sparsities, curves, reference=dense_ms, ax=ax, title=title)
    marker = ax.axvline(100 * sparsities[0], color="tab:red", linestyle=":")
    frames = PartialRedraw(fig, [marker])

    def redraw(_change: object = None) -> None:
        i = slider.value
        readout.value = f"at {sparsities[i]:.0%}: " + " · ".join(
            f"{name} {ms[i]:.3f} ms ({dense_ms / ms[i]:.1f}x)" for name, ms in curves.items())
        marker.set_xdata([100 * sparsities[i]] * 2)
        image.value = frames.png()

    slider.observe(redraw, names="value")
    redraw()
    return Explorer([slider, readout, image], "latency explorer")


def _check_latency_curves(sparsities: object, curves: object) -> None:
    """``sparsities`` a non-empty list of fractions; ``curves`` name -> one time > 0 per sparsity."""
    if not is_sequence(sparsities) or len(sparsities) == 0:
        raise ValueError(f"sparsities must be a non-empty list of fractions, got {sparsities!r}")
    for i, a in enumerate(sparsities):
        require_fraction(a, f"sparsities[{i}]")
    curves = require_mapping(curves, "curves", "method names to times in ms")
    if not curves:
        raise ValueError("curves must hold at least one method's times, got an empty dict")
    for name, times in curves.items():
        if not is_sequence(times) or len(times) != len(sparsities):
            raise ValueError(f"curves must give one time per entry of sparsities ({len(sparsities)}): "
                             f"curves[{name!r}] is {times!r}")
        for i, t in enumerate(times):
            require_number(t, f"curves[{name!r}][{i}]", positive=True)


def transformer_sparsity_explorer(model: nn.Module, layers: dict[str, nn.Linear], x: torch.Tensor,
                                  y: torch.Tensor, norms: dict[str, torch.Tensor]) -> Explorer:
    """Sparsity slider and method choice over a transformer's ``layers``, without retraining.

    Methods: layer-wise magnitude, global magnitude (``pruning.prune_layerwise`` /
    ``prune_global``), and Wanda-style ``|W| * ||X||`` within each output row
    (``sparsity.wanda_mask``, ``norms`` from ``pruning.input_norms``). Shows exact-match accuracy
    of the answer digits ``y`` ``(n, d)`` on problems ``x`` and each layer's sparsity. Every
    update prunes a fresh copy, so ``model`` is never modified. Layers with no weights (0
    heads or 0 FFN neurons left) have nothing to prune and are left out.
    Returns ``VBox([method, slider, readout, image])``.
    """
    from .tasks import check_problems, exact_match

    layers = require_layers(model, layers)
    if any(prune.is_pruned(m) for m in model.modules()):
        raise ValueError("model must not carry pruning masks; pass the dense model (the explorer masks it itself)")
    _require_cpu(model)
    check_problems(model, x, y)
    norms = require_mapping(norms, "norms", "layer names to input norms (pruning.input_norms)")
    if set(norms) != set(layers):
        raise ValueError("norms must give one input-norm vector per layer in layers")
    for name, layer in layers.items():
        if not isinstance(norms[name], torch.Tensor) or norms[name].shape != (layer.in_features,):
            raise ValueError(f"norms[{name!r}] must be a tensor of shape ({layer.in_features},), got "
                             f"{getattr(norms[name], 'shape', type(norms[name]).__name__)}")
        if not torch.isfinite(norms[name]).all():
            raise ValueError(f"norms[{name!r}] must be finite (no NaN or inf): a NaN score ranks arbitrarily")
    weights = {name: layer.weight.detach().clone() for name, layer in layers.items() if layer.weight.numel()}
    if not weights:
        raise ValueError("layers must hold at least one layer with weights, got none")
    method = widgets.Dropdown(options=["layer-wise magnitude", "global magnitude", "Wanda (|W|·‖X‖ per row)"],
                              description="method")
    slider = widgets.FloatSlider(value=0.5, min=0.0, max=0.95, step=0.05, description="sparsity",
                                 readout_format=".0%")
    readout = widgets.HTML()
    image = widgets.Image(format="png")
    fig, _, bars = _layer_bars(list(weights), "sparsity per layer (%)", 0.5 + 0.22 * len(weights), left=0.32)

    def pruned_copy(sparsity: float) -> nn.Module:               # model is never modified
        if method.value.startswith("Wanda"):
            return masked_copy(model, {n: wanda_mask(w, norms[n], sparsity) for n, w in weights.items()})
        pruned = copy_model(model)
        prune_fn = prune_layerwise if method.value.startswith("layer-wise") else prune_global
        prune_fn(pruned, sparsity, layers={n: pruned.get_submodule(n) for n in weights})
        return pruned

    def redraw(_change: object = None) -> None:
        pruned = pruned_copy(slider.value)
        chosen = {n: pruned.get_submodule(n) for n in weights}
        share = sum(layer.weight.numel() * s for layer, s in
                    zip(chosen.values(), layer_sparsities(pruned, chosen).values(), strict=True))
        readout.value = (f"exact match {exact_match(pruned, x, y):.1%} · "
                         f"{share / sum(w.numel() for w in weights.values()):.1%} of block weights pruned")
        for bar, sparsity in zip(bars, layer_sparsities(pruned, chosen).values(), strict=True):
            bar.set_width(100 * sparsity)
        image.value = figure_png(fig)

    method.observe(redraw, names="value")
    slider.observe(redraw, names="value")
    redraw()
    return Explorer([method, slider, readout, image], "transformer sparsity explorer")


def _check_ffn_scores(ffn_scores: object, names: list[str], widths: list[int]) -> None:
    """One float score tensor ``(widths[i],)`` per layer name ``names[i]``."""
    if not isinstance(ffn_scores, dict) or sorted(ffn_scores) != sorted(names):
        raise ValueError(f"ffn_scores must be a dict with one score tensor per layer, keys {names} "
                         f"(gpt_structured.ffn_neuron_scores), got {type(ffn_scores).__name__} "
                         f"{sorted(ffn_scores) if isinstance(ffn_scores, dict) else ''}")
    for name, width in zip(names, widths, strict=True):
        s = ffn_scores[name]
        if not isinstance(s, torch.Tensor) or s.shape != (width,) or not s.is_floating_point():
            got = f"{s.dtype} {tuple(s.shape)}" if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"ffn_scores[{name!r}] must be a float tensor of shape ({width},) (that layer's FFN "
                             f"width), got {got}")
        if not torch.isfinite(s).all():
            raise ValueError(f"ffn_scores[{name!r}] must be finite (no NaN or inf): a NaN score ranks arbitrarily")


def head_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ffn_scores: dict[str, torch.Tensor],
                  batch: int = 256) -> Explorer:
    """A checkbox per attention head (one row per layer) and an FFN-width slider (fraction of
    neurons kept in every layer, highest ``ffn_scores`` first). Shows live exact match on
    ``(x, y)``, parameter count and the measured latency of the slim model on ``batch`` problems.

    Each change rebuilds a slim model from ``model`` (``gpt_structured.slim_gpt``); ``model`` is
    not modified. ``ffn_scores``: ``"blocks.i.fc1"`` -> ``(ffn_i,)``, one per layer (e.g.
    ``gpt_structured.ffn_neuron_scores``). Returns ``VBox([grid, ffn_slider, readout])``.
    """
    from .gpt import GPT
    from .gpt_structured import ffn_names, head_names, slim_gpt
    from .tasks import check_problems, exact_match

    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    _require_cpu(model)
    check_problems(model, x, y)
    require_positive_int(batch, "batch")
    config = model.config
    _check_ffn_scores(ffn_scores, ffn_names(model), config.ffn)
    boxes = [[widgets.Checkbox(value=True, description=f"L{i} H{h}", indent=False,
                               layout=widgets.Layout(width="80px")) for h in range(n)]
             for i, n in enumerate(config.heads)]
    ffn_slider = widgets.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="FFN kept",
                                     readout_format=".0%")
    readout = widgets.HTML()
    inputs = x[:batch]

    def quick_ms(m: nn.Module) -> float:                       # median of 5 calls: a live estimate
        with torch.no_grad():
            return latency_ms(lambda: m(inputs), calls=5)

    dense_ms, dense_params = quick_ms(model), count_parameters(model)

    def redraw(_change: object = None) -> None:
        keep_heads = {name: [h for h, box in enumerate(row) if box.value]
                      for name, row in zip(head_names(model), boxes, strict=True)}
        keep_ffn = {name: keep_top(s, max(1, round(ffn_slider.value * len(s)))) for name, s in ffn_scores.items()}
        slim = slim_gpt(model, keep_heads, keep_ffn).eval()
        accuracy = exact_match(slim, x, y)
        params = count_parameters(slim)
        readout.value = (f"exact match {accuracy:.1%} · heads {slim.config.heads} · FFN {slim.config.ffn} · "
                         f"{params:,} parameters ({params / dense_params:.0%}) · {quick_ms(slim):.1f} ms "
                         f"per {len(inputs)} problems (dense {dense_ms:.1f} ms)")

    for box in (b for row in boxes for b in row):
        box.observe(redraw, names="value")
    ffn_slider.observe(redraw, names="value")
    redraw()
    grid = widgets.VBox([widgets.HBox(row) for row in boxes])
    return Explorer([grid, ffn_slider, readout], "head explorer")


def cnn_explorer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> Explorer:
    """Sliders for the residual channels and each block's inner channels to keep (highest BatchNorm
    |γ| first, ``cnn.channel_scores(model, "bn")``) and a checkbox per residual block (unticked:
    the block is dropped). Shows live accuracy on images ``x`` ``(B, 64)`` with labels ``y``
    ``(B,)``, without fine-tuning, the parameter count, multiply-adds per image, and the measured
    latency of a batch of ``batch`` images next to the dense model's: the median time of the full
    batches of the accuracy pass itself (so one pass gives both), or of 3 calls on ``x`` repeated
    when ``x`` holds fewer than ``batch`` images.

    Each change rebuilds a model from ``model`` (``cnn.slim_cnn``, then ``cnn.drop_blocks``);
    ``model`` (a ``cnn.DigitsCNN``) is not modified. Returns ``VBox([sliders..., boxes, readout])``.
    """
    from .cnn import as_images, channel_scores, drop_blocks, eval_mode, multiply_adds_per_image, require_cnn, slim_cnn
    from .training import check_labels

    require_cnn(model)
    _require_cpu(model)
    x = as_images(x, model.fc.weight).reshape(-1, 64)                  # (B, 64), what accuracy() takes
    check_labels(y, len(x), model.config.classes)
    batch = require_positive_int(batch, "batch")
    scores = channel_scores(model, "bn")
    inputs = x[:batch] if len(x) >= batch else x.repeat(batch // len(x) + 1, 1)[:batch]
    sliders = {name: widgets.IntSlider(value=len(s), min=1, max=len(s), description=name.removesuffix(".inner"),
                                       style={"description_width": "initial"})
               for name, s in scores.items()}
    boxes = [widgets.Checkbox(value=True, description=f"keep block {i}", indent=False,
                              layout=widgets.Layout(width="120px")) for i in range(len(model.blocks))]
    readout = widgets.HTML()

    @torch.no_grad()
    def accuracy_and_ms(m: nn.Module) -> tuple[float, float]:
        """Accuracy on (x, y) and the median milliseconds per full batch, from one pass in batches."""
        correct, times = 0, []
        for start in range(0, len(x), batch):
            began = time.perf_counter()
            logits = m(x[start:start + batch])                     # (batch, classes)
            if len(logits) == batch:
                times.append(time.perf_counter() - began)
            correct += int((logits.argmax(dim=1) == y[start:start + batch]).sum())
        ms = 1000 * statistics.median(times) if times else latency_ms(lambda: m(inputs), calls=3)
        return correct / len(x), ms

    with eval_mode(model):
        dense_ms, dense_params = accuracy_and_ms(model)[1], count_parameters(model)

    def redraw(_change: object = None) -> None:
        keep = {name: keep_top(scores[name], slider.value) for name, slider in sliders.items()}
        kept_blocks = [i for i, box in enumerate(boxes) if box.value]
        slim = drop_blocks(slim_cnn(model, keep.pop("residual"), keep), kept_blocks).eval()
        params, (accuracy, ms) = count_parameters(slim), accuracy_and_ms(slim)
        readout.value = (f"accuracy {accuracy:.1%} (no fine-tuning) · blocks {kept_blocks}, width "
                         f"{slim.config.width}, inner {slim.config.inner} · {params:,} parameters "
                         f"({params / dense_params:.0%}) · {multiply_adds_per_image(slim):,} multiply-adds per image · "
                         f"{ms:.2f} ms per batch of {batch} (dense {dense_ms:.2f} ms)")

    for control in (*sliders.values(), *boxes):
        control.observe(redraw, names="value")
    redraw()
    return Explorer([*sliders.values(), widgets.HBox(boxes), readout], "cnn explorer")
