"""Slimming: making layers physically smaller, the primitive every structured method ends with.

A unit (a neuron, a head's slice) of an ``nn.Linear`` is a set of *rows* of its weight (what it
computes) and, in the layer it feeds, a set of *columns* (what reads it). :func:`slim_linear`
keeps chosen rows and/or columns and returns a new, smaller layer; the MLP (``structured``) and
GPT (``gpt_structured``) functions are thin adapters over it. :func:`keep_top` is the one way
units are chosen from scores.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import nn
from torch.nn.utils import prune

from .pruning import masked_weight
from .validate import require_indices, require_int, require_scores, require_tensor

Activation = Callable[[torch.Tensor], torch.Tensor]


def keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """The units to keep: indices of the ``n_keep`` highest ``scores`` ``(width,)``, as an int64
    tensor ``(n_keep,)`` in increasing index order.

    ``n_keep`` is an int in ``[0, width]``. Ties are broken towards the lower index (a stable
    sort), so equal scores always give the same choice. NaN scores are refused.
    """
    scores = require_scores(scores, "scores", allow_empty=True)
    n_keep = require_int(n_keep, "n_keep", 0)
    if n_keep > scores.numel():
        raise ValueError(f"n_keep must be <= the number of units ({scores.numel()}), got {n_keep}")
    order = torch.sort(scores, descending=True, stable=True).indices      # ties keep index order
    return order[:n_keep].sort().values.cpu()


def refuse_foreign_hooks(model: nn.Module, name: str = "model") -> None:
    """Slimming copies weights, not hooks: refuse forward hooks other than pruning masks."""
    for path, module in model.named_modules():
        hooks = [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
        if any(not isinstance(hook, prune.BasePruningMethod) for hook in hooks):
            raise ValueError(f"{name} has a forward hook on {path or type(module).__name__!r}: the slim model "
                             "would not run it and would compute something else; remove the hook first")


def require_activation(activation: object, name: str = "activation") -> Activation | None:
    """``activation`` if it is ``None`` or maps a tensor to a tensor of the same shape."""
    if activation is None:
        return None
    if not callable(activation):
        raise TypeError(f"{name} must be None or a callable such as torch.relu, "
                        f"got {type(activation).__name__} {activation!r:.40}")
    probe = torch.linspace(-2.0, 2.0, 9)
    try:
        out = activation(probe)
    except Exception as error:   # noqa: BLE001 - any failure means it is not an element-wise activation
        raise TypeError(f"{name} must map a tensor to a tensor like torch.relu; calling {activation!r:.40} "
                        f"on one raised {type(error).__name__}: {error}") from error
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        raise TypeError(f"{name} must map a tensor to a tensor of the same shape like torch.relu, "
                        f"{activation!r:.40} returned {type(out).__name__}")
    return activation


def _new_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A plain ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias`` ``(out,)``
    (no bias if ``None``), with their dtype and device. Built on the meta device: no random init
    (and no "zero-element tensors" warning for a layer slimmed to nothing, which is legitimate)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.detach().clone(memory_format=torch.contiguous_format))
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone(memory_format=torch.contiguous_format))
    return layer


@torch.no_grad()
def slim_linear(layer: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new ``nn.Linear`` holding only ``rows`` of ``layer``'s outputs (weight rows and bias
    entries) and ``cols`` of its inputs (weight columns); ``None`` keeps all of them.

    Args:
        layer: ``nn.Linear(in, out)``; a pruning mask on it is applied (the masked weight is copied).
        rows: distinct int indices into ``[0, out)``, ``(r,)``, in the order the new layer has them
            (empty allowed: a layer with no outputs left).
        cols: the same for ``[0, in)``, ``(c,)``.

    Returns:
        ``nn.Linear(c, r)`` with new Parameters of ``layer``'s dtype and device, sharing no storage
        with it; ``layer`` is not modified.
    """
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    weight, bias = masked_weight(layer, "weight"), masked_weight(layer, "bias")
    if rows is not None:
        rows = require_indices(rows, layer.out_features, "rows", allow_empty=True).to(weight.device)
        weight, bias = weight[rows], None if bias is None else bias[rows]
    if cols is not None:
        weight = weight[:, require_indices(cols, layer.in_features, "cols", allow_empty=True).to(weight.device)]
    return _new_linear(weight, bias)


@torch.no_grad()
def slim_linear_pair(layer: nn.Linear, next_layer: nn.Linear, keep: torch.Tensor,
                     activation: Activation | None = None) -> tuple[nn.Linear, nn.Linear]:
    """New, smaller copies of ``layer`` (rows ``keep``) and ``next_layer`` (columns ``keep``).

    Args:
        layer: ``nn.Linear(in, width)``; next_layer: ``nn.Linear(width, out)``. Pruning masks on
            either are applied (their masked weights are copied).
        keep: distinct int indices of the hidden neurons to keep, ``(k,)`` with k >= 1, in the
            order the new layers should have them.
        activation: the element-wise function between the two layers (``torch.relu``, ``torch.tanh``...).
            If given, the result computes exactly what ``next_layer(activation(layer(x)))``
            computes once the rows of ``layer.weight`` not in ``keep`` are zeroed and the bias is
            kept: each removed neuron outputs the constant ``activation(bias_i)`` (``activation(0)``
            if ``layer`` has no bias), and ``next_layer.weight[:, removed] @ constants`` is added
            to the new next layer's bias (which it gets if ``next_layer`` had none and the sum is
            not zero). If ``None``, the removed neurons are dropped, bias and all (output 0).

    Returns:
        ``(nn.Linear(in, k), nn.Linear(k, out))``: new Parameters of the inputs' dtype and device,
        sharing no storage with them; the inputs are not modified.
    """
    for arg, value in (("layer", layer), ("next_layer", next_layer)):
        if not isinstance(value, nn.Linear):
            raise TypeError(f"{arg} must be a torch.nn.Linear, got {type(value).__name__}")
    if layer.out_features != next_layer.in_features:
        raise ValueError(f"layer.out_features ({layer.out_features}) must equal next_layer.in_features "
                         f"({next_layer.in_features})")
    keep = require_indices(keep, layer.out_features, "keep")
    activation = require_activation(activation)
    weight, bias = masked_weight(layer, "weight"), masked_weight(layer, "bias")
    next_weight = masked_weight(next_layer, "weight")
    removed = torch.ones(layer.out_features, dtype=torch.bool)
    removed[keep] = False
    gone = removed.nonzero().flatten().to(weight.device)
    new_layer, new_next = slim_linear(layer, rows=keep), slim_linear(next_layer, cols=keep)
    if activation is not None and len(gone):
        # each removed neuron still emits a constant, whatever the input; the next layer adds it
        constant = activation(bias[gone] if bias is not None else weight.new_zeros(len(gone)))
        shift = next_weight[:, gone] @ constant
        if new_next.bias is not None:
            new_next.bias += shift
        elif shift.any():
            new_next.bias = nn.Parameter(shift)
    return new_layer, new_next


@torch.no_grad()
def max_output_difference(model_a: nn.Module, model_b: nn.Module, x: torch.Tensor) -> float:
    """``max |model_a(x) - model_b(x)|``: 0 (up to float rounding) when both compute the same function.

    Both models run as they are (call ``.eval()`` first if they use dropout or batch norm).
    """
    models = {"model_a": model_a, "model_b": model_b}
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    x = require_tensor(x, "x")
    outputs = []
    for name, model in models.items():
        try:
            outputs.append(model(x))
        except (RuntimeError, TypeError, ValueError, IndexError) as error:
            raise ValueError(f"x (shape {tuple(x.shape)}, {x.dtype}) does not fit {name} "
                             f"({type(model).__name__}): {error}") from error
    a, b = outputs
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        raise ValueError(f"model_a and model_b must return tensors of the same shape, got "
                         f"{getattr(a, 'shape', type(a).__name__)} and {getattr(b, 'shape', type(b).__name__)}")
    return (a - b).abs().max().item()
