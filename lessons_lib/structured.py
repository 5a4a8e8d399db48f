"""Structured pruning: scoring whole neurons, and removing them so layers get physically smaller.

A hidden neuron ``i`` of ``nn.Linear`` layer ``L`` is row ``i`` of ``L.weight`` (and ``L.bias[i]``);
what it feeds is column ``i`` of the *next* layer's weight. Removing the neuron means deleting
that row, that bias entry and that column: both layers shrink, and nothing is multiplied by zero.

Masking a neuron is not removing it. ``prune.ln_structured(layer, "weight", amount, n=2, dim=0)``
(lesson 04) zeroes the neuron's row and keeps its bias, so the neuron still outputs the constant
``act(bias_i)`` for every input and the next layer keeps adding ``W_next[:, i] * act(bias_i)``.
Slimming with ``activation=act`` folds that constant into the next layer's bias, so the slim
model computes exactly what the masked one does (see :func:`slim_mlp` for the precise meaning).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from .models import MLP
from .validate import require_gradients, require_positive_int, require_tensor

Activation = Callable[[torch.Tensor], torch.Tensor]


# --- checks shared with gpt_structured ------------------------------------------------------------

def _current(module: nn.Module, name: str) -> torch.Tensor | None:
    """``module``'s tensor ``name`` as its forward uses it, detached (``None`` if it has none).

    Under a ``torch.nn.utils.prune`` mask that is ``name_orig * name_mask``: the plain ``name``
    attribute is only refreshed by a forward pass, so it is stale after an optimizer step.
    """
    orig, mask = module._parameters.get(name + "_orig"), module._buffers.get(name + "_mask")
    if orig is not None and mask is not None:
        return (orig * mask).detach()
    value = getattr(module, name, None)
    return None if value is None else value.detach()


def _refuse_foreign_hooks(model: nn.Module, name: str = "model") -> None:
    """Slimming copies weights, not hooks: refuse forward hooks other than pruning masks."""
    for path, module in model.named_modules():
        hooks = [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
        if any(not isinstance(hook, prune.BasePruningMethod) for hook in hooks):
            raise ValueError(f"{name} has a forward hook on {path or type(module).__name__!r}: the slim model "
                             "would not run it and would compute something else; remove the hook first")


def _is_int(value: object) -> bool:
    """An int index: a Python or numpy int, or a 0-d integer tensor (not a bool, not a float)."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and not value.is_complex() \
            and value.dtype != torch.bool
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_indices(keep: object, width: int, name: str, allow_empty: bool = False) -> torch.Tensor:
    """``keep`` as a 1-D int64 CPU tensor of distinct indices in ``[0, width)``.

    Accepts a list, tuple or range of ints, a 1-D integer tensor or numpy array. Refuses floats
    (``[0.5, 1.7]`` is not "rows 0 and 1"), bools (a mask is not a list of indices), repeats,
    indices out of range and, unless ``allow_empty``, an empty selection.
    """
    if isinstance(keep, list | tuple | range):
        odd = [i for i in keep if not _is_int(i)]
        if odd:
            raise TypeError(f"{name} must hold int indices, got {odd[0]!r} ({type(odd[0]).__name__})")
        values = [int(i) for i in keep]
        if values and (min(values) < 0 or max(values) >= width):   # before torch.tensor: 10**20 overflows it
            raise ValueError(f"{name} must hold indices in [0, {width - 1}], got min {min(values)}, max {max(values)}")
        keep = torch.tensor(values, dtype=torch.long)
    elif isinstance(keep, np.ndarray):
        keep = torch.from_numpy(keep) if keep.dtype.kind in "iub" else keep
    if not isinstance(keep, torch.Tensor):
        raise TypeError(f"{name} must be a list or 1-D tensor of int indices, got {type(keep).__name__} {keep!r:.60}")
    if keep.dtype == torch.bool:
        raise TypeError(f"{name} must hold indices, got a bool tensor (a mask?): pass mask.nonzero().flatten()")
    if keep.is_floating_point() or keep.is_complex():
        raise TypeError(f"{name} must hold int indices, got dtype {keep.dtype} ({keep.tolist()!r:.60})")
    if keep.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one index per kept unit), got shape {tuple(keep.shape)}")
    if keep.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} must keep at least one index, got none")
    keep = keep.detach().to("cpu", torch.long)
    if keep.numel() and (keep.min() < 0 or keep.max() >= width):
        raise ValueError(f"{name} must hold indices in [0, {width - 1}], got min {int(keep.min())}, "
                         f"max {int(keep.max())}")
    if keep.unique().numel() != keep.numel():
        raise ValueError(f"{name} must not repeat an index, got {keep.tolist()!r:.60}")
    return keep


def _check_scores(scores: object, name: str, allow_empty: bool = False) -> torch.Tensor:
    """``scores`` if it is a 1-D real tensor (one score per unit) with no NaN."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"{name} must be a 1-D torch.Tensor of scores, got {type(scores).__name__}")
    if scores.dtype == torch.bool or scores.is_complex():
        raise TypeError(f"{name} must hold real scores, got dtype {scores.dtype}")
    if scores.dim() != 1 or (scores.numel() == 0 and not allow_empty):
        raise ValueError(f"{name} must be 1-D with one score per unit, got shape {tuple(scores.shape)}")
    if scores.is_floating_point() and scores.isnan().any():
        raise ValueError(f"{name} holds NaN (index {int(scores.isnan().nonzero()[0])}): NaN cannot be ranked")
    return scores.detach()


# --- checks for the MLP ---------------------------------------------------------------------------

def _require_mlp(model: object, name: str = "model") -> MLP:
    """``model`` if it is a plain ``MLP`` (not a subclass, whose forward may differ) whose
    ``layers`` are still ``nn.Linear`` layers that chain."""
    if type(model) is not MLP:
        raise TypeError(f"{name} must be a lessons_lib.models.MLP (not a subclass), got {type(model).__name__}")
    layers = model.layers
    if not isinstance(layers, nn.ModuleList) or not layers or not all(isinstance(m, nn.Linear) for m in layers):
        raise ValueError(f"{name}.layers must be a ModuleList of nn.Linear layers, got {layers!r:.80}")
    for i in range(len(layers) - 1):
        if layers[i].out_features != layers[i + 1].in_features:
            raise ValueError(f"{name}.layers[{i}] has {layers[i].out_features} outputs but layers[{i + 1}] "
                             f"takes {layers[i + 1].in_features} inputs")
    return model


def _check_features(model: MLP, x: object, name: str = "x") -> torch.Tensor:
    """``x`` if it is a ``(n, in_features)`` batch (n >= 1) of the model's dtype and device."""
    features, weight = model.layers[0].in_features, _current(model.layers[0], "weight")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, {features}), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] == 0 or x.shape[1] != features:
        raise ValueError(f"{name} must have shape (n, {features}) with n >= 1, got {tuple(x.shape)}")
    if x.dtype != weight.dtype or x.device != weight.device:
        raise ValueError(f"{name} must be {weight.dtype} on {weight.device} like the model's weights, "
                         f"got {x.dtype} on {x.device}")
    return x


def _check_labels(model: MLP, x: torch.Tensor, y: object, name: str = "y") -> torch.Tensor:
    """``y`` as int64 if it holds one class label in ``[0, classes)`` per row of ``x``."""
    classes = model.layers[-1].out_features
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class labels, got {type(y).__name__}")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise TypeError(f"{name} must hold int class labels, got dtype {y.dtype}")
    if y.shape != (len(x),) or y.device != x.device:
        raise ValueError(f"{name} must have shape ({len(x)},) (one label per row of x) on {x.device}, "
                         f"got {tuple(y.shape)} on {y.device}")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"{name} must hold labels in [0, {classes - 1}], got min {int(y.min())}, max {int(y.max())}")
    return y.long()


def _check_activation(activation: object, name: str = "activation") -> Activation | None:
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


# --- scores ---------------------------------------------------------------------------------------

def _hidden_activations(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Post-ReLU outputs of every hidden layer of ``model`` on ``x``: a list of ``(n, width)``."""
    outputs = []
    for layer in model.layers[:-1]:
        x = F.relu(layer(x))
        outputs.append(x)
    return outputs


def importance_l2(model: MLP) -> list[torch.Tensor]:
    """L2 norm of each hidden neuron's incoming weights (row norms): a list of ``(width,)``."""
    _require_mlp(model)
    return [_current(layer, "weight").norm(dim=1) for layer in model.layers[:-1]]


@torch.no_grad()
def importance_activation(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Mean |activation| of each hidden neuron over the inputs ``x`` ``(n, features)``."""
    x = _check_features(_require_mlp(model), x)
    return [a.abs().mean(dim=0) for a in _hidden_activations(model, x)]


def importance_taylor(model: MLP, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """First-order Taylor score ``mean over examples of |a * dLoss/da|`` per hidden neuron.

    It estimates how much the loss would change if the neuron's output ``a`` were set to zero
    (Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient Inference",
    ICLR 2017). ``x``: ``(n, features)``, ``y``: ``(n,)`` labels. The parameters' ``.grad`` are
    left as they were (only the activations are differentiated).
    """
    require_gradients("importance_taylor")
    x = _check_features(_require_mlp(model), x)
    y = _check_labels(model, x, y)
    with torch.enable_grad():
        activations = _hidden_activations(model, x.detach().requires_grad_())
        if not activations:
            return []
        loss = F.cross_entropy(model.layers[-1](activations[-1]), y)
        grads = torch.autograd.grad(loss, activations)
    return [(a * g).abs().mean(dim=0).detach() for a, g in zip(activations, grads, strict=True)]


def keep_top(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices of the ``n_keep`` highest ``scores`` ``(width,)``, in increasing index order.

    Ties are broken towards the lower index (a stable sort). NaN scores are refused.
    """
    scores = _check_scores(scores, "scores")
    n_keep = require_positive_int(n_keep, "n_keep")
    if n_keep > scores.numel():
        raise ValueError(f"n_keep must be <= the number of neurons ({scores.numel()}), got {n_keep}")
    order = torch.sort(-scores, stable=True).indices
    return order[:n_keep].sort().values


# --- slimming -------------------------------------------------------------------------------------

def _new_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """A plain ``nn.Linear`` holding copies of ``weight`` ``(out, in)`` and ``bias`` ``(out,)``
    (no bias if ``None``), with their dtype and device. Built on the meta device: no random init."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    layer.weight = nn.Parameter(weight.detach().clone(memory_format=torch.contiguous_format))
    if bias is not None:
        layer.bias = nn.Parameter(bias.detach().clone(memory_format=torch.contiguous_format))
    return layer


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
    keep = _check_indices(keep, layer.out_features, "keep")
    activation = _check_activation(activation)
    weight, bias = _current(layer, "weight"), _current(layer, "bias")
    next_weight, next_bias = _current(next_layer, "weight"), _current(next_layer, "bias")
    removed = torch.ones(layer.out_features, dtype=torch.bool)
    removed[keep] = False
    keep, gone = keep.to(weight.device), removed.nonzero().flatten().to(weight.device)
    if activation is not None and len(gone):
        # each removed neuron still emits a constant, whatever the input; the next layer adds it
        constant = activation(bias[gone] if bias is not None else weight.new_zeros(len(gone)))
        shift = next_weight[:, gone] @ constant
        if next_bias is not None or shift.any():
            next_bias = shift if next_bias is None else next_bias + shift
    return _new_linear(weight[keep], None if bias is None else bias[keep]), _new_linear(next_weight[:, keep], next_bias)


def _check_keep_per_layer(model: MLP, keep: object) -> dict[int, torch.Tensor]:
    if not isinstance(keep, Mapping):
        raise TypeError(f"keep must be a dict mapping hidden-layer index to neuron indices, got {type(keep).__name__}")
    n_hidden, checked = len(model.layers) - 1, {}
    for i, indices in keep.items():
        if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < n_hidden:
            raise ValueError(f"keep has key {i!r}; expected a hidden-layer index in range({n_hidden})")
        checked[int(i)] = _check_indices(indices, model.layers[i].out_features, f"keep[{i}]")
    return checked


def slim_mlp(model: MLP, keep: Mapping[int, torch.Tensor], activation: Activation | None = None) -> MLP:
    """A new, smaller MLP keeping, for hidden layer ``i``, the neurons ``keep[i]``.

    ``keep`` maps hidden-layer index (0 = first hidden layer, ``layers.0``) to distinct int
    indices (a list or 1-D tensor, at least one); layers not named keep all their neurons.

    **The masked model.** Take ``model`` as its forward runs it (with any ``torch.nn.utils.prune``
    masks applied) and, in every hidden layer ``i`` named in ``keep``, set the rows of
    ``layers[i].weight`` that are not in ``keep[i]`` to zero, leaving every bias as it is. That
    is what ``prune.ln_structured(layer, "weight", amount, dim=0)`` leaves (lesson 04) and what
    ``widgets.neuron_explorer`` slims. There, a removed neuron ``j`` of layer ``i`` receives
    nothing and outputs ``relu(b_ij)`` with its *original* bias, for every input.

    ``activation``: ``MLP`` applies ReLU after every hidden layer, so the only activation that
    describes it is ReLU: pass ``torch.relu`` (or any callable computing ReLU; others are
    refused) and ``slim(x)`` equals the masked model's output up to float rounding, the removed
    neurons' ``relu(b_ij)`` being folded into the next layer's bias. With ``None`` the removed
    neurons are dropped, constant and all: the slim model then equals the masked model with the
    removed neurons' bias entries zeroed too.

    Layers are slimmed from the last hidden layer to the first, so each removed neuron's constant
    uses its layer's original bias, before that bias receives the constants folded from the
    layer below (in the masked model nothing from below reaches a removed neuron).

    The result has ``model``'s dtype, device and training mode, and new Parameters sharing no
    storage with ``model``, which is not modified.
    """
    _refuse_foreign_hooks(_require_mlp(model))
    keep = _check_keep_per_layer(model, keep)
    activation = _check_activation(activation)
    # probe where folding applies it: the hidden biases themselves, and far beyond them
    biases = [b[torch.isfinite(b)] for b in (layer.bias.detach().float().cpu() for layer in model.layers[:-1]
                                             if layer.bias is not None and not layer.bias.is_meta)]
    probe = torch.cat([torch.linspace(-2.0, 2.0, 9), torch.tensor([-1e6, 1e6]), *biases])
    if activation is not None and not torch.equal(activation(probe), F.relu(probe)):
        raise ValueError(f"activation must compute ReLU (what MLP applies after every hidden layer) or be None, "
                         f"got {activation!r:.40}, which differs from relu on some inputs it would be applied to")
    layers = [copy_linear(layer) for layer in model.layers]
    for i in sorted(keep, reverse=True):              # last hidden layer first: see the docstring
        layers[i], layers[i + 1] = slim_linear_pair(layers[i], layers[i + 1], keep[i], activation)
    with torch.device("meta"):                        # only the shape; the layers come next
        slim = MLP([layers[0].in_features] + [layer.out_features for layer in layers])
    slim.layers = nn.ModuleList(layers)
    return slim.train(model.training)


@torch.no_grad()
def copy_linear(layer: nn.Linear) -> nn.Linear:
    """A plain copy of ``layer``'s current (masked, if pruned) weight and bias: same dtype and
    device, new Parameters sharing no storage with ``layer``."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    return _new_linear(_current(layer, "weight"), _current(layer, "bias"))


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
        if type(model) is MLP:
            _check_features(_require_mlp(model, name), x)
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
