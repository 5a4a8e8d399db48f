"""Data for the MLP lessons: scikit-learn's handwritten digits, which ship inside the package.

1,797 grey-scale images of 8x8 pixels (64 features, values 0-16), ten classes. Nothing is
downloaded.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split


class Split(NamedTuple):
    """Tensors of one fixed split. ``x_*`` are ``(n, 64)`` float32, ``y_*`` are ``(n,)`` int64."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def digits_split(val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0) -> Split:
    """The digits, split once into train / validation / test, stratified by class.

    Features are standardised with the *training* mean and standard deviation only (pixels
    that are constant in training keep a scale of 1), so no statistic leaks from validation or
    test. With the defaults: 1,167 training, 270 validation and 360 test images; the split
    depends only on ``seed``.

    Use the validation part for every choice (epochs, sparsities, learning rates) and the test
    part only to report.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.05 <= value <= 0.5:
            raise ValueError(f"{name} must be in [0.05, 0.5], got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32) (scikit-learn's limit), got {seed!r}")
    seed = int(seed)
    x, y = load_digits(return_X_y=True)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), stratify=y_rest, random_state=seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std[std == 0] = 1.0

    def features(a):
        return torch.tensor((a - mean) / std, dtype=torch.float32)

    def labels(a):
        return torch.tensor(a, dtype=torch.int64)

    return Split(features(x_train), labels(y_train), features(x_val), labels(y_val),
                 features(x_test), labels(y_test))
