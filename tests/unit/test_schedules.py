"""Pruning schedules and the schedule experiment."""

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lessons_lib.data import digits_split
from lessons_lib.models import MLP
from lessons_lib.pruning import get_masks, model_sparsity
from lessons_lib.repro import seed_everything
from lessons_lib.schedules import (
    compare_schedules,
    cubic_plan,
    cubic_sparsity,
    iterative_plan,
    one_shot_plan,
    sparsity_per_epoch,
    train_with_plan,
)
from lessons_lib.training import accuracy, train


def test_cubic_formula_at_ends_and_inside():
    assert cubic_sparsity(0, 0.9, 0, 10) == 0.0
    assert cubic_sparsity(-5, 0.9, 0, 10) == 0.0
    assert cubic_sparsity(10, 0.9, 0, 10) == pytest.approx(0.9)
    assert cubic_sparsity(50, 0.9, 0, 10) == pytest.approx(0.9)
    assert cubic_sparsity(5, 0.8, 0, 10) == pytest.approx(0.8 * (1 - 0.5 ** 3))
    assert cubic_sparsity(4, 0.8, 2, 6, initial_sparsity=0.2) == pytest.approx(0.8 + (0.2 - 0.8) * 0.5 ** 3)
    values = [cubic_sparsity(t, 0.9, 0, 10) for t in range(11)]
    steps = [b - a for a, b in zip(values, values[1:], strict=False)]
    assert values == sorted(values) and steps == sorted(steps, reverse=True)     # fast first, slow last


def test_plans():
    assert one_shot_plan(0.9) == [(0, 0.9)]
    plan = iterative_plan(0.99, epochs=30, steps=2)
    assert [e for e, _ in plan] == [0, 15] and plan[0][1] == pytest.approx(0.9) and plan[1][1] == pytest.approx(0.99)
    plan = cubic_plan(0.9, epochs=30, steps=10)
    assert [e for e, _ in plan] == list(range(0, 20, 2)) and plan[-1][1] == pytest.approx(0.9)
    assert [t for _, t in plan] == sorted(t for _, t in plan)
    assert sparsity_per_epoch([(0, 0.5), (2, 0.8)], 4) == [0.5, 0.5, 0.8, 0.8]


@pytest.mark.parametrize(("call", "message"), [
    (lambda: cubic_sparsity(1, 1.5, 0, 10), r"final_sparsity must be a fraction in \[0, 1\], got 1.5"),
    (lambda: cubic_sparsity(1, 0.5, 10, 10), "end must be greater than start, got start=10, end=10"),
    (lambda: iterative_plan(0.9, 5, 6), r"steps must be <= epochs \(5\), got 6"),
    (lambda: cubic_plan(0.9, 30, 10, end=40), r"end must be in \[steps, epochs\] = \[10, 30\], got 40"),
    (lambda: one_shot_plan(-0.1), "sparsity must be a fraction"),
    (lambda: sparsity_per_epoch([], 0), "epochs must be a positive int, got 0"),
])
def test_schedule_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.fixture(scope="module")
def data():
    return digits_split()


def test_train_with_plan_reaches_targets(data):
    torch.manual_seed(0)
    model = MLP()
    seen = []
    train_with_plan(model, data, [(0, 0.5), (2, 0.8)], epochs=3, progress=False)
    seen.append(model_sparsity(model))
    assert seen[0] == pytest.approx(0.8, abs=1e-4)


@pytest.mark.parametrize(("plan", "message"), [
    ([(5, 0.5)], r"plan epochs must be in \[0, 3\), got \[5\]"),
    ([(0, 0.8), (1, 0.5)], "plan sparsities must not decrease"),
])
def test_train_with_plan_bad_plans_change_nothing(data, plan, message):
    model = MLP()
    with pytest.raises(ValueError, match=message):
        train_with_plan(model, data, plan, epochs=3, progress=False)
    assert model_sparsity(model) == 0.0


def test_compare_schedules_small(data):
    results = compare_schedules(data, seeds=[0, 1], sparsities=[0.5], epochs=3, steps=1, pretrain_epochs=3)
    assert [r.seed for r in results] == [0, 1]
    for result in results:
        assert set(result.accuracy) == {(m, 0.5) for m in ("no fine-tuning", "one-shot", "one-shot layer-wise",
                                                           "iterative", "cubic")}
        layerwise = result.masks["one-shot layer-wise", 0.5]                 # every layer at 50% on its own
        assert all(abs(float(m.float().mean()) - 0.5) < 1e-3 for m in layerwise.values())
        assert all(0 <= a <= 1 for a in result.accuracy.values()) and result.control >= 0.8
        for masks in result.masks.values():
            kept = sum(int(m.sum()) for m in masks.values())
            assert kept == pytest.approx(0.5 * 50_432, abs=2)
    assert results[0].accuracy != results[1].accuracy                          # seeds differ
    again = compare_schedules(data, seeds=[0, 1], sparsities=[0.5], epochs=3, steps=1, pretrain_epochs=3)
    assert [r.accuracy for r in again] == [r.accuracy for r in results]        # deterministic


def test_compare_schedules_runs_equal_separate_training(data):
    """Training together gives each run what train_with_plan gives it alone (up to rounding)."""
    (result,) = compare_schedules(data, seeds=[3], sparsities=[0.9], epochs=6, steps=2, pretrain_epochs=2)
    seed_everything(3, threads=1)
    dense = MLP()
    train(dense, data, 2, seed=3, progress=False)
    alone = copy.deepcopy(dense)
    train_with_plan(alone, data, cubic_plan(0.9, 6, 4), 6, seed=1003, progress=False)
    masks = get_masks(alone)
    assert all(torch.equal(masks[name], result.masks["cubic", 0.9][name]) for name in masks)
    assert accuracy(alone, data.x_test, data.y_test) == pytest.approx(result.accuracy["cubic", 0.9], abs=2 / 360)


@pytest.mark.parametrize("kwargs, message", [
    ({"seeds": [], "sparsities": [0.5]}, "seeds and sparsities must not be empty"),
    ({"seeds": [0], "sparsities": [1.5]}, r"sparsities\[0\] must be a fraction in \[0, 1\], got 1.5"),
    ({"seeds": [0], "sparsities": [0.5], "steps": 4, "epochs": 3}, r"at most epochs / 3 .*steps=4, epochs=3"),
    ({"seeds": [0], "sparsities": [0.5], "epochs": 0}, "epochs must be a positive int, got 0"),
    ({"seeds": [0], "sparsities": [0.5], "steps": 1, "epochs": 2}, r"at most epochs / 3 .*steps=1, epochs=2"),
    ({"seeds": [0], "sparsities": [0.5], "pretrain_epochs": 0}, "pretrain_epochs must be a positive int, got 0"),
])
def test_compare_schedules_bad_input(data, kwargs, message, monkeypatch):
    import lessons_lib.schedules as schedules

    monkeypatch.setattr(schedules, "train_together", lambda *a, **k: pytest.fail("trained before checking"))
    with pytest.raises(ValueError, match=message):
        compare_schedules(data, **{"epochs": 3, "steps": 1, "pretrain_epochs": 1, **kwargs})


def test_train_with_plan_scopes(data):
    torch.manual_seed(0)
    layerwise, global_ = MLP(), MLP()
    train_with_plan(layerwise, data, [(0, 0.9)], epochs=1, progress=False, scope="layer-wise")
    train_with_plan(global_, data, [(0, 0.9)], epochs=1, progress=False)
    from lessons_lib.pruning import layer_sparsities

    assert all(s == pytest.approx(0.9, abs=1e-4) for s in layer_sparsities(layerwise).values())
    assert len(set(layer_sparsities(global_).values())) == 3
    with pytest.raises(ValueError, match="scope must be 'global' or 'layer-wise', got 'local'"):
        train_with_plan(MLP(), data, [(0, 0.9)], epochs=1, progress=False, scope="local")


# --- plans: checked whole, before any training --------------------------------------------------

@pytest.mark.parametrize(("plan", "error", "message"), [
    ([], ValueError, "plan must hold at least one"),
    ("cubic", TypeError, "plan must be a list of"),
    ({0: 0.5}, TypeError, "plan must be a list of"),
    ([(0,)], TypeError, r"plan\[0\] must be an \(epoch, sparsity\) pair"),
    ([(0, 0.5), (0, 0.6)], ValueError, "plan prunes twice in epoch 0"),
    ([(0.5, 0.5)], TypeError, r"plan\[0\]'s epoch must be an int, got float 0.5"),
    ([(True, 0.5)], TypeError, r"plan\[0\]'s epoch must be an int"),
    ([(-1, 0.5)], ValueError, r"plan epochs must be in \[0, 4\)"),
    ([(0, 0.5), (1, 2.0)], ValueError, r"plan\[1\]'s sparsity must be a fraction in \[0, 1\], got 2.0"),
    ([(0, 0.5), (1, math.nan)], ValueError, r"plan\[1\]'s sparsity must be a fraction"),
    ([(0, 0.5), (1, 1)], ValueError, r"plan\[1\]'s sparsity=1 is ambiguous"),
    ([(2, 0.5), (1, 0.8)], ValueError, "plan sparsities must not decrease"),
])
def test_check_plan_refuses_bad_plans(plan, error, message):
    from lessons_lib.schedules import check_plan

    with pytest.raises(error, match=message):
        check_plan(plan, 4)
    with pytest.raises(error, match=message):
        sparsity_per_epoch(plan, 4)


@settings(max_examples=50, deadline=None)
@given(epochs=st.integers(1, 60), data=st.data())
def test_the_lessons_plans_are_valid_plans(epochs, data):
    from lessons_lib.schedules import check_plan

    steps = data.draw(st.integers(1, epochs))
    final = data.draw(st.floats(0.0, 1.0))
    for plan in (one_shot_plan(final), iterative_plan(final, epochs, steps)):
        assert len(check_plan(plan, epochs)) == len(plan)
    end = data.draw(st.integers(steps, epochs))
    assert len(check_plan(cubic_plan(final, epochs, steps, end), epochs)) == steps


@pytest.mark.parametrize(("plan", "message"), [
    ([(0, 0.5), (1, 2.0)], r"plan\[1\]'s sparsity must be a fraction"),      # bad target late in the plan
    ([(0, 0.5), (1, "0.9")], r"plan\[1\]'s sparsity must be a fraction"),
    ([(0, 0.0), (2, 0.0)], "plan never prunes"),
    ([(0, 0.5), (0, 0.9)], "plan prunes twice in epoch 0"),
])
def test_train_with_plan_checks_the_whole_plan_before_training(data, plan, message, monkeypatch):
    import lessons_lib.schedules as schedules

    monkeypatch.setattr(schedules, "train", lambda *a, **k: pytest.fail("trained before checking the plan"))
    model = MLP()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises((TypeError, ValueError), match=message):
        train_with_plan(model, data, plan, epochs=3, progress=False)
    assert list(model.state_dict()) == list(before)                    # no weight_orig / weight_mask
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_train_with_plan_refuses_a_first_target_below_the_models_sparsity(data, monkeypatch):
    import lessons_lib.schedules as schedules
    from lessons_lib.pruning import prune_global

    model = MLP()
    prune_global(model, 0.8)
    monkeypatch.setattr(schedules, "train", lambda *a, **k: pytest.fail("trained before checking the plan"))
    with pytest.raises(ValueError, match="plan's first sparsity 0.5 is below the model's current global sparsity 0.8"):
        train_with_plan(model, data, [(0, 0.5), (1, 0.9)], epochs=3, progress=False)
    with pytest.raises(ValueError, match=r"lr must be a finite number, got inf"):
        train_with_plan(model, data, [(0, 0.9)], epochs=3, lr=math.inf, progress=False)
    with pytest.raises(TypeError, match="data must be a lessons_lib.data.Split"):
        train_with_plan(model, tuple(data), [(0, 0.9)], epochs=3, progress=False)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: cubic_sparsity(math.nan, 0.9, 0, 10), ValueError, "step must be a finite number, got nan"),
    (lambda: cubic_sparsity(3, 0.9, 0, math.inf), ValueError, "end must be a finite number, got inf"),
    (lambda: cubic_sparsity(3, 0.9, math.nan, 10), ValueError, "start must be a finite number, got nan"),
    (lambda: cubic_sparsity("3", 0.9, 0, 10), TypeError, "step must be a number, got str"),
    (lambda: cubic_sparsity(3, 0.9, 10, 5), ValueError, "end must be greater than start"),
    (lambda: cubic_sparsity(3, 0.5, 0, 10, initial_sparsity=0.8), ValueError,
     "initial_sparsity must be <= final_sparsity"),
    (lambda: compare_schedules(None, seeds="01", sparsities=[0.5]), TypeError, "seeds must be a list, got str"),
    (lambda: compare_schedules(None, seeds=[0], sparsities="0.5"), TypeError, "sparsities must be a list, got str"),
    (lambda: compare_schedules(None, seeds=[0.5], sparsities=[0.5]), TypeError, r"seeds\[0\] must be an int"),
    (lambda: compare_schedules("data", seeds=[0], sparsities=[0.5]), TypeError,
     "data must be a lessons_lib.data.Split"),
])
def test_schedule_inputs_that_used_to_pass_silently(call, error, message):
    with pytest.raises(error, match=message):
        call()
