"""Model-level pruning, sensitivity scan and allocation."""

import copy

import pytest
import torch
from torch.nn.utils import prune

import lessons_lib.pruning as pr
from lessons_lib.measure import accuracy_vs_sparsity, sensitivity_scan
from lessons_lib.models import MLP, linear_layers
from lessons_lib.sparsity import model_sparsity


@pytest.fixture
def mlp():
    torch.manual_seed(0)
    model = MLP((8, 16, 12, 4))
    with torch.no_grad():                      # give the layers different scales, as training does
        model.layers[1].weight.mul_(0.2)
    return model


def test_layerwise_prunes_each_layer_equally(mlp):
    pr.prune_layerwise(mlp, 0.5)
    assert pr.layer_sparsities(mlp) == {"layers.0": 0.5, "layers.1": 0.5, "layers.2": 0.5}


def test_random_layerwise_is_repeatable_and_not_magnitude(mlp):
    a, b, c = copy.deepcopy(mlp), copy.deepcopy(mlp), copy.deepcopy(mlp)
    pr.prune_layerwise(a, 0.5, torch.Generator().manual_seed(1), random=True)
    pr.prune_layerwise(b, 0.5, torch.Generator().manual_seed(1), random=True)
    pr.prune_layerwise(c, 0.5)
    assert pr.get_masks(a).keys() == pr.get_masks(c).keys()
    assert all(torch.equal(pr.get_masks(a)[n], pr.get_masks(b)[n]) for n in pr.get_masks(a))
    assert not all(torch.equal(pr.get_masks(a)[n], pr.get_masks(c)[n]) for n in pr.get_masks(a))


def test_global_prunes_small_scale_layer_hardest(mlp):
    pr.prune_global(mlp, 0.5)
    per_layer = pr.layer_sparsities(mlp)
    assert per_layer["layers.1"] > per_layer["layers.0"] and per_layer["layers.1"] > per_layer["layers.2"]
    assert model_sparsity(mlp) == pytest.approx(0.5, abs=1 / 400)


def test_global_threshold_matches_global_unstructured(mlp):
    weights = [layer.weight.detach().clone() for layer in linear_layers(mlp).values()]
    threshold = pr.global_threshold(weights, 0.6)
    pr.prune_global(mlp, 0.6)
    for layer, w in zip(linear_layers(mlp).values(), weights, strict=True):
        assert torch.equal(layer.weight_mask.bool(), w.abs() > threshold)
    assert pr.global_threshold(weights, 0.0) == 0.0


def test_prune_global_to_accumulates(mlp):
    for target in (0.3, 0.6, 0.9):
        pr.prune_global_to(mlp, target)
        assert model_sparsity(mlp) == pytest.approx(target, abs=2 / 400)
    with pytest.raises(ValueError, match="target must be >= the current sparsity"):
        pr.prune_global_to(mlp, 0.5)


def test_per_layer_and_errors_before_any_change(mlp):
    with pytest.raises(ValueError, match=r"amounts has a key 'layers.9' that is not a Linear layer"):
        pr.prune_per_layer(mlp, {"layers.0": 0.5, "layers.9": 0.5})
    with pytest.raises(ValueError, match=r"amounts\['layers.1'\] must be a fraction in \[0, 1\], got 1.2"):
        pr.prune_per_layer(mlp, {"layers.0": 0.5, "layers.1": 1.2})
    assert not any(prune.is_pruned(layer) for layer in linear_layers(mlp).values())
    pr.prune_per_layer(mlp, {"layers.1": 0.25})
    assert pr.layer_sparsities(mlp) == {"layers.0": 0.0, "layers.1": 0.25, "layers.2": 0.0}


@pytest.mark.parametrize("fn", [pr.prune_layerwise, pr.prune_global, pr.prune_global_to])
def test_bad_fraction_changes_nothing(mlp, fn):
    with pytest.raises(ValueError, match="must be a fraction in"):
        fn(mlp, 1.5)
    assert not any(prune.is_pruned(layer) for layer in linear_layers(mlp).values())


def test_remove_masks_and_masks_round_trip(mlp):
    pr.prune_global(mlp, 0.7)
    masks = pr.get_masks(mlp)
    other = MLP((8, 16, 12, 4))
    pr.apply_masks(other, masks)
    assert all(torch.equal(pr.get_masks(other)[n], masks[n]) for n in masks)
    pr.remove_masks(mlp)
    assert pr.get_masks(mlp) == {} and model_sparsity(mlp) == pytest.approx(0.7, abs=1 / 400)


def test_apply_masks_errors(mlp):
    with pytest.raises(ValueError, match=r"masks\['layers.0'\] must have the weight's shape \(16, 8\), got \(8, 16\)"):
        pr.apply_masks(mlp, {"layers.0": torch.ones(8, 16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="masks has a key 'fc1'"):
        pr.apply_masks(mlp, {"fc1": torch.ones(16, 8, dtype=torch.bool)})


def test_global_threshold_errors():
    with pytest.raises(ValueError, match="weights must hold at least one tensor"):
        pr.global_threshold([], 0.5)
    with pytest.raises(ValueError, match=r"amount must be a fraction in \[0, 1\], got -0.5"):
        pr.global_threshold([torch.ones(3)], -0.5)


def test_allocate_prefers_cheap_layers():
    amounts = [0.0, 0.5, 0.9]
    scan = {"big": [0.9, 0.9, 0.88], "small": [0.9, 0.5, 0.1]}
    sizes = {"big": 900, "small": 100}
    chosen = pr.allocate_sparsity(scan, amounts, sizes, target=0.8)
    assert chosen == {"big": 0.9, "small": 0.0}
    overall = sum(sizes[n] * a for n, a in chosen.items()) / 1000
    assert overall >= 0.8


@pytest.mark.parametrize(("args", "message"), [
    (({"a": [1, 1]}, [0.1, 0.5], {"a": 10}, 0.3), "amounts must be strictly increasing and start at 0"),
    (({"a": [1, 1]}, [0.0, 0.5], {"b": 10}, 0.3), "scan and sizes must name the same layers"),
    (({"a": [1, 1]}, [0.0, 0.5], {"a": 10}, 0.8), r"target 0.8 is above what amounts allow \(0.5\)"),
])
def test_allocate_errors(args, message):
    with pytest.raises(ValueError, match=message):
        pr.allocate_sparsity(*args)


def test_accuracy_vs_sparsity_and_scan_leave_model_alone(mlp):
    x, y = torch.randn(40, 8), torch.randint(0, 4, (40,))
    before = copy.deepcopy(mlp.state_dict())
    accs = accuracy_vs_sparsity(mlp, x, y, [0.0, 1.0], pr.prune_global)
    assert accs[0] == pytest.approx((mlp(x).argmax(1) == y).float().mean().item())
    scan = sensitivity_scan(mlp, x, y, [0.0, 0.5])
    assert list(scan) == ["layers.0", "layers.1", "layers.2"] and all(v[0] == accs[0] for v in scan.values())
    assert all(torch.equal(before[k], v) for k, v in mlp.state_dict().items())
    with pytest.raises(ValueError, match="amounts must hold at least one fraction"):
        accuracy_vs_sparsity(mlp, x, y, [], pr.prune_global)


def test_prune_layerwise_to_accumulates_per_layer(mlp):
    pr.prune_layerwise_to(mlp, 0.5)
    pr.prune_layerwise_to(mlp, 0.75)
    assert pr.layer_sparsities(mlp) == {"layers.0": 0.75, "layers.1": 0.75, "layers.2": 0.75}
    with pytest.raises(ValueError, match="target must be >= every layer's current sparsity 0.7500, got 0.5"):
        pr.prune_layerwise_to(mlp, 0.5)
