"""Argument checks shared by the library.

Every public function checks its inputs *before* touching any tensor, and says what was wrong
in one sentence: the argument's name, the value it got, and what it expected.

The sparsity convention, the same everywhere (see the package docstring's "Words"): a
``sparsity`` is the *fraction* in [0, 1] of the considered weights that are zero (a float; the
int 0 also works). The int ``1`` is refused: write ``1.0`` for "everything". Nothing in
lessons_lib takes a count of weights to prune; ``torch.nn.utils.prune``'s ``amount`` does both.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn


def is_sequence(value: object) -> bool:
    """True for a list, tuple, range or other sequence (a str is not one), or a 1-D numpy array:
    whatever a learner might pass as "a list of values", e.g. ``range(5)`` or ``np.linspace``."""
    if isinstance(value, np.ndarray):
        return value.ndim == 1
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _ambiguous(name: str) -> str:
    """The message for the int 1, which ``torch.nn.utils.prune`` would read as a count of one."""
    return f"{name}=1 is ambiguous: {name} is a fraction in [0, 1] here, so write 1.0 to prune everything"


def require_tensor(value: object, name: str) -> torch.Tensor:
    """Return ``value`` if it is a non-empty tensor, else raise ``TypeError``/``ValueError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.numel() == 0:
        raise ValueError(f"{name} must have at least one element, got shape {tuple(value.shape)}")
    return value


def require_generator(generator: object, name: str = "generator") -> None:
    """Refuse anything but ``None`` or a CPU ``torch.Generator`` (``torch.randperm`` draws on the CPU)."""
    if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
        raise TypeError(f"{name} must be a CPU torch.Generator or None, got {generator!r}")


def require_fraction(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a fraction in [0, 1] (the int 1 is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a fraction in [0, 1] (a float), got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Integral) and value == 1:
        raise ValueError(_ambiguous(name))
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def require_parameter(module: object, name: str, arg: str = "name") -> torch.Tensor:
    """Return ``module``'s tensor called ``name`` (a parameter, or its pruned stand-in).

    A pruned module keeps ``weight_orig`` as the parameter and ``weight`` as a plain
    attribute; both count as "the weight" here.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    if not isinstance(name, str):
        raise TypeError(f"{arg} must be a str (a parameter name), got {type(name).__name__} {name!r}")
    params = dict(module.named_parameters(recurse=False))
    if name not in params and name + "_orig" not in params:
        available = sorted(p.removesuffix("_orig") for p in params)
        raise ValueError(
            f"{arg}={name!r} is not a parameter of {type(module).__name__}; "
            f"expected one of {available}"
        )
    return getattr(module, name)


def require_bool(value: object, name: str) -> bool:
    """Return ``value`` if it is True or False (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def require_int(value: object, name: str, minimum: int | None = None) -> int:
    """Return ``value`` as an int if it is one (not a bool), and ``>= minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def require_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def require_number(value: object, name: str, minimum: float | None = None, positive: bool = False) -> float:
    """Return ``value`` as a float if it is a finite real number (> 0 with ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return float(value)


def require_lr(lr: object) -> float:
    """A learning rate: a finite number in (0, 1] (above 1, Adam's steps dwarf these weights)."""
    lr = require_number(lr, "lr", positive=True)
    if lr > 1:
        raise ValueError(f"lr must be a learning rate in (0, 1], got {lr!r}")
    return lr


def require_mapping(value: object, name: str, what: str = "names to values") -> Mapping:
    """Return ``value`` if it is a dict (any ``Mapping``), else a ``TypeError``."""
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a dict mapping {what}, got {type(value).__name__}")
    return value


def require_callable(value: object, name: str) -> object:
    """Return ``value`` if it can be called (a function, a lambda), else a ``TypeError``."""
    if not callable(value):
        raise TypeError(f"{name} must be callable (a function), got {type(value).__name__} {value!r}")
    return value


def require_gradients(fn_name: str) -> None:
    """Raise if autograd cannot run here: inside ``torch.inference_mode()`` no tensor records a
    graph, and ``torch.enable_grad()`` does not undo that, so a gradient score would be all zeros."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{fn_name} needs gradients, but it was called inside torch.inference_mode(); "
                           "call it outside that block (torch.no_grad() is fine)")


def require_module(value: object, name: str = "model") -> nn.Module:
    """Return ``value`` if it is a ``torch.nn.Module``."""
    if not isinstance(value, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    return value


def require_layers(model: nn.Module, layers: object, name: str = "layers") -> dict[str, nn.Linear]:
    """Return ``layers`` (name -> ``nn.Linear``) if every value is a Linear layer of ``model``."""
    require_module(model, "model")
    layers = require_mapping(layers, name, "layer names to nn.Linear layers")
    own = {id(m) for m in model.modules()}
    for key, layer in layers.items():
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"{name}[{key!r}] must be a torch.nn.Linear, got {type(layer).__name__}")
        if id(layer) not in own:
            raise ValueError(f"{name}[{key!r}] is not a layer of model: pass layers taken from the same model")
    if len({id(layer) for layer in layers.values()}) != len(layers):
        raise ValueError(f"{name} must not name the same layer twice, got {list(layers)}")
    return dict(layers)


def require_mask(mask: object, weight: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Return ``mask`` as bool (True = keep) if it is a tensor of ``weight``'s shape and device
    holding only 0/1 (or False/True); a fraction such as 0.3 would scale weights, not prune them."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (bool or 0/1), got {type(mask).__name__}")
    if mask.shape != weight.shape:
        raise ValueError(f"{name} must have the weight's shape {tuple(weight.shape)}, got {tuple(mask.shape)}")
    if mask.device != weight.device:
        raise ValueError(f"{name} must be on the weight's device {weight.device}, got {mask.device}")
    if mask.dtype != torch.bool:
        odd = mask[(mask != 0) & (mask != 1)]
        if odd.numel():
            raise ValueError(f"{name} must hold only 0 and 1 (or False/True), got the value {odd[0].item()!r}: "
                             "a mask keeps or prunes, it does not scale")
    return mask.bool()


def require_linear_input(layer: nn.Module, x: torch.Tensor) -> None:
    """``layer`` an ``nn.Linear``; ``x`` a float tensor ``(batch, in_features)`` of its dtype and device."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    x = require_tensor(x, "x")
    if x.dim() != 2 or x.shape[-1] != layer.in_features:
        raise ValueError(
            f"x must have {layer.in_features} features in its last dimension (layer.in_features), "
            f"as a 2-D (batch, {layer.in_features}) tensor, got shape {tuple(x.shape)}"
        )
    weight = getattr(layer, "weight_orig", layer.weight)
    if (x.dtype, x.device) != (weight.dtype, weight.device):
        raise ValueError(f"x must have the layer's dtype and device ({weight.dtype} on {weight.device}), "
                         f"got {x.dtype} on {x.device}")


def _is_index(value: object) -> bool:
    """An int index: a Python or numpy int, or a 0-d integer tensor (not a bool, not a float)."""
    if isinstance(value, torch.Tensor):
        return value.dim() == 0 and not value.is_floating_point() and not value.is_complex() \
            and value.dtype != torch.bool
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def require_indices(keep: object, width: int, name: str, allow_empty: bool = False) -> torch.Tensor:
    """``keep`` as a 1-D int64 CPU tensor of distinct indices in ``[0, width)``.

    Accepts a list, tuple or range of ints, a 1-D integer tensor or numpy array. Refuses floats
    (``[0.5, 1.7]`` is not "rows 0 and 1"), bools (a mask is not a list of indices), repeats,
    indices out of range and, unless ``allow_empty``, an empty selection.
    """
    if isinstance(keep, list | tuple | range):
        odd = [i for i in keep if not _is_index(i)]
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


def require_scores(scores: object, name: str, allow_empty: bool = False) -> torch.Tensor:
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
