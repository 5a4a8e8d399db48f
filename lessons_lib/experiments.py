"""Experiment drivers: curves and scans that prune copies of a model and measure them.

Each function here runs one of the lessons' standard experiments, built from the core modules
(masks, pruning, measure) and the course's training helpers. The model passed in is never
changed: every point of a curve is measured on a fresh copy, so nothing compounds.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune

from .measure import csr_bytes, output_error, state_dict_bytes
from .pruning import copy_model, linear_layers, prune_global, prune_per_layer, remove_masks
from .sparsity import unpruned_weight
from .training import accuracy, check_examples
from .validate import is_sequence, require_callable, require_fraction, require_linear_input, require_mapping

MaskFn = Callable[[torch.Tensor, float], torch.Tensor]


def _check_sparsities(sparsities: object) -> list[float]:
    """A non-empty list (or tuple) of fractions in [0, 1]."""
    if not is_sequence(sparsities):
        raise TypeError(f"sparsities must be a list of fractions in [0, 1], got {type(sparsities).__name__} "
                        f"{sparsities!r}")
    if len(sparsities) == 0:
        raise ValueError("sparsities must hold at least one fraction, got an empty sequence")
    return [require_fraction(a, f"sparsities[{i}]") for i, a in enumerate(sparsities)]


def error_vs_sparsity(layer: nn.Linear, x: torch.Tensor, sparsities: Sequence[float], mask_fn: MaskFn) -> list[float]:
    """:func:`measure.output_error` of ``layer`` on ``x`` ``(batch, in_features)`` for each
    fraction in ``sparsities`` (each in [0, 1]: the fraction of the weight zeroed).

    ``mask_fn(weight, sparsity)`` returns the mask, e.g. ``sparsity.magnitude_mask``. Every mask
    is computed from the unpruned weight, so nothing compounds.
    """
    require_linear_input(layer, x)
    sparsities = _check_sparsities(sparsities)
    require_callable(mask_fn, "mask_fn")
    weight = unpruned_weight(layer)
    return [output_error(layer, x, mask_fn(weight, s)) for s in sparsities]


def metric_vs_sparsity(model: nn.Module, sparsities: Sequence[float], prune_fn: Callable[[nn.Module, float], None],
                       metric: Callable[[nn.Module], object]) -> list:
    """``metric(pruned)`` for a pruned *copy* of ``model`` at each fraction in ``sparsities``
    (each in [0, 1]: the fraction of the weights zeroed); one result per sparsity, in order.

    ``prune_fn(copy, sparsity)`` prunes the copy in place, e.g. ``pruning.prune_global``;
    ``metric`` measures it, e.g. ``lambda m: tasks.evaluate(m, x, y)``. A model that already
    carries masks is copied with them (:func:`pruning.copy_model`); ``model`` is not changed.
    """
    sparsities = _check_sparsities(sparsities)
    require_callable(prune_fn, "prune_fn")
    require_callable(metric, "metric")
    results = []
    for s in sparsities:
        pruned = copy_model(model)
        returned = prune_fn(pruned, s)
        if isinstance(returned, nn.Module) and not any(returned is m for m in pruned.modules()):
            raise TypeError(f"prune_fn must prune the model it is given in place; it returned another "
                            f"{type(returned).__name__}, which would not be measured")
        results.append(metric(pruned))
    return results


def accuracy_vs_sparsity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, sparsities: Sequence[float],
                         prune_fn: Callable[[nn.Module, float], None]) -> list[float]:
    """Accuracy on ``x`` ``(n, features)``, labels ``y`` ``(n,)`` of a pruned *copy* of
    ``model`` for each fraction in ``sparsities`` (each in [0, 1]: the fraction of the weights
    zeroed): :func:`metric_vs_sparsity` with :func:`training.accuracy`.
    """
    check_examples(model, x, y)
    return metric_vs_sparsity(model, sparsities, prune_fn, lambda pruned: accuracy(pruned, x, y))


def sensitivity_scan(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     sparsities: Sequence[float]) -> dict[str, list[float]]:
    """For each Linear layer alone, accuracy when only that layer is pruned by magnitude.

    Returns layer name -> one accuracy per fraction in ``sparsities`` (each in [0, 1]). Use validation data: the
    result is meant for choosing per-layer sparsities (:func:`allocate_sparsity`).
    """
    layers = linear_layers(model)
    check_examples(model, x, y)
    sparsities = _check_sparsities(sparsities)
    return {name: accuracy_vs_sparsity(model, x, y, sparsities,
                                       lambda m, s, name=name: prune_per_layer(m, {name: s}))
            for name in layers}


def storage_bytes(model: nn.Module, sparsity: float) -> dict[str, int]:
    """Bytes to store ``model`` (an MLP-like model of Linear layers) pruned globally to
    ``sparsity`` (a total fraction in [0, 1]; masks it already carries count towards it):

    - ``dense``: the state_dict with zeros in it; ``masked``: prune's form (weight_orig + mask);
    - ``csr_int64`` / ``csr_int32``: weights in CSR with 8- / 4-byte indices, plus biases;
    - ``compressed``: the dense state_dict after zlib.
    The model itself is not changed (each form is built on a copy).
    """
    linear_layers(model)
    sparsity = require_fraction(sparsity, "sparsity")
    masked = copy_model(model)
    prune_global(masked, sparsity, linear_layers(masked))
    for layer in linear_layers(masked).values():     # prune's form everywhere, even at sparsity 0
        if "weight_mask" not in dict(layer.named_buffers(recurse=False)):
            prune.identity(layer, "weight")
    zeros = copy_model(masked)
    remove_masks(zeros)
    layers = linear_layers(zeros).values()
    biases = sum(layer.bias.numel() * layer.bias.element_size() for layer in layers if layer.bias is not None)
    return {"dense": state_dict_bytes(zeros), "masked": state_dict_bytes(masked),
            "csr_int64": sum(csr_bytes(layer.weight.detach()) for layer in layers) + biases,
            "csr_int32": sum(csr_bytes(layer.weight.detach(), torch.int32) for layer in layers) + biases,
            "compressed": state_dict_bytes(zeros, compress=True)}


def allocate_sparsity(scan: Mapping[str, Sequence[float]], sparsities: Sequence[float],
                      sizes: Mapping[str, int], sparsity: float) -> dict[str, float]:
    """Choose a sparsity per layer from a sensitivity scan, to reach ``sparsity`` overall.

    Greedy: start every layer at ``sparsities[0]`` (which must be 0) and repeatedly move one layer
    to its next level in ``sparsities``, the one whose accuracy drop per weight removed is smallest,
    until the overall sparsity ``sum(size * level) / sum(size)`` reaches ``sparsity``.

    Args:
        scan: layer name -> accuracy at each of ``sparsities`` with only that layer pruned (as
            returned by :func:`sensitivity_scan`; use validation data, never test data).
        sparsities: strictly increasing fractions in [0, 1], starting at 0.
        sizes: layer name -> number of weights (an int >= 1).
        sparsity: overall fraction of weights to prune, in [0, 1].
    """
    sparsity = require_fraction(sparsity, "sparsity")
    _check_allocation(scan, sparsities, sizes)
    level = dict.fromkeys(scan, 0)
    total = sum(sizes.values())

    def overall() -> float:
        return sum(sizes[n] * sparsities[level[n]] for n in level) / total

    while overall() < sparsity - 1e-12:
        movable = [n for n in level if level[n] + 1 < len(sparsities)]
        if not movable:
            raise ValueError(f"sparsity {sparsity} is above what sparsities allow ({sparsities[-1]})")

        def cost(name: str) -> float:   # accuracy lost per weight removed by the next step
            i = level[name]
            removed = sizes[name] * (sparsities[i + 1] - sparsities[i])
            return max(0.0, scan[name][i] - scan[name][i + 1]) / removed

        level[min(movable, key=cost)] += 1
    return {n: sparsities[level[n]] for n in level}


def _check_allocation(scan: object, sparsities: object, sizes: object) -> None:
    """The arguments of :func:`allocate_sparsity`, checked (raises on the first problem)."""
    require_mapping(scan, "scan", "layer names to accuracies")
    require_mapping(sizes, "sizes", "layer names to numbers of weights")
    if len(scan) == 0:
        raise ValueError("scan must name at least one layer (from sensitivity_scan), got an empty dict")
    if not is_sequence(sparsities):
        raise TypeError(f"sparsities must be a list of fractions, got {type(sparsities).__name__}")
    values = [require_fraction(a, f"sparsities[{i}]") for i, a in enumerate(sparsities)]
    if len(values) < 2 or values[0] != 0 or any(b <= a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"sparsities must be strictly increasing and start at 0, got {list(sparsities)}")
    if set(scan) != set(sizes):
        raise ValueError(f"scan and sizes must name the same layers, got {sorted(scan)} and {sorted(sizes)}")
    for name, accuracies in scan.items():
        if not is_sequence(accuracies) or len(accuracies) != len(values):
            raise ValueError(f"scan[{name!r}] must be a list of one accuracy per sparsity ({len(values)}), "
                             f"got {accuracies!r}")
        if not all(isinstance(a, numbers.Real) and not isinstance(a, bool) and math.isfinite(a) for a in accuracies):
            raise ValueError(f"scan[{name!r}] must hold finite numbers (accuracies), got {accuracies!r}")
        if isinstance(sizes[name], bool) or not isinstance(sizes[name], numbers.Integral) or sizes[name] < 1:
            raise ValueError(f"sizes[{name!r}] must be an int >= 1 (a number of weights), got {sizes[name]!r}")


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank of each entry of ``values`` ``(n,)``, 1 = smallest; tied entries share their mean rank."""
    unique, group, counts = values.unique(return_inverse=True, return_counts=True)   # sorted unique values
    first = torch.cumsum(counts, 0) - counts                                         # ranks before each group
    mean_rank = first.double() + (counts.double() + 1) / 2                           # (n_unique,)
    return mean_rank[group]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two scores ``(n,)`` for the same n units, in [-1, 1]: 1 when
    they order the units the same way, -1 when exactly reversed (ties get their mean rank)."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a 1-D real torch.Tensor of scores, got {type(t).__name__}")
        if t.dim() != 1 or t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name} must be a 1-D real torch.Tensor of scores, got dtype {t.dtype}, "
                            f"shape {tuple(t.shape)}")
        if t.is_floating_point() and t.isnan().any():
            raise ValueError(f"{name} holds NaN: NaN cannot be ranked")
    if a.shape != b.shape or len(a) < 2:
        raise ValueError(f"a and b must score the same units (same length >= 2), got {len(a)} and {len(b)}")
    ra, rb = _ranks(a.detach().cpu()), _ranks(b.detach().cpu())
    ca, cb = ra - ra.mean(), rb - rb.mean()
    denominator = (ca.norm() * cb.norm()).item()
    if denominator == 0:
        raise ValueError("a and b must each hold at least two different scores: a constant has no ranking")
    if torch.equal(ra, rb) or torch.equal(ra, len(a) + 1 - rb):       # the same or the reversed order: exact
        return 1.0 if torch.equal(ra, rb) else -1.0
    return max(-1.0, min(1.0, (ca @ cb).item() / denominator))
