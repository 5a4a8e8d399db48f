"""Neuron scores, slimming and its equivalence, on more than one architecture."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lessons_lib.checks import ExerciseFailure, check_slim_pair
from lessons_lib.models import MLP
from lessons_lib.structured import (
    copy_linear,
    importance_activation,
    importance_l2,
    importance_taylor,
    keep_top,
    max_output_difference,
    slim_linear_pair,
    slim_mlp,
)


@pytest.mark.parametrize("sizes", [(64, 256, 128, 10), (20, 30, 10, 5, 3), (8, 16, 4)])
def test_slim_equals_ln_structured_masked_model(sizes):
    torch.manual_seed(0)
    model = MLP(sizes)
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.uniform_(-0.5, 0.5)                 # biases that matter
    masked = copy.deepcopy(model)
    keep = {}
    for i, layer in enumerate(masked.layers[:-1]):
        prune.ln_structured(layer, "weight", amount=0.5, n=2, dim=0)
        keep[i] = layer.weight_mask[:, 0].nonzero().flatten()
    slim = slim_mlp(masked, keep, activation=torch.relu)
    x = torch.randn(50, sizes[0])
    assert max_output_difference(masked, slim, x) <= 1e-5
    assert [layer.out_features for layer in slim.layers[:-1]] == [len(k) for k in keep.values()]
    assert max_output_difference(masked, slim_mlp(masked, keep), x) > 1e-3      # folding matters


@pytest.mark.parametrize("activation", [torch.relu, torch.tanh])
def test_slim_pair_in_sequential_with_other_activation(activation):
    torch.manual_seed(1)
    first, second = nn.Linear(6, 9), nn.Linear(9, 4)
    act = nn.ReLU() if activation is torch.relu else nn.Tanh()
    masked = nn.Sequential(first, act, second)
    prune.ln_structured(first, "weight", amount=4, n=2, dim=0)
    keep = first.weight_mask[:, 0].nonzero().flatten()
    small, following = slim_linear_pair(first, second, keep, activation=activation)
    x = torch.randn(30, 6)
    assert max_output_difference(masked, nn.Sequential(small, act, following), x) <= 1e-5
    assert small.weight.shape == (5, 6) and following.weight.shape == (4, 5)


def test_slim_leaves_inputs_unchanged_and_full_removal_zeroes_neurons():
    torch.manual_seed(2)
    first, second = nn.Linear(5, 6), nn.Linear(6, 3)
    before = [p.detach().clone() for p in (*first.parameters(), *second.parameters())]
    small, following = slim_linear_pair(first, second, torch.tensor([0, 3, 5]))
    assert all(torch.equal(a, b) for a, b in zip(before, (*first.parameters(), *second.parameters()), strict=True))
    x = torch.randn(10, 5)
    with torch.no_grad():
        hidden = torch.relu(first(x))
        hidden[:, [1, 2, 4]] = 0
        assert torch.allclose(second(hidden), following(torch.relu(small(x))), atol=1e-6)


@pytest.mark.parametrize(("keep", "message"), [
    ([], "keep must be a non-empty 1-D list"),
    ([0, 6], r"keep must hold indices in \[0, 5\], got min 0, max 6"),
    ([-1, 2], r"keep must hold indices in \[0, 5\], got min -1"),
    ([1, 1], "keep must not repeat an index"),
])
def test_slim_pair_bad_keep(keep, message):
    with pytest.raises(ValueError, match=message):
        slim_linear_pair(nn.Linear(4, 6), nn.Linear(6, 2), torch.tensor(keep, dtype=torch.long))


def test_slim_pair_mismatch_and_types():
    with pytest.raises(ValueError, match=r"layer.out_features \(6\) must equal next_layer.in_features \(5\)"):
        slim_linear_pair(nn.Linear(4, 6), nn.Linear(5, 2), torch.tensor([0]))
    with pytest.raises(TypeError, match="layer and next_layer must be nn.Linear, got Conv1d and Linear"):
        slim_linear_pair(nn.Conv1d(1, 6, 1), nn.Linear(6, 2), torch.tensor([0]))


def test_slim_mlp_errors_and_untouched_model():
    model = MLP((8, 6, 4, 2))
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"keep has key 2; expected hidden-layer indices in \[0, 1\]"):
        slim_mlp(model, {2: torch.tensor([0])})
    with pytest.raises(TypeError, match="model must be a lessons_lib.models.MLP, got Sequential"):
        slim_mlp(nn.Sequential(nn.Linear(2, 2)), {})
    slim_mlp(model, {0: torch.tensor([0, 1]), 1: torch.tensor([3])})
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_scores_shapes_and_meaning():
    torch.manual_seed(3)
    model = MLP((8, 6, 4, 3))
    with torch.no_grad():
        model.layers[0].weight[2] = 0                       # neuron 2: zero weights
        model.layers[0].bias[2] = -1                        # ... and never active
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    for scores in (importance_l2(model), importance_activation(model, x), importance_taylor(model, x, y)):
        assert [s.shape for s in scores] == [(6,), (4,)]
        assert scores[0][2] == 0 and (scores[0] >= 0).all()
    assert all(p.grad is None or (p.grad == 0).all() for p in model.parameters())   # no gradients left behind


def test_keep_top_order_ties_and_errors():
    assert keep_top(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2).tolist() == [1, 3]
    assert keep_top(torch.tensor([1.0, 2.0, 2.0, 3.0]), 2).tolist() == [1, 3]
    with pytest.raises(ValueError, match=r"n_keep must be <= the number of neurons \(3\), got 4"):
        keep_top(torch.ones(3), 4)
    with pytest.raises(ValueError, match="n_keep must be a positive int, got 0"):
        keep_top(torch.ones(3), 0)


def test_copy_linear_is_plain_and_masked():
    layer = nn.Linear(4, 3)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    copied = copy_linear(layer)
    assert isinstance(copied.weight, nn.Parameter) and torch.equal(copied.weight, layer.weight)
    assert not prune.is_pruned(copied)


def test_slim_pair_checker_catches_mistakes():
    def columns_instead_of_rows(layer, next_layer, keep):
        small = nn.Linear(len(keep), layer.out_features)
        following = nn.Linear(len(keep), next_layer.out_features)
        return small, following

    def forgets_bias(layer, next_layer, keep):
        small, following = slim_linear_pair(layer, next_layer, keep)
        with torch.no_grad():
            small.bias.zero_()
        return small, following

    def in_place(layer, next_layer, keep):
        with torch.no_grad():
            layer.weight.mul_(2)
        return slim_linear_pair(layer, next_layer, keep)

    for fn, expected in [(columns_instead_of_rows, "the first layer's weight should be"),
                         (forgets_bias, "the kept neurons' biases must come along"),
                         (in_place, "changed the layers it was given"),
                         (lambda a, b, k: (a, b), "returned the layers it was given"),
                         (lambda a, b, k: None, "expected a tuple of two nn.Linear")]:
        with pytest.raises(ExerciseFailure) as info:
            check_slim_pair(fn)
        assert expected in str(info.value), (fn, str(info.value))
