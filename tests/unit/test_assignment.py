"""Lesson 10's grader: counting what a model stores, the held-out problems, scoring, the checker's
messages, and the cheats a student who reads the grader might try (each must score 0)."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import sys
import threading
import time
import timeit

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune
from torch.overrides import TorchFunctionMode

import lessons_lib.assignment as assignment
import lessons_lib.tasks as tasks
from lessons_lib.assignment import (
    BONUS,
    BUDGET,
    CRITERIA,
    EXCELLENT,
    POINTS,
    Criterion,
    Score,
    allowed_parameters,
    bonus_points,
    curve,
    exam_rules,
    grading_seed,
    held_out_problems,
    held_tensors,
    non_embedding_parameters,
    parameter_costs,
    plain_copy,
    score_submission,
    stored_values,
)
from lessons_lib.checks import ExerciseFailure, check_assignment
from lessons_lib.gpt import GPT, GPTConfig, load_checkpoint
from lessons_lib.gpt_structured import slim_gpt
from lessons_lib.pruning import prunable_layers
from lessons_lib.tasks import addition_task

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dense() -> GPT:
    return load_checkpoint()


def fixed(value: float):
    """A speed-up measurement that says ``value``, so no assertion depends on the machine."""
    return lambda dense, model, x: value


def small(dense: GPT) -> GPT:
    """A slim model well within the budget (34,764 values), not fine-tuned."""
    return slim_gpt(dense, {"blocks.0.attn": [0, 1], "blocks.1.attn": [0, 1]},
                    {"blocks.0.fc1": list(range(64)), "blocks.1.fc1": list(range(64))})


def refusal(prune_to_budget) -> str:
    """What check_assignment says when it refuses ``prune_to_budget`` (0 points in nbgrader)."""
    with pytest.raises(ExerciseFailure) as refused:
        check_assignment(prune_to_budget)
    return str(refused.value)


# --- rules ----------------------------------------------------------------------------------------

def test_rules_are_built_from_literals_frozen_and_checked(monkeypatch):
    rules = exam_rules()
    assert (rules.budget, rules.accuracy_floor, rules.min_speedup, rules.points, rules.held_out) == (
        0.40, 0.90, 1.25, (4, 4, 2), 2_000)
    assert (rules.bonus, rules.excellent_budget, rules.excellent_accuracy, rules.excellent_speedup) == (
        (3, 5, 2), 0.20, 0.995, 3.0)
    assert (rules.budget, {"parameter budget": 4, "accuracy floor": 4, "speed-up": 2}) == (BUDGET, POINTS)
    assert [BONUS[name] for name in CRITERIA] == [3, 5, 2] and list(EXCELLENT.values()) == [0.20, 0.995, 3.0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.budget = 1.0
    monkeypatch.setattr(assignment, "BUDGET", 1.0)                    # the display constant is not read
    monkeypatch.setitem(assignment.POINTS, "speed-up", -10)
    assert exam_rules() == rules
    for bad, message in (({"budget": 1.5}, r"budget must be a number in \(0.0, 1.0\], got 1.5"),
                         ({"accuracy_floor": 0}, "accuracy_floor must be .*got 0"),
                         ({"points": (4, -4, 2)}, r"points must be a tuple of 3 ints >= 0, got \(4, -4, 2\)"),
                         ({"points": [4, 4, 2]}, "points must be a tuple"),
                         ({"bonus": (3, 5)}, r"bonus must be a tuple of 3 ints >= 0, got \(3, 5\)"),
                         ({"bonus": (3, 5.0, 2)}, "bonus must be a tuple of 3 ints"),
                         ({"excellent_budget": 0.4}, r"excellent_budget must be a number in \(0.0, 0.4\), got 0.4"),
                         ({"budget": 0.2}, r"excellent_budget must be a number in \(0.0, 0.2\), got 0.2"),
                         ({"excellent_accuracy": 1.0}, r"excellent_accuracy must be .* \(0.9, 1.0\), got 1.0"),
                         ({"excellent_accuracy": 0.85}, "excellent_accuracy must be .*got 0.85"),
                         ({"excellent_speedup": 1.25}, r"excellent_speedup must be .* \(1.25, inf\), got 1.25"),
                         ({"excellent_speedup": math.inf}, "excellent_speedup must be .*got inf"),
                         ({"excellent_speedup": True}, "excellent_speedup must be .*got True"),
                         ({"held_out": 0}, r"held_out must be an int in \[1, 100000\], got 0")):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(rules, **bad)


def test_points_are_never_negative_nor_above_the_maximum():
    with pytest.raises(ValueError, match="max_points must be an int >= 0, got -4"):
        Criterion("speed-up", "2x", ">= 1.25x", True, -4)
    for bad in (-0.1, 2.5, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match=rf"bonus must be a number in \[0, max_bonus=2\], got {bad!r}"):
            Criterion("speed-up", "2x", ">= 1.25x", True, 2, max_bonus=2, bonus=bad)
    with pytest.raises(ValueError, match="max_bonus must be an int >= 0, got -1"):
        Criterion("speed-up", "2x", ">= 1.25x", True, 2, max_bonus=-1)
    score = Score((Criterion("a", "", "", True, 4, max_bonus=3, bonus=1.5),
                   Criterion("b", "", "", "yes", 4, max_bonus=5, bonus=5)))          # only True passes, bonus too
    assert (score.points, score.max_points) == (5.5, 16)


# --- counting what a model stores ----------------------------------------------------------------

def test_non_embedding_parameters_of_the_dense_model(dense):
    total = sum(p.numel() for p in dense.parameters())
    embeddings = dense.tok_emb.weight.numel() + dense.pos_emb.weight.numel()
    assert non_embedding_parameters(dense) == stored_values(dense) == total - embeddings == 100_876
    assert allowed_parameters(dense) == int(BUDGET * 100_876) == 40_350


def test_masks_do_not_reduce_the_stored_count(dense):
    masked = load_checkpoint()
    for layer in prunable_layers(masked).values():
        prune.l1_unstructured(layer, "weight", amount=0.9)
    assert non_embedding_parameters(masked) == non_embedding_parameters(dense)
    weights = sum(layer.weight.numel() for layer in prunable_layers(masked).values())
    assert stored_values(masked) == stored_values(dense) + 2 * weights     # the mask and the masked copy too
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        non_embedding_parameters("model")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        stored_values("model")


def test_every_tensor_a_model_holds_counts_once(dense):
    model = small(dense)
    base = stored_values(model)
    weight = model.blocks[0].fc1.weight
    model.blocks[0].stash = [weight.detach(), {"w": weight.data}]     # the same values: counted once
    model.notes = "tried 3 heads first"
    assert stored_values(model) == base
    model.register_buffer("hidden", torch.zeros(7))
    model.blocks[1].attn.extra = (torch.zeros(3), [torch.ones(2, 5)])
    assert stored_values(model) == base + 7 + 3 + 10
    assert {"hidden", "blocks.1.attn.extra[0]", "blocks.1.attn.extra[1][0]"} <= set(held_tensors(model))


def test_parameter_costs_match_what_removal_saves(dense):
    costs = parameter_costs(dense.config)
    full = non_embedding_parameters(dense)
    assert full - non_embedding_parameters(slim_gpt(dense, {"blocks.0.attn": [0, 1, 2]})) == costs["head"] == 4_144
    fewer_neurons = slim_gpt(dense, keep_ffn={"blocks.1.fc1": list(range(250))})
    assert full - non_embedding_parameters(fewer_neurons) == 6 * costs["FFN neuron"]


# --- held-out problems ----------------------------------------------------------------------------

def test_held_out_problems_are_disjoint_from_every_lesson_split_and_correct():
    x, y = held_out_problems(seed=7)
    assert x.shape == (2_000, 11) and y.shape == (2_000, 4)
    task = addition_task(3, seed=0)
    seen = {tuple(row) for split in (task.x_train, task.x_val, task.x_test) for row in split[:, :7].tolist()}
    held = {tuple(row) for row in x[:, :7].tolist()}
    assert len(held) == 2_000 and not held & seen
    a = x[:, 0] * 100 + x[:, 1] * 10 + x[:, 2]
    b = x[:, 4] * 100 + x[:, 5] * 10 + x[:, 6]
    assert torch.equal(y @ torch.tensor([1000, 100, 10, 1]), a + b)
    assert torch.equal(held_out_problems(seed=7)[0], x)                  # a seed gives the same problems
    assert not torch.equal(held_out_problems()[0], held_out_problems()[0])   # no seed: new ones every call
    with pytest.raises(ValueError, match=r"n must be an int in \[1, 100000\], got 0"):
        held_out_problems(0)
    with pytest.raises(ValueError, match=r"seed must be None or an int in \[0, 2\*\*63\), got -1"):
        held_out_problems(10, seed=-1)


def test_the_grading_seed_is_secret_unless_the_teacher_sets_one():
    (first, teachers), (second, _) = grading_seed(None), grading_seed(None)
    assert first != second and not teachers
    assert grading_seed("20260101") == grading_seed("20260101") == (20260101, True)
    with pytest.raises(ValueError, match=r"PRUNING_GRADER_SEED must be an int in \[0, 2\*\*63\), got 'exam'"):
        grading_seed("exam")
    assert assignment._SEAL.seed_setting is None          # read once, at import: a learner cannot set it later


# --- scoring --------------------------------------------------------------------------------------

def test_score_table_and_points():
    score = Score((Criterion("parameter budget", "1", "<= 2", True, 4, max_bonus=3, excellent="<= 1"),
                   Criterion("accuracy floor", "50.0%", ">= 90%", False, 4, "fine-tune longer", max_bonus=5),
                   Criterion("speed-up", "2.00x", ">= 1.25x", True, 2, timed=True, max_bonus=2)),
                  note="drawn with seed 3")
    assert (score.points, score.max_points) == (6, 20)
    table = score.table().splitlines()
    assert table[0].split() == ["criterion", "measured", "floor", "pass", "excellent", "beyond"]
    assert table[2].split() == ["parameter", "budget", "1", "<=", "2", "4", "/", "4", "<=", "1", "0.0", "/", "3"]
    assert table[3].split()[-6:] == ["0", "/", "4", "0.0", "/", "5"]
    assert "total: 6.0 / 20 points (6 / 10 for the floors, 0.0 / 10 beyond them)" in table
    assert "points beyond the floors count only for a model within the budget that meets the accuracy floor" in table
    assert "✗ accuracy floor: fine-tune longer" in table and table[-1] == "drawn with seed 3"
    assert score.summary().splitlines()[1].startswith("✗ accuracy floor   0 / 4  + 0.0 / 5 beyond")
    assert score.summary().splitlines()[-1].split() == ["total", "6.0", "/", "20"]
    untimed = score.summary(timed=False).splitlines()
    assert [line.split()[1] for line in untimed[:-1]] == ["parameter", "accuracy"]      # speed-up left out
    assert untimed[-1].split() == ["without", "timing", "4", "/", "8"]
    assert "beyond" not in "".join(untimed)              # it moves with the draw and, via the floors, the timing
    passed = Score(tuple(dataclasses.replace(c, passed=True, bonus=c.max_bonus / 2) for c in score.criteria))
    assert passed.points == 15.0 and "total: 15.0 / 20 points (10 / 10 for the floors, 5.0 / 10" in passed.table()
    assert "count only once" not in passed.table()
    assert passed.summary().splitlines()[0] == "✓ parameter budget 4 / 4  + 1.5 / 3 beyond"


def test_the_dense_model_earns_nothing(dense):
    score = score_submission(load_checkpoint(), dense, *held_out_problems(200, seed=0), speedup_fn=fixed(1.0))
    assert score.points == 0
    budget, accuracy, _ = score.criteria
    assert "remove 60,526 more" in budget.hint and "beside the weights" not in budget.hint
    assert accuracy.measured.startswith("100.0%") and "within the parameter budget" in accuracy.hint


def test_a_slim_model_within_budget_scores_per_criterion(dense):
    slim = slim_gpt(dense, {"blocks.0.attn": [0, 1, 2], "blocks.1.attn": [0, 1, 2]},
                    {"blocks.0.fc1": list(range(52)), "blocks.1.fc1": list(range(52))})
    assert stored_values(slim) <= allowed_parameters(dense)
    problems = held_out_problems(500, seed=0)
    score = score_submission(slim, dense, *problems, speedup_fn=fixed(1.9))   # not fine-tuned: below the floor
    assert [c.passed for c in score.criteria] == [True, False, True]
    assert [c.timed for c in score.criteria] == [False, False, True]             # only the speed-up
    assert score.points == POINTS["parameter budget"] + POINTS["speed-up"]        # nothing beyond: a floor missed
    assert [c.bonus for c in score.criteria] == [0, 0, 0] and score.max_points == 20
    assert score_submission(slim, dense, *problems, speedup_fn=fixed(1.1)).points == POINTS["parameter budget"]
    strict = dataclasses.replace(exam_rules(), budget=0.2, excellent_budget=0.1, points=(1, 1, 1))
    assert score_submission(slim, dense, *problems, strict, fixed(1.9)).points == 0


def test_points_beyond_the_floors_only_for_a_model_within_budget_and_accuracy_floor(dense):
    everything = dataclasses.replace(exam_rules(), budget=1.0)      # the dense model fits: 100% exact match
    problems = held_out_problems(200, seed=0)
    score = score_submission(load_checkpoint(), dense, *problems, everything, fixed(1.9))
    assert [c.bonus for c in score.criteria] == [0.0, 5.0, 0.7]        # 100% of dense, 100% exact, 1.9x
    assert score.points == 4 + 4 + 2 + 5.0 + 0.7 and "5.0 / 5" in score.table()
    assert "count only for" not in score.table()
    slow = score_submission(load_checkpoint(), dense, *problems, everything, fixed(1.2))   # a timing missed
    assert [c.bonus for c in slow.criteria] == [0, 5.0, 0] and slow.points == 4 + 4 + 5.0
    assert "count only for" not in slow.table() and "✗ speed-up" in slow.table()
    inaccurate = dataclasses.replace(everything, accuracy_floor=0.99, excellent_accuracy=0.999)
    small_and_fast = score_submission(small(dense), dense, *problems, inaccurate, fixed(9.0))  # not fine-tuned
    assert [c.passed for c in small_and_fast.criteria] == [True, False, True]
    assert small_and_fast.points == 4 + 2 and "count only for a model" in small_and_fast.table()


# --- the curve beyond the floors -------------------------------------------------------------------

def test_the_curve_at_its_marks():
    rules = exam_rules()
    assert bonus_points(0.40, 0.90, 1.25) == (0.0, 0.0, 0.0)                     # at the floors
    assert bonus_points(0.20, 0.995, 3.0) == (3.0, 5.0, 2.0)                     # at the excellent marks
    assert bonus_points(0.01, 1.0, 50.0) == (3.0, 5.0, 2.0)                      # beyond them: capped
    assert bonus_points(0.9, 0.2, 0.5) == (0.0, 0.0, 0.0)                        # below the floors: 0, not less
    assert bonus_points(0.30, 0.95, 2.125) == (1.5, 1.2, 1.0)                    # halfway; one halving of errors
    halvings = [bonus_points(0.4, 1 - 0.1 / 2**k, 1.25)[1] for k in range(5)]   # 90%, 95%, 97.5% ...
    steps = [b - a for a, b in zip(halvings, halvings[1:], strict=False)]
    assert max(steps) - min(steps) <= 0.1 + 1e-9                                # the same per halving (rounded)
    assert bonus_points(0.3986, 0.984, 1.67) == (0.0, 3.1, 0.5)                  # the reference, about
    assert bonus_points(0.3983, 0.923, 2.2) == (0.0, 0.4, 1.1)                   # 300 steps of lesson 09's recipe
    other = dataclasses.replace(rules, bonus=(1, 2, 0), excellent_accuracy=0.95)
    assert bonus_points(0.30, 0.95, 9.0, other) == (0.5, 2.0, 0.0)


def test_bonus_points_refuses_bad_input():
    for name, args in (("share", (math.nan, 0.9, 1.3)), ("accuracy", (0.3, -0.1, 1.3)),
                       ("faster", (0.3, 0.9, True)), ("faster", (0.3, 0.9, "2x"))):
        with pytest.raises(ValueError, match=f"{name} must be a number >= 0, got"):
            bonus_points(*args)
    with pytest.raises(TypeError, match="rules must be a Rules, got dict"):
        bonus_points(0.3, 0.9, 1.3, {"budget": 0.4})


@settings(max_examples=50, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 10), st.floats(0, 1), st.floats(0, 1), st.floats(0, 10))
def test_bonus_points_stay_in_range_and_never_fall_when_a_measure_improves(share, accuracy, faster, s2, a2, f2):
    points = bonus_points(share, accuracy, faster)
    assert all(0 <= p <= most and round(p, 1) == p for p, most in zip(points, exam_rules().bonus, strict=True))
    better = bonus_points(min(share, s2), max(accuracy, a2), max(faster, f2))
    assert all(b >= p for b, p in zip(better, points, strict=True))


def test_the_published_curve_is_printed_from_the_rules_and_in_the_teachers_guide():
    text = curve()
    assert "up to 10 more points, paid only to a model within the budget that meets the accuracy floor" in text
    lines = text.splitlines()
    accuracy = lines.index("accuracy floor, up to 5 more: the same for every halving of the errors, from 90% up "
                           "to 99.5% exact match")
    assert lines[accuracy + 2].split() == ["points", "0.0", "1.2", "2.3", "3.5", "4.6", "5.0"]
    stricter = curve(dataclasses.replace(exam_rules(), bonus=(6, 5, 2)))
    assert "parameter budget, up to 6 more" in stricter and "up to 13 more points" in stricter
    guide = (ROOT / "docs" / "teachers.md").read_text()
    missing = [line for line in text.splitlines() if line.strip() not in guide]
    assert not missing, f"docs/teachers.md does not publish these lines of curve(): {missing}"


def test_speedup_is_a_ratio_of_times(dense):
    slim = slim_gpt(dense, {"blocks.0.attn": [0], "blocks.1.attn": [0]},
                    {"blocks.0.fc1": list(range(16)), "blocks.1.fc1": list(range(16))})
    x = held_out_problems(256, seed=0)[0]
    assert assignment.speedup(dense, dense, x, rounds=1) == pytest.approx(1.0, rel=0.5)
    assert assignment.speedup(dense, slim, x, rounds=1) > 1.0
    with pytest.raises(ValueError, match="rounds"):
        assignment.speedup(dense, slim, x, rounds=0)


def test_speedup_times_on_one_thread_and_restores_the_setting(dense, monkeypatch):
    seen = []
    monkeypatch.setattr(assignment, "latency_ms", lambda fn: seen.append(torch.get_num_threads()) or 1.0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert assignment.speedup(dense, dense, held_out_problems(8, seed=0)[0], rounds=2) == 1.0
        assert seen == [1, 1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# --- what the model is: a plain GPT, rebuilt ------------------------------------------------------

def test_plain_copy_is_a_fresh_gpt_equal_to_the_model(dense):
    model = small(dense).double()
    copy = plain_copy(model)
    x = held_out_problems(64, seed=0)[0]
    assert type(copy) is GPT and copy.config == model.config and copy.config is not model.config
    assert copy.tok_emb.weight.dtype == torch.float32                   # graded like the dense model
    torch.testing.assert_close(copy(x).double(), model(x), atol=1e-4, rtol=0)
    ours = {p.data_ptr() for p in model.parameters()}
    assert not any(p.data_ptr() in ours for p in copy.parameters())


class AddsInPython(GPT):
    """The issue's first cheat: 32 parameters, and a forward that does the sum in Python."""

    def forward(self, idx: torch.Tensor, head_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        weights = torch.tensor([100, 10, 1])
        total = idx[:, :3] @ weights + idx[:, 4:7] @ weights
        digits = total[:, None] // torch.tensor([1000, 100, 10, 1]) % 10
        logits = torch.zeros(*idx.shape, self.config.vocab_size)
        logits[:, -4:].scatter_(2, digits[..., None], 1.0)
        return logits


def _forward_in_python(model: GPT) -> GPT:
    model.forward = AddsInPython.forward.__get__(model)
    return model


def _weights_as_plain_attributes(model: GPT) -> GPT:
    for layer in prunable_layers(model).values():
        weight = layer.weight.detach()
        del layer.weight
        layer.weight = weight                            # a plain attribute, no longer a parameter
    return model


class Linear(nn.Linear):
    """Looks like nn.Linear in a printout."""


class Weight(nn.Parameter):
    """A parameter whose class could run code on every operation."""


class Pretends:
    """Not a GPT, but isinstance(Pretends(), GPT) is True."""

    __class__ = property(lambda self: GPT)


class Config(GPTConfig):
    """A config whose methods could say anything."""


class Parameters(dict):
    """A parameter dict whose items() could hide or invent weights."""


@pytest.mark.parametrize(("tamper", "message"), [
    (_forward_in_python, "model.forward replaces what GPT defines"),
    (lambda m: setattr(m.blocks[1].attn, "forward", lambda x, head_mask=None: x) or m,
     "blocks.1.attn.forward replaces what Attention defines"),
    (lambda m: m.blocks[0].fc2.register_forward_hook(lambda mod, i, out: out * 0) and m,
     "blocks.0.fc2 has forward_hooks registered"),
    (lambda m: prune.l1_unstructured(m.blocks[0].fc1, "weight", 0.5) and m, "blocks.0.fc1 still carries pruning masks"),
    (lambda m: setattr(m.blocks[0], "fc1", Linear(64, 64)) or m,
     r"blocks.0.fc1 is a (tests.)?test_assignment.Linear, but GPT builds a torch.nn.modules.linear.Linear"),
    (lambda m: m.add_module("helper", nn.Linear(2, 2)) or m, r"model has submodules \[.*'helper'"),
    (lambda m: setattr(m, "answers", {"trick": print}) or m, "model.answers is a builtin_function_or_method"),
    (lambda m: setattr(m.blocks[0].attn, "n_heads", 3) or m, "blocks.0.attn.n_heads is 3, but a GPT built from"),
    (lambda m: setattr(m.config, "heads", [4, 2]) or m, "blocks.0.attn.n_heads is 2, but a GPT built from"),
    (lambda m: setattr(m.blocks[0].fc1, "weight", nn.Parameter(torch.zeros(10, 64))) or m,
     r"blocks.0.fc1.weight is of shape \(10, 64\), but model.config .* needs shape \(64, 64\)"),
    (lambda m: setattr(m.config, "heads", [2.0, 2]) or m, r"model.config.heads must be a list of ints"),
    (lambda m: setattr(m.config, "stash", torch.zeros(9)) or m, r"model.config holds \[.*'stash'"),
    (lambda m: setattr(m.blocks[0].fc1, "weight", Weight(m.blocks[0].fc1.weight.detach())) or m,
     "blocks.0.fc1.weight is a Weight; only plain tensors"),
    (lambda m: m.to("meta"), "weights cannot be copied to the CPU"),
    (lambda m: Pretends(), "must be a lessons_lib.gpt.GPT itself, not a Pretends"),
    (lambda m: setattr(m, "config", Config(**m.config.to_dict())) or m, "model.config must be a GPTConfig, got Config"),
    (lambda m: setattr(m.head, "_parameters", Parameters(m.head._parameters)) or m, "head._parameters is not a plain"),
    (_weights_as_plain_attributes, "blocks.0.attn.q.weight is missing"),
])
def test_plain_copy_refuses_anything_but_the_library_gpt(dense, tamper, message):
    with pytest.raises((TypeError, ValueError), match=message):
        plain_copy(tamper(small(dense)))


def test_a_gpt_subclass_doing_the_sum_in_python_scores_0(dense):
    cheat = AddsInPython(GPTConfig(heads=[0], ffn=[0]))
    x, y = held_out_problems(100, seed=0)
    assert tasks.exact_match(cheat, x, y) == 1.0                          # it does add
    assert "not a AddsInPython" in refusal(lambda dense, task: AddsInPython(GPTConfig(heads=[0], ffn=[0])))
    assert "model.forward replaces" in refusal(lambda dense, task: _forward_in_python(small(dense)))


def _weights_as_buffers(model: GPT) -> GPT:
    for layer in prunable_layers(model).values():
        weight = layer.weight.detach()
        del layer.weight
        layer.register_buffer("weight", weight)          # the same state_dict key, as a buffer
    return model


def test_dense_weights_hidden_as_buffers_or_attributes_fill_the_budget(dense):
    problems = held_out_problems(200, seed=0)
    as_buffers = _weights_as_buffers(load_checkpoint())                  # the dense model, buffers for weights
    over = _weights_as_buffers(slim_gpt(dense, keep_ffn={"blocks.0.fc1": list(range(128)),
                                                         "blocks.1.fc1": list(range(128))}))
    beside = small(dense)
    beside.stash = [layer.weight.detach().clone() for layer in prunable_layers(dense).values()]
    for model in (as_buffers, over, beside):
        assert non_embedding_parameters(model) <= allowed_parameters(dense)   # what the grader used to count
        assert stored_values(model) > allowed_parameters(dense)
        score = score_submission(model, dense, *problems, speedup_fn=fixed(3.0))
        assert score.points == 0 and not score.criteria[0].passed
    assert "beside the weights (stash[0], stash[1], stash[2] ...): every tensor counts" in score.criteria[0].hint


# --- the grader itself is out of reach ------------------------------------------------------------

class _Everything(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _cheats(monkeypatch, cleanup):
    """(name, what the learner's code does) for each attempt to change the grader while it runs."""
    slow, call, transpose = F.linear, nn.Module.__call__, torch.Tensor.transpose   # the last one is inherited

    def linear(x, w, b=None):
        time.sleep(0.01 if w.shape[0] == 256 else 0)     # only the dense model's FFN
        return slow(x, w, b)

    def enter_mode():
        mode = _Everything()
        mode.__enter__()
        cleanup.append(lambda: mode.__exit__(None, None, None))

    def trace():
        before = sys.gettrace()
        sys.settrace(lambda *args: None)
        cleanup.append(lambda: sys.settrace(before))

    def thread():
        stop = threading.Event()
        worker = threading.Thread(target=stop.wait, name="slows the dense model", daemon=True)
        worker.start()
        cleanup.append(lambda: stop.set() or worker.join())

    def float64():
        before = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        cleanup.append(lambda: torch.set_default_dtype(before))

    def fake_monitor():                 # a thread dressed up as tqdm's monitor by its names
        stop = threading.Event()
        disguised = type("TMonitor", (threading.Thread,), {"__module__": "tqdm._monitor"})
        worker = disguised(target=stop.wait, daemon=True)
        worker.start()
        cleanup.append(lambda: stop.set() or worker.join())

    def code():
        def faster(dense, model, x, rounds=3):
            return 100.0
        monkeypatch.setattr(assignment.speedup, "__code__", faster.__code__)

    return {
        "lessons_lib.assignment.BUDGET": lambda: monkeypatch.setattr(assignment, "BUDGET", 1.0),
        "lessons_lib.assignment.ACCURACY_FLOOR": lambda: monkeypatch.setattr(assignment, "ACCURACY_FLOOR", 0.0),
        "lessons_lib.assignment.POINTS": lambda: monkeypatch.setattr(assignment, "POINTS", dict.fromkeys(POINTS, -4)),
        "lessons_lib.assignment.POINTS ": lambda: monkeypatch.setitem(assignment.POINTS, "speed-up", -10),
        "lessons_lib.assignment.exact_match": lambda: monkeypatch.setattr(assignment, "exact_match", lambda *a: 1.0),
        "lessons_lib.tasks.exact_match": lambda: monkeypatch.setattr(tasks, "exact_match", lambda *a: 1.0),
        "lessons_lib.assignment.speedup": lambda: monkeypatch.setattr(assignment, "speedup", lambda *a: 9.0),
        "lessons_lib.assignment.speedup ": code,
        "lessons_lib.assignment.exam_rules": lambda: monkeypatch.setattr(
            assignment, "exam_rules", lambda: dataclasses.replace(exam_rules(), budget=1.0, accuracy_floor=1e-9)),
        "lessons_lib.assignment.BONUS": lambda: monkeypatch.setitem(assignment.BONUS, "speed-up", 100),
        "lessons_lib.assignment.bonus_points": lambda: monkeypatch.setattr(
            assignment, "bonus_points", lambda *a, **k: tuple(map(float, exam_rules().bonus))),
        "math.log": lambda: monkeypatch.setattr(math, "log", lambda x: 1.0),     # the accuracy curve's
        "Score.points": lambda: monkeypatch.setattr(Score, "points", property(lambda self: self.max_points)),
        "Criterion.points": lambda: monkeypatch.setattr(Criterion, "points", property(lambda self: self.max_points)),
        "GPT.forward": lambda: monkeypatch.setattr(GPT, "forward", AddsInPython.forward),
        "Module.__call__": lambda: monkeypatch.setattr(nn.Module, "__call__", lambda *a, **k: call(*a, **k)),
        "Tensor.transpose": lambda: monkeypatch.setattr(torch.Tensor, "transpose", lambda t, *a: transpose(t, *a)),
        "torch.nn.functional.linear": lambda: monkeypatch.setattr(F, "linear", linear),
        "torch's default dtype": float64,
        "torch.nn.modules.module._global_forward_hooks": lambda: monkeypatch.setitem(
            torch.nn.modules.module._global_forward_hooks, 10**9, lambda module, args, out: out),
        "a torch function or dispatch mode": enter_mode,
        "a trace or profile function": trace,
        "a thread left running (slows the dense model)": thread,
        "a thread left running (Thread-": fake_monitor,
        "os.urandom": lambda: monkeypatch.setattr(os, "urandom", lambda n: bytes(n)),   # a known "secret" seed
        "Timer.timeit": lambda: monkeypatch.setattr(timeit.Timer, "timeit", lambda self, number=1: 1.0),
    }


@pytest.mark.parametrize("name", list(_cheats(None, None)))
def test_a_submission_that_changes_the_grader_scores_0(monkeypatch, name):
    cleanup = []
    cheat = _cheats(monkeypatch, cleanup)[name]

    def prune_to_budget(dense, task):
        cheat()
        return small(dense)

    try:
        message = refusal(prune_to_budget)
    finally:
        for undo in reversed(cleanup):
            undo()
    assert "something changed what the grader relies on: " + name.strip() in message
    assert "Restart the kernel" in message


def test_a_change_made_before_the_grader_is_called_is_refused_too(monkeypatch):
    monkeypatch.setattr(assignment, "speedup", fixed(2.0))
    assert "lessons_lib.assignment.speedup" in refusal(lambda dense, task: small(dense))


def test_a_changed_checkpoint_is_refused(monkeypatch):
    monkeypatch.setattr(assignment, "_SEAL", dataclasses.replace(assignment._SEAL, checkpoint_sha256="0" * 64))
    message = refusal(lambda dense, task: small(dense))
    assert "the shipped checkpoint changed while prune_to_budget ran" in message and "0" * 64 in message


# --- check_assignment end to end ------------------------------------------------------------------

def test_an_untouched_stub_scores_0_and_the_cells_after_it_run(capsys):
    def not_done(dense, task):
        raise NotImplementedError()

    score = check_assignment(not_done)                  # no exception: Run All goes on past the grade cell
    out = capsys.readouterr().out
    assert out.startswith("✗ prune_to_budget is not implemented yet: replace `raise NotImplementedError()`")
    assert "0 points" in out and "the cells below still run" in out
    assert type(score) is Score and score.points == 0 and score.max_points == 20
    assert repr(score.points) == "0.0"                  # the grade cell's last line: nbgrader records 0
    assert "total: 0.0 / 20 points" in score.table() and "not implemented yet" in score.table()
    assert score.summary(timed=False).splitlines()[-1].split() == ["without", "timing", "0", "/", "8"]
    assert score.summary().splitlines()[-1].split() == ["total", "0.0", "/", "20"]
    with pytest.raises(TypeError, match="reason must be a str, got int"):
        Score.not_run(3)


def test_check_assignment_messages():
    with pytest.raises(ExerciseFailure, match="must return a GPT .*got OrderedDict"):
        check_assignment(lambda dense, task: dense.state_dict())
    with pytest.raises(ExerciseFailure, match=r"logits of shape \(2, 11, 20\); expected \(2, 11, 12\)"):
        check_assignment(lambda dense, task: GPT(GPTConfig(vocab_size=20)))
    with pytest.raises(ExerciseFailure, match="fails on a batch of problems"):
        check_assignment(lambda dense, task: GPT(GPTConfig(block_size=4)))
    with pytest.raises(ExerciseFailure, match="raised ZeroDivisionError"):
        check_assignment(lambda dense, task: 1 / 0)
    with pytest.raises(ExerciseFailure, match="cannot be graded: blocks.0.fc1 still carries pruning masks"):
        check_assignment(lambda dense, task: prune.random_unstructured(dense.blocks[0].fc1, "weight", 0.5) and dense)


@pytest.mark.slow                       # the whole grader, timings included: an integration test
def test_check_assignment_grades_a_copy_on_problems_drawn_afresh(capsys, monkeypatch):
    monkeypatch.delenv("PRUNING_GRADER_SEED", raising=False)
    received, public = [], []

    def keep_half_the_heads(dense, task):
        received.append(dense)
        public.append(held_out_problems()[0])          # what a learner could fine-tune on
        monkeypatch.setenv("PRUNING_GRADER_SEED", "42")     # too late: the grader read it when imported
        torch.compile(lambda t: t + 1, backend="eager")(torch.ones(1))   # patches nn.Module the first time
        assert len(task.x_train) == 20_000
        return small(dense)

    score = check_assignment(keep_half_the_heads)
    out = capsys.readouterr().out
    assert "parameter budget" in out and f"{score.points} / {score.max_points}" in out and score.note in out
    assert score.criteria[0].passed and score.criteria[0].measured.startswith("34,764")
    seed = int(re.search(r"drawn with seed (\d+) \(PRUNING_GRADER_SEED=\1 draws them again\)", score.note)[1])
    graded = held_out_problems(2_000, seed)[0]
    shared = {tuple(r) for r in graded[:, :7].tolist()} & {tuple(r) for r in public[0][:, :7].tolist()}
    assert len(shared) < 50                 # two draws of 2,000 from 500,000 share 8 on average
    with torch.no_grad():                                           # the learner may change its copy freely
        received[0].head.weight.zero_()
    assert load_checkpoint().head.weight.abs().sum() > 0


@pytest.mark.slow                       # the whole grader, timings included: an integration test
def test_walking_the_stack_finds_no_model_the_grader_times(monkeypatch):
    monkeypatch.setattr(assignment, "_SEAL", dataclasses.replace(assignment._SEAL, seed_setting="1234"))
    found = []

    def slow_down_every_gpt_on_the_stack(dense, task):
        frame = sys._getframe()
        while frame is not None:
            for value in list(frame.f_locals.values()):
                if isinstance(value, GPT) and not any(value is seen for seen in found):
                    found.append(value)
                    slow = value.forward
                    value.forward = lambda *args, slow=slow: time.sleep(0.05) or slow(*args)
            frame = frame.f_back
        return small(dense)

    score = check_assignment(slow_down_every_gpt_on_the_stack)
    assert len(found) == 1                                 # the learner's own copy, nothing of the grader's
    ratio = float(score.criteria[2].measured.split("x")[0])
    assert ratio < 10                                      # 0.05 s on each dense pass would give > 20x
    assert score.note.endswith("drawn with the teacher's seed") and "1234" not in score.note


def test_a_malformed_teacher_seed_fails_before_the_learners_function_runs(monkeypatch):
    import dataclasses

    from lessons_lib import assignment

    monkeypatch.setattr(assignment, "_SEAL", dataclasses.replace(assignment._SEAL, seed_setting="exam"))
    ran = []
    with pytest.raises(ValueError, match="PRUNING_GRADER_SEED must be an int"):
        assignment.grade(lambda dense, task: ran.append(True))
    assert not ran                     # no learner's training is wasted on a teacher's typo


def test_check_assignment_sends_stderr_to_stdout(capsys):
    import sys
    import warnings

    from lessons_lib.checks import ExerciseFailure, check_assignment

    def noisy(dense, task):
        print("progress 50%", file=sys.stderr)
        warnings.warn("a learner's warning", UserWarning, stacklevel=1)
        return None                    # refused after running: the point here is where the text went

    with pytest.raises(ExerciseFailure):
        check_assignment(noisy)
    out, err = capsys.readouterr()
    assert "progress 50%" in out and "a learner's warning" in out and err == ""


def test_a_reference_loaded_through_a_replaced_torch_load_is_refused(monkeypatch):
    import torch.serialization as serialization

    from lessons_lib.gpt import save_gpt

    wide = save_gpt(GPT(GPTConfig(ffn=[2048, 2048])))          # a 4x wider "dense" model makes any model small

    def prune_to_budget(dense, task):
        monkeypatch.setattr(serialization, "_load", lambda *a, **k: wide)
        return dense

    assert "the dense model loaded now differs" in refusal(prune_to_budget)


@pytest.mark.slow                       # the whole grader, timings included: an integration test
def test_honest_solutions_that_copy_or_save_models_are_graded(monkeypatch, tmp_path):
    import io
    import pickle


    def prune_to_budget(dense, task):
        # copying and pickling make Python cache __slotnames__ on classes: not a change to the grader
        copy.deepcopy(dense)
        copy.copy(dense.config)
        torch.save(dense.state_dict(), io.BytesIO())
        pickle.dumps(torch.zeros(2))
        return small(dense)

    score = check_assignment(prune_to_budget)
    assert score.criteria[0].passed
