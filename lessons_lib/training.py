"""Training and evaluation, shared by every lesson that trains.

The loop works unchanged on pruned models: ``torch.nn.utils.prune``'s hooks rebuild each
``weight = weight_orig * weight_mask`` on every forward call, so pruned weights stay exactly zero
while the optimizer updates ``weight_orig``. (What the optimizer does *under* the mask is
lesson 03's subject.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import Split, digits_split
from .models import MLP
from .progress import progress_bar
from .pruning import linear_layers
from .validate import (
    is_sequence,
    require_bool,
    require_callable,
    require_int,
    require_lr,
    require_module,
    require_positive_int,
)


def check_inputs(model: nn.Module | None, x: object, name: str = "x") -> torch.Tensor:
    """``x`` if it is a non-empty 2-D float tensor ``(n, features)`` with ``model``'s dtype and
    device (when ``model`` is given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (n, features), got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] == 0 or not x.is_floating_point():
        raise ValueError(f"{name} must be a non-empty 2-D float tensor (n, features), "
                         f"got shape {tuple(x.shape)} of {x.dtype}")
    param = None if model is None else next(model.parameters(), None)
    if param is not None and (param.dtype, param.device) != (x.dtype, x.device):
        raise ValueError(f"{name} is {x.dtype} on {x.device} but model's parameters are {param.dtype} on "
                         f"{param.device}: convert one to the other (e.g. {name}.to(model's dtype))")
    return x


def check_labels(y: object, n: int, classes: int, name: str = "y") -> torch.Tensor:
    """``y`` if it is an int64 tensor ``(n,)`` of class indices in ``[0, classes)``."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(y).__name__}")
    if y.shape != (n,) or y.dtype != torch.int64:
        raise ValueError(f"{name} must be an int64 tensor of shape ({n},) (one label per example), "
                         f"got shape {tuple(y.shape)} of {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= classes:
        raise ValueError(f"{name} must hold class indices in [0, {classes}) (the model's outputs), "
                         f"got values from {int(y.min())} to {int(y.max())}")
    return y


@torch.no_grad()
def _logits(model: nn.Module, x: torch.Tensor, name: str = "x", shape: tuple | None = None) -> torch.Tensor:
    """``model(x)`` in eval mode (the mode is restored), ``(n, classes)``; a failure names ``x``
    (and ``shape``, the shape of the whole tensor when ``x`` is a slice of it)."""
    was_training = model.training
    model.eval()
    try:
        logits = model(x)
    except (RuntimeError, IndexError) as error:
        raise ValueError(f"model could not run on {name} of shape {shape or tuple(x.shape)}: {error}") from error
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or logits.shape[:1] != x.shape[:1] or logits.dim() != 2:
        raise ValueError(f"model must map {name} (n, features) to logits (n, classes), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    return logits


def check_examples(model: nn.Module, x: object, y: object, logits: torch.Tensor | None = None) -> None:
    """Inputs ``x`` ``(n, features)`` and labels ``y`` ``(n,)`` that ``model`` can be scored on:
    the model runs on ``x[:1]`` (or ``logits`` of all of ``x`` are given) to learn its classes."""
    require_module(model, "model")
    x = check_inputs(model, x)
    if isinstance(y, torch.Tensor) and y.dim() >= 1 and y.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must hold the same, non-zero number of examples, got {x.shape[0]} and {y.shape[0]}")
    classes = (_logits(model, x[:1], "x", tuple(x.shape)) if logits is None else logits).shape[1]
    check_labels(y, x.shape[0], classes)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of ``x`` (``(n, features)``) whose arg-max logit equals ``y`` (``(n,)``)."""
    require_module(model, "model")
    logits = _logits(model, check_inputs(model, x))
    check_examples(model, x, y, logits)
    return (logits.argmax(dim=1) == y).sum().item() / len(y)


def check_split(data: object, model: nn.Module | None = None) -> Split:
    """``data`` if it is a :class:`data.Split` of float inputs ``(n, features)`` and int64 labels
    ``(n,)``; with ``model``, its dtype, device, input width and number of classes must fit too."""
    if not isinstance(data, Split):
        raise TypeError(f"data must be a lessons_lib.data.Split (from digits_split), got {type(data).__name__}")
    for part in ("train", "val", "test"):
        x = check_inputs(model, getattr(data, f"x_{part}"), f"data.x_{part}")
        if x.shape[1] != data.x_train.shape[1]:
            raise ValueError(f"data.x_{part} must have {data.x_train.shape[1]} features like data.x_train, "
                             f"got {x.shape[1]}")
        classes = _logits(model, x[:1], f"data.x_{part}", tuple(x.shape)).shape[1] if model is not None else 2 ** 62
        check_labels(getattr(data, f"y_{part}"), x.shape[0], classes, f"data.y_{part}")
    return data


def train(
    model: nn.Module,
    data: Split,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    progress: bool = True,
    desc: str = "training",
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
) -> list[float]:
    """Train ``model`` on ``data.x_train`` with cross-entropy; return validation accuracy per epoch.

    Args:
        epochs: number of passes over the training set.
        lr: learning rate of the default optimizer, Adam.
        batch_size: examples per step; the order is shuffled by a generator seeded with ``seed``,
            so the same call gives the same weights.
        optimizer: use this one instead of a fresh Adam (e.g. to keep momentum across calls).
        on_epoch_start: called as ``on_epoch_start(epoch)`` before each epoch (0-based): the
            hook gradual pruning uses to prune on a schedule.
        progress: show a progress bar (:func:`lessons_lib.progress.progress_bar`).
        penalty: ``penalty(model)``, a 0-d tensor added to every step's loss (e.g. an L1 term on
            BatchNorm scales, :func:`cnn.bn_l1_penalty`).

    Every argument is checked once, before the first step (``data`` against ``model``).
    """
    require_module(model, "model")
    _check_loop(epochs, lr, batch_size, seed, on_epoch_start, desc, progress)
    if penalty is not None:
        require_callable(penalty, "penalty")
        value = penalty(model)
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise TypeError(f"penalty(model) must return a 0-d tensor to add to the loss, got {value!r:.60}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}")
    check_split(data, model)
    if optimizer is not None:
        owned = {id(p) for p in model.parameters()}
        if not any(id(p) in owned for group in optimizer.param_groups for p in group["params"]):
            raise ValueError("optimizer must update this model's parameters, but it holds none of them "
                             "(was it built for another model, or before the model was slimmed?)")
    optimizer = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    history = []
    for epoch in progress_bar(epochs, desc, "epoch", enabled=progress):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        model.train()
        for batch in torch.randperm(n, generator=generator).split(batch_size):
            loss = F.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            if penalty is not None:
                loss = loss + penalty(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        history.append(accuracy(model, data.x_val, data.y_val))
    return history


def _check_loop(epochs: object, lr: object, batch_size: object, seed: object, on_epoch_start: object,
                desc: object = "", progress: object = True) -> None:
    """The loop arguments :func:`train` and :func:`train_together` share."""
    require_bool(progress, "progress")
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a str (the progress bar's label) or None, got {type(desc).__name__} {desc!r}")
    require_positive_int(epochs, "epochs")
    require_positive_int(batch_size, "batch_size")
    require_lr(lr)
    require_int(seed, "seed", 0)
    if on_epoch_start is not None:
        require_callable(on_epoch_start, "on_epoch_start")


# --- many small models at once ------------------------------------------------------------------


def _values(layer: nn.Linear) -> torch.Tensor:
    """The weight values the optimizer updates: ``weight_orig`` on a pruned layer, else ``weight``."""
    return getattr(layer, "weight_orig", layer.weight)


def _stack(models: Sequence[nn.Module]) -> tuple[list[nn.Parameter], list[nn.Parameter], list[torch.Tensor]]:
    """Stack the Linear layers of R models: per layer, weights ``(R, in, out)`` (transposed, so a
    batched ``x @ w`` needs no copy), biases ``(R, 1, out)`` and 0/1 masks ``(R, in, out)``.
    A layer pruned with ``torch.nn.utils.prune`` contributes ``weight_orig`` and ``weight_mask``."""
    per_model = [list(linear_layers(m).values()) for m in models]
    weights, biases, masks = [], [], []
    for layers in zip(*per_model, strict=True):
        weights.append(nn.Parameter(torch.stack([_values(layer).detach().T for layer in layers])))
        biases.append(nn.Parameter(torch.stack([layer.bias.detach()[None] for layer in layers])))
        masks.append(torch.stack([getattr(layer, "weight_mask", torch.ones_like(layer.weight)).T
                                  for layer in layers]).to(weights[-1].dtype))
    return weights, biases, masks


@torch.no_grad()
def _unstack(models: Sequence[nn.Module], weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
    """Copy the stacked values back into each model (into ``weight_orig`` where a layer is pruned)."""
    for r, model in enumerate(models):
        for layer, w, b in zip(linear_layers(model).values(), weights, biases, strict=True):
            _values(layer).copy_(w[r].T)
            layer.bias.copy_(b[r, 0])


def train_together(models: Sequence[MLP], data: Split, epochs: int, seeds: Sequence[int], lr: float = 1e-3,
                   batch_size: int = 64, on_epoch_start: Callable[[int], None] | None = None,
                   progress: bool = True, desc: str = "training together") -> list[list[float]]:
    """Train R MLPs of the same sizes side by side, each as ``train(model, data, epochs, lr,
    batch_size, seed=seeds[r])`` would train it alone: its own Adam, its own batch order, its
    prune masks held. Returns R lists of validation accuracy per epoch.

    All R models go through one batched matrix product per layer (``torch.baddbmm``: activations
    ``(R, batch, features)``), which on a CPU is several times faster than R separate loops for
    models this small. Float sums run in another order, so weights agree with separate training
    up to rounding, not bit for bit.

    ``on_epoch_start(epoch)`` runs before each epoch with every model holding its current
    weights, e.g. to prune them on a schedule; masks and values are read back after it.
    """
    models = list(models) if is_sequence(models) else models
    if not isinstance(models, list) or not models or not all(type(m) is MLP for m in models):
        kinds = [type(m).__name__ for m in models] if isinstance(models, list) else type(models).__name__
        raise TypeError(f"models must be a non-empty list of lessons_lib MLPs (not subclasses), got {kinds}")
    params = [p for m in models for p in m.parameters()]
    if len({id(p) for p in params}) != len(params):
        raise ValueError("models must be distinct: the same model (or a shared layer) appears twice")
    if not all(p.requires_grad for p in params):
        raise ValueError("models must have every parameter trainable (requires_grad=True); train frozen ones alone")
    if any(hasattr(layer, "bias_orig") for m in models for layer in linear_layers(m).values()):
        raise ValueError("models must not carry a pruned bias: train_together holds weight masks only")
    if len({m.sizes for m in models}) != 1:
        raise ValueError(f"models must all have the same sizes, got {sorted({m.sizes for m in models})}")
    if not is_sequence(seeds):
        raise TypeError(f"seeds must be a list of one int per model, got {type(seeds).__name__}")
    if len(seeds) != len(models):
        raise ValueError(f"seeds must hold one seed per model ({len(models)}), got {len(seeds)}")
    for i, seed in enumerate(seeds):
        require_int(seed, f"seeds[{i}]", 0)
    if len({(p.dtype, p.device) for p in params}) != 1:
        raise ValueError("models must all have the same dtype and device")
    _check_loop(epochs, lr, batch_size, 0, on_epoch_start, desc, progress)
    check_split(data, models[0])
    weights, biases, masks = _stack(models)
    # Adam works element by element, so one Adam over the stacked tensors is R independent Adams.
    # fused=True is PyTorch's single-kernel Adam: same update, less Python overhead per step.
    optimizer = torch.optim.Adam([*weights, *biases], lr=lr, fused=True)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    n = len(data.y_train)
    history = [[] for _ in models]
    for epoch in progress_bar(epochs, desc, "epoch", enabled=progress):
        if on_epoch_start is not None:
            on_epoch_start(epoch)
            new_weights, new_biases, masks = _stack(models)
            with torch.no_grad():                  # in place, so Adam's state carries on
                for old, new in zip([*weights, *biases], [*new_weights, *new_biases], strict=True):
                    old.copy_(new)
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators])      # (R, n)
        for batch in orders.split(batch_size, dim=1):                                   # (R, b)
            h = data.x_train[batch]                                                     # (R, b, in)
            for i, (w, b, m) in enumerate(zip(weights, biases, masks, strict=True)):
                h = torch.baddbmm(b, h, w * m)                                          # (R, b, out)
                if i < len(weights) - 1:
                    h = F.relu(h)
            # sum over models of each model's mean loss: model r's gradient is its own loss's
            loss = F.cross_entropy(h.transpose(1, 2), data.y_train[batch], reduction="none").mean(dim=1).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        _unstack(models, weights, biases)
        for r, model in enumerate(models):
            history[r].append(accuracy(model, data.x_val, data.y_val))
    return history


_TRAINED: dict[tuple[int, int], dict[str, torch.Tensor]] = {}      # (seed, epochs) -> state_dict


def trained_mlp(seed: int = 0, epochs: int = 30, progress: bool = True) -> MLP:
    """The dense digits MLP every MLP lesson (02-05) starts from: a fresh copy each call.

    The recipe, in full: ``torch.manual_seed(seed)``, ``MLP((64, 256, 128, 10))``, then
    ``train(model, digits_split(seed=0), epochs, seed=seed)`` (Adam, lr 1e-3, batch 64). The
    global random state is saved and restored around it, so calling this draws nothing from the
    caller's random numbers, and lessons that call it in another order still get the same model.
    The first call for a ``(seed, epochs)`` trains (a second or two on one thread); later calls
    copy the stored weights. Same CPU and PyTorch version -> the same weights bit for bit.
    """
    seed = require_int(seed, "seed", 0)
    epochs = require_positive_int(epochs, "epochs")
    require_bool(progress, "progress")
    if (seed, epochs) not in _TRAINED:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = MLP((64, 256, 128, 10))
            train(model, digits_split(seed=0), epochs, seed=seed, progress=progress,
                  desc=f"training the dense MLP (seed {seed})")
        _TRAINED[seed, epochs] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with torch.device("meta"):                  # the structure only: no random initialisation
        model = MLP((64, 256, 128, 10))
    model.load_state_dict({k: v.clone() for k, v in _TRAINED[seed, epochs].items()}, assign=True)
    return model.eval()
