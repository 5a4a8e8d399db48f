"""Pruning a whole model: masks on every ``nn.Linear`` weight, chosen layer by layer, globally,
or per layer from a sensitivity scan.

Everything here attaches ``torch.nn.utils.prune`` masks. Like prune itself, calling again prunes
a fraction of what is *left* (lesson 01, pitfall 6a); :func:`prune_global_to` takes a total
target instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from .models import linear_layers
from .sparsity import model_sparsity, random_mask, sparsity
from .validate import require_fraction

# calling them again prunes a fraction of what is *left* (see lesson 01, pitfall 6a).


def prune_layerwise(model: nn.Module, amount: float, generator: torch.Generator | None = None,
                    random: bool = False, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Prune the same fraction ``amount`` of every Linear layer's weight, by magnitude.

    With ``random=True`` the pruned weights are drawn at random instead (the baseline), from
    ``generator`` when given. ``layers`` restricts pruning to those layers (default: all Linear).
    """
    layers = linear_layers(model) if layers is None else layers
    amount = require_fraction(amount, "amount")
    for layer in layers.values():
        if random:
            prune.custom_from_mask(layer, "weight", random_mask(layer.weight, amount, generator))
        else:
            prune.l1_unstructured(layer, "weight", amount=amount)


def prune_global(model: nn.Module, amount: float, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Prune the fraction ``amount`` of all Linear weights *together*: one magnitude threshold
    for the whole model (``prune.global_unstructured``), so layers end up with different sparsity.
    ``layers`` restricts pruning to those layers (default: all Linear).
    """
    layers = linear_layers(model) if layers is None else layers
    amount = require_fraction(amount, "amount")
    prune.global_unstructured([(layer, "weight") for layer in layers.values()],
                              pruning_method=prune.L1Unstructured, amount=amount)


def prune_per_layer(model: nn.Module, amounts: dict[str, float]) -> None:
    """Prune each named Linear layer by magnitude to its own fraction, e.g. ``{"layers.1": 0.9}``.

    Layers not named are left alone. Every name and amount is checked before anything is pruned.
    """
    layers = linear_layers(model)
    for name, amount in amounts.items():
        if name not in layers:
            raise ValueError(f"amounts has a key {name!r} that is not a Linear layer; expected one of {list(layers)}")
        require_fraction(amount, f"amounts[{name!r}]")
    for name, amount in amounts.items():
        prune.l1_unstructured(layers[name], "weight", amount=float(amount))


def prune_global_to(model: nn.Module, target: float) -> None:
    """Prune globally until the Linear weights reach overall sparsity ``target`` (a fraction).

    Already pruned weights count towards the target, so this can be called repeatedly with
    rising targets (iterative and gradual schedules do exactly that).
    """
    target = require_fraction(target, "target")
    now = model_sparsity(model)
    if target < now - 1e-9:
        raise ValueError(f"target must be >= the current sparsity {now:.4f}; masks are never undone, got {target}")
    if target > now:
        prune_global(model, min(1.0, (target - now) / (1 - now)))


def prune_layerwise_to(model: nn.Module, target: float) -> None:
    """Prune every Linear layer by magnitude until *each* reaches sparsity ``target``.

    The layer-wise counterpart of :func:`prune_global_to`, for layer-wise schedules.
    """
    target = require_fraction(target, "target")
    layers = linear_layers(model)
    now = {name: sparsity(layer.weight) for name, layer in layers.items()}
    if any(target < s - 1e-9 for s in now.values()):
        raise ValueError(f"target must be >= every layer's current sparsity {max(now.values()):.4f}, got {target}")
    for name, layer in layers.items():
        if target > now[name]:
            prune.l1_unstructured(layer, "weight", amount=min(1.0, (target - now[name]) / (1 - now[name])))


def remove_masks(model: nn.Module) -> None:
    """``prune.remove`` on every pruned Linear weight: the zeros become permanent plain values."""
    for layer in linear_layers(model).values():
        if prune.is_pruned(layer):
            prune.remove(layer, "weight")


def layer_sparsities(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights in each Linear layer, by name."""
    return {name: sparsity(layer.weight) for name, layer in linear_layers(model).items()}


def global_threshold(weights: Sequence[torch.Tensor], amount: float) -> float:
    """The magnitude at or below which global pruning removes ``round(amount * N)`` weights.

    ``weights``: the layers' weight tensors, any shapes, ``N`` entries in all. With distinct
    magnitudes, pruning every ``|w| <= threshold`` gives exactly ``prune.global_unstructured``'s
    masks. For ``amount = 0`` nothing is pruned and the threshold is 0.
    """
    if len(weights) == 0:
        raise ValueError("weights must hold at least one tensor, got an empty sequence")
    amount = require_fraction(amount, "amount")
    scores = torch.cat([w.detach().abs().flatten() for w in weights])   # (N,)
    k = round(amount * scores.numel())
    return scores.kthvalue(k).values.item() if k > 0 else 0.0


def allocate_sparsity(scan: Mapping[str, Sequence[float]], amounts: Sequence[float],
                      sizes: Mapping[str, int], target: float) -> dict[str, float]:
    """Choose a sparsity per layer from a sensitivity scan, to reach ``target`` overall.

    Greedy: start every layer at ``amounts[0]`` (which must be 0) and repeatedly move one layer
    to its next level in ``amounts``, the one whose accuracy drop per weight removed is smallest,
    until the overall sparsity ``sum(size * amount) / sum(size)`` reaches ``target``.

    Args:
        scan: layer name -> accuracy at each of ``amounts`` with only that layer pruned (as
            returned by ``measure.sensitivity_scan``; use validation data, never test data).
        amounts: increasing fractions, starting at 0.
        sizes: layer name -> number of weights.
        target: overall fraction of weights to prune.
    """
    target = require_fraction(target, "target")
    if len(amounts) < 2 or amounts[0] != 0 or list(amounts) != sorted(amounts):
        raise ValueError(f"amounts must be increasing and start at 0, got {list(amounts)}")
    if set(scan) != set(sizes) or any(len(v) != len(amounts) for v in scan.values()):
        raise ValueError("scan and sizes must name the same layers, with one accuracy per amount in scan")
    level = dict.fromkeys(scan, 0)
    total = sum(sizes.values())

    def overall() -> float:
        return sum(sizes[n] * amounts[level[n]] for n in level) / total

    while overall() < target - 1e-12:
        movable = [n for n in level if level[n] + 1 < len(amounts)]
        if not movable:
            raise ValueError(f"target {target} is above what amounts allow ({amounts[-1]})")

        def cost(name: str) -> float:   # accuracy lost per weight removed by the next step
            i = level[name]
            removed = sizes[name] * (amounts[i + 1] - amounts[i])
            return max(0.0, scan[name][i] - scan[name][i + 1]) / removed

        level[min(movable, key=cost)] += 1
    return {n: amounts[level[n]] for n in level}


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every pruned Linear layer's mask, by layer name (bool, True = keep)."""
    return {name: layer.weight_mask.detach().bool().clone()
            for name, layer in linear_layers(model).items() if prune.is_pruned(layer)}


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Attach the given masks (e.g. from :func:`get_masks` of another model) to ``model``'s
    Linear layers with ``prune.custom_from_mask``. Shapes are checked before anything changes."""
    layers = linear_layers(model)
    for name, mask in masks.items():
        if name not in layers:
            raise ValueError(f"masks has a key {name!r} that is not a Linear layer; expected one of {list(layers)}")
        if mask.shape != layers[name].weight.shape:
            raise ValueError(f"masks[{name!r}] must have shape {tuple(layers[name].weight.shape)}, "
                             f"got {tuple(mask.shape)}")
    for name, mask in masks.items():
        prune.custom_from_mask(layers[name], "weight", mask)


@torch.no_grad()
def input_norms(model: nn.Module, x: torch.Tensor, layers: Mapping[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """For each layer, the L2 norm of each input feature over every row of a calibration batch.

    Runs ``model(x)`` once with forward hooks. Returns name -> ``(in_features,)``: the
    ``||X_j||`` of Wanda's score (all tokens of all examples count as rows).
    """
    sums: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            rows = inputs[0].reshape(-1, inputs[0].shape[-1])          # (tokens, in_features)
            sums[name] = sums.get(name, 0) + rows.pow(2).sum(dim=0)
        return record

    handles = [layer.register_forward_hook(hook(name)) for name, layer in layers.items()]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {name: total.sqrt() for name, total in sums.items()}


def wanda_mask(weight: torch.Tensor, norms: torch.Tensor | None, amount: float) -> torch.Tensor:
    """Activation-aware mask in the spirit of Wanda (Sun et al., 2023, arXiv:2306.11695).

    Score ``|W_ij| * ||X_j||`` and prune the ``round(amount * in_features)`` lowest scores *within
    each output row*. With ``norms=None`` the score is plain ``|W_ij|`` (row-wise magnitude).

    Args:
        weight: ``(out_features, in_features)``; norms: ``(in_features,)`` from :func:`input_norms`.

    Returns:
        bool ``(out_features, in_features)``, True = keep.
    """
    amount = require_fraction(amount, "amount")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if norms is not None and norms.shape != (weight.shape[1],):
        raise ValueError(f"norms must have shape ({weight.shape[1]},) (one per input feature), "
                         f"got {tuple(norms.shape)}")
    scores = weight.detach().abs() * (1 if norms is None else norms[None, :])
    k = round(amount * weight.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        keep.scatter_(1, scores.topk(k, dim=1, largest=False).indices, False)
    return keep
