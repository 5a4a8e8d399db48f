"""training.trained_mlp: the shared dense MLP is deterministic, a fresh copy, and draws nothing."""

import pytest
import torch

from lessons_lib import training
from lessons_lib.data import digits_split
from lessons_lib.models import MLP
from lessons_lib.training import accuracy, train, trained_mlp


@pytest.fixture
def short(monkeypatch):
    """A 2-epoch recipe, so the test trains in well under a second."""
    monkeypatch.setattr(training, "_TRAINED", {})
    return lambda seed=0: trained_mlp(seed, epochs=2, progress=False)


def test_trained_mlp_is_the_documented_recipe(short):
    torch.manual_seed(0)
    by_hand = MLP((64, 256, 128, 10))
    train(by_hand, digits_split(seed=0), 2, seed=0, progress=False)
    shared = short()
    assert all(torch.equal(a, b) for a, b in zip(by_hand.state_dict().values(), shared.state_dict().values(),
                                                  strict=True))
    assert not shared.training


def test_each_call_is_a_fresh_copy_and_the_caller_rng_is_untouched(short):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = short()                                                       # trains: must not draw from our RNG
    assert torch.equal(torch.rand(3), expected_next)
    second = short()                                                      # cached: a copy, not the same object
    assert first is not second
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(first.parameters(), second.parameters(), strict=True))
    with torch.no_grad():
        first.layers[0].weight.zero_()
    assert short().layers[0].weight.abs().sum() > 0                      # changing a copy changes no other
    assert not torch.equal(short(1).layers[0].weight, second.layers[0].weight)   # seeds give other models


def test_the_real_recipe_learns_the_digits():
    data = digits_split(seed=0)
    model = trained_mlp(0, progress=False)
    assert accuracy(model, data.x_test, data.y_test) > 0.95


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ({"seed": 0.5}, TypeError, "seed must be an int"),
    ({"epochs": 0}, ValueError, "epochs must be"),
    ({"progress": "yes"}, TypeError, "progress must be"),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        trained_mlp(**kwargs)
