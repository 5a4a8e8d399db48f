"""The shared argument checks, directly."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lessons_lib.sparsity import magnitude_mask
from lessons_lib.validate import require_fraction, require_parameter, require_positive_int, require_tensor


@pytest.mark.parametrize(("sparsity", "n", "count"), [
    (0.0, 10, 0), (1.0, 10, 10), (0.3, 10, 3), (0.25, 10, 2), (0.35, 10, 4), (0, 10, 0),   # halves to even
])
def test_a_sparsity_zeroes_what_prune_zeroes(sparsity, n, count):
    weight = torch.randn(n, dtype=torch.float64)
    assert int((~magnitude_mask(weight, sparsity)).sum()) == count
    module = nn.Module()
    module.weight = nn.Parameter(weight)
    prune.l1_unstructured(module, "weight", amount=sparsity)
    assert int((module.weight_mask == 0).sum()) == count


def test_require_fraction_uses_the_argument_name():
    with pytest.raises(ValueError, match=r"step must be a fraction in \[0, 1\], got 2.0"):
        require_fraction(2.0, "step")


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


# --- the amount convention: fractions everywhere, counts where stated, the int 1 refused ---------

def _amount_calls():
    """Every public call that takes an amount / sparsity / target, with the int 1 in its place."""
    from lessons_lib import experiments, pruning, schedules, sparsity, widgets
    from lessons_lib.models import MLP

    weight = torch.randn(4, 5)
    return {
        "magnitude_mask": lambda: sparsity.magnitude_mask(weight, 1),
        "random_mask": lambda: sparsity.random_mask(weight, 1),
        "prune_layerwise": lambda: pruning.prune_layerwise(MLP((4, 3, 2)), 1),
        "prune_random": lambda: pruning.prune_random(MLP((4, 3, 2)), 1),
        "prune_global": lambda: pruning.prune_global(MLP((4, 3, 2)), 1),
        "prune_per_layer": lambda: pruning.prune_per_layer(MLP((4, 3, 2)), {"layers.0": 1}),
        "global_threshold": lambda: pruning.global_threshold([weight], 1),
        "wanda_mask": lambda: sparsity.wanda_mask(weight, None, 1),
        "allocate_sparsity": lambda: experiments.allocate_sparsity({"a": [1.0, 0.5]}, [0, 0.5], {"a": 3}, 1),
        "storage_bytes": lambda: experiments.storage_bytes(MLP((4, 3, 2)), 1),
        "error_vs_sparsity": lambda: experiments.error_vs_sparsity(nn.Linear(5, 4), torch.randn(3, 5), [0.5, 1],
                                                               lambda w, a: torch.ones_like(w)),
        "one_shot_plan": lambda: schedules.one_shot_plan(1),
        "iterative_plan": lambda: schedules.iterative_plan(1, 10, 2),
        "cubic_plan": lambda: schedules.cubic_plan(1, 10, 2),
        "cubic_sparsity": lambda: schedules.cubic_sparsity(3, 1, 0, 10),
        "sparsity_per_epoch": lambda: schedules.sparsity_per_epoch([(0, 1)], 3),
        "sparsity_explorer": lambda: widgets.sparsity_explorer(nn.Linear(5, 4), torch.randn(3, 5), 1),
    }


@pytest.mark.parametrize("name", list(_amount_calls()))
def test_int_one_is_refused_everywhere_as_ambiguous(name):
    with pytest.raises(ValueError, match=r"=1 is ambiguous: .*write 1.0 to prune everything") as error:
        _amount_calls()[name]()
    assert "count" not in str(error.value)                   # nothing in lessons_lib takes a count


def test_require_fraction_follows_the_convention():
    import numpy as np

    assert int((~magnitude_mask(torch.randn(4), np.float32(0.5))).sum()) == 2
    assert require_fraction(np.float64(0.25), "a") == 0.25
    assert require_fraction(0, "a") == 0.0 and require_fraction(1.0, "a") == 1.0
    for one in (1, np.int64(1)):
        with pytest.raises(ValueError, match="sparsity=1 is ambiguous"):
            magnitude_mask(torch.randn(7), one)
        with pytest.raises(ValueError, match="target=1 is ambiguous"):
            require_fraction(one, "target")
    for bad, error in ((math.nan, ValueError), (math.inf, ValueError), (2, ValueError), (True, TypeError),
                       ("0.5", TypeError), (torch.tensor(0.5), TypeError), (None, TypeError)):
        with pytest.raises(error, match="target must be a fraction in"):
            require_fraction(bad, "target")


def test_docstrings_state_the_convention():
    import inspect

    from lessons_lib import experiments, pruning, schedules, sparsity, widgets

    fractions = [pruning.prune_layerwise, pruning.prune_random, pruning.prune_global, pruning.prune_lamp,
                 pruning.prune_per_layer,
                 pruning.global_threshold, experiments.allocate_sparsity,
                 experiments.storage_bytes, experiments.error_vs_sparsity, experiments.accuracy_vs_sparsity,
                 experiments.sensitivity_scan, schedules.one_shot_plan, schedules.iterative_plan,
                 schedules.cubic_plan, schedules.cubic_sparsity, sparsity.wanda_mask, sparsity.magnitude_mask,
                 sparsity.random_mask, widgets.sparsity_explorer, widgets.layer_sparsity_explorer,
                 widgets.latency_explorer]
    for fn in fractions:
        assert "fraction" in fn.__doc__ and "[0, 1]" in fn.__doc__, fn.__name__
        # the vocabulary: no function of ours takes an `amount` or a `target` (torch's prune does)
        assert not {"amount", "amounts", "target", "targets"} & set(inspect.signature(fn).parameters), fn.__name__


def test_require_mask_refuses_what_would_scale_or_misplace_weights():
    from lessons_lib.validate import require_mask

    weight = torch.randn(2, 3)
    assert torch.equal(require_mask(torch.tensor([[1.0, 0, 1], [0, 0, 1]]), weight),
                       torch.tensor([[True, False, True], [False, False, True]]))
    cases = [(torch.full((2, 3), 0.3), ValueError, "must hold only 0 and 1.*0.3"),
             (torch.full((2, 3), math.nan), ValueError, "must hold only 0 and 1"),
             (torch.full((2, 3), 2), ValueError, "must hold only 0 and 1.*2"),
             (torch.ones(3, 2), ValueError, r"must have the weight's shape \(2, 3\), got \(3, 2\)"),
             (torch.ones(2, 3, device="meta"), ValueError, "must be on the weight's device cpu, got meta"),
             ([[1, 1, 1], [1, 1, 1]], TypeError, "must be a torch.Tensor")]
    for mask, error, message in cases:
        with pytest.raises(error, match=f"mask {message}"):
            require_mask(mask, weight)


def test_other_shared_checks():
    from lessons_lib.validate import require_callable, require_int, require_lr, require_mapping, require_number

    assert require_int(0, "n", 0) == 0 and require_number(2, "x") == 2.0 and require_lr(1e-3) == 1e-3
    for call, error, message in [
        (lambda: require_int(1.5, "seed"), TypeError, "seed must be an int, got float 1.5"),
        (lambda: require_int(-1, "seed", 0), ValueError, "seed must be an int >= 0, got -1"),
        (lambda: require_number(math.nan, "lr"), ValueError, "lr must be a finite number, got nan"),
        (lambda: require_lr(math.inf), ValueError, "lr must be a finite number, got inf"),
        (lambda: require_lr(0), ValueError, "lr must be > 0, got 0"),
        (lambda: require_lr(3.0), ValueError, r"lr must be a learning rate in \(0, 1\], got 3.0"),
        (lambda: require_mapping([("a", 1)], "masks"), TypeError, "masks must be a dict mapping .* got list"),
        (lambda: require_callable("prune_global", "prune_fn"), TypeError, "prune_fn must be callable"),
    ]:
        with pytest.raises(error, match=message):
            call()


def test_sequences_are_what_a_learner_would_pass_as_a_list() -> None:
    import numpy as np

    from lessons_lib.validate import is_sequence

    for value in ([0.5], (0.5,), range(3), np.linspace(0, 0.9, 4)):
        assert is_sequence(value)
    for value in ("0.5", b"05", {0.5}, {0: 0.5}, np.zeros((2, 2)), 0.5, None):
        assert not is_sequence(value)


def test_ranges_and_numpy_arrays_are_accepted_where_a_list_is() -> None:
    import numpy as np

    from lessons_lib.data import digits_split
    from lessons_lib.experiments import accuracy_vs_sparsity
    from lessons_lib.models import MLP
    from lessons_lib.pruning import prune_global
    from lessons_lib.schedules import compare_schedules

    data = digits_split()
    model = MLP()
    amounts = np.linspace(0.0, 0.9, 4)
    assert accuracy_vs_sparsity(model, data.x_val, data.y_val, amounts, prune_global) == \
        accuracy_vs_sparsity(model, data.x_val, data.y_val, amounts.tolist(), prune_global)
    with pytest.raises(ValueError, match="epochs"):          # seeds=range(...) passes; epochs=0 stops it
        compare_schedules(data, range(2), [0.5], epochs=0)
