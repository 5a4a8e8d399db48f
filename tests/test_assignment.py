"""Lesson 08's grader: parameter counting, the held-out problems, scoring, and the checker's messages."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils import prune

import lessons_lib.assignment as assignment
from lessons_lib.assignment import (
    BUDGET,
    POINTS,
    Criterion,
    Score,
    allowed_parameters,
    held_out_problems,
    non_embedding_parameters,
    parameter_costs,
    score_submission,
)
from lessons_lib.checks import ExerciseFailure, check_assignment
from lessons_lib.gpt import GPT, GPTConfig, load_checkpoint, prunable_layers
from lessons_lib.gpt_structured import slim_gpt
from lessons_lib.tasks import addition_task


@pytest.fixture(scope="module")
def dense() -> GPT:
    return load_checkpoint()


@pytest.fixture
def fixed_speedup(monkeypatch):
    """Scores without timing: the speed-up a test says, so no assertion depends on the machine."""
    def use(value: float) -> None:
        monkeypatch.setattr(assignment, "speedup", lambda dense, model, x: value)
    return use


def test_non_embedding_parameters_of_the_dense_model(dense):
    total = sum(p.numel() for p in dense.parameters())
    embeddings = dense.tok_emb.weight.numel() + dense.pos_emb.weight.numel()
    assert non_embedding_parameters(dense) == total - embeddings == 100_876
    assert allowed_parameters(dense) == int(BUDGET * 100_876) == 40_350


def test_masks_do_not_reduce_the_stored_count(dense):
    masked = load_checkpoint()
    for layer in prunable_layers(masked).values():
        prune.l1_unstructured(layer, "weight", amount=0.9)
    assert non_embedding_parameters(masked) == non_embedding_parameters(dense)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        non_embedding_parameters("model")


def test_parameter_costs_match_what_removal_saves(dense):
    costs = parameter_costs(dense.config)
    full = non_embedding_parameters(dense)
    assert full - non_embedding_parameters(slim_gpt(dense, {0: [0, 1, 2]})) == costs["head"] == 4_144
    assert full - non_embedding_parameters(slim_gpt(dense, keep_ffn={1: list(range(250))})) == 6 * costs["FFN neuron"]


def test_held_out_problems_are_disjoint_from_every_lesson_split_and_correct():
    x, y = held_out_problems()
    assert x.shape == (2_000, 11) and y.shape == (2_000, 4)
    task = addition_task(3, seed=0)
    seen = {tuple(row) for split in (task.x_train, task.x_val, task.x_test) for row in split[:, :7].tolist()}
    held = {tuple(row) for row in x[:, :7].tolist()}
    assert len(held) == 2_000 and not held & seen
    a = x[:, 0] * 100 + x[:, 1] * 10 + x[:, 2]
    b = x[:, 4] * 100 + x[:, 5] * 10 + x[:, 6]
    assert torch.equal(y @ torch.tensor([1000, 100, 10, 1]), a + b)
    assert torch.equal(held_out_problems()[0], x)                    # the same problems every time
    with pytest.raises(ValueError, match="n must be an int in \\[1, 100000\\], got 0"):
        held_out_problems(0)


def test_score_table_and_points():
    score = Score((Criterion("parameter budget", "1", "<= 2", True, 4),
                   Criterion("accuracy floor", "50.0%", ">= 90%", False, 4, "fine-tune longer"),
                   Criterion("speed-up", "2.00x", ">= 1.25x", True, 2, timed=True)))
    assert (score.points, score.max_points) == (6, 10)
    table = score.table()
    assert "0 / 4" in table and "6 / 10" in table and "✗ accuracy floor: fine-tune longer" in table
    assert score.summary().splitlines()[1].startswith("✗ accuracy floor")
    assert score.summary().splitlines()[-1].split() == ["total", "6", "/", "10"]
    untimed = score.summary(timed=False).splitlines()
    assert [line.split()[1] for line in untimed[:-1]] == ["parameter", "accuracy"]      # speed-up left out
    assert untimed[-1].split() == ["without", "timing", "4", "/", "8"]


def test_the_dense_model_earns_nothing(dense, fixed_speedup):
    fixed_speedup(1.0)
    score = score_submission(load_checkpoint(), dense, *held_out_problems(200))
    assert score.points == 0
    budget, accuracy, _ = score.criteria
    assert "remove 60,526 more" in budget.hint
    assert accuracy.measured.startswith("100.0%") and "within the parameter budget" in accuracy.hint


def test_a_masked_model_is_told_masks_do_not_shrink_it(dense, fixed_speedup):
    fixed_speedup(1.0)
    masked = load_checkpoint()
    for layer in prunable_layers(masked).values():
        prune.l1_unstructured(layer, "weight", amount=0.7)
    budget = score_submission(masked, dense, *held_out_problems(200)).criteria[0]
    assert not budget.passed and "masks zero weights but store them all" in budget.hint


def test_a_slim_model_within_budget_scores_per_criterion(dense, fixed_speedup):
    slim = slim_gpt(dense, {0: [0, 1, 2], 1: [0, 1, 2]}, {0: list(range(52)), 1: list(range(52))})
    assert non_embedding_parameters(slim) <= allowed_parameters(dense)
    fixed_speedup(1.9)
    score = score_submission(slim, dense, *held_out_problems(500))   # not fine-tuned: below the floor
    assert [c.passed for c in score.criteria] == [True, False, True]
    assert [c.timed for c in score.criteria] == [False, False, True]             # only the speed-up
    assert score.points == POINTS["parameter budget"] + POINTS["speed-up"]
    fixed_speedup(1.1)
    assert score_submission(slim, dense, *held_out_problems(500)).points == POINTS["parameter budget"]


def test_speedup_is_a_ratio_of_times(dense):
    slim = slim_gpt(dense, {0: [0], 1: [0]}, {0: list(range(16)), 1: list(range(16))})
    x = held_out_problems(256)[0]
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
        assert assignment.speedup(dense, dense, held_out_problems(8)[0], rounds=2) == 1.0
        assert seen == [1, 1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_check_assignment_messages(fixed_speedup):
    def not_done(dense, task):
        raise NotImplementedError()

    with pytest.raises(ExerciseFailure, match="prune_to_budget is not implemented yet"):
        check_assignment(not_done)
    with pytest.raises(ExerciseFailure, match="must return a GPT .*got OrderedDict"):
        check_assignment(lambda dense, task: dense.state_dict())
    with pytest.raises(ExerciseFailure, match=r"logits of shape \(2, 11, 20\); expected \(2, 11, 12\)"):
        check_assignment(lambda dense, task: GPT(GPTConfig(vocab_size=20)))
    with pytest.raises(ExerciseFailure, match="fails on a batch of problems"):
        check_assignment(lambda dense, task: GPT(GPTConfig(block_size=4)))
    with pytest.raises(ExerciseFailure, match="raised ZeroDivisionError"):
        check_assignment(lambda dense, task: 1 / 0)


def test_check_assignment_gives_the_learner_a_copy_and_prints_the_table(capsys, fixed_speedup):
    fixed_speedup(2.0)
    received = []

    def keep_half_the_heads(dense, task):
        received.append(dense)
        assert len(task.x_train) == 20_000
        return slim_gpt(dense, {0: [0, 1], 1: [0, 1]}, {0: list(range(64)), 1: list(range(64))})

    score = check_assignment(keep_half_the_heads)
    out = capsys.readouterr().out
    assert "parameter budget" in out and f"{score.points} / {score.max_points}" in out
    assert score.criteria[0].passed
    with torch.no_grad():                                           # the learner may change its copy freely
        received[0].head.weight.zero_()
    assert load_checkpoint().head.weight.abs().sum() > 0
