"""Structured pruning of the MLP: scoring whole hidden neurons, and removing them.

Scores and kept indices are dicts keyed by the name of the Linear layer whose *outputs* the
neurons are: ``"layers.0"`` is the first hidden layer (see the package's "Words").

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
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .models import MLP
from .pruning import masked_weight
from .slimming import Activation, refuse_foreign_hooks, require_activation, slim_linear, slim_linear_pair
from .validate import require_gradients, require_indices

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
    features, weight = model.layers[0].in_features, masked_weight(model.layers[0], "weight")
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


# --- scores ---------------------------------------------------------------------------------------

def _hidden_activations(model: MLP, x: torch.Tensor) -> list[torch.Tensor]:
    """Post-ReLU outputs of every hidden layer of ``model`` on ``x``: a list of ``(n, width)``."""
    outputs = []
    for layer in model.layers[:-1]:
        x = F.relu(layer(x))
        outputs.append(x)
    return outputs


def _hidden_names(model: MLP) -> list[str]:
    """The names of the hidden layers, ``["layers.0", "layers.1", ...]`` (every layer but the last)."""
    return [f"layers.{i}" for i in range(len(model.layers) - 1)]


def neuron_scores_l2(model: MLP) -> dict[str, torch.Tensor]:
    """L2 norm of each hidden neuron's incoming weights (row norms): name -> ``(width,)``."""
    _require_mlp(model)
    return {name: masked_weight(layer, "weight").norm(dim=1)
            for name, layer in zip(_hidden_names(model), model.layers[:-1], strict=False)}


@torch.no_grad()
def neuron_scores_activation(model: MLP, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean |activation| of each hidden neuron over the inputs ``x`` ``(n, features)``: name -> ``(width,)``."""
    x = _check_features(_require_mlp(model), x)
    return dict(zip(_hidden_names(model), (a.abs().mean(dim=0) for a in _hidden_activations(model, x)), strict=True))


def neuron_scores_taylor(model: MLP, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """First-order Taylor score ``mean over examples of |a * dLoss/da|`` per hidden neuron: name
    -> ``(width,)``.

    It estimates how much the loss would change if the neuron's output ``a`` were set to zero
    (Molchanov et al., "Pruning Convolutional Neural Networks for Resource Efficient Inference",
    ICLR 2017). ``x``: ``(n, features)``, ``y``: ``(n,)`` labels. The parameters' ``.grad`` are
    left as they were (only the activations are differentiated).
    """
    require_gradients("neuron_scores_taylor")
    x = _check_features(_require_mlp(model), x)
    y = _check_labels(model, x, y)
    with torch.enable_grad():
        activations = _hidden_activations(model, x.detach().requires_grad_())
        if not activations:
            return {}
        loss = F.cross_entropy(model.layers[-1](activations[-1]), y)
        grads = torch.autograd.grad(loss, activations)
    return {name: (a * g).abs().mean(dim=0).detach()
            for name, a, g in zip(_hidden_names(model), activations, grads, strict=True)}


def neuron_scores_outgoing(model: MLP) -> dict[str, torch.Tensor]:
    """L2 norm of each hidden neuron's *outgoing* weights: its column in the next layer, what it
    writes into the rest of the network. Name -> ``(width,)``."""
    _require_mlp(model)
    return {name: masked_weight(layer, "weight").norm(dim=0)
            for name, layer in zip(_hidden_names(model), model.layers[1:], strict=True)}


def _check_keep(model: MLP, keep: object) -> dict[int, torch.Tensor]:
    """``keep`` (hidden-layer name -> neuron indices) checked, as hidden-layer index -> indices."""
    if not isinstance(keep, Mapping):
        raise TypeError(f"keep must be a dict mapping hidden-layer name to neuron indices, got {type(keep).__name__}")
    names, checked = _hidden_names(model), {}
    for name, indices in keep.items():
        if name not in names:
            raise ValueError(f"keep has key {name!r}; expected a hidden-layer name, one of {names}")
        i = names.index(name)
        checked[i] = require_indices(indices, model.layers[i].out_features, f"keep[{name!r}]")
    return checked


def slim_mlp(model: MLP, keep: Mapping[str, torch.Tensor], activation: Activation | None = None) -> MLP:
    """A new, smaller MLP keeping, in each hidden layer named in ``keep``, the neurons ``keep[name]``.

    ``keep`` maps hidden-layer name (``"layers.0"`` = first hidden layer) to distinct int
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
    refuse_foreign_hooks(_require_mlp(model))
    keep = _check_keep(model, keep)
    activation = require_activation(activation)
    # probe where folding applies it: the hidden biases themselves, and far beyond them
    biases = [b[torch.isfinite(b)] for b in (layer.bias.detach().float().cpu() for layer in model.layers[:-1]
                                             if layer.bias is not None and not layer.bias.is_meta)]
    probe = torch.cat([torch.linspace(-2.0, 2.0, 9), torch.tensor([-1e6, 1e6]), *biases])
    if activation is not None and not torch.equal(activation(probe), F.relu(probe)):
        raise ValueError(f"activation must compute ReLU (what MLP applies after every hidden layer) or be None, "
                         f"got {activation!r:.40}, which differs from relu on some inputs it would be applied to")
    layers = [slim_linear(layer) for layer in model.layers]
    for i in sorted(keep, reverse=True):              # last hidden layer first: see the docstring
        layers[i], layers[i + 1] = slim_linear_pair(layers[i], layers[i + 1], keep[i], activation)
    with torch.device("meta"):                        # only the shape; the layers come next
        slim = MLP([layers[0].in_features] + [layer.out_features for layer in layers])
    slim.layers = nn.ModuleList(layers)
    return slim.train(model.training)




@torch.no_grad()
def slim_mlp_refit(model: MLP, keep: Mapping[str, torch.Tensor], x: torch.Tensor, ridge: float = 1e-4) -> MLP:
    """:func:`slim_mlp` without folding (removed neurons dropped), then every layer that reads a
    slimmed layer refit by least squares: the reconstruction view of lesson 01, ``min ||Z - H W'||``.

    Layer by layer on the calibration inputs ``x`` ``(n, features)``: ``H`` ``(n, kept + 1)`` is
    what the slim model feeds the layer (its kept inputs and a column of ones for the bias), ``Z``
    ``(n, out)`` the *dense* model's pre-activations for the outputs the layer keeps, and the new
    weight and bias solve ``torch.linalg.lstsq`` on ``H`` stacked over ``sqrt(lam) * I`` (a ridge
    term, ``lam = ridge * mean(diag(H^T H))``, which keeps nearly collinear inputs from getting
    huge weights). Each layer is fitted to the inputs the refitted layers before it produce.
    ``model`` is not modified.
    """
    if isinstance(ridge, bool) or not isinstance(ridge, numbers.Real) or not 0 <= ridge < float("inf"):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    x = _check_features(_require_mlp(model), x)
    slim = slim_mlp(model, keep)
    kept = _check_keep(model, keep)                                            # hidden-layer index -> indices
    dense_h, slim_h = x, x
    for i, (dense_layer, slim_layer) in enumerate(zip(model.layers, slim.layers, strict=True)):
        z = dense_layer(dense_h)                                               # (n, out) dense pre-activations
        if i - 1 in kept:                                                      # it reads a slimmed layer
            rows = kept.get(i, torch.arange(z.shape[1]))                       # outputs this layer keeps
            h = torch.cat([slim_h, slim_h.new_ones(len(slim_h), 1)], dim=1)   # (n, kept + 1)
            lam = ridge * h.pow(2).sum(dim=0).mean()
            system = torch.cat([h, lam.sqrt() * torch.eye(h.shape[1], dtype=h.dtype, device=h.device)])
            target = torch.cat([z[:, rows], z.new_zeros(h.shape[1], len(rows))])
            solution = torch.linalg.lstsq(system, target).solution            # (kept + 1, out kept)
            slim_layer.weight.copy_(solution[:-1].T)
            slim_layer.bias.copy_(solution[-1])
        if i < len(model.layers) - 1:
            dense_h, slim_h = F.relu(z), F.relu(slim_layer(slim_h))
    return slim
