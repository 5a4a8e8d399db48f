"""Output error of masked layers."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import lessons_lib.sparsity as sp
from lessons_lib.experiments import error_vs_sparsity
from lessons_lib.measure import output_error, relative_error


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
    with pytest.raises(ValueError, match="sparsities must hold at least one fraction"):
        error_vs_sparsity(layer, torch.randn(4, 100), [], sp.magnitude_mask)
    with pytest.raises(ValueError, match=r"sparsities\[1\] must be a fraction in \[0, 1\], got 1.5"):
        error_vs_sparsity(layer, torch.randn(4, 100), [0.5, 1.5], sp.magnitude_mask)


# --- pruned models, bad masks and functions, float64 ---------------------------------------------

def _pruned_mlp():
    from lessons_lib.models import MLP
    from lessons_lib.pruning import prune_global

    torch.manual_seed(0)
    model = MLP((8, 16, 12, 4))
    prune_global(model, 0.5)
    return model


def _rebuilt(model):
    """The lesson-01 way to copy a pruned model: a fresh one with identity masks, then load_state_dict."""
    from lessons_lib.models import MLP

    twin = MLP(model.sizes)
    for layer in twin.layers:
        prune.identity(layer, "weight")
    twin.load_state_dict(model.state_dict())
    twin(torch.zeros(1, model.sizes[0]))              # refreshes each computed `weight` (lesson 01's stale weight)
    return twin


def test_accuracy_vs_sparsity_on_an_already_pruned_model():
    from lessons_lib.experiments import accuracy_vs_sparsity
    from lessons_lib.pruning import prune_global
    from lessons_lib.training import accuracy

    model = _pruned_mlp()
    x, y = torch.randn(60, 8), torch.randint(0, 4, (60,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = accuracy_vs_sparsity(model, x, y, [0.5, 0.8], prune_global)        # deepcopy used to raise here
    expected = []
    for amount in (0.5, 0.8):
        twin = _rebuilt(model)
        prune_global(twin, amount)
        expected.append(accuracy(twin, x, y))
    assert got == expected
    assert list(model.state_dict()) == list(before)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_storage_bytes_on_an_already_pruned_model():
    from lessons_lib.experiments import storage_bytes
    from lessons_lib.pruning import remove_masks

    model = _pruned_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = storage_bytes(model, 0.7)                                          # deepcopy used to raise here
    plain = _rebuilt(model)
    remove_masks(plain)                                                      # the same zeros, as plain values
    assert got == storage_bytes(plain, 0.7)
    nnz = round(0.3 * 368)
    assert got["csr_int64"] == nnz * 4 + nnz * 8 + (16 + 12 + 4 + 3) * 8 + (16 + 12 + 4) * 4
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="sparsity=1 is ambiguous"):
        storage_bytes(model, 1)


def test_float64_models_stay_float64():
    from lessons_lib.experiments import accuracy_vs_sparsity, sensitivity_scan, storage_bytes
    from lessons_lib.models import MLP
    from lessons_lib.pruning import prune_global

    model = MLP((8, 16, 12, 4)).double()
    x, y = torch.randn(30, 8, dtype=torch.float64), torch.randint(0, 4, (30,))
    seen = []
    accuracy_vs_sparsity(model, x, y, [0.5], lambda m, a: (prune_global(m, a), seen.append(m.layers[0].weight.dtype)))
    assert seen == [torch.float64] and len(sensitivity_scan(model, x, y, [0.5])) == 3
    nnz = 368 // 2                                                           # 8-byte values and biases
    assert storage_bytes(model, 0.5)["csr_int64"] == nnz * 8 + nnz * 8 + (17 + 13 + 5) * 8 + (16 + 12 + 4) * 8
    with pytest.raises(ValueError, match="x is torch.float32 on cpu but model's parameters are torch.float64"):
        accuracy_vs_sparsity(model, x.float(), y, [0.5], prune_global)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda layer, x: output_error(layer, x, torch.full((50, 100), 0.3)), ValueError, "mask must hold only 0 and 1"),
    (lambda layer, x: output_error(layer, x, np.ones((50, 100))), TypeError, "mask must be a torch.Tensor"),
    (lambda layer, x: output_error(layer, x.double(), torch.ones(50, 100)), ValueError,
     "x must have the layer's dtype and device"),
    (lambda layer, x: output_error(layer, x[None], torch.ones(50, 100)), ValueError, r"as a 2-D \(batch, 100\)"),
    (lambda layer, x: error_vs_sparsity(layer, x, [0.5], "magnitude_mask"), TypeError, "mask_fn must be callable"),
    (lambda layer, x: error_vs_sparsity(layer, x, 0.5, sp.magnitude_mask), TypeError, "sparsities must be a list"),
])
def test_output_error_inputs_that_used_to_pass_silently(layer, call, error, message):
    with pytest.raises(error, match=message):
        call(layer, torch.randn(8, 100))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"prune_fn": "prune_global"}, TypeError, "prune_fn must be callable"),
    ({"sparsities": 0.5}, TypeError, "sparsities must be a list of fractions"),
    ({"sparsities": [0.5, 2.0]}, ValueError, r"sparsities\[1\] must be a fraction"),
    ({"y": torch.full((20,), 4)}, ValueError, r"y must hold class indices in \[0, 4\)"),
    ({"y": torch.zeros(20)}, ValueError, "y must be an int64 tensor"),
    ({"x": torch.randn(20, 5)}, ValueError, r"model could not run on x of shape \(20, 5\)"),
])
def test_accuracy_vs_sparsity_checks_everything_first(kwargs, error, message):
    from lessons_lib.experiments import accuracy_vs_sparsity
    from lessons_lib.models import MLP
    from lessons_lib.pruning import prune_global

    args = {"model": MLP((8, 6, 4)), "x": torch.randn(20, 8), "y": torch.randint(0, 4, (20,)),
            "sparsities": [0.5], "prune_fn": lambda m, a: prune_global(m, a) or calls.append(a), **kwargs}
    calls = []
    with pytest.raises(error, match=message):
        accuracy_vs_sparsity(**args)
    assert calls == []                                                       # no copy was pruned first


def test_speedup_vs_arithmetic_gives_the_multiply_add_ratio_beside_the_timing():
    from lessons_lib.measure import speedup_vs_arithmetic
    torch.manual_seed(0)
    dense, slim = torch.nn.Linear(64, 64), torch.nn.Linear(64, 32)
    measured, ratio = speedup_vs_arithmetic(dense, slim, torch.randn(8, 64), rounds=1)
    assert ratio == 2.0 and measured > 0
