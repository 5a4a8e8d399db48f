"""Structured pruning: scoring whole neurons, and removing them so layers get physically smaller.

A hidden neuron ``i`` of ``nn.Linear`` layer ``L`` is row ``i`` of ``L.weight`` (and ``L.bias[i]``);
what it feeds is column ``i`` of the *next* layer's weight. Removing the neuron means deleting
that row, that bias entry and that column: both layers shrink, and nothing is multiplied by zero.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .models import MLP
from .validate import require_positive_int, require_tensor


def _require_mlp(model: object) -> MLP:
    if not isinstance(model, MLP):
        raise TypeError(f"model must be a lessons_lib.models.MLP, got {type(model).__name__}")
    return model


def _hidden_activations(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Post-ReLU outputs of every hidden layer of ``model`` on ``x``: a list of ``(n, width)``."""
    _require_mlp(model)
    outputs = []
    for layer in model.layers[:-1]:
        x = F.relu(layer(x))
        outputs.append(x)
    return outputs


def importance_l2(model: MLP) -> list[torch.Tensor]:
    """L2 norm of each hidden neuron's incoming weights (row norms): a list of ``(width,)``."""
    _require_mlp(model)
    return [layer.weight.detach().norm(dim=1) for layer in model.layers[:-1]]


@torch.no_grad()
def importance_activation(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Mean |activation| of each hidden neuron over the inputs ``x`` ``(n, features)``."""
    return [a.abs().mean(dim=0) for a in _hidden_activations(model, x)]


def importance_taylor(model: MLP, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """First-order Taylor score ``mean over examples of |a * dLoss/da|`` per hidden neuron.

    It estimates how much the loss would change if the neuron's output ``a`` were set to zero
    (Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient Inference",
    ICLR 2017). ``x``: ``(n, features)``, ``y``: ``(n,)`` labels.
    """
    activations = _hidden_activations(model, x)
    for a in activations:
        a.retain_grad()
    logits = model.layers[-1](activations[-1])
    model.zero_grad()
    F.cross_entropy(logits, y).backward()
    scores = [(a * a.grad).abs().mean(dim=0).detach() for a in activations]
    model.zero_grad()
    return scores


def keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices of the ``n_keep`` highest ``scores`` ``(width,)``, in increasing index order.

    Ties are broken towards the lower index (a stable sort).
    """
    scores = require_tensor(scores, "scores")
    n_keep = require_positive_int(n_keep, "n_keep")
    if n_keep > scores.numel():
        raise ValueError(f"n_keep must be <= the number of neurons ({scores.numel()}), got {n_keep}")
    order = torch.sort(-scores, stable=True).indices
    return order[:n_keep].sort().values


def _check_keep(keep: torch.Tensor, width: int) -> torch.Tensor:
    keep = torch.as_tensor(keep, dtype=torch.long)
    if keep.dim() != 1 or keep.numel() == 0:
        raise ValueError(f"keep must be a non-empty 1-D list of neuron indices, got shape {tuple(keep.shape)}")
    if keep.min() < 0 or keep.max() >= width:
        raise ValueError(f"keep must hold indices in [0, {width - 1}], "
                         f"got min {int(keep.min())}, max {int(keep.max())}")
    if keep.unique().numel() != keep.numel():
        raise ValueError("keep must not repeat an index")
    return keep


@torch.no_grad()
def slim_linear_pair(layer: nn.Linear, next_layer: nn.Linear, keep: torch.Tensor,
                     activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[nn.Linear, nn.Linear]:
    """New, smaller copies of ``layer`` (rows ``keep``) and ``next_layer`` (columns ``keep``).

    Args:
        layer: ``nn.Linear(in, width)``; next_layer: ``nn.Linear(width, out)``.
        keep: indices of the hidden neurons to keep, ``(k,)``.
        activation: if given, the removed neurons are assumed to still output the constant
            ``activation(bias)`` (as after ``prune.ln_structured``, which zeroes a row but keeps
            its bias), and that constant's effect is folded into ``next_layer``'s bias, so the
            function is unchanged. If ``None``, removed neurons are assumed to output 0.

    Returns:
        ``(nn.Linear(in, k), nn.Linear(k, out))``; the inputs are not modified.
    """
    if not isinstance(layer, nn.Linear) or not isinstance(next_layer, nn.Linear):
        raise TypeError(f"layer and next_layer must be nn.Linear, got {type(layer).__name__} and "
                        f"{type(next_layer).__name__}")
    if layer.out_features != next_layer.in_features:
        raise ValueError(f"layer.out_features ({layer.out_features}) must equal next_layer.in_features "
                         f"({next_layer.in_features})")
    keep = _check_keep(keep, layer.out_features)
    removed = torch.ones(layer.out_features, dtype=torch.bool)
    removed[keep] = False
    small = nn.Linear(layer.in_features, len(keep), bias=layer.bias is not None)
    small.weight.copy_(layer.weight[keep])
    following = nn.Linear(len(keep), next_layer.out_features, bias=next_layer.bias is not None)
    following.weight.copy_(next_layer.weight[:, keep])
    if layer.bias is not None:
        small.bias.copy_(layer.bias[keep])
    if next_layer.bias is not None:
        following.bias.copy_(next_layer.bias)
        if activation is not None and layer.bias is not None and removed.any():
            # each removed neuron still emitted activation(bias): a constant the next layer adds
            following.bias += next_layer.weight[:, removed] @ activation(layer.bias[removed])
    return small, following


def slim_mlp(model: MLP, keep: Mapping[int, torch.Tensor],
             activation: Callable[[torch.Tensor], torch.Tensor] | None = None) -> MLP:
    """A new, smaller MLP keeping, for hidden layer ``i``, the neurons ``keep[i]``.

    ``keep`` maps hidden-layer index (0 = first hidden layer) to indices; layers not named keep
    all neurons. ``activation`` as in :func:`slim_linear_pair` (use ``torch.relu`` to match a
    model pruned with ``prune.ln_structured``). The model given is not modified.
    """
    _require_mlp(model)
    n_hidden = len(model.layers) - 1
    for i in keep:
        if not isinstance(i, int) or not 0 <= i < n_hidden:
            raise ValueError(f"keep has key {i!r}; expected hidden-layer indices in [0, {n_hidden - 1}]")
    layers = [copy_linear(layer) for layer in model.layers]
    for i in sorted(keep):
        layers[i], layers[i + 1] = slim_linear_pair(layers[i], layers[i + 1], keep[i], activation)
    slim = MLP([layers[0].in_features] + [layer.out_features for layer in layers])
    for target, source in zip(slim.layers, layers, strict=True):
        target.load_state_dict(source.state_dict())
    return slim


@torch.no_grad()
def copy_linear(layer: nn.Linear) -> nn.Linear:
    """A plain copy of ``layer``'s current (masked, if pruned) weight and bias."""
    copied = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    copied.weight.copy_(layer.weight)
    if layer.bias is not None:
        copied.bias.copy_(layer.bias)
    return copied


@torch.no_grad()
def max_output_difference(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> float:
    """``max |model_a(x) - model_b(x)|``: 0 (up to float rounding) when both compute the same function."""
    return (model_a(x) - model_b(x)).abs().max().item()
