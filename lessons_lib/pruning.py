"""Pruning a whole model: masks on its weights, chosen layer by layer, globally, at random or per
layer, and the model's sparsity read back.

Which weights count is decided in one place, :func:`prunable_layers`: a model that has a method
``prunable_layers()`` says so itself (the GPT: the Linear layers of its blocks), any other model
has every ``nn.Linear`` counted. Every function here takes ``layers=None`` meaning exactly those.

Every ``sparsity`` is a *total* (a fraction in [0, 1]): ``round(sparsity * n)`` of a group's
``n`` weights are zero afterwards, counting the zeros already there (masked, or plain after
``prune.remove``). So calling again with a higher sparsity prunes more, calling with the same
sparsity changes nothing, and asking for less than there already is raises (masks are never
undone). ``torch.nn.utils.prune``'s ``amount`` is different: a share of what is *left* (lesson
01, pitfall 6a). Every argument is checked before the first mask is attached, so a call that
raises leaves the model as it was. A layer with no weights (a GPT layer pruned to 0 heads or 0
FFN neurons) has nothing to prune: it is skipped, and has no entry in :func:`layer_sparsities`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils import prune

from .sparsity import lamp_scores, tensor_sparsity
from .validate import (
    is_sequence,
    require_fraction,
    require_generator,
    require_layers,
    require_mapping,
    require_mask,
    require_module,
    require_tensor,
)


def linear_layers(model: nn.Module) -> dict[str, nn.Linear]:
    """Every ``nn.Linear`` in ``model`` by its module path, in order, e.g. ``{"layers.0": ...}``."""
    require_module(model, "model")
    layers = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if not layers:
        raise ValueError(f"model must contain at least one nn.Linear, found none in {type(model).__name__}")
    return layers


def prunable_layers(model: nn.Module, layers: Mapping[str, nn.Linear] | None = None) -> dict[str, nn.Linear]:
    """The Linear layers whose weights a model-level call considers, by name: ``layers`` if given
    (checked: Linear layers of ``model``), else ``model.prunable_layers()`` if the model defines
    it (the GPT does: its blocks' Linear layers), else every ``nn.Linear``. Layers with no
    weights are left out. This is the one definition of "which weights count"."""
    if layers is not None:
        chosen = require_layers(model, layers)
    elif callable(getattr(model, "prunable_layers", None)):
        chosen = require_layers(model, model.prunable_layers())
    else:
        chosen = linear_layers(model)
    return {name: layer for name, layer in chosen.items() if layer.weight.numel() > 0}


def masked_weight(module: nn.Module, name: str = "weight") -> torch.Tensor | None:
    """``module``'s tensor ``name`` as its forward uses it, detached (``None`` if it has none).

    Under a ``torch.nn.utils.prune`` mask that is ``name_orig * name_mask``: the plain ``name``
    attribute is only refreshed by a forward pass, so it is stale after an optimizer step.
    """
    orig, mask = module._parameters.get(name + "_orig"), module._buffers.get(name + "_mask")
    if orig is not None and mask is not None:
        return (orig * mask).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy of ``model`` (same dtype, device, values, masks and hooks), pruned or not.

    ``copy.deepcopy`` refuses a model with prune masks attached: each pruned ``weight`` is a
    computed tensor (``weight_orig * weight_mask``), not a leaf. Here those computed tensors are
    handed to deepcopy as plain detached copies; the copy's own prune hook recomputes them from
    its ``weight_orig`` and ``weight_mask`` on its next forward call, as on the original.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    memo: dict[int, object] = {}
    for module in model.modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, prune.BasePruningMethod):
                computed = getattr(module, hook._tensor_name)
                memo[id(computed)] = computed.detach().clone()
    return copy.deepcopy(model, memo)


def _pruned_weight(layer: nn.Module) -> bool:
    """Whether ``layer.weight`` carries a prune mask (a pruned bias alone does not count)."""
    return "weight_mask" in dict(layer.named_buffers(recurse=False))


def _counts(layer: nn.Linear) -> tuple[int, int, int]:
    """``(entries, zeros, masked)`` of ``layer.weight``: zeros as computed (masked or plain zero
    values, e.g. after ``prune.remove``) and the entries its prune mask switches off."""
    masked = int((layer.weight_mask == 0).sum()) if _pruned_weight(layer) else 0
    weight = masked_weight(layer)                        # not `layer.weight`: stale after an optimizer step
    return weight.numel(), int((weight == 0).sum()), masked


def _new_zeros(layers: Mapping[str, nn.Linear], sparsity: object) -> dict[str, int]:
    """Per layer, how many more weights must become zero for *each* layer to reach ``sparsity``;
    raises (naming the layer) if one is already sparser than that by more than one weight."""
    sparsity = require_fraction(sparsity, "sparsity")
    more = {}
    for name, layer in layers.items():
        n, zeros, _ = _counts(layer)
        if sparsity * n < zeros - 1:
            raise ValueError(f"sparsity must be >= {name}'s current sparsity {zeros / n:.4f} (masks are never "
                             f"undone), got {sparsity}")
        more[name] = max(0, round(sparsity * n) - zeros)
    return more


def _prune_smallest(layer: nn.Linear, more: int) -> None:
    """Zero ``more`` further weights of ``layer``, smallest magnitudes first among the unmasked
    ones. ``prune`` counts among unmasked entries, plain zeros included: those go first."""
    if more:
        n, zeros, masked = _counts(layer)
        prune.l1_unstructured(layer, "weight", amount=zeros - masked + more)


def prune_layerwise(model: nn.Module, sparsity: float, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Bring every layer to the same ``sparsity`` (a total fraction in [0, 1]) by magnitude: in each,
    the smallest-magnitude weights still unmasked go first.

    ``layers`` (name -> ``nn.Linear`` of ``model``) restricts pruning to those; default
    :func:`prunable_layers`.
    """
    layers = prunable_layers(model, layers)
    if not layers:
        raise ValueError("model must hold at least one Linear layer with weights to prune, got none")
    for name, more in _new_zeros(layers, sparsity).items():
        _prune_smallest(layers[name], more)


def prune_random(model: nn.Module, sparsity: float, generator: torch.Generator | None = None,
                 layers: Mapping[str, nn.Linear] | None = None) -> None:
    """The baseline: bring every layer to ``sparsity`` (a total fraction in [0, 1]) by zeroing weights
    drawn uniformly at random among its non-zero ones (from ``generator`` when given, a CPU
    ``torch.Generator``). ``layers`` as in :func:`prune_layerwise`.
    """
    layers = prunable_layers(model, layers)
    if not layers:
        raise ValueError("model must hold at least one Linear layer with weights to prune, got none")
    plan = _new_zeros(layers, sparsity)
    require_generator(generator)
    for name, more in plan.items():
        layer = layers[name]
        if more:
            alive = (layer.weight.detach() != 0).flatten().nonzero().flatten()          # (non-zero,)
            chosen = alive[torch.randperm(alive.numel(), generator=generator)[:more].to(alive.device)]
            keep = torch.ones(layer.weight.numel(), dtype=torch.bool, device=layer.weight.device)
            keep[chosen] = False
            prune.custom_from_mask(layer, "weight", keep.view_as(layer.weight))


def _prune_together(model: nn.Module, sparsity: object, layers: Mapping[str, nn.Linear] | None,
                    scores: Callable[[nn.Linear], torch.Tensor] | None) -> None:
    """One global threshold over ``layers`` up to the total ``sparsity``: the lowest ``scores(layer)``
    (``|w|`` when ``None``) among the unmasked weights go first, plain zeros among them."""
    layers = prunable_layers(model, layers)
    if not layers:
        raise ValueError("model must hold at least one Linear layer with weights to prune, got none")
    sparsity = require_fraction(sparsity, "sparsity")
    n, zeros, masked = (sum(c) for c in zip(*(_counts(layer) for layer in layers.values()), strict=True))
    if sparsity * n < zeros - 1:
        raise ValueError(f"sparsity must be >= the current sparsity {zeros / n:.4f} of these layers (masks are "
                         f"never undone), got {sparsity}")
    want = round(sparsity * n)
    if want > zeros:
        importance = None if scores is None else {(layer, "weight"): scores(layer) for layer in layers.values()}
        prune.global_unstructured([(layer, "weight") for layer in layers.values()],
                                  pruning_method=prune.L1Unstructured, amount=want - masked,
                                  importance_scores=importance)


def prune_global(model: nn.Module, sparsity: float, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Bring the layers *together* to ``sparsity`` (a total fraction in [0, 1]): one magnitude threshold
    for all of them (``prune.global_unstructured``), so each layer ends at its own sparsity.
    ``round(sparsity * N)`` of their ``N`` weights are zero afterwards; zeros already there
    count. ``layers`` as in :func:`prune_layerwise`.
    """
    _prune_together(model, sparsity, layers, scores=None)


def prune_lamp(model: nn.Module, sparsity: float, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Like :func:`prune_global` (one threshold, total ``sparsity``, a fraction in [0, 1]), but
    ranking the weights by :func:`sparsity.lamp_scores` of their layer instead of ``|w|``: a
    layer of small weights is no longer emptied, because its largest weight scores 1 like every
    layer's. The scores are read from the current (masked) weights, so zeros go first.
    """
    _prune_together(model, sparsity, layers, scores=lambda layer: lamp_scores(masked_weight(layer)))


def prune_per_layer(model: nn.Module, sparsities: Mapping[str, float]) -> None:
    """Bring each named Linear layer to its own ``sparsity`` (a total fraction in [0, 1]) by magnitude,
    e.g. ``{"layers.1": 0.9}``. Layers not named are left alone (so is a named layer with no
    weights). Every name and sparsity is checked before anything is pruned.
    """
    layers = linear_layers(model)
    sparsities = require_mapping(sparsities, "sparsities", "Linear layer names to fractions")
    for name in sparsities:                      # a layer with no weights is still checked
        if name not in layers:
            raise ValueError(f"sparsities has a key {name!r} that is not a Linear layer; expected one of "
                             f"{list(layers)}")
        require_fraction(sparsities[name], f"sparsities[{name!r}]")
    named = {name: layers[name] for name in sparsities if layers[name].weight.numel()}
    more = {name: _new_zeros({name: named[name]}, sparsities[name])[name] for name in named}
    for name, count in more.items():
        _prune_smallest(named[name], count)


def remove_masks(model: nn.Module) -> None:
    """``prune.remove`` on every pruned Linear weight: the zeros become permanent plain values.
    (A pruned bias keeps its mask: only weights are pruned by this module.)"""
    for layer in linear_layers(model).values():
        if _pruned_weight(layer):
            prune.remove(layer, "weight")


def layer_sparsities(model: nn.Module, layers: Mapping[str, nn.Linear] | None = None) -> dict[str, float]:
    """Fraction of zero weights in each layer :func:`prunable_layers` counts, by name. A layer
    with no weights at all (0 heads or 0 FFN neurons left) has no sparsity and is left out."""
    return {name: tensor_sparsity(masked_weight(layer)) for name, layer in prunable_layers(model, layers).items()}


class LayerSparsity(NamedTuple):
    """One row of :func:`sparsity_report`."""

    layer: str          # module path, e.g. "layers.0" or "blocks.0.fc1"
    shape: tuple        # shape of the weight
    total: int          # number of weights
    zeros: int          # how many are exactly zero (masked or removed)

    @property
    def sparsity(self) -> float:
        """``zeros / total``; a layer with no weights at all counts as 0 (nothing is pruned)."""
        return self.zeros / self.total if self.total else 0.0


def sparsity_report(model: nn.Module, layers: Mapping[str, nn.Linear] | None = None) -> list[LayerSparsity]:
    """Zeros per layer, over the weights :func:`prunable_layers` counts (``layers`` if given).

    Works before pruning, while masks are attached (it reads ``weight_orig * weight_mask``, fresh
    even right after an optimizer step, when the ``weight`` attribute is stale) and after
    ``prune.remove``. Biases are not counted: pruning methods leave them alone. A layer with no
    weights at all (a GPT layer pruned to 0 heads or 0 FFN neurons) has no sparsity and no row.
    """
    chosen = prunable_layers(model, layers)
    if not chosen:
        raise ValueError(f"model has no Linear layer with weights to report on ({type(model).__name__})")
    weights = {name: masked_weight(layer) for name, layer in chosen.items()}      # fresh, masks applied
    return [LayerSparsity(name or type(layer).__name__, tuple(w.shape), w.numel(), int((w == 0).sum()))
            for (name, layer), w in zip(chosen.items(), weights.values(), strict=True)]


def model_sparsity(model: nn.Module, layers: Mapping[str, nn.Linear] | None = None) -> float:
    """The model's sparsity: the fraction of zeros over the weights :func:`prunable_layers`
    counts (``layers`` if given), the same weights every pruning function here considers."""
    rows = sparsity_report(model, layers)
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



def global_threshold(weights: Sequence[torch.Tensor], sparsity: float) -> float:
    """The magnitude at or below which global pruning removes ``round(sparsity * N)`` weights.

    ``weights``: the layers' weight tensors, any shapes, ``N`` entries in all. With distinct
    magnitudes, pruning every ``|w| <= threshold`` gives exactly ``prune.global_unstructured``'s
    masks. ``sparsity`` is a fraction in [0, 1]; for ``sparsity = 0`` nothing is pruned and the
    threshold is 0.
    """
    if not is_sequence(weights):
        raise TypeError(f"weights must be a list of tensors, got {type(weights).__name__}")
    if len(weights) == 0:
        raise ValueError("weights must hold at least one tensor, got an empty sequence")
    for i, w in enumerate(weights):
        if not isinstance(w, torch.Tensor) or not w.is_floating_point():
            raise TypeError(f"weights[{i}] must be a float torch.Tensor, got "
                            f"{getattr(w, 'dtype', type(w).__name__)}")
    sparsity = require_fraction(sparsity, "sparsity")
    scores = torch.cat([w.detach().abs().flatten() for w in weights])   # (N,)
    if scores.numel() == 0:
        raise ValueError("weights must hold at least one entry in all, got only empty tensors")
    k = round(sparsity * scores.numel())
    return scores.kthvalue(k).values.item() if k > 0 else 0.0


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every pruned Linear weight's mask, by layer name (bool, True = keep; same
    shape and device as the weight)."""
    return {name: layer.weight_mask.detach().bool().clone()
            for name, layer in linear_layers(model).items() if _pruned_weight(layer)}


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach the given masks (e.g. from :func:`get_masks` of another model) to ``model``'s
    Linear layers with ``prune.custom_from_mask``; on an already pruned layer the masks combine.

    ``masks``: layer name -> tensor of the weight's shape and device, bool or 0/1 (1 = keep).
    Every name, shape, device and value is checked before anything changes.
    """
    layers = linear_layers(model)
    masks = require_mapping(masks, "masks", "Linear layer names to mask tensors")
    checked = {}
    for name, mask in masks.items():
        if name not in layers:
            raise ValueError(f"masks has a key {name!r} that is not a Linear layer; expected one of {list(layers)}")
        checked[name] = require_mask(mask, layers[name].weight, f"masks[{name!r}]")
    for name, mask in checked.items():
        prune.custom_from_mask(layers[name], "weight", mask)


def masked_copy(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` (:func:`copy_model`) with ``masks`` attached (:func:`apply_masks`):
    name -> bool/0-1 tensor of that layer's weight shape, True = keep. ``model`` is unchanged."""
    copy = copy_model(model)
    apply_masks(copy, masks)
    return copy


@torch.no_grad()
def input_norms(model: nn.Module, x: torch.Tensor,
                layers: Mapping[str, nn.Linear] | None = None) -> dict[str, torch.Tensor]:
    """For each layer, the L2 norm of each input feature over every row of a calibration batch.

    Runs ``model(x)`` once with forward hooks. ``x``: a batch the model takes (first dimension
    = examples: ``(n, features)`` for the MLP, ``(n, T)`` token ids for the GPT). Returns name ->
    ``(in_features,)``: the ``||X_j||`` of Wanda's score (all tokens of all examples count as
    rows). ``layers``: name -> ``nn.Linear`` of ``model``, default :func:`prunable_layers`; each
    must run during ``model(x)``, except a layer with no weights (a GPT layer with 0 heads skips
    its projections), whose norms are zeros.
    """
    require_module(model, "model")
    layers = prunable_layers(model, layers) if layers is None else require_layers(model, layers)
    if require_tensor(x, "x").dim() < 2:
        raise ValueError(f"x must be a batch (its first dimension counts examples), got shape {tuple(x.shape)}")
    sums: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            rows = inputs[0].flatten(0, -2)                              # (tokens, in_features)
            sums[name] = sums.get(name, 0) + rows.pow(2).sum(dim=0)
        return record

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers.items()]
    try:
        model(x)
    except (RuntimeError, IndexError, ValueError, TypeError) as error:
        raise ValueError(f"model could not run on x of shape {tuple(x.shape)} ({x.dtype}): {error}") from error
    finally:
        for handle in handles:
            handle.remove()
    unused = [name for name, layer in layers.items() if name not in sums and layer.weight.numel()]
    if unused:
        raise ValueError(f"layers {unused} never ran during model(x): pass layers that model's forward uses")
    return {name: sums[name].sqrt() if name in sums else
            torch.zeros(layer.in_features, dtype=layer.weight.dtype, device=layer.weight.device)
            for name, layer in layers.items()}
