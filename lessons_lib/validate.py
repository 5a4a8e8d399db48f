"""Argument checks shared by the library.

Every public function checks its inputs *before* touching any tensor, and says what was wrong
in one sentence: the argument's name, the value it got, and what it expected.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn


def require_tensor(value: object, name: str) -> torch.Tensor:
    """Return ``value`` if it is a non-empty tensor, else raise ``TypeError``/``ValueError``."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.numel() == 0:
        raise ValueError(f"{name} must have at least one element, got shape {tuple(value.shape)}")
    return value


def amount_to_count(amount: float | int, n: int, name: str = "amount") -> int:
    """How many of ``n`` entries to prune, following ``torch.nn.utils.prune``'s convention.

    A float is a fraction in [0, 1] and prunes ``round(amount * n)`` entries; an int is an
    exact count in [0, n]. (So ``1.0`` prunes everything while ``1`` prunes one entry.)
    """
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real):
        raise TypeError(
            f"{name} must be a float fraction in [0, 1] or an int count, "
            f"got {type(amount).__name__} {amount!r}"
        )
    if isinstance(amount, numbers.Integral):
        if not 0 <= amount <= n:
            raise ValueError(f"{name} as a count must be in [0, {n}] (the number of entries), got {amount}")
        return int(amount)
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"{name} as a fraction must be in [0, 1], got {amount}")
    return round(float(amount) * n)


def require_parameter(module: object, name: str, arg: str = "name") -> torch.Tensor:
    """Return ``module``'s tensor called ``name`` (a parameter, or its pruned stand-in).

    A pruned module keeps ``weight_orig`` as the parameter and ``weight`` as a plain
    attribute; both count as "the weight" here.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    params = dict(module.named_parameters(recurse=False))
    if name not in params and name + "_orig" not in params:
        available = sorted(p.removesuffix("_orig") for p in params)
        raise ValueError(
            f"{arg}={name!r} is not a parameter of {type(module).__name__}; "
            f"expected one of {available}"
        )
    return getattr(module, name)


def require_positive_int(value: object, name: str) -> int:
    """Return ``value`` if it is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def require_fraction(value: object, name: str) -> float:
    """Return ``value`` as a float if it is a real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)
