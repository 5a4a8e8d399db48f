"""Pruning schedules: when to prune, and to what sparsity, during fine-tuning.

A *plan* is a list of ``(epoch, sparsity)`` pairs: at the start of that epoch the model is
pruned globally until its overall sparsity reaches that value. Three plans with the same
training budget:

- one-shot: everything at epoch 0, then fine-tune;
- iterative: ``steps`` equal-ratio steps spread over the run (each removes the same fraction
  of the weights still alive), fine-tuning in between;
- gradual (cubic): Zhu & Gupta (2017), "To prune, or not to prune", arXiv:1710.01878. Sparsity
  rises fast at first, when many redundant weights can go, and slowly near the end.

Every sparsity is a fraction in [0, 1] (a float; the int 1 is refused as ambiguous). A plan
prunes at least once, at most once per epoch, at int epochs, to sparsities that never
decrease (:func:`check_plan`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from .data import Split
from .models import MLP
from .pruning import get_masks, layer_sparsities, linear_layers, model_sparsity, prune_global, prune_layerwise
from .repro import seed_everything
from .training import accuracy, check_split, train, train_together
from .validate import is_sequence, require_fraction, require_int, require_lr, require_number, require_positive_int

Plan = list[tuple[int, float]]


def check_plan(plan: object, epochs: int) -> dict[int, float]:
    """``plan`` as ``{epoch: sparsity}`` if it is a valid plan for ``epochs`` epochs, else a clear error.

    A plan is a non-empty list of ``(epoch, sparsity)`` pairs: int epochs in ``[0, epochs)``, each
    at most once (one pruning per epoch), fractions in [0, 1] that never decrease over the epochs.
    """
    epochs = require_positive_int(epochs, "epochs")
    if not is_sequence(plan):
        raise TypeError(f"plan must be a list of (epoch, sparsity) pairs, got {type(plan).__name__}")
    if len(plan) == 0:
        raise ValueError("plan must hold at least one (epoch, sparsity) pair: a plan that never prunes "
                         "is plain training (training.train)")
    targets: dict[int, float] = {}
    for i, pair in enumerate(plan):
        if not is_sequence(pair) or len(pair) != 2:
            raise TypeError(f"plan[{i}] must be an (epoch, sparsity) pair, got {pair!r}")
        epoch = require_int(pair[0], f"plan[{i}]'s epoch")
        if not 0 <= epoch < epochs:
            raise ValueError(f"plan epochs must be in [0, {epochs}), got {sorted(e for e, _ in plan)}")
        if epoch in targets:
            raise ValueError(f"plan prunes twice in epoch {epoch}: give each epoch at most one sparsity, got {plan}")
        targets[epoch] = require_fraction(pair[1], f"plan[{i}]'s sparsity")
    ordered = [targets[e] for e in sorted(targets)]
    if ordered != sorted(ordered):
        raise ValueError(f"plan sparsities must not decrease over the epochs (masks are never undone), got {plan}")
    return targets


def cubic_sparsity(step: float, final_sparsity: float, start: float, end: float,
                   initial_sparsity: float = 0.0) -> float:
    """Zhu & Gupta's schedule, with s_f = ``final_sparsity`` and s_i = ``initial_sparsity``:
    ``s_f + (s_i - s_f) * (1 - (step - start) / (end - start)) ** 3``.

    s_i before ``start``, s_f from ``end`` on, a cubic rise in between. Both are fractions in
    [0, 1] with s_i <= s_f; ``step``, ``start`` and ``end`` finite numbers with ``start < end``.
    """
    final = require_fraction(final_sparsity, "final_sparsity")
    initial = require_fraction(initial_sparsity, "initial_sparsity")
    for value, name in ((step, "step"), (start, "start"), (end, "end")):
        require_number(value, name)
    if initial > final:
        raise ValueError(f"initial_sparsity must be <= final_sparsity (sparsity only rises), got "
                         f"initial_sparsity={initial}, final_sparsity={final}")
    if not end > start:
        raise ValueError(f"end must be greater than start, got start={start!r}, end={end!r}")
    progress = min(max((step - start) / (end - start), 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def one_shot_plan(sparsity: float) -> Plan:
    """Prune to ``sparsity`` (a fraction in [0, 1]) at epoch 0."""
    return [(0, require_fraction(sparsity, "sparsity"))]


def iterative_plan(sparsity: float, epochs: int, steps: int) -> Plan:
    """``steps`` prunings at epochs ``0, epochs/steps, ...``; after step k the sparsity is
    ``1 - (1 - sparsity) ** (k / steps)``, so every step keeps the same fraction of the survivors.
    ``sparsity`` is a fraction in [0, 1]."""
    sparsity = require_fraction(sparsity, "sparsity")
    epochs, steps = require_positive_int(epochs, "epochs"), require_positive_int(steps, "steps")
    if steps > epochs:
        raise ValueError(f"steps must be <= epochs ({epochs}), got {steps}")
    return [(round(k * epochs / steps), 1 - (1 - sparsity) ** ((k + 1) / steps)) for k in range(steps)]


def cubic_plan(sparsity: float, epochs: int, steps: int, end: int | None = None) -> Plan:
    """``steps`` prunings at equally spaced epochs in ``[0, end)`` following :func:`cubic_sparsity`
    from 0 (before epoch 0) to ``sparsity`` (a fraction in [0, 1], at the last pruning); the epochs
    after it recover. ``end`` defaults to two thirds of ``epochs``."""
    sparsity = require_fraction(sparsity, "sparsity")
    epochs, steps = require_positive_int(epochs, "epochs"), require_positive_int(steps, "steps")
    end = round(2 * epochs / 3) if end is None else require_positive_int(end, "end")
    if not steps <= end <= epochs:
        raise ValueError(f"end must be in [steps, epochs] = [{steps}, {epochs}], got {end}")
    spacing = end / steps
    return [(round(k * spacing), cubic_sparsity((k + 1) * spacing, sparsity, 0.0, end)) for k in range(steps)]


def train_with_plan(model: nn.Module, data: Split, plan: Plan, epochs: int, lr: float = 1e-3,
                    seed: int = 0, progress: bool = True, desc: str = "fine-tuning",
                    scope: str = "global") -> list[float]:
    """Fine-tune ``model`` for ``epochs``, pruning as ``plan`` says; masks stay in force.

    ``scope="global"`` prunes all Linear weights against one threshold (:func:`pruning.prune_global`);
    ``scope="layer-wise"`` brings every layer to the target (:func:`pruning.prune_layerwise`).
    Returns the validation accuracy after each epoch (see :func:`training.train`).

    Every argument, the whole plan included, is checked before the first step: a bad sparsity
    late in the plan raises before any training or pruning.
    """
    if scope not in ("global", "layer-wise"):
        raise ValueError(f"scope must be 'global' or 'layer-wise', got {scope!r}")
    prune_to = prune_global if scope == "global" else prune_layerwise
    linear_layers(model)
    epochs = require_positive_int(epochs, "epochs")
    require_lr(lr)
    require_int(seed, "seed", 0)
    targets = check_plan(plan, epochs)
    if max(targets.values()) == 0:
        raise ValueError(f"plan never prunes (every sparsity is 0), got {plan}: use training.train for that")
    check_split(data, model)
    now = model_sparsity(model) if scope == "global" else max(layer_sparsities(model).values(), default=0.0)
    first = targets[min(targets)]
    if first < now - 1e-9:
        raise ValueError(f"plan's first sparsity {first} is below the model's current {scope} sparsity "
                         f"{now:.4f}; masks are never undone")

    def prune_on_schedule(epoch: int) -> None:
        if epoch in targets:
            prune_to(model, targets[epoch])

    return train(model, data, epochs, lr=lr, seed=seed, on_epoch_start=prune_on_schedule,
                 progress=progress, desc=desc)


def sparsity_per_epoch(plan: Plan, epochs: int) -> list[float]:
    """The overall sparsity in force during each of ``epochs`` epochs under ``plan`` (a plan as
    :func:`check_plan` accepts)."""
    targets, current, curve = check_plan(plan, epochs), 0.0, []
    for epoch in range(epochs):
        current = targets.get(epoch, current)
        curve.append(current)
    return curve


class ScheduleComparison(NamedTuple):
    """What :func:`compare_schedules` measured for one seed (accuracies are on the test split)."""

    seed: int
    dense: float                                   # the trained dense model
    control: float                                 # the dense model trained for the extra epochs too
    accuracy: dict[tuple[str, float], float]       # (method, sparsity) -> accuracy
    masks: dict[tuple[str, float], dict[str, torch.Tensor]]   # the final masks of each run
    init_state: dict[str, torch.Tensor]            # the dense model's weights before training


METHODS = ("no fine-tuning", "one-shot", "one-shot layer-wise", "iterative", "cubic")


def compare_schedules(data: Split, seeds: Sequence[int], sparsities: Sequence[float], epochs: int = 30,
                      steps: int = 5, pretrain_epochs: int = 30, progress: bool = False) -> list[ScheduleComparison]:
    """For each seed, train a dense MLP, then reach each sparsity in ``sparsities`` (fractions in [0, 1])
    four ways, on a copy each:

    - "no fine-tuning": one-shot global pruning, nothing else;
    - "one-shot": the same mask, then ``epochs`` of fine-tuning;
    - "one-shot layer-wise": one-shot too, but every layer pruned to the same sparsity
      (:func:`pruning.prune_layerwise`), then ``epochs`` of fine-tuning: the control for scope;
    - "iterative": :func:`iterative_plan` with ``steps`` steps over the same ``epochs``;
    - "cubic": :func:`cubic_plan` with ``2 * steps`` steps, ending two thirds of the way.

    The control trains the dense model for the same ``epochs`` more, so every pruned model can
    be compared with a dense one that got the same training. Adam at 1e-3 throughout; batch
    orders come from ``seed`` (dense) and ``seed + 1000`` (everything after it).

    Each run is what :func:`train_with_plan` gives alone (up to float rounding), but all runs of
    a phase train together (:func:`training.train_together`), which is what lets 5 seeds x 4
    sparsities x 4 methods run in well under a minute on one CPU core.
    """
    for name, values in (("seeds", seeds), ("sparsities", sparsities)):
        if not is_sequence(values):
            raise TypeError(f"{name} must be a list, got {type(values).__name__} {values!r}")
    seeds = [require_int(s, f"seeds[{i}]", 0) for i, s in enumerate(seeds)]
    sparsities = [require_fraction(t, f"sparsities[{i}]") for i, t in enumerate(sparsities)]
    if not seeds or not sparsities:
        raise ValueError(f"seeds and sparsities must not be empty, got {seeds} and {sparsities}")
    check_split(data)
    require_positive_int(pretrain_epochs, "pretrain_epochs")
    epochs, steps = require_positive_int(epochs, "epochs"), require_positive_int(steps, "steps")
    if 2 * steps > round(2 * epochs / 3):           # checked before any training starts
        raise ValueError(f"steps must be at most epochs / 3 (the cubic plan prunes 2 * steps times in the first "
                         f"two thirds of epochs), got steps={steps}, epochs={epochs}")
    dense, init_states = [], []
    for seed in seeds:
        seed_everything(seed, threads=torch.get_num_threads())
        dense.append(MLP())
        init_states.append({k: v.clone() for k, v in dense[-1].state_dict().items()})
    train_together(dense, data, pretrain_epochs, seeds, progress=progress, desc="dense models")

    plans = {"one-shot": one_shot_plan, "one-shot layer-wise": one_shot_plan,
             "iterative": lambda s: iterative_plan(s, epochs, steps),
             "cubic": lambda s: cubic_plan(s, epochs, 2 * steps)}
    runs = []                                      # (seed index, method, sparsity, model, plan)
    for i in range(len(seeds)):
        runs.append((i, "control", None, copy.deepcopy(dense[i]), {}))
        runs += [(i, method, target, copy.deepcopy(dense[i]), dict(plan(target)))
                 for target in sparsities for method, plan in plans.items()]

    def prune_on_schedule(epoch: int) -> None:
        for _, method, _, model, plan in runs:
            if epoch in plan:
                (prune_layerwise if method == "one-shot layer-wise" else prune_global)(model, plan[epoch])

    train_together([run[3] for run in runs], data, epochs, [seeds[run[0]] + 1000 for run in runs],
                   on_epoch_start=prune_on_schedule, progress=progress, desc="fine-tuning")

    results = []
    for i, seed in enumerate(seeds):
        acc, masks = {}, {}
        for target in sparsities:
            pruned = copy.deepcopy(dense[i])
            prune_global(pruned, target)
            acc["no fine-tuning", target] = accuracy(pruned, data.x_test, data.y_test)
            masks["no fine-tuning", target] = get_masks(pruned)
        for j, method, target, model, _ in runs:
            if j == i and method != "control":
                acc[method, target] = accuracy(model, data.x_test, data.y_test)
                masks[method, target] = get_masks(model)
        control = next(run[3] for run in runs if run[0] == i and run[1] == "control")
        results.append(ScheduleComparison(seed, accuracy(dense[i], data.x_test, data.y_test),
                                          accuracy(control, data.x_test, data.y_test), acc, masks, init_states[i]))
    return results
