"""Argument checks shared by the library.

Every public function checks its inputs *before* touching any tensor, and says what was wrong
in one sentence: the argument's name, the value it got, and what it expected.

The amount convention, the same everywhere: an ``amount`` / ``sparsity`` / ``target`` is a
*fraction* in [0, 1] (a float; the int 0 also works). Only the functions whose docstring says so
also take an int *count* of entries, as ``torch.nn.utils.prune`` does (``magnitude_mask``,
``random_mask``, through :func:`amount_to_count`). The int ``1`` is refused everywhere: a
fraction reads it as "everything", a count as "one entry".
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


def _ambiguous(name: str, counts: bool = False) -> str:
    """The message for the int 1: where counts are taken (``counts=True``) it could mean either."""
    if counts:
        return (f"{name}=1 is ambiguous: write 1.0 to prune everything (a fraction), "
                "or a count >= 2 to prune that many entries")
    return f"{name}=1 is ambiguous: {name} is a fraction in [0, 1] here, so write 1.0 to prune everything"


def require_tensor(value: object, name: str) -> torch.Tensor:
    """Return ``value`` if it is a non-empty tensor, else raise ``TypeError``/``ValueError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.numel() == 0:
        raise ValueError(f"{name} must have at least one element, got shape {tuple(value.shape)}")
    return value


def amount_to_count(amount: float | int, n: int, name: str = "amount") -> int:
    """How many of ``n`` entries to prune, following ``torch.nn.utils.prune``'s convention.

    A float is a fraction in [0, 1] and prunes ``round(amount * n)`` entries (Python's round,
    halves to even); an int is an exact count in [0, n]. The int 1 is refused as ambiguous
    (write ``1.0`` for everything); the int 0 means nothing either way.
    """
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(
            f"{name} must be a float fraction in [0, 1] or an int count, "
            f"got {type(amount).__name__} {amount!r}"
        )
    if isinstance(amount, numbers.Integral):
        if amount == 1:
            raise ValueError(_ambiguous(name, counts=True))
        if not 0 <= amount <= n:
            raise ValueError(f"{name} as a count must be in [0, {n}] (the number of entries), got {amount}")
        return int(amount)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"{name} as a fraction must be in [0, 1], got {amount}")
    return round(float(amount) * n)


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
