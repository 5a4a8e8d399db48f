"""Every public function that takes a model, attacked with random bad arguments (hypothesis).

For each function and each of its arguments, hypothesis draws values that argument must refuse
(wrong types, out-of-range numbers, NaN, tensors of the wrong shape, dtype or range, lists where
mappings belong, strings where callables belong...) and puts one in place of a good value. The
call must raise ``TypeError`` or ``ValueError`` whose message names the argument, and leave
every model it was given exactly as it was: the same state_dict values, the same hooks, the same
parameter objects, the same attributes and training mode.

The good values come from ``CASES``; a last test checks they are good (the call succeeds), so a
bad value is the only reason a call in the attack fails.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lessons_lib import (
    assignment,
    experiments,
    gpt,
    gpt_structured,
    measure,
    pruning,
    schedules,
    slimming,
    sparsity,
    structured,
    tasks,
    training,
    widgets,
)
from lessons_lib.data import Split
from lessons_lib.gpt import GPT, GPTConfig
from lessons_lib.models import MLP

HOOKS = ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks")


def fingerprint(models: list[nn.Module]) -> list[tuple]:
    """Everything a call might change on ``models``: values, hooks, identities, attributes."""
    state = []
    for model in models:
        for name, module in model.named_modules():
            tensors = {**dict(module.named_parameters(recurse=False)), **dict(module.named_buffers(recurse=False))}
            state.append((name, type(module), module.training,
                          sorted((k, id(v), v.dtype, v.shape, v.requires_grad, v.detach().clone())
                                 for k, v in tensors.items()),
                          [sorted(getattr(module, h)) for h in HOOKS],
                          sorted(k for k in vars(module) if not k.startswith("_"))))
    return state


def same(a: list[tuple], b: list[tuple]) -> bool:
    def equal(x: object, y: object) -> bool:
        if isinstance(x, torch.Tensor):
            return isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)
        if isinstance(x, list | tuple):
            return isinstance(y, list | tuple) and len(x) == len(y) and all(map(equal, x, y))
        return x == y
    return equal(a, b)


# --- good values --------------------------------------------------------------------------------

def mlp() -> MLP:
    torch.manual_seed(0)
    return MLP((8, 12, 10, 4))


def small_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(d_model=16, head_dim=4, heads=[2, 3], ffn=[8, 6])).eval()


def mlp_xy(n: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def gpt_xy(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    return tasks.encode(torch.arange(n) * 7 % 1000, torch.arange(n) * 13 % 1000, 3)


def split() -> Split:
    x, y = mlp_xy(32)
    return Split(x[:16], y[:16], x[16:24], y[16:24], x[24:], y[24:])


def task() -> tasks.Addition:
    return tasks.addition_task(3, n_train=64, n_val=16, n_test=16)


# --- bad values ---------------------------------------------------------------------------------

JUNK = [None, "text", b"bytes", object(), {1, 2}, math.nan]
NOT_MAPPING = st.sampled_from([None, "layers", [("layers.0", 0.5)], 3, object()])
NOT_CALLABLE = st.sampled_from([None, "prune_global", 3, [print], object()])
NOT_MODULE = st.sampled_from([None, "model", 3, torch.zeros(3), [nn.Linear(2, 2)], nn.Linear])
BAD_FRACTION = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not 0.0 <= v <= 1.0),
    st.integers(min_value=1, max_value=10**6), st.integers(max_value=-1),
    st.sampled_from([True, False, None, "0.5", [0.5], (0.5,), torch.tensor([0.1, 0.2]), 1 + 0j]))
BAD_COUNT = st.one_of(st.integers(max_value=0), st.floats(allow_nan=True).filter(lambda v: not float(v).is_integer()),
                      st.sampled_from([True, None, "4", [4], 2.0]))
BAD_SIZE = st.one_of(st.integers(max_value=-1), st.sampled_from([1.5, True, None, "3", [3], math.nan]))
BAD_AMOUNTS = st.one_of(
    st.lists(BAD_FRACTION, min_size=1, max_size=3), st.just([]),
    st.sampled_from([None, 0.5, "0.5", {0.5: 1}, torch.tensor(0.5)]))


def bad_tokens(seq: int, width: int = 11) -> st.SearchStrategy:
    """Token batches a GPT of vocabulary 12 and block size 16 must refuse."""
    n = st.integers(1, 4)
    return st.one_of(
        st.sampled_from(JUNK + [[[1, 2, 3]], np.zeros((2, width), dtype=np.int64)]),
        n.map(lambda k: torch.zeros(k, width)),                                     # float tokens
        n.map(lambda k: torch.full((k, width), 12)),                                 # out of vocabulary
        n.map(lambda k: torch.full((k, width), -1)),
        n.map(lambda k: torch.zeros(k, 17, dtype=torch.long)),                       # longer than block_size
        st.just(torch.zeros(width, dtype=torch.long)),                               # missing batch dim
        st.just(torch.zeros(0, width, dtype=torch.long)),
        st.just(torch.zeros(seq, width, 2, dtype=torch.long)))


def bad_answers(n: int) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(JUNK),
        st.just(torch.zeros(n + 1, 4, dtype=torch.long)),                            # wrong batch
        st.just(torch.zeros(n, 4)),                                                  # float answers
        st.just(torch.full((n, 4), 12)), st.just(torch.full((n, 4), -1)),
        st.just(torch.zeros(n, 12, dtype=torch.long)),                               # longer than the input
        st.just(torch.zeros(n, dtype=torch.long)))


def bad_features(n: int, features: int = 8) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(JUNK + [np.zeros((n, features), dtype=np.float32), [[0.0] * features]]),
        st.integers(1, 30).filter(lambda f: f != features).map(lambda f: torch.zeros(n, f)),
        st.just(torch.zeros(n, features, dtype=torch.long)),
        st.just(torch.zeros(n, features, dtype=torch.float64)),
        st.just(torch.zeros(features)), st.just(torch.zeros(0, features)),
        st.just(torch.zeros(2, n, features)))


def bad_labels(n: int, classes: int = 4) -> st.SearchStrategy:
    return st.one_of(
        st.sampled_from(JUNK + [[0] * n, np.zeros(n, dtype=np.int64)]),
        st.just(torch.zeros(n + 1, dtype=torch.long)), st.just(torch.zeros(n)),
        st.just(torch.full((n,), classes)), st.just(torch.full((n,), -1)),
        st.just(torch.zeros(n, 2, dtype=torch.long)))


def bad_split() -> st.SearchStrategy:
    good = split()
    return st.one_of(
        st.sampled_from(JUNK + [tuple(good[:4]), task()]),
        st.just(good._replace(x_train=good.x_train[:, :5])),
        st.just(good._replace(y_train=good.y_train[:-1])),
        st.just(good._replace(y_val=good.y_val.float())),
        st.just(good._replace(y_train=torch.full_like(good.y_train, 4))))


BAD_PLAN = st.sampled_from([
    None, "cubic", 0.5, [], [(0, 0.0)],                                # never prunes
    [(0, 1.5)], [(0, math.nan)], [(0, 0.5), (0, 0.6)],                 # bad target, twice in one epoch
    [(5, 0.5)], [(-1, 0.5)], [(0.5, 0.5)], [(0, 0.5), (1, 0.4)],       # outside the epochs, fractional, falling
    [(0, 0.5), (1, 2.0)], [(0, 0.5), (1, "0.9")], [(0,)], [0.5],       # bad target late in the plan, junk
])


# --- the cases ----------------------------------------------------------------------------------

@dataclass
class Case:
    """``fn(**good())`` succeeds; ``bad[arg]`` draws values ``arg`` must refuse."""

    fn: Callable
    good: Callable[[], dict]
    bad: dict[str, st.SearchStrategy] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.fn.__module__.rsplit('.', 1)[-1]}.{self.fn.__name__}"


def _mlp_args(**extra: object) -> Callable[[], dict]:
    def build() -> dict:
        x, y = mlp_xy()
        return {"model": mlp(), "x": x, "y": y, **extra}
    return build


def _gpt_args(**extra: object) -> Callable[[], dict]:
    def build() -> dict:
        x, y = gpt_xy()
        return {"model": small_gpt(), "x": x, "y": y, **extra}
    return build


def _only(build: Callable[[], dict], *keep: str) -> Callable[[], dict]:
    return lambda: {k: v for k, v in build().items() if k in keep}


NOT_MLP = st.one_of(NOT_MODULE, st.sampled_from([nn.Sequential(nn.Linear(8, 4)), small_gpt()]))
NOT_GPT = st.one_of(NOT_MODULE, st.just(mlp()))
NO_LINEAR = st.one_of(NOT_MODULE, st.sampled_from([nn.Sequential(), nn.ReLU(), nn.Conv2d(1, 1, 1)]))
MLP_X, MLP_Y, GPT_X, GPT_Y = bad_features(20), bad_labels(20), bad_tokens(12), bad_answers(12)

CASES = [
    # pruning: masks on a whole model
    Case(pruning.prune_layerwise, lambda: {"model": mlp(), "sparsity": 0.5},
         {"model": NO_LINEAR, "sparsity": BAD_FRACTION,
          "layers": st.one_of(NOT_MAPPING.filter(lambda v: v is not None),
                              st.just({"layers.0": nn.Linear(8, 12), "relu": nn.ReLU()}),
                              st.just({"layers.0": "layer"}))}),
    Case(pruning.prune_global, lambda: {"model": mlp(), "sparsity": 0.5},
         {"model": NO_LINEAR, "sparsity": BAD_FRACTION, "layers": NOT_MAPPING.filter(lambda v: v is not None)}),
    Case(pruning.prune_lamp, lambda: {"model": mlp(), "sparsity": 0.5},
         {"model": NO_LINEAR, "sparsity": BAD_FRACTION, "layers": NOT_MAPPING.filter(lambda v: v is not None)}),
    Case(pruning.prune_random, lambda: {"model": mlp(), "sparsity": 0.5},
         {"model": NO_LINEAR, "sparsity": BAD_FRACTION, "generator": st.sampled_from([3, "seed", torch.ones(1)]),
          "layers": NOT_MAPPING.filter(lambda v: v is not None)}),
    Case(pruning.prune_per_layer, lambda: {"model": mlp(), "sparsities": {"layers.0": 0.5, "layers.1": 0.9}},
         {"model": NO_LINEAR,
          "sparsities": st.one_of(NOT_MAPPING, st.just({"layers.0": 0.5, "layers.9": 0.5}),
                               BAD_FRACTION.map(lambda a: {"layers.0": 0.5, "layers.1": a}))}),
    Case(pruning.remove_masks, lambda: {"model": mlp()}, {"model": NO_LINEAR}),
    Case(pruning.layer_sparsities, lambda: {"model": mlp()}, {"model": NO_LINEAR}),
    Case(pruning.get_masks, lambda: {"model": mlp()}, {"model": NO_LINEAR}),
    Case(pruning.apply_masks, lambda: {"model": mlp(), "masks": {"layers.0": torch.ones(12, 8, dtype=torch.bool),
                                                                  "layers.2": torch.ones(4, 10, dtype=torch.bool)}},
         {"model": NO_LINEAR,
          "masks": st.one_of(NOT_MAPPING, st.sampled_from([
              {"layers.0": torch.ones(12, 8, dtype=torch.bool), "layers.2": np.ones((4, 10), dtype=bool)},
              {"layers.0": torch.ones(12, 8, dtype=torch.bool), "layers.2": torch.full((4, 10), 0.3)},
              {"layers.0": torch.ones(12, 8, dtype=torch.bool), "layers.2": torch.ones(10, 4, dtype=torch.bool)},
              {"layers.0": torch.ones(12, 8, dtype=torch.bool), "layers.7": torch.ones(4, 10, dtype=torch.bool)},
              {"layers.0": torch.ones(12, 8, dtype=torch.bool), "layers.2": torch.full((4, 10), math.nan)}]))}),
    Case(pruning.input_norms,
         lambda: (lambda m: {"model": m, "x": mlp_xy()[0], "layers": {"layers.1": m.layers[1]}})(mlp()),
         # input_norms takes whatever the model takes: a (2, n, 8) batch is rows too, so it is not bad here
         {"model": NO_LINEAR, "x": MLP_X.filter(lambda v: not (isinstance(v, torch.Tensor) and v.dim() == 3)),
          "layers": NOT_MAPPING.filter(lambda v: v is not None)}),          # None: the prunable layers
    # sparsity of models
    Case(pruning.sparsity_report, lambda: {"model": mlp()},
         {"model": NO_LINEAR, "layers": NOT_MAPPING.filter(lambda v: v is not None)}),
    Case(pruning.model_sparsity, lambda: {"model": mlp()},
         {"model": NO_LINEAR, "layers": NOT_MAPPING.filter(lambda v: v is not None)}),
    Case(sparsity.unpruned_weight, lambda: {"module": nn.Linear(8, 4)},
         {"module": NOT_MODULE, "name": st.sampled_from([None, 3, "nonexistent", ["weight"]])}),
    # measure
    Case(experiments.accuracy_vs_sparsity, _mlp_args(sparsities=[0.0, 0.5], prune_fn=pruning.prune_global),
         {"model": NO_LINEAR, "x": MLP_X, "y": MLP_Y, "sparsities": BAD_AMOUNTS, "prune_fn": NOT_CALLABLE}),
    Case(experiments.sensitivity_scan, _mlp_args(sparsities=[0.0, 0.5]),
         {"model": NO_LINEAR, "x": MLP_X, "y": MLP_Y, "sparsities": BAD_AMOUNTS}),
    Case(measure.count_parameters, lambda: {"model": mlp()}, {"model": NOT_MODULE}),
    Case(measure.count_nonzero, lambda: {"model": mlp()}, {"model": NOT_MODULE}),
    Case(measure.state_dict_bytes, lambda: {"model": mlp()},
         {"model": NOT_MODULE, "compress": st.sampled_from([None, "yes", 2, 0.5])}),
    Case(experiments.storage_bytes, lambda: {"model": mlp(), "sparsity": 0.5},
         {"model": NO_LINEAR, "sparsity": BAD_FRACTION}),
    Case(measure.multiply_adds, lambda: {"model": mlp(), "x": mlp_xy()[0]}, {"model": NOT_MODULE}),
    Case(measure.output_error, lambda: {"layer": nn.Linear(8, 4), "x": mlp_xy()[0], "mask": torch.ones(4, 8)},
         {"layer": NO_LINEAR, "x": MLP_X,
          "mask": st.sampled_from([None, torch.ones(8, 4), torch.full((4, 8), 0.3), np.ones((4, 8)), "mask"])}),
    # models and training
    Case(training.accuracy, _mlp_args(), {"model": NOT_MODULE, "x": MLP_X, "y": MLP_Y}),
    Case(training.train, lambda: {"model": mlp(), "data": split(), "epochs": 1, "progress": False},
         {"model": NOT_MODULE, "data": bad_split(), "epochs": BAD_COUNT, "lr": BAD_SIZE,
          "batch_size": BAD_COUNT, "on_epoch_start": NOT_CALLABLE.filter(lambda v: v is not None)}),
    Case(schedules.train_with_plan,
         lambda: {"model": mlp(), "data": split(), "plan": [(0, 0.5)], "epochs": 2, "progress": False},
         {"model": NO_LINEAR, "data": bad_split(), "plan": BAD_PLAN, "epochs": BAD_COUNT, "lr": BAD_SIZE,
          "scope": st.sampled_from([None, "local", 3, "GLOBAL"])}),
    # structured (MLP)
    Case(structured.neuron_scores_l2, lambda: {"model": mlp()}, {"model": NOT_MLP}),
    Case(structured.neuron_scores_activation, _only(_mlp_args(), "model", "x"), {"model": NOT_MLP, "x": MLP_X}),
    Case(structured.neuron_scores_taylor, _mlp_args(), {"model": NOT_MLP, "x": MLP_X, "y": MLP_Y}),
    Case(structured.slim_mlp, lambda: {"model": mlp(), "keep": {"layers.0": torch.tensor([0, 3, 5]),
                                                                "layers.1": torch.tensor([1, 2])}},
         {"model": NOT_MLP,
          "keep": st.one_of(NOT_MAPPING, st.sampled_from([
              {"layers.0": torch.tensor([0.5, 1.7])}, {"layers.0": torch.tensor([0, 12])},
              {"layers.0": torch.tensor([1, 1])}, {"layers.0": torch.tensor([-1])}, {"layers.2": torch.tensor([0])},
              {0: torch.tensor([0])}, {"layers.0": "0,1"}, {"layers.0": torch.tensor([[0, 1]])},
              {"layers.0": torch.ones(12, dtype=torch.bool)}, {0.0: torch.tensor([0])}])),
          "activation": NOT_CALLABLE.filter(lambda v: v is not None)}),
    Case(slimming.slim_linear_pair,
         lambda: {"layer": nn.Linear(8, 6), "next_layer": nn.Linear(6, 4), "keep": torch.tensor([0, 2, 4])},
         {"layer": NO_LINEAR, "next_layer": st.one_of(NO_LINEAR, st.just(nn.Linear(5, 4))),
          "keep": st.sampled_from([None, "0,2", torch.tensor([0.5, 1.7]), torch.tensor([0, 6]), torch.tensor([2, 2]),
                                   torch.tensor([[0, 1]]), [0, 9]])}),
    Case(slimming.slim_linear, lambda: {"layer": nn.Linear(8, 4), "rows": [0, 2], "cols": [1]},
         {"layer": NO_LINEAR, "rows": st.sampled_from(["0", [0.5], [4], [1, 1], torch.ones(4, dtype=torch.bool)]),
          "cols": st.sampled_from(["0", [8], [-1], [[0, 1]]])}),
    Case(slimming.keep_top, lambda: {"scores": torch.rand(6), "n_keep": 2},
         {"scores": st.sampled_from([None, [0.1, 0.2], torch.ones(2, 2), torch.tensor([0.5, math.nan])]),
          "n_keep": st.sampled_from([None, -1, 7, 1.5, True, "2"])}),
    Case(slimming.max_output_difference, lambda: {"model_a": mlp(), "model_b": mlp(), "x": mlp_xy()[0]},
         {"model_a": NOT_MODULE, "model_b": NOT_MODULE,       # any x both models take is fine, 1-D and 3-D too
          "x": MLP_X.filter(lambda v: not (isinstance(v, torch.Tensor) and v.dim() in (1, 3) and v.numel()))}),
    # GPT
    Case(gpt.save_gpt, lambda: {"model": small_gpt()}, {"model": NOT_GPT}),
    Case(pruning.prunable_layers, lambda: {"model": small_gpt()}, {"model": NO_LINEAR}),
    Case(tasks.exact_match, _gpt_args(), {"model": NOT_MODULE, "x": GPT_X, "y": GPT_Y, "batch_size": BAD_COUNT}),
    Case(tasks.answer_loss, _gpt_args(), {"model": NOT_MODULE, "x": GPT_X, "y": GPT_Y}),
    Case(tasks.train_on_task, lambda: {"model": small_gpt(), "task": task(), "steps": 1, "progress": False},
         {"model": NOT_MODULE, "task": st.sampled_from(JUNK + [split()]), "steps": BAD_COUNT, "lr": BAD_SIZE,
          "batch_size": BAD_COUNT}),
    Case(gpt_structured.slim_gpt, lambda: {"model": small_gpt(), "keep_heads": {"blocks.0.attn": [1],
                                                                             "blocks.1.attn": [0, 2]},
                                           "keep_ffn": {"blocks.0.fc1": [0, 1, 2], "blocks.1.fc1": [5]}},
         {"model": NOT_GPT,
          "keep_heads": st.one_of(NOT_MAPPING.filter(lambda v: v is not None), st.sampled_from([
              {"blocks.0.attn": [0.5, 1.7]}, {"blocks.0.attn": [2]}, {"blocks.0.attn": [1, 1]},
              {"blocks.0.attn": [-1]}, {"blocks.5.attn": [0]}, {0: [0]}, {"blocks.0.attn": "01"},
              {"blocks.0.attn": 1}])),
          "keep_ffn": st.one_of(NOT_MAPPING.filter(lambda v: v is not None), st.sampled_from([
              {"blocks.0.fc1": [0.5]}, {"blocks.0.fc1": [8]}, {"blocks.1.fc1": [0, 0]}, {"blocks.2.fc1": [0]},
              {"blocks.0.fc1": [[0, 1]]}]))}),
    Case(gpt_structured.head_scores_gradient, _gpt_args(), {"model": NOT_GPT, "x": GPT_X, "y": GPT_Y}),
    Case(gpt_structured.head_scores_ablation, _gpt_args(), {"model": NOT_GPT, "x": GPT_X, "y": GPT_Y}),
    Case(gpt_structured.head_scores_norm, lambda: {"model": small_gpt()}, {"model": NOT_GPT}),
    Case(gpt_structured.ffn_neuron_scores, _only(_gpt_args(), "model", "x"), {"model": NOT_GPT, "x": GPT_X}),
    Case(gpt_structured.slim_gpt_to, lambda: {**_gpt_args()(), "n_keep_heads": {"blocks.0.attn": 1},
                                              "n_keep_ffn": 3, "calibration": gpt_xy()[0]},
         {"model": NOT_GPT, "x": GPT_X, "y": GPT_Y, "calibration": GPT_X,
          "n_keep_heads": st.sampled_from([None, [1, 2], {"blocks.0.attn": 3}, {"blocks.0.attn": -1}, 1.5, "12",
                                           {0: 1}, True, {"blocks.0.attn": True}]),
          "n_keep_ffn": st.sampled_from([None, 9, -1, 2.5, "43", {"blocks.9.fc1": 1}])}),
    # widgets (they read the model; they must never change it)
    Case(widgets.sparsity_explorer, lambda: {"layer": nn.Linear(8, 4), "x": mlp_xy()[0]},
         {"layer": NO_LINEAR, "x": MLP_X, "sparsity": BAD_FRACTION}),
    Case(widgets.layer_sparsity_explorer, _mlp_args(),
         {"model": NO_LINEAR, "x": MLP_X, "y": MLP_Y,
          "sparsities": st.one_of(NOT_MAPPING.filter(lambda v: v is not None),
                                  st.just({"layers.9": 0.5}), BAD_FRACTION.map(lambda a: {"layers.0": a}))}),
    Case(widgets.neuron_explorer, _mlp_args(), {"model": NOT_MLP, "x": MLP_X, "y": MLP_Y, "batch": BAD_COUNT}),
    # added after the first round: the rest of the functions that take a model
    Case(pruning.copy_model, lambda: {"model": mlp()}, {"model": NOT_MODULE}),
    Case(pruning.linear_layers, lambda: {"model": mlp()}, {"model": NO_LINEAR}),
    Case(tasks.answer_logits, lambda: {"model": small_gpt(), "x": gpt_xy()[0], "n_answer": 4},
         {"model": NOT_MODULE, "x": GPT_X, "n_answer": st.one_of(BAD_COUNT, st.just(12))}),
    Case(assignment.non_embedding_parameters, lambda: {"model": small_gpt()}, {"model": NOT_MODULE}),
    Case(assignment.stored_values, lambda: {"model": small_gpt()}, {"model": NOT_MODULE}),
    Case(training.train_together, lambda: {"models": [mlp(), mlp()], "data": split(), "epochs": 1, "seeds": [0, 1],
                                           "progress": False},
         {"models": st.one_of(st.sampled_from(JUNK), st.just([]), st.builds(lambda: [mlp(), small_gpt()]),
                              st.builds(lambda: [mlp(), MLP((8, 5, 4))])),
          "data": bad_split(), "epochs": BAD_COUNT, "lr": BAD_SIZE,
          "seeds": st.sampled_from([None, [0], [0, 1, 2], "01", [0, -1], [0, 1.5]])}),
    Case(widgets.head_explorer, lambda: {**_gpt_args()(), "ffn_scores": {"blocks.0.fc1": torch.rand(8),
                                                                        "blocks.1.fc1": torch.rand(6)}},
         {"model": NOT_GPT, "x": GPT_X, "y": GPT_Y, "batch": BAD_COUNT,
          "ffn_scores": st.sampled_from([None, [torch.rand(8), torch.rand(6)], {"blocks.0.fc1": torch.rand(8)},
                                         {"blocks.0.fc1": torch.rand(8), "blocks.1.fc1": torch.rand(5)}, "scores",
                                         {"blocks.0.fc1": torch.rand(8), "blocks.1.fc1": torch.full((6,), math.nan)},
                                         {"blocks.0.fc1": torch.rand(8),
                                          "blocks.1.fc1": torch.ones(6, dtype=torch.long)}])}),
    Case(widgets.transformer_sparsity_explorer,
         lambda: (lambda m: {"model": m, "layers": m.prunable_layers(), "x": gpt_xy()[0], "y": gpt_xy()[1],
                             "norms": {n: torch.ones(layer.in_features)
                                       for n, layer in m.prunable_layers().items()}})(small_gpt()),
         {"model": NOT_GPT, "x": GPT_X, "y": GPT_Y, "layers": NOT_MAPPING,
          "norms": st.sampled_from([None, "norms", [torch.ones(16)], {"blocks.0.attn.q": torch.ones(16)}])}),
]

PAIRS = [(case, arg) for case in CASES for arg in case.bad]


# make test draws the full number of examples; make test-fast scales them down (PROPERTY_EXAMPLES_SCALE)
SCALE = float(os.environ.get("PROPERTY_EXAMPLES_SCALE", "1"))


def examples(n: int) -> int:
    return max(3, round(n * SCALE))


@pytest.mark.parametrize(("case", "arg"), PAIRS, ids=[f"{c.name}-{a}" for c, a in PAIRS])
@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bad_argument_is_refused_and_nothing_changes(case: Case, arg: str, data: st.DataObject) -> None:
    kwargs = case.good()
    kwargs[arg] = data.draw(case.bad[arg], label=arg)
    models = [v for k, v in kwargs.items() if isinstance(v, nn.Module) and k != arg]
    before = fingerprint(models)
    with pytest.raises((TypeError, ValueError)) as error:
        case.fn(**kwargs)
    assert arg in str(error.value), f"the message does not name {arg!r}: {error.value}"
    assert same(fingerprint(models), before), f"{case.name} changed its model before refusing {arg}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_good_arguments_are_accepted(case: Case) -> None:
    case.fn(**case.good())


# --- good values give right answers -------------------------------------------------------------

FRACTION = st.floats(0.0, 1.0)


@settings(max_examples=examples(25), deadline=None)
@given(amount=FRACTION)
def test_layerwise_pruning_prunes_round_amount_n_of_every_layer(amount: float) -> None:
    model = mlp()
    pruning.prune_layerwise(model, amount)
    for layer in model.layers:
        assert int((layer.weight == 0).sum()) == round(amount * layer.weight.numel())


@settings(max_examples=examples(25), deadline=None)
@given(level=FRACTION)
def test_global_pruning_prunes_round_sparsity_n_in_all_and_the_smallest(level: float) -> None:
    model = mlp()
    magnitudes = torch.cat([layer.weight.detach().abs().flatten() for layer in model.layers])
    pruning.prune_global(model, level)
    kept = torch.cat([(layer.weight != 0).flatten() for layer in model.layers])     # at 0: no mask at all
    assert int((~kept).sum()) == round(level * magnitudes.numel())
    if kept.any() and (~kept).any():
        assert magnitudes[~kept].max() <= magnitudes[kept].min()


@settings(max_examples=examples(25), deadline=None)
@given(levels=st.lists(FRACTION, min_size=1, max_size=4).map(sorted))
def test_pruning_to_rising_sparsities_reaches_each(levels: list[float]) -> None:
    model = mlp()
    n = sum(layer.weight.numel() for layer in model.layers)
    for level in levels:
        for prune_fn in (pruning.prune_global, pruning.prune_lamp):
            prune_fn(model, level)
            assert abs(pruning.model_sparsity(model) - level) <= 1 / n + 1e-9


@settings(max_examples=examples(15), deadline=None)
@given(amount=FRACTION)
def test_masks_move_between_models_unchanged(amount: float) -> None:
    source, target = mlp(), mlp()
    pruning.prune_global(source, amount)
    pruning.apply_masks(target, pruning.get_masks(source))
    x = mlp_xy()[0]
    assert torch.equal(source(x), target(x))


# --- found by an attack after the fixes -----------------------------------------------------------

def test_gradient_scores_refuse_inference_mode_instead_of_returning_zeros() -> None:
    x, y = gpt_xy()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside that block"):
        gpt_structured.head_scores_gradient(small_gpt(), x, y)
    x, y = mlp_xy()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside that block"):
        structured.neuron_scores_taylor(mlp(), x, y)
    with torch.no_grad():                                    # no_grad is fine: enable_grad undoes it
        assert any(s.sum() > 0 for s in gpt_structured.head_scores_gradient(small_gpt(), *gpt_xy()).values())


def test_train_refuses_an_optimizer_of_another_model() -> None:
    model, other = mlp(), mlp()
    before = fingerprint([model])
    with pytest.raises(ValueError, match="optimizer must update this model's parameters"):
        training.train(model, split(), 1, optimizer=torch.optim.SGD(other.parameters(), lr=0.1), progress=False)
    assert same(fingerprint([model]), before)


def test_slim_mlp_refuses_an_activation_that_is_relu_only_near_zero() -> None:
    model = mlp()
    with torch.no_grad():
        model.layers[0].bias[1] = 5.0                        # a removed neuron whose relu6(bias) != relu(bias)
    with pytest.raises(ValueError, match="activation must compute ReLU"):
        structured.slim_mlp(model, {"layers.0": torch.tensor([0, 2])}, activation=torch.nn.functional.relu6)
    structured.slim_mlp(model, {"layers.0": torch.tensor([0, 2])}, activation=torch.relu)


def test_wanda_mask_refuses_non_finite_norms() -> None:
    weight = torch.randn(4, 6)
    for bad in (math.nan, math.inf):
        norms = torch.ones(6)
        norms[2] = bad
        with pytest.raises(ValueError, match="norms must be finite"):
            sparsity.wanda_mask(weight, norms, 0.5)


def test_numpy_ints_are_ints_everywhere() -> None:
    from lessons_lib.data import digits_split
    from lessons_lib.repro import seed_everything

    config = GPTConfig(vocab_size=np.int64(12), d_model=np.int32(16), head_dim=4, heads=[2], ffn=[8])
    assert type(config.vocab_size) is int and type(config.d_model) is int      # the config stays JSON
    assert MLP((8, np.int64(4), 3)).sizes == (8, 4, 3)
    assert sparsity.n_m_mask(torch.randn(4, 8), n=np.int64(2), m=np.int64(4)).sum() == 16
    assert tasks.addition_task(np.int64(1), n_train=10, n_val=5, n_test=5).n_digits == 1
    assert len(digits_split(seed=np.int64(0)).x_train) == len(digits_split(seed=0).x_train)
    seed_everything(np.int64(0))


def test_remaining_silent_results_are_gone() -> None:
    model = small_gpt().double()
    assert gpt.load_gpt(gpt.save_gpt(model)).tok_emb.weight.dtype == torch.float64
    scores = {"blocks.0.fc1": torch.ones(8), "blocks.1.fc1": torch.full((6,), math.nan)}
    with pytest.raises(ValueError, match=r"ffn_scores\['blocks.1.fc1'\] must be finite"):
        widgets.head_explorer(small_gpt(), *gpt_xy(), scores)

    class Broken(GPT):
        def forward(self, idx, head_masks=None):
            raise RuntimeError("broken forward")

    broken = Broken(small_gpt().config).train()
    with pytest.raises(RuntimeError, match="broken forward"):
        tasks.exact_match(broken, *gpt_xy())
    assert broken.training                                  # the mode is restored even on failure


def test_remaining_raw_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="scan must name at least one layer"):
        experiments.allocate_sparsity({}, [0, 0.5], {}, 0.3)
    with pytest.raises(TypeError, match=r"weights\[0\] must be a float torch.Tensor"):
        pruning.global_threshold([torch.ones(4, dtype=torch.bool)], 0.5)
    model = mlp()
    before = fingerprint([model])
    with pytest.raises(TypeError, match="desc must be a str"):
        schedules.train_with_plan(model, split(), [(0, 0.5)], 2, progress=False, desc=5)
    assert same(fingerprint([model]), before)
    with pytest.raises(ValueError, match="error must be a number"):
        widgets.layer_readout(torch.ones(2, 2), torch.ones(2, 2), "x")
    for tokens in (torch.full((2, 11), 12), torch.full((2, 11), -1)):
        with pytest.raises(ValueError, match=r"idx must hold token ids in \[0, 11\]"):
            small_gpt()(tokens)


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")    # vmap over attention
def test_last_round_regressions_are_gone() -> None:
    model = small_gpt()
    x = gpt_xy()[0]
    assert torch.equal(tasks.answer_logits(model, x.int(), 3), tasks.answer_logits(model, x, 3))
    assert tasks.answer_logits(model, x, x.shape[1]).shape == (len(x), x.shape[1], 12)
    with torch.device("meta"):                                  # shapes only: no values to range-check
        meta = GPT(model.config)
    assert meta(torch.zeros(2, 8, dtype=torch.long, device="meta")).shape == (2, 8, 12)
    assert torch.equal(torch.func.vmap(lambda row: model(row[None])[0])(x), model(x))
    training.train(mlp(), split(), 1, progress=False, desc=None)
    config = GPTConfig(d_model=16, head_dim=4, heads=np.array([2, 2]), ffn=np.array([8, 8]))
    assert config.heads == [2, 2] and type(config.heads[0]) is int
    with_nan = mlp()
    with torch.no_grad():
        with_nan.layers[0].bias[0] = math.nan                   # relu is still relu
    structured.slim_mlp(with_nan, {"layers.0": torch.tensor([0, 2])}, activation=torch.relu)
