"""The MLP (models), its data and its training loop."""

import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lessons_lib.data import digits_split
from lessons_lib.models import MLP
from lessons_lib.pruning import linear_layers
from lessons_lib.training import accuracy, train, train_together


@pytest.fixture(scope="module")
def data():
    return digits_split()


def test_split_sizes_stratified_and_standardised(data):
    assert [len(t) for t in data] == [1167, 1167, 270, 270, 360, 360]
    assert all(t.dtype == torch.float32 for t in data[0::2]) and all(t.dtype == torch.int64 for t in data[1::2])
    for y in (data.y_train, data.y_val, data.y_test):
        counts = y.bincount()
        assert len(counts) == 10 and counts.max() - counts.min() <= 6      # stratified
    mean, std = data.x_train.mean(0), data.x_train.std(0)
    assert mean.abs().max() < 1e-5
    assert ((std - 1).abs() < 1e-2).sum() + (std == 0).sum() == 64          # unit scale, or a constant pixel
    assert torch.equal(digits_split().x_val, data.x_val)                    # the same split every time
    assert not torch.equal(digits_split(seed=1).x_val[:5], data.x_val[:5])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"val_fraction": 0.9}, r"val_fraction must be in \[0.05, 0.5\], got 0.9"),
    ({"test_fraction": 0.0}, r"test_fraction must be in \[0.05, 0.5\], got 0.0"),
    ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32\) \(scikit-learn's limit\), got -1"),
    ({"seed": 2**40}, r"seed must be an int in \[0, 2\*\*32\)"),
])
def test_split_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits_split(**kwargs)


def test_mlp_shapes_and_layers():
    model = MLP((64, 256, 128, 10))
    assert model(torch.randn(5, 64)).shape == (5, 10)
    layers = linear_layers(model)
    assert list(layers) == ["layers.0", "layers.1", "layers.2"]
    assert sum(layer.weight.numel() for layer in layers.values()) == 50_432
    assert sum(p.numel() for p in model.parameters()) == 50_826


@pytest.mark.parametrize("sizes", [(64,), (64, 0, 10), (64, 2.5, 10), (True, 10)])
def test_mlp_bad_sizes(sizes):
    with pytest.raises(ValueError, match="sizes must be at least two positive ints"):
        MLP(sizes)


def test_linear_layers_errors():
    with pytest.raises(ValueError, match="model must contain at least one nn.Linear, found none in ReLU"):
        linear_layers(nn.ReLU())
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        linear_layers("mlp")


def test_training_learns_and_is_deterministic(data):
    torch.manual_seed(0)
    a = MLP()
    b = copy.deepcopy(a)
    history = train(a, data, epochs=5, seed=3, progress=False)
    train(b, data, epochs=5, seed=3, progress=False)
    assert len(history) == 5 and history[-1] > 0.9
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert history[-1] == accuracy(a, data.x_val, data.y_val)


def test_training_keeps_masks_in_force(data):
    torch.manual_seed(0)
    model = MLP()
    prune.l1_unstructured(model.layers[1], "weight", amount=0.7)
    mask = model.layers[1].weight_mask.clone()
    train(model, data, epochs=2, progress=False)
    assert torch.equal(model.layers[1].weight_mask, mask)
    assert (model.layers[1].weight[mask == 0] == 0).all()


def test_on_epoch_start_is_called_each_epoch(data):
    seen = []
    train(MLP(), data, epochs=3, progress=False, on_epoch_start=seen.append)
    assert seen == [0, 1, 2]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"epochs": 0}, "epochs must be a positive int, got 0"),
    ({"epochs": 1, "batch_size": -4}, "batch_size must be a positive int, got -4"),
    ({"epochs": 1, "lr": 0}, "lr must be > 0, got 0"),
])
def test_training_bad_arguments_change_nothing(data, kwargs, message):
    model = MLP()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=message):
        train(model, data, progress=False, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_accuracy_values_and_errors():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    assert accuracy(model, x, torch.tensor([0, 1, 1, 1])) == 0.75
    with pytest.raises(ValueError, match="x and y must hold the same, non-zero number of examples, got 4 and 3"):
        accuracy(model, x, torch.tensor([0, 1, 1]))


# --- train_together: many MLPs as one batched model ------------------------------------------


def _max_difference(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values(),
                                                           strict=True))


def test_train_together_equals_separate_training(data):
    """Each model ends where train() takes it alone: own Adam, own batch order, masks held."""
    torch.manual_seed(0)
    models = [MLP() for _ in range(3)]
    alone = copy.deepcopy(models)
    for group in (models, alone):
        prune.l1_unstructured(group[1].layers[1], "weight", amount=0.7)     # one pruned model among them
    history = train_together(models, data, 2, seeds=[0, 5, 9], progress=False)
    expected = [train(m, data, 2, seed=s, progress=False) for m, s in zip(alone, [0, 5, 9], strict=True)]
    assert all(_max_difference(a, b) < 1e-5 for a, b in zip(models, alone, strict=True))
    for got, want in zip(history, expected, strict=True):                   # at most one image moved
        assert got == pytest.approx(want, abs=1.5 / 270)
    assert int((models[1].layers[1].weight == 0).sum()) == round(0.7 * 128 * 256)
    assert not torch.equal(models[0].layers[0].weight, models[2].layers[0].weight)


def test_train_together_prunes_on_schedule_and_keeps_adam_state(data):
    """A mask added by on_epoch_start takes effect that epoch; results match train() with the same hook."""
    torch.manual_seed(1)
    model = MLP()
    alone = copy.deepcopy(model)

    def prune_at_1(target):
        return lambda epoch: prune.l1_unstructured(target.layers[0], "weight", amount=0.5) if epoch == 1 else None

    train_together([model], data, 3, seeds=[4], on_epoch_start=prune_at_1(model), progress=False)
    train(alone, data, 3, seed=4, on_epoch_start=prune_at_1(alone), progress=False)
    assert _max_difference(model, alone) < 1e-5
    assert int((model.layers[0].weight == 0).sum()) == 256 * 64 // 2


class _DoubledMLP(MLP):
    def forward(self, x):
        return 2 * super().forward(x)


_shared = MLP()
_pruned_bias = MLP()
prune.l1_unstructured(_pruned_bias.layers[0], "bias", amount=0.5)
_frozen = MLP()
_frozen.layers[0].requires_grad_(False)


@pytest.mark.parametrize("models, seeds, message", [
    ([], [], "models must be a non-empty list of lessons_lib MLPs"),
    ([nn.Linear(64, 10)], [0], "models must be a non-empty list of lessons_lib MLPs .*, got \\['Linear'\\]"),
    ([_DoubledMLP()], [0], r"not subclasses\), got \['_DoubledMLP'\]"),
    ([_shared, _shared], [0, 1], "models must be distinct: the same model"),
    ([_pruned_bias], [0], "models must not carry a pruned bias"),
    ([_frozen], [0], r"models must have every parameter trainable \(requires_grad=True\)"),
    ([MLP(), MLP((64, 32, 10))], [0, 1], "models must all have the same sizes"),
    ([MLP(), MLP()], [0], r"seeds must hold one seed per model \(2\), got 1"),
])
def test_train_together_bad_input_changes_nothing(data, models, seeds, message):
    before = [copy.deepcopy(m.state_dict()) for m in models]
    with pytest.raises((TypeError, ValueError), match=message):
        train_together(models, data, 1, seeds=seeds, progress=False)
    assert all(torch.equal(v, before[i][k]) for i, m in enumerate(models) for k, v in m.state_dict().items())


# --- training arguments checked once, before the first step (validation helper) -----------------

def _small_split(dtype=torch.float32):
    from lessons_lib.data import Split

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(32, 8, generator=g, dtype=dtype), torch.randint(0, 4, (32,), generator=g)
    return Split(x[:16], y[:16], x[16:24], y[16:24], x[24:], y[24:])


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"lr": float("inf")}, ValueError, "lr must be a finite number, got inf"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number, got nan"),
    ({"seed": 1.5}, TypeError, "seed must be an int, got float 1.5"),
    ({"on_epoch_start": "prune"}, TypeError, "on_epoch_start must be callable"),
    ({"optimizer": "adam"}, TypeError, "optimizer must be a torch.optim.Optimizer or None, got str"),
    ({"data": tuple(_small_split())}, TypeError, r"data must be a lessons_lib.data.Split \(from digits_split\)"),
    ({"data": _small_split()._replace(y_train=torch.full((16,), 4))}, ValueError,
     r"data.y_train must hold class indices in \[0, 4\)"),
    ({"data": _small_split()._replace(y_val=torch.zeros(8))}, ValueError, "data.y_val must be an int64 tensor"),
    ({"data": _small_split()._replace(x_train=torch.randn(16, 5))}, ValueError,
     r"model could not run on data.x_train of shape \(16, 5\)"),
    ({"data": _small_split()._replace(y_test=torch.zeros(7, dtype=torch.long))}, ValueError,
     r"data.y_test must be an int64 tensor of shape \(8,\)"),
    ({"data": _small_split(torch.float64)}, ValueError,
     "data.x_train is torch.float64 on cpu but model's parameters are torch.float32"),
])
def test_train_refuses_before_the_first_step(kwargs, error, message):
    model = MLP((8, 6, 4))
    before = copy.deepcopy(model.state_dict())
    calls = []
    args = {"data": _small_split(), "epochs": 1, "progress": False, **kwargs}
    if "on_epoch_start" not in kwargs:
        args["on_epoch_start"] = calls.append
    with pytest.raises(error, match=message):
        train(model, **args)
    assert calls == [] and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_accuracy_checks_labels_against_the_models_outputs():
    model = MLP((8, 6, 4))
    x = torch.randn(5, 8)
    for y, error, message in [(torch.full((5,), 4), ValueError, r"y must hold class indices in \[0, 4\)"),
                              (torch.zeros(5), ValueError, "y must be an int64 tensor"),
                              ([0, 1, 2, 3, 0], TypeError, "y must be a torch.Tensor")]:
        with pytest.raises(error, match=message):
            accuracy(model, x, y)
    with pytest.raises(ValueError, match="x must be a non-empty 2-D float tensor"):
        accuracy(model, x.long(), torch.zeros(5, dtype=torch.long))


def test_float64_models_train_in_float64():
    torch.manual_seed(0)
    models = [MLP((8, 6, 4)).double() for _ in range(2)]
    prune.l1_unstructured(models[0].layers[0], "weight", amount=0.5)
    data = _small_split(torch.float64)
    train_together(models, data, 2, seeds=[0, 1], progress=False)
    assert all(p.dtype == torch.float64 for m in models for p in m.parameters())
    assert int((models[0].layers[0].weight == 0).sum()) == 24
    alone = MLP((8, 6, 4)).double()
    assert len(train(alone, data, 1, progress=False)) == 1
    with pytest.raises(TypeError, match=r"seeds\[0\] must be an int"):
        train_together(models, data, 1, seeds=[0.5, 1], progress=False)
