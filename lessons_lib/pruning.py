"""Pruning a whole model: masks on every ``nn.Linear`` weight, chosen layer by layer, globally,
or per layer from a sensitivity scan.

Everything here attaches ``torch.nn.utils.prune`` masks. Like prune itself, calling again prunes
a fraction of what is *left* (lesson 01, pitfall 6a); :func:`prune_global_to` takes a total
target instead.

Every ``amount`` / ``target`` here is a fraction in [0, 1] (a float; the int 1 is refused as
ambiguous, write 1.0). Every argument is checked before the first mask is attached, so a call
that raises leaves the model as it was. A layer with no weights (a GPT layer pruned to 0 heads or
0 FFN neurons) has nothing to prune: it is skipped, and has no entry in :func:`layer_sparsities`.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from .models import MLP, linear_layers
from .sparsity import random_mask, sparsity
from .validate import is_sequence, require_fraction, require_layers, require_mapping, require_mask, require_tensor


def _prunable(model: nn.Module, layers: Mapping[str, nn.Linear] | None = None) -> dict[str, nn.Linear]:
    """``layers`` (default: every Linear of ``model``), checked, without the ones with no weights."""
    chosen = linear_layers(model) if layers is None else require_layers(model, layers)
    return {name: layer for name, layer in chosen.items() if layer.weight.numel() > 0}


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


def _linear_sparsity(layers: Mapping[str, nn.Linear]) -> float:
    """Fraction of zeros over all the weights of ``layers`` together (0 when they hold none)."""
    total = sum(layer.weight.numel() for layer in layers.values())
    return sum(int((layer.weight == 0).sum()) for layer in layers.values()) / total if total else 0.0


def _pruned_weight(layer: nn.Module) -> bool:
    """Whether ``layer.weight`` carries a prune mask (a pruned bias alone does not count)."""
    return "weight_mask" in dict(layer.named_buffers(recurse=False))


def _random_keep(layer: nn.Linear, amount: float, generator: torch.Generator | None) -> torch.Tensor:
    """A random keep-mask for ``layer.weight`` that prunes ``round(amount * alive)`` of the entries
    its mask still keeps, as ``prune`` does on a pruned layer (on an unpruned one it is exactly
    ``sparsity.random_mask(layer.weight, amount, generator)``)."""
    if not _pruned_weight(layer):
        return random_mask(layer.weight, amount, generator)
    alive = layer.weight_mask.flatten().nonzero().flatten()                  # (alive,)
    chosen = alive[torch.randperm(alive.numel(), generator=generator)[:round(amount * alive.numel())]
                   .to(alive.device)]
    keep = torch.ones(layer.weight.numel(), dtype=torch.bool, device=layer.weight.device)
    keep[chosen] = False
    return keep.view_as(layer.weight)


def prune_layerwise(model: nn.Module, amount: float, generator: torch.Generator | None = None,
                    random: bool = False, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Prune the same fraction ``amount`` (in [0, 1]) of every Linear layer's weight, by magnitude.

    With ``random=True`` the pruned weights are drawn at random instead (the baseline), from
    ``generator`` when given. ``layers`` (name -> ``nn.Linear`` of ``model``) restricts pruning to
    those layers (default: all Linear).
    """
    layers = _prunable(model, layers)
    amount = require_fraction(amount, "amount")
    if not isinstance(random, bool):
        raise TypeError(f"random must be True or False, got {random!r}")
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
        raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
    for layer in layers.values():
        if random:
            prune.custom_from_mask(layer, "weight", _random_keep(layer, amount, generator))
        else:
            prune.l1_unstructured(layer, "weight", amount=amount)


def prune_global(model: nn.Module, amount: float, layers: Mapping[str, nn.Linear] | None = None) -> None:
    """Prune the fraction ``amount`` (in [0, 1]) of all Linear weights *together*: one magnitude
    threshold for the whole model (``prune.global_unstructured``), so layers end up with different
    sparsity. ``layers`` (name -> ``nn.Linear`` of ``model``) restricts pruning to those layers
    (default: all Linear).
    """
    layers = _prunable(model, layers)
    amount = require_fraction(amount, "amount")
    if not layers:
        raise ValueError("layers must hold at least one Linear layer with weights, got none")
    prune.global_unstructured([(layer, "weight") for layer in layers.values()],
                              pruning_method=prune.L1Unstructured, amount=amount)


def prune_per_layer(model: nn.Module, amounts: Mapping[str, float]) -> None:
    """Prune each named Linear layer by magnitude by its own fraction in [0, 1], e.g.
    ``{"layers.1": 0.9}``. Layers not named are left alone (so is a named layer with no weights).
    Every name and amount is checked before anything is pruned.
    """
    layers = linear_layers(model)
    amounts = require_mapping(amounts, "amounts", "Linear layer names to fractions")
    for name, amount in amounts.items():
        if name not in layers:
            raise ValueError(f"amounts has a key {name!r} that is not a Linear layer; expected one of {list(layers)}")
        require_fraction(amount, f"amounts[{name!r}]")
    for name, amount in amounts.items():
        if layers[name].weight.numel():
            prune.l1_unstructured(layers[name], "weight", amount=float(amount))


def _counts(layer: nn.Linear) -> tuple[int, int, int]:
    """``(entries, zeros, masked)`` of ``layer.weight``: zeros as computed (masked or plain zero
    values, e.g. after ``prune.remove``) and the entries its prune mask switches off."""
    masked = int((layer.weight_mask == 0).sum()) if _pruned_weight(layer) else 0
    return layer.weight.numel(), int((layer.weight == 0).sum()), masked


def prune_global_to(model: nn.Module, target: float) -> None:
    """Prune globally until the Linear weights reach overall sparsity ``target`` (a fraction in
    [0, 1]): ``round(target * N)`` of their ``N`` weights are zero afterwards.

    Zeros already there count towards the target, masked or plain (after ``prune.remove``), so
    this can be called repeatedly with rising targets (iterative and gradual schedules do exactly
    that); a target within one weight below the current sparsity changes nothing. Only the
    Linear weights count (a GPT's embeddings and LayerNorms are never pruned here).
    """
    layers = _prunable(model)
    target = require_fraction(target, "target")
    if not layers:
        raise ValueError("model must hold at least one Linear layer with weights, got none")
    n, zeros, masked = (sum(c) for c in zip(*(_counts(layer) for layer in layers.values()), strict=True))
    if target * n < zeros - 1:
        raise ValueError(f"target must be >= the current sparsity {zeros / n:.4f}; masks are never undone, "
                         f"got {target}")
    want = round(target * n)
    if want > zeros:          # the smallest unmasked magnitudes go first, plain zeros among them
        prune.global_unstructured([(layer, "weight") for layer in layers.values()],
                                  pruning_method=prune.L1Unstructured, amount=want - masked)


def prune_layerwise_to(model: nn.Module, target: float) -> None:
    """Prune every Linear layer by magnitude until *each* reaches sparsity ``target`` (a fraction
    in [0, 1]): ``round(target * n)`` of a layer's ``n`` weights are zero afterwards. Layers with
    no weights are skipped; zeros already there count, as in :func:`prune_global_to`.

    The layer-wise counterpart of :func:`prune_global_to`, for layer-wise schedules.
    """
    layers = _prunable(model)
    target = require_fraction(target, "target")
    counts = {name: _counts(layer) for name, layer in layers.items()}
    if any(target * n < zeros - 1 for n, zeros, _ in counts.values()):
        highest = max(zeros / n for n, zeros, _ in counts.values())
        raise ValueError(f"target must be >= every layer's current sparsity {highest:.4f}, got {target}")
    for name, layer in layers.items():
        n, zeros, masked = counts[name]
        if round(target * n) > zeros:
            prune.l1_unstructured(layer, "weight", amount=round(target * n) - masked)


def remove_masks(model: nn.Module) -> None:
    """``prune.remove`` on every pruned Linear weight: the zeros become permanent plain values.
    (A pruned bias keeps its mask: only weights are pruned by this module.)"""
    for layer in linear_layers(model).values():
        if _pruned_weight(layer):
            prune.remove(layer, "weight")


def layer_sparsities(model: nn.Module) -> dict[str, float]:
    """Fraction of zero weights in each Linear layer, by name. A layer with no weights at all (0
    heads or 0 FFN neurons left) has no sparsity and is left out."""
    return {name: sparsity(layer.weight) for name, layer in _prunable(model).items()}


def global_threshold(weights: Sequence[torch.Tensor], amount: float) -> float:
    """The magnitude at or below which global pruning removes ``round(amount * N)`` weights.

    ``weights``: the layers' weight tensors, any shapes, ``N`` entries in all. With distinct
    magnitudes, pruning every ``|w| <= threshold`` gives exactly ``prune.global_unstructured``'s
    masks. ``amount`` is a fraction in [0, 1]; for ``amount = 0`` nothing is pruned and the
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
    amount = require_fraction(amount, "amount")
    scores = torch.cat([w.detach().abs().flatten() for w in weights])   # (N,)
    if scores.numel() == 0:
        raise ValueError("weights must hold at least one entry in all, got only empty tensors")
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
        amounts: strictly increasing fractions in [0, 1], starting at 0.
        sizes: layer name -> number of weights (an int >= 1).
        target: overall fraction of weights to prune, in [0, 1].
    """
    target = require_fraction(target, "target")
    _check_allocation(scan, amounts, sizes)
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


def _check_allocation(scan: object, amounts: object, sizes: object) -> None:
    """The arguments of :func:`allocate_sparsity`, checked (raises on the first problem)."""
    require_mapping(scan, "scan", "layer names to accuracies")
    require_mapping(sizes, "sizes", "layer names to numbers of weights")
    if len(scan) == 0:
        raise ValueError("scan must name at least one layer (from measure.sensitivity_scan), got an empty dict")
    if not is_sequence(amounts):
        raise TypeError(f"amounts must be a list of fractions, got {type(amounts).__name__}")
    values = [require_fraction(a, f"amounts[{i}]") for i, a in enumerate(amounts)]
    if len(values) < 2 or values[0] != 0 or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"amounts must be strictly increasing and start at 0, got {list(amounts)}")
    if set(scan) != set(sizes):
        raise ValueError(f"scan and sizes must name the same layers, got {sorted(scan)} and {sorted(sizes)}")
    for name, accuracies in scan.items():
        if not is_sequence(accuracies) or len(accuracies) != len(values):
            raise ValueError(f"scan[{name!r}] must be a list of one accuracy per amount ({len(values)}), "
                             f"got {accuracies!r}")
        if not all(isinstance(a, numbers.Real) and not isinstance(a, bool) and math.isfinite(a) for a in accuracies):
            raise ValueError(f"scan[{name!r}] must hold finite numbers (accuracies), got {accuracies!r}")
        if isinstance(sizes[name], bool) or not isinstance(sizes[name], numbers.Integral) or sizes[name] < 1:
            raise ValueError(f"sizes[{name!r}] must be an int >= 1 (a number of weights), got {sizes[name]!r}")


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


@torch.no_grad()
def input_norms(model: nn.Module, x: torch.Tensor, layers: Mapping[str, nn.Linear]) -> dict[str, torch.Tensor]:
    """For each layer, the L2 norm of each input feature over every row of a calibration batch.

    Runs ``model(x)`` once with forward hooks. Returns name -> ``(in_features,)``: the
    ``||X_j||`` of Wanda's score (all tokens of all examples count as rows). ``layers``: name ->
    ``nn.Linear`` of ``model``; each must run during ``model(x)``, except a layer with no weights
    (a GPT layer with 0 heads skips its projections), whose norms are zeros.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    from .gpt import GPT
    from .tasks import check_tokens
    from .training import check_inputs

    layers = require_layers(model, layers)
    if isinstance(model, MLP):
        check_inputs(model, x)                      # (n, features) floats
    elif isinstance(model, GPT):
        check_tokens(model, x, "x")                 # (n, T) token ids
    elif require_tensor(x, "x").dim() < 2:
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
    except (RuntimeError, IndexError) as error:
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


def wanda_mask(weight: torch.Tensor, norms: torch.Tensor | None, amount: float) -> torch.Tensor:
    """Activation-aware mask in the spirit of Wanda (Sun et al., 2023, arXiv:2306.11695).

    Score ``|W_ij| * ||X_j||`` and prune the ``round(amount * in_features)`` lowest scores *within
    each output row*. With ``norms=None`` the score is plain ``|W_ij|`` (row-wise magnitude).

    Args:
        weight: ``(out_features, in_features)``; norms: ``(in_features,)`` from :func:`input_norms`.
        amount: the fraction of each row to prune, in [0, 1].

    Returns:
        bool ``(out_features, in_features)``, True = keep.
    """
    amount = require_fraction(amount, "amount")
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
    k = round(amount * weight.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        keep.scatter_(1, scores.topk(k, dim=1, largest=False).indices, False)
    return keep
