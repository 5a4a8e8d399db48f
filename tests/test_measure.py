"""Output error of masked layers."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import lessons_lib.sparsity as sp
from lessons_lib.measure import error_vs_sparsity, output_error, relative_error


def test_relative_error_values():
    ref = torch.tensor([3.0, 4.0])
    assert relative_error(ref, ref) == 0.0
    assert relative_error(ref, torch.zeros(2)) == pytest.approx(1.0)
    assert relative_error(ref, torch.tensor([3.0, 0.0])) == pytest.approx(0.8)


def test_relative_error_errors():
    with pytest.raises(ValueError, match=r"approx must have reference's shape \(2,\), got \(3,\)"):
        relative_error(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="reference must not be all zeros"):
        relative_error(torch.zeros(2), torch.ones(2))


def test_output_error_extremes(layer):
    x = torch.randn(64, 100)
    assert output_error(layer, x, torch.ones(50, 100, dtype=torch.bool)) == 0.0
    no_bias = nn.Linear(100, 50, bias=False)
    assert output_error(no_bias, x, torch.zeros(50, 100)) == pytest.approx(1.0)


def test_output_error_matches_a_pruned_layer_and_leaves_layer_alone(layer):
    x = torch.randn(64, 100)
    reference = layer(x).detach()
    mask = sp.magnitude_mask(layer.weight, 0.6)
    before = layer.weight.detach().clone()
    error = output_error(layer, x, mask)
    assert torch.equal(layer.weight, before) and not hasattr(layer, "weight_mask")
    prune.custom_from_mask(layer, "weight", mask)
    assert error == pytest.approx(relative_error(reference, layer(x).detach()), rel=1e-5)
    # on an already pruned layer the reference is still the unpruned weight
    assert output_error(layer, x, mask) == pytest.approx(error, rel=1e-6)


def test_output_error_bad_inputs(layer):
    x = torch.randn(8, 100)
    with pytest.raises(TypeError, match="layer must be a torch.nn.Linear, got Conv1d"):
        output_error(nn.Conv1d(1, 1, 3), x, torch.ones(50, 100))
    with pytest.raises(ValueError, match=r"x must have 100 features .* got shape \(8, 99\)"):
        output_error(layer, torch.randn(8, 99), torch.ones(50, 100))
    with pytest.raises(ValueError, match=r"mask must have the weight's shape \(50, 100\), got \(100, 50\)"):
        output_error(layer, x, torch.ones(100, 50))


def test_error_vs_sparsity_magnitude_beats_random(layer):
    x = torch.randn(256, 100)
    amounts = [0.0, 0.25, 0.5, 0.75, 1.0]
    magnitude = error_vs_sparsity(layer, x, amounts, sp.magnitude_mask)
    random = error_vs_sparsity(layer, x, amounts, sp.random_mask)
    assert magnitude[0] == 0.0 and magnitude == sorted(magnitude)
    assert all(m < r for m, r in zip(magnitude[1:4], random[1:4], strict=True))
    assert magnitude[-1] == pytest.approx(random[-1])


def test_error_vs_sparsity_errors(layer):
    with pytest.raises(ValueError, match="amounts must hold at least one fraction"):
        error_vs_sparsity(layer, torch.randn(4, 100), [], sp.magnitude_mask)
    with pytest.raises(ValueError, match=r"amounts\[1\] must be a fraction in \[0, 1\], got 1.5"):
        error_vs_sparsity(layer, torch.randn(4, 100), [0.5, 1.5], sp.magnitude_mask)
