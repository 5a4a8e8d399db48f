"""The shared argument checks, directly."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lessons_lib.validate import amount_to_count, require_parameter, require_positive_int, require_tensor


@pytest.mark.parametrize(("amount", "n", "count"), [
    (0.0, 10, 0), (1.0, 10, 10), (0.3, 10, 3), (0.25, 10, 2), (0.35, 10, 4),   # halves round to even
    (0, 10, 0), (10, 10, 10), (3, 10, 3),
])
def test_amount_to_count_follows_prune(amount, n, count):
    assert amount_to_count(amount, n) == count
    module = nn.Module()
    module.weight = nn.Parameter(torch.randn(n, dtype=torch.float64))
    prune.l1_unstructured(module, "weight", amount=amount)
    assert int((module.weight_mask == 0).sum()) == count


def test_amount_to_count_uses_the_argument_name():
    with pytest.raises(ValueError, match=r"step as a fraction must be in \[0, 1\], got 2.0"):
        amount_to_count(2.0, 5, name="step")


def test_require_parameter_sees_pruned_weights():
    layer = nn.Linear(3, 2)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    assert require_parameter(layer, "weight") is layer.weight
    with pytest.raises(ValueError, match=r"name='bias_orig' is not a parameter of Linear"):
        require_parameter(layer, "bias_orig")


def test_require_tensor_and_positive_int():
    t = torch.ones(2)
    assert require_tensor(t, "t") is t
    assert require_positive_int(3, "n") == 3
    for bad in (0, -2, 1.5, True, "3"):
        with pytest.raises(ValueError, match="n must be a positive int"):
            require_positive_int(bad, "n")
