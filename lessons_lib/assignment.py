"""Lesson 10's assignment: prune the tiny GPT to a budget. The rules, the grader's held-out
problems, and how a submission is checked, measured and scored.

A submission is a :class:`~lessons_lib.gpt.GPT` that must
- store at most :data:`BUDGET` of the dense model's non-embedding values (every tensor the
  model holds counts, zero or not: a masked weight still costs memory and time),
- answer at least :data:`ACCURACY_FLOOR` of the grader's held-out problems exactly, and
- run a batch of 256 problems at least :data:`MIN_SPEEDUP` times faster than the dense model.

Meeting the three floors is a pass (:data:`POINTS`). Going beyond them earns up to
:data:`BONUS` more on a published curve (:func:`bonus_points`, printed by :func:`curve`):
fewer parameters, fewer errors, more speed, each up to an "excellent" mark (:data:`EXCELLENT`).

The grader (:func:`grade`) is written for learners who read it. It grades what the model *is*:
a plain GPT (no subclass, no method replaced, no hook), rebuilt by the library from its config
and weights, so no Python the learner attached runs while it is measured. It takes its rules
from literals (:func:`exam_rules`) and its functions into locals before the learner's code runs,
and refuses a submission if that code changed the library it relies on (:class:`Seal`). The
dense model it compares against and the held-out problems, drawn with a fresh secret seed, come
into existence only after the learner's code has returned. What it still trusts is listed in
``docs/teachers.md`` ("What the grader trusts").
"""

from __future__ import annotations

import collections
import hashlib
import json
import math
import numbers
import os
import re
import statistics
import sys
import threading
import timeit
import types
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from tqdm import _monitor as tqdm_monitor

from .gpt import CHECKPOINT, GPT, Attention, Block, GPTConfig, allow_empty_layers, load_checkpoint
from .measure import benchmark_module, latency_ms
from .tasks import Addition, addition_task, encode, exact_match
from .validate import require_positive_int

CRITERIA = ("parameter budget", "accuracy floor", "speed-up")
EMBEDDINGS = ("tok_emb.", "pos_emb.")
SEED_VARIABLE = "PRUNING_GRADER_SEED"   # a teacher's fixed seed for the held-out problems (see grading_seed)
_DICTS = (dict, collections.OrderedDict)


@dataclass(frozen=True)
class Rules:
    """What a submission must reach, what each criterion is worth (points and bonus in CRITERIA's
    order), and where the curve beyond each floor tops out (see :func:`bonus_points`)."""

    budget: float                  # share of the dense model's non-embedding values a submission may keep
    accuracy_floor: float          # exact match on the held-out problems
    min_speedup: float             # dense time / submission time, batch of 256 problems, one thread
    points: tuple[int, int, int]   # for meeting each floor: parameter budget, accuracy floor, speed-up
    bonus: tuple[int, int, int]    # the most each criterion earns beyond its floor, on the curve
    excellent_budget: float        # the share at which the budget's bonus is full
    excellent_accuracy: float      # the exact match at which the accuracy's bonus is full
    excellent_speedup: float       # the speed-up at which the speed-up's bonus is full
    held_out: int = 2_000          # problems graded

    def __post_init__(self) -> None:
        for name, low, high in (("budget", 0.0, 1.0), ("accuracy_floor", 0.0, 1.0), ("min_speedup", 0.0, math.inf),
                                ("excellent_budget", 0.0, self.budget),
                                ("excellent_accuracy", self.accuracy_floor, 1.0),
                                ("excellent_speedup", self.min_speedup, math.inf)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low < value <= high \
                    or (name.startswith("excellent") and not value < high):
                closing = ")" if name.startswith("excellent") else "]"
                raise ValueError(f"{name} must be a number in ({low}, {high}{closing}, got {value!r}")
        for name in ("points", "bonus"):
            value = getattr(self, name)
            if (type(value) is not tuple or len(value) != len(CRITERIA)
                    or any(type(p) is not int or p < 0 for p in value)):
                raise ValueError(f"{name} must be a tuple of {len(CRITERIA)} ints >= 0, got {value!r}")
        if type(self.held_out) is not int or not 1 <= self.held_out <= 100_000:
            raise ValueError(f"held_out must be an int in [1, 100000], got {self.held_out!r}")


def exam_rules() -> Rules:
    """The rules the grader applies, built from these literals on every call (so no module
    constant a submission might change is read while grading). A teacher's variant changes
    them here; the constants below, which the lesson prints, follow."""
    return Rules(budget=0.40, accuracy_floor=0.90, min_speedup=1.25, points=(4, 4, 2),
                 bonus=(3, 5, 2), excellent_budget=0.20, excellent_accuracy=0.995, excellent_speedup=3.0)


# For the lesson to print. The grader does not read these: it calls exam_rules().
BUDGET = exam_rules().budget
ACCURACY_FLOOR = exam_rules().accuracy_floor
MIN_SPEEDUP = exam_rules().min_speedup
POINTS = dict(zip(CRITERIA, exam_rules().points, strict=True))
BONUS = dict(zip(CRITERIA, exam_rules().bonus, strict=True))
EXCELLENT = dict(zip(CRITERIA, (exam_rules().excellent_budget, exam_rules().excellent_accuracy,
                                exam_rules().excellent_speedup), strict=True))


class SubmissionRefused(Exception):
    """The grader cannot score this submission; ``str(error)`` says why (it scores 0)."""


# --- counting what a model stores -----------------------------------------------------------------

def non_embedding_parameters(model: nn.Module) -> int:
    """Values stored as parameters outside the token and position embeddings (Kaplan et al.'s
    count). A pruned layer's ``weight_orig`` counts in full: a mask removes nothing from storage."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(EMBEDDINGS))


def _data_key(t: torch.Tensor) -> tuple:
    """Where a tensor's values live: a tensor and its ``.detach()`` / ``.data`` share the key."""
    return (str(t.device), t.dtype, t.data_ptr(), tuple(t.shape), t.stride()) if t.numel() else (id(t),)


def held_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor ``model`` holds, by where it is (``blocks.0.fc1.weight``, ``blocks.0.stash[1]``):
    parameters, buffers, and tensors kept in any module's attributes or in lists, tuples, sets and
    dicts there. A tensor reachable in two places is listed once. Other objects are not searched
    (the grader refuses a submission that holds any)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    found, seen, todo = {}, set(), [("", model)]
    while todo:
        where, obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            found.setdefault(_data_key(obj), (where, obj))
        elif isinstance(obj, nn.Module):
            for key, value in vars(obj).items():
                named = key in ("_parameters", "_buffers", "_modules") and type(value) in _DICTS
                todo += [(f"{where}.{k}" if where else k, v) for k, v in (value if named else {key: value}).items()]
        elif type(obj) in _DICTS:
            todo += [(f"{where}[{k!r}]", v) for k, v in obj.items()]
        elif type(obj) in (list, tuple, set, frozenset):
            todo += [(f"{where}[{i}]", v) for i, v in enumerate(obj)]
    return dict(sorted(found.values(), key=lambda item: [int(part) if part.isdigit() else part
                                                         for part in re.split(r"(\d+)", item[0])]))


def stored_values(model: nn.Module) -> int:
    """Values ``model`` stores outside the token and position embedding tables: every tensor of
    :func:`held_tensors` counts (a pruning mask, and weights kept as buffers or attributes too)."""
    held = held_tensors(model)
    tables = {_data_key(t) for where, t in held.items() if where in ("tok_emb.weight", "pos_emb.weight")}
    return sum(t.numel() for t in held.values() if _data_key(t) not in tables)


def allowed_parameters(dense: nn.Module) -> int:
    """The budget in parameters: :data:`BUDGET` of ``dense``'s non-embedding parameters, rounded down."""
    return int(BUDGET * non_embedding_parameters(dense))


def parameter_costs(config: GPTConfig) -> dict[str, int]:
    """Parameters one attention head and one FFN neuron cost: a head owns E rows (weights and
    biases) of q, k and v and E columns of out (4·D·E + 3·E); a neuron a row of fc1 with its
    bias and a column of fc2 (2·D + 1). D = d_model, E = head_dim."""
    D, E = config.d_model, config.head_dim
    return {"head": 4 * D * E + 3 * E, "FFN neuron": 2 * D + 1}


# --- held-out problems ----------------------------------------------------------------------------

_FIRST_HELD_OUT = 500_000   # lessons draw their splits from the start of the seed-0 permutation


def held_out_problems(n: int = 2_000, seed: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` problems of 3-digit addition, ``x`` (n, 11) inputs and ``y`` (n, 4) answers, drawn
    with ``seed`` from the second half of the permutation ``addition_task(3, seed=0)`` takes its
    splits from, so they are in no split of a task of up to 500,000 problems.

    ``seed=None`` draws a fresh secret seed (``os.urandom``), so every call gives other problems:
    the grader's cannot be known before it draws them. The same ``seed`` gives the same problems.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"n must be an int in [1, 100000], got {n!r}")
    if seed is None:
        seed = _secret_seed()
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
    pool = torch.randperm(10**6, generator=torch.Generator().manual_seed(0))[_FIRST_HELD_OUT:]
    pairs = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:n]]
    return encode(pairs // 1000, pairs % 1000, 3)


def _secret_seed() -> int:
    """31 random bits straight from the operating system (``os.urandom``, which the seal watches)."""
    return int.from_bytes(os.urandom(4), "little") & 0x7FFF_FFFF


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state: every tensor's name, dtype, shape and bytes, in order. The
    grader compares the dense model it loads with the one it loaded when it was imported."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def grading_seed(text: str | None) -> tuple[int, bool]:
    """The seed for the grader's held-out problems and whether it is the teacher's: ``text``, the
    value of the environment variable ``PRUNING_GRADER_SEED`` (an int >= 0) when it is set, else
    (``None``) a fresh secret seed. The grader reads the variable once, when it is imported."""
    if text is None:
        return _secret_seed(), False
    if not text.strip().isdigit() or int(text) >= 2**63:
        raise ValueError(f"{SEED_VARIABLE} must be an int in [0, 2**63), got {text!r}")
    return int(text), True


# --- what the model is ----------------------------------------------------------------------------

_PLAIN_DATA = (type(None), bool, int, float, str, torch.Tensor, nn.Parameter)
_CONTAINERS = (list, tuple, set, frozenset, *_DICTS)


def _require_plain_data(value: object, where: str, depth: int = 0) -> None:
    """Extra attributes may hold numbers, strings and plain tensors, in lists, tuples, sets and dicts."""
    if type(value) in _CONTAINERS and depth < 8:
        for item in (value.values() if isinstance(value, dict) else value):
            _require_plain_data(item, where, depth + 1)
    elif type(value) not in _PLAIN_DATA:
        raise ValueError(f"{where} is a {type(value).__name__}; the returned model may keep extra data only as "
                         "tensors, numbers and strings (in lists or dicts), not objects or functions: delete it")


def _class_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def _paired_modules(model: GPT, fresh: GPT) -> list[tuple[str, nn.Module, nn.Module]]:
    """``(name, module, fresh module)`` for every module, walking ``model`` and ``fresh`` (built by
    the library) together through ``_modules``; raises if a class or a set of children differs."""
    pairs, todo = [], [("", model, fresh)]
    while todo:
        name, theirs, ours = todo.pop(0)
        where = name or "model"
        if type(theirs) is not type(ours):
            raise ValueError(f"{where} is a {_class_name(theirs)}, but GPT builds a {_class_name(ours)} there "
                             "(no subclass, wrapper or parametrization: return the library's own layers)")
        children, expected = vars(theirs).get("_modules"), vars(ours)["_modules"]
        if type(children) not in _DICTS or set(children) != set(expected):
            got = sorted(children) if type(children) in _DICTS else type(children).__name__
            raise ValueError(f"{where} has submodules {got}, but GPT builds {sorted(expected)} there")
        pairs.append((name, theirs, ours))
        todo += [(f"{name}.{key}" if name else key, children[key], expected[key]) for key in expected]
    return pairs


def _same_setting(value: object, fresh: object) -> bool:
    """A layer setting (``eps``, ``n_heads``, ``normalized_shape`` ...) equal to a fresh layer's."""
    if type(value) is not type(fresh):
        return False
    if type(value) is tuple:
        return len(value) == len(fresh) and all(_same_setting(a, b) for a, b in zip(value, fresh, strict=True))
    return value == fresh if type(value) in _PLAIN_DATA[:5] else True


def _require_same_module(name: str, module: nn.Module, fresh: nn.Module) -> None:
    """``module`` (of ``fresh``'s class) is what ``fresh`` (built by the library) is: no hooks, no
    method overridden, the same settings, plain tensors; extra attributes only as plain data."""
    where = name or "model"
    state = vars(module)
    hooks = {key[1:]: list(value.values() if isinstance(value, dict) else value)
             for key, value in state.items() if "hook" in key and type(value) in _CONTAINERS and value}
    if any(type(hook).__module__ == "torch.nn.utils.prune" for found in hooks.values() for hook in found):
        raise ValueError(f"{where} still carries pruning masks (torch.nn.utils.prune): a mask keeps every "
                         "weight stored, so masks cannot meet the budget. Remove heads and neurons "
                         "(slim_gpt, slim_gpt_to), or make a mask permanent with prune.remove")
    if hooks:
        raise ValueError(f"{where} has {', '.join(hooks)} registered: the grader runs the library's GPT as it "
                         "is; remove them (handle.remove()) before returning the model")
    for key, value in state.items():
        if key in vars(fresh) and key not in ("training", "_parameters", "_buffers", "_modules") and "hook" not in key:
            if not _same_setting(value, vars(fresh)[key]):
                raise ValueError(f"{where}.{key} is {value!r}, but a GPT built from the same config has "
                                 f"{vars(fresh)[key]!r}: keep the config in step with the layers")
        elif key not in vars(fresh):
            if hasattr(type(module), key):
                raise ValueError(f"{where}.{key} replaces what {type(module).__name__} defines: the grader runs "
                                 "the library's GPT as it is, so no method or attribute of it may be overridden")
            _require_plain_data(value, f"{where}.{key}")
    for kind in ("_parameters", "_buffers"):
        if type(state.get(kind)) not in _DICTS:
            raise ValueError(f"{where}.{kind} is not a plain dict")
        for key, tensor in state[kind].items():
            if tensor is not None and type(tensor) not in (torch.Tensor, nn.Parameter):
                raise ValueError(f"{where}.{key} is a {type(tensor).__name__}; only plain tensors can be graded")


def _plain_config(config: object) -> GPTConfig:
    """A new GPTConfig with ``config``'s values, which must be plain ints and lists of ints."""
    if type(config) is not GPTConfig:
        raise ValueError(f"model.config must be a GPTConfig, got {type(config).__name__}")
    values = dict(vars(config))
    if set(values) != {"vocab_size", "block_size", "d_model", "head_dim", "heads", "ffn"}:
        raise ValueError(f"model.config holds {sorted(values)}; a GPTConfig holds only its six fields")
    for name in ("vocab_size", "block_size", "d_model", "head_dim"):
        if type(values.get(name)) is not int:
            raise ValueError(f"model.config.{name} must be an int, got {values.get(name)!r}")
    for name in ("heads", "ffn"):
        if type(values.get(name)) is not list or any(type(v) is not int for v in values[name]):
            raise ValueError(f"model.config.{name} must be a list of ints, got {values.get(name)!r}")
    return GPTConfig(**{name: list(values[name]) if name in ("heads", "ffn") else values[name]
                        for name in ("vocab_size", "block_size", "d_model", "head_dim", "heads", "ffn")})


def plain_copy(model: GPT) -> GPT:
    """A fresh GPT built by the library from ``model``'s config, holding copies of its weights
    (``load_state_dict(strict=True)``), on the CPU in the default dtype (float32): what the grader
    measures.

    Raises ``TypeError``/``ValueError`` saying what differs when ``model`` is not exactly what
    ``GPT(model.config)`` builds: another class (a subclass too), other submodules, a method
    overridden on an instance, hooks (pruning masks among them), other settings, or weights whose
    names or shapes do not match the config. Extra tensors are allowed: they count toward
    :func:`stored_values`, and the copy leaves them behind.
    """
    if type(model) is not GPT:
        raise TypeError(f"model must be a lessons_lib.gpt.GPT itself, not a {type(model).__name__} "
                        "(a subclass runs its own code): slim_gpt and slim_gpt_to return plain GPTs")
    with torch.device("meta"), allow_empty_layers():        # the structure only: no random init
        fresh = GPT(_plain_config(vars(model).get("config")))
    weights = {}
    for name, module, ours in _paired_modules(model, fresh):
        _require_same_module(name, module, ours)
        for kind in ("_parameters", "_buffers"):
            weights.update({f"{name}.{key}" if name else key: tensor for key, tensor in vars(module)[kind].items()})
    expected = fresh.state_dict()
    for key, tensor in expected.items():
        if weights.get(key) is None or weights[key].shape != tensor.shape:
            got = "missing" if weights.get(key) is None else f"of shape {tuple(weights[key].shape)}"
            raise ValueError(f"{key} is {got}, but model.config (heads {fresh.config.heads}, FFN {fresh.config.ffn}) "
                             f"needs shape {tuple(tensor.shape)}: keep the config in step with the weights")
    try:
        copies = {key: weights[key].detach().to(device="cpu", dtype=tensor.dtype, copy=True)
                  for key, tensor in expected.items()}
        fresh.load_state_dict(copies, strict=True, assign=True)
    except (RuntimeError, NotImplementedError) as error:
        raise ValueError(f"model's weights cannot be copied to the CPU: {error}") from None
    return fresh.eval()


# --- measuring and scoring ------------------------------------------------------------------------

def speedup(dense: nn.Module, model: nn.Module, x: torch.Tensor, rounds: int = 3) -> float:
    """Median over ``rounds`` of dense time / ``model`` time for one forward pass over ``x``,
    one thread, timed alternately so a busy moment hits both."""
    require_positive_int(rounds, "rounds")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            ratios = [latency_ms(lambda: dense(x)) / latency_ms(lambda: model(x)) for _ in range(rounds)]
    finally:
        torch.set_num_threads(threads)
    return statistics.median(ratios)


def bonus_points(share: float, accuracy: float, faster: float, rules: Rules | None = None) -> tuple[float, ...]:
    """Points beyond the floors, in CRITERIA's order, each rounded to 0.1 and in [0, its bonus]:
    for storing ``share`` of the dense model's non-embedding values, answering ``accuracy`` of
    the held-out problems exactly, and running ``faster`` times faster than dense.

    Each criterion climbs from 0 at its floor to its full bonus at its excellent mark, then stays
    there. Parameters and speed-up climb linearly. Accuracy climbs in *errors*: every halving of
    the errors (10% -> 5% -> 2.5% ...) earns the same, because the last errors are the hardest to
    remove. This function does not check the floors: :func:`score_submission` pays these points
    only to a model within the budget that meets the accuracy floor (see there why)."""
    rules = exam_rules() if rules is None else rules
    if type(rules) is not Rules:
        raise TypeError(f"rules must be a Rules, got {type(rules).__name__}")
    for name, value in (("share", share), ("accuracy", accuracy), ("faster", faster)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) or value < 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    parameters = (rules.budget - share) / (rules.budget - rules.excellent_budget)
    floor_errors, excellent_errors = 1 - rules.accuracy_floor, 1 - rules.excellent_accuracy
    errors = 1.0 if accuracy >= rules.excellent_accuracy else (
        math.log(floor_errors / (1 - accuracy)) / math.log(floor_errors / excellent_errors))
    speed = (faster - rules.min_speedup) / (rules.excellent_speedup - rules.min_speedup)
    return tuple(round(most * min(max(float(fraction), 0.0), 1.0), 1)
                 for most, fraction in zip(rules.bonus, (parameters, errors, speed), strict=True))


def curve(rules: Rules | None = None) -> str:
    """The published curve: what :func:`bonus_points` pays at a few marks between each floor and
    its excellent mark (quarters for parameters and speed-up, halvings of the errors for accuracy)."""
    rules = exam_rules() if rules is None else rules
    bonus = dict(zip(CRITERIA, rules.bonus, strict=True))
    low, high = rules.excellent_budget, rules.budget
    shares = [high - k * (high - low) / 4 for k in range(5)]
    errors = [(1 - rules.accuracy_floor) / 2**k for k in range(32)]
    accuracies = [1 - e for e in errors if e > 1 - rules.excellent_accuracy] + [rules.excellent_accuracy]
    speeds = [rules.min_speedup + k * (rules.excellent_speedup - rules.min_speedup) / 4 for k in range(5)]
    rows = [("parameter budget", f"linear from {high:.0%} of dense down to {low:.0%}", "stored",
             [(f"{s:.0%}", bonus_points(s, rules.accuracy_floor, rules.min_speedup, rules)[0]) for s in shares]),
            ("accuracy floor", f"the same for every halving of the errors, from {100 * rules.accuracy_floor:.6g}% "
             f"up to {100 * rules.excellent_accuracy:.6g}% exact match", "exact match",
             [(f"{100 * a:.6g}%", bonus_points(high, a, rules.min_speedup, rules)[1]) for a in accuracies]),
            ("speed-up", f"linear from {rules.min_speedup:g}x up to {rules.excellent_speedup:g}x", "speed-up",
             [(f"{v:.3g}x", bonus_points(high, rules.accuracy_floor, v, rules)[2]) for v in speeds])]
    lines = [f"beyond the floors: up to {sum(rules.bonus)} more points, paid only to a model within the budget "
             "that meets the accuracy floor (rounded to 0.1 point)"]
    for name, how, label, marks in rows:
        widths = [max(len(mark), len(f"{points:.1f}")) for mark, points in marks]
        lines += [f"{name}, up to {bonus[name]} more: {how}",
                  f"  {label:<13}" + "  ".join(mark.rjust(w) for (mark, _), w in zip(marks, widths, strict=True)),
                  f"  {'points':<13}" + "  ".join(f"{p:.1f}".rjust(w) for (_, p), w in zip(marks, widths, strict=True))]
    return "\n".join(lines)


@dataclass(frozen=True)
class Criterion:
    """One line of the score table: the floor (``max_points`` when ``passed``) and the points
    earned beyond it (``bonus``, at most ``max_bonus``, counted only when ``passed``)."""

    name: str
    measured: str
    target: str
    passed: bool
    max_points: int
    hint: str = ""
    timed: bool = False            # decided by a timing, so a busy or slower machine can change it
    max_bonus: int = 0
    bonus: float = 0.0
    excellent: str = ""            # where the bonus is full

    def __post_init__(self) -> None:
        for name in ("max_points", "max_bonus"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        bonus = self.bonus
        if isinstance(bonus, bool) or not isinstance(bonus, numbers.Real) or not 0 <= bonus <= self.max_bonus:
            raise ValueError(f"bonus must be a number in [0, max_bonus={self.max_bonus}], got {bonus!r}")

    @property
    def points(self) -> float:
        return self.max_points + float(self.bonus) if self.passed is True else 0.0


@dataclass(frozen=True)
class Score:
    """The graded criteria; ``points`` is what nbgrader reads as the grade cell's partial credit,
    always in [0, max_points], rounded to 0.1. ``note`` says how the held-out problems were drawn."""

    criteria: tuple[Criterion, ...]
    note: str = ""

    @property
    def points(self) -> float:
        return round(min(max(sum(c.points for c in self.criteria), 0.0), self.max_points), 1)

    @property
    def max_points(self) -> int:
        return sum(c.max_points + c.max_bonus for c in self.criteria)

    def table(self) -> str:
        """The score table, with what was measured (a timing among it), the points for each floor
        and beyond it, and a hint per miss."""
        rows = [("criterion", "measured", "floor", "pass", "excellent", "beyond")]
        rows += [(c.name, c.measured, c.target, f"{c.max_points if c.passed is True else 0} / {c.max_points}",
                  c.excellent, f"{float(c.bonus) if c.passed is True else 0.0:.1f} / {c.max_bonus}")
                 for c in self.criteria]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        floors = sum(c.max_points for c in self.criteria if c.passed is True)
        beyond = sum(float(c.bonus) for c in self.criteria if c.passed is True)
        lines.append(f"total: {self.points:.1f} / {self.max_points} points ({floors} / "
                     f"{sum(c.max_points for c in self.criteria)} for the floors, {beyond:.1f} / "
                     f"{sum(c.max_bonus for c in self.criteria)} beyond them)")
        if any(c.max_bonus for c in self.criteria) and not all(c.passed is True for c in self.criteria if not c.timed):
            lines.append("points beyond the floors count only for a model within the budget that meets the "
                         "accuracy floor")
        lines += [f"✗ {c.name}: {c.hint}" for c in self.criteria if not c.passed and c.hint]
        return "\n".join(lines + ([self.note] if self.note else []))

    def summary(self, timed: bool = True) -> str:
        """One line per criterion without the timing's digits: its floor's points and, with
        ``timed=True``, the points beyond it. A timed criterion can still pass on one machine and
        fail on a slower or busier one; ``timed=False`` leaves those out, and the points beyond the
        floors too (accuracy's move with the held-out draw), so what is left reads the same on
        every machine."""
        criteria = [c for c in self.criteria if timed or not c.timed]
        floors = [(c, c.max_points if c.passed is True else 0) for c in criteria]
        lines = [f"{'✓' if c.passed is True else '✗'} {c.name:<16} {got} / {c.max_points}"
                 + (f"  + {float(c.bonus) if c.passed is True else 0.0:.1f} / {c.max_bonus} beyond" if timed else "")
                 for c, got in floors]
        if timed:
            total = f"{self.points:.1f} / {self.max_points}"
        else:
            total = f"{sum(got for _, got in floors)} / {sum(c.max_points for c in criteria)}"
        return "\n".join(lines) + f"\n  {'total' if timed else 'without timing':<16} {total}"

    @classmethod
    def not_run(cls, reason: str, rules: Rules | None = None) -> Score:
        """A 0-point score for a submission that was not run (the exercise is not done yet): every
        criterion missed, nothing measured, ``reason`` as the note. Its table and summary print."""
        rules = exam_rules() if rules is None else rules
        if type(rules) is not Rules:
            raise TypeError(f"rules must be a Rules, got {type(rules).__name__}")
        if not isinstance(reason, str):
            raise TypeError(f"reason must be a str, got {type(reason).__name__}")
        targets = (f"<= {rules.budget:.0%}", f">= {rules.accuracy_floor:.0%}", f">= {rules.min_speedup}x")
        marks = (f"<= {rules.excellent_budget:.0%}", f">= {100 * rules.excellent_accuracy:.6g}%",
                 f">= {rules.excellent_speedup:g}x")
        rows = zip(CRITERIA, targets, rules.points, rules.bonus, marks, strict=True)
        return cls(tuple(Criterion(name, "not run", target, False, points, timed=name == "speed-up",
                                   max_bonus=bonus, excellent=mark) for name, target, points, bonus, mark in rows),
                   note=reason)


def _budget_hint(submission: GPT, graded: GPT, kept: int, allowed: int, costs: dict[str, int]) -> str:
    """What to remove, and which tensors outside the weights were counted."""
    weights = graded.state_dict()
    extra = [where for where in held_tensors(submission) if where not in weights]
    hint = f"remove {kept - allowed:,} more (a head costs {costs['head']:,}, an FFN neuron {costs['FFN neuron']})"
    if extra:
        hint += (f"; {kept - non_embedding_parameters(graded):,} of the values counted are tensors kept beside the "
                 f"weights ({', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}): every tensor counts")
    return hint


def score_submission(submission: GPT, dense: GPT, x: torch.Tensor, y: torch.Tensor, rules: Rules | None = None,
                     speedup_fn: Callable[[GPT, GPT, torch.Tensor], float] | None = None) -> Score:
    """Measure ``submission`` against ``dense`` on held-out problems ``x`` (n, 11), ``y`` (n, 4)
    under ``rules`` (default :func:`exam_rules`). Accuracy and speed earn points only within the
    budget: the dense model itself earns none.

    Points beyond the floors (:func:`bonus_points`) are paid only to a model within the budget
    that meets the accuracy floor. A usable model comes first: paid per criterion, they would
    reward giving up accuracy for size and speed, and a model nobody can use (one head and 32 FFN
    neurons per layer, fine-tuned for 2,000 steps: 65% exact match, 18% of the parameters, 3.6x
    faster) would collect more than a careful pass. The speed-up floor is not required for them:
    it is a timing, and a busy moment that reads 1.2x should cost the speed-up's points, not all
    of them (the speed-up's own points beyond start at its floor anyway).

    The budget counts every value ``submission`` stores (:func:`stored_values`); accuracy and
    speed are measured on :func:`plain_copy` copies of both models, the speed-up with
    ``speedup_fn(dense, model, x[:256])`` (default :func:`speedup`). Raises ``TypeError`` /
    ``ValueError`` if ``submission`` is not a plain GPT (see :func:`plain_copy`).
    """
    rules = exam_rules() if rules is None else rules
    if type(rules) is not Rules:
        raise TypeError(f"rules must be a Rules, got {type(rules).__name__}")
    for name, model in (("submission", submission), ("dense", dense)):
        if not isinstance(model, GPT):
            raise TypeError(f"{name} must be a GPT, got {type(model).__name__}")
    graded, reference = plain_copy(submission), plain_copy(dense)
    kept, full = stored_values(submission), stored_values(dense)
    allowed = int(rules.budget * full)
    within = kept <= allowed
    accuracy = exact_match(graded, x, y)
    faster = float((speedup if speedup_fn is None else speedup_fn)(reference, graded, x[:256]))
    passed = (within, within and accuracy >= rules.accuracy_floor, within and faster >= rules.min_speedup)
    usable = passed[0] and passed[1]
    bonus = bonus_points(kept / full, accuracy, faster, rules) if usable else (0.0,) * len(CRITERIA)
    over = "met, but it counts only once the model is within the parameter budget"
    budget_hint = _budget_hint(submission, graded, kept, allowed, parameter_costs(dense.config))
    return Score((
        Criterion("parameter budget", f"{kept:,} ({kept / full:.1%} of dense)", f"<= {allowed:,} ({rules.budget:.0%})",
                  passed[0], rules.points[0], budget_hint, max_bonus=rules.bonus[0], bonus=bonus[0],
                  excellent=f"<= {rules.excellent_budget:.0%}"),
        Criterion("accuracy floor", f"{accuracy:.1%} of {len(x):,} held-out", f">= {rules.accuracy_floor:.0%}",
                  passed[1], rules.points[1],
                  over if accuracy >= rules.accuracy_floor else
                  "fine-tune longer, prune in more steps, or keep more heads and fewer FFN neurons",
                  max_bonus=rules.bonus[1], bonus=bonus[1], excellent=f">= {100 * rules.excellent_accuracy:.6g}%"),
        Criterion("speed-up", f"{faster:.2f}x (batch 256, 1 thread)", f">= {rules.min_speedup}x",
                  passed[2], rules.points[2],
                  over if faster >= rules.min_speedup else
                  "only removed structure runs faster; zeros in dense matrices cost the same time",
                  timed=True, max_bonus=rules.bonus[2], bonus=bonus[2], excellent=f">= {rules.excellent_speedup:g}x"),
    ))


# --- the seal: what grading relies on, as it was when this module was imported --------------------

_WATCHED_NAMES = {     # module: the names grading relies on (None: every name but dunders)
    "builtins": ("isinstance", "issubclass", "type", "len", "sum", "int", "float", "min", "max", "round", "abs",
                 "vars", "getattr", "hasattr", "id", "iter", "next", "range", "zip", "any", "all", "sorted",
                 "enumerate", "list", "tuple", "dict", "set", "str", "print", "super", "object"),
    "hashlib": ("sha256",),
    "math": ("log", "isnan", "inf"),
    "os": ("urandom",),
    "statistics": ("median",),
    "time": ("perf_counter",),
    "timeit": ("default_timer", "Timer"),
    "torch": ("arange", "cat", "full", "tensor", "randperm", "Generator", "no_grad", "get_num_threads",
              "set_num_threads", "layer_norm", "embedding", "load", "Tensor", "device"),
    "torch.nn.functional": None,
    "torch.nn.modules.module": None,          # torch's global module hooks among them
    "torch.utils.benchmark": ("Timer",),
    "lessons_lib.gpt": None,
    "lessons_lib.tasks": None,
    "lessons_lib.measure": None,
    "lessons_lib.validate": None,
    __name__: None,
}


def _contents(value: object) -> tuple | None:
    """What can change in ``value`` in place: a container's items (``POINTS[...] = -4``), or a
    function's code and defaults (``exact_match.__code__ = ...``)."""
    if type(value) in _DICTS:
        return tuple(value.items())
    if type(value) in (list, set):
        return tuple(value)
    if isinstance(value, (classmethod, staticmethod)):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    if isinstance(value, types.FunctionType):
        return value.__code__, value.__defaults__, tuple((value.__kwdefaults__ or {}).items())
    return None


def _same(a: object, b: object) -> bool:
    if a is b:
        return True
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and type(a) in (bool, int, float, str) and a == b


def _torch_modes() -> tuple[int, int]:
    """How many torch function modes and dispatch modes are active (0, 0 when none is)."""
    return (getattr(torch._C, "_len_torch_function_stack", lambda: 0)(),
            getattr(torch._C, "_len_torch_dispatch_stack", lambda: 0)())


def _torch_defaults() -> tuple[object, ...]:
    return torch.get_default_dtype(), str(torch.get_default_device())


def _tracers() -> tuple[object, ...]:
    return (sys.gettrace(), sys.getprofile(), getattr(threading, "gettrace", lambda: None)(),
            getattr(threading, "getprofile", lambda: None)())


_TORCH_COMPILE_DIR = os.path.join(os.path.dirname(torch.__file__), "_dynamo", "")


_CACHED_BY_PYTHON = frozenset({"__slotnames__"})   # copyreg caches it on a class at the first copy or pickle


def _installed_by_torch_compile(value: object) -> bool:
    """What ``torch.compile`` sets on ``nn.Module`` the first time it runs (an ``__init__`` and a
    ``__setstate__`` from ``torch/_dynamo``, a flag): an honest solution may compile."""
    if type(value) is bool:
        return True
    return isinstance(value, types.FunctionType) and value.__code__.co_filename.startswith(_TORCH_COMPILE_DIR)


def _is_progress_monitor(thread: threading.Thread) -> bool:
    """tqdm's monitor thread, which the first progress bar starts (an honest fine-tuning does): an
    instance of tqdm's own ``TMonitor`` (a sealed class), running that class's ``run``."""
    return type(thread) is tqdm_monitor.TMonitor and "run" not in vars(thread)


@dataclass(frozen=True)
class Seal:
    """What grading relies on, taken when this module is imported: the functions, classes and
    constants of the library and of the parts of torch and Python the grader calls, torch's
    global module hooks, the checkpoint's recorded SHA-256, and the trace functions and torch
    modes then active. :meth:`changes` lists what differs now."""

    entries: tuple[tuple[str, object, str, object, tuple | None], ...]   # (label, owner, name, value, contents)
    class_names: tuple[tuple[type, frozenset[str]], ...]    # a name added to a class can override its base's
    checkpoint_sha256: str | None
    dense_digest: str | None        # model_digest of the dense model as loaded at import
    seed_setting: str | None        # PRUNING_GRADER_SEED as it was set: a learner's code cannot choose it later
    tracers: tuple[object, ...]
    torch_modes: tuple[int, int]
    torch_defaults: tuple[object, ...]

    @classmethod
    def now(cls) -> Seal:
        benchmark = benchmark_module()
        modules = [(name, sys.modules[name] if name in sys.modules else __import__(name, fromlist=["_"]), names)
                   for name, names in _WATCHED_NAMES.items()]
        classes = (torch.Tensor, nn.Parameter, nn.Module, nn.Linear, nn.LayerNorm, nn.Embedding, nn.ModuleList,
                   benchmark.Timer, benchmark.Measurement, timeit.Timer, tqdm_monitor.TMonitor, GPT, GPTConfig,
                   Block, Attention, Rules, Criterion, Score, cls)
        owners = [(label, module, (lambda name, names=names: name in names) if names else
                   (lambda name: not name.startswith("__"))) for label, module, names in modules]
        owners += [(c.__qualname__, c, lambda name: True) for c in classes]     # dunders too: __call__ ...
        entries = tuple((label, owner, name, value, _contents(value))
                        for label, owner, watched in owners
                        for name, value in list(vars(owner).items()) if watched(name))
        try:
            sha256 = json.loads(CHECKPOINT.with_suffix(".json").read_text())["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            sha256 = None
        try:
            dense_digest = model_digest(load_checkpoint(expected_sha256=sha256))
        except (OSError, ValueError):
            dense_digest = None     # grading will say what is wrong with the checkpoint
        return cls(entries, tuple((c, frozenset(vars(c))) for c in classes), sha256, dense_digest,
                   os.environ.get(SEED_VARIABLE), _tracers(), _torch_modes(), _torch_defaults())

    def changes(self, threads_before: tuple[threading.Thread, ...] | None = None) -> list[str]:
        """What differs from the seal: each changed name, trace functions and torch modes, and
        threads still running that were not in ``threads_before`` (unless it is None)."""
        missing = object()
        found = [f"{label}.{name}" for label, owner, name, value, contents in self.entries
                 if not _same(vars(owner).get(name, missing), value) and not (
                     owner is nn.Module and _installed_by_torch_compile(vars(owner).get(name)))
                 or (contents is not None and not _same(_contents(value), contents))]
        found += [f"{c.__qualname__}.{name}" for c, names in self.class_names
                  for name in sorted(set(vars(c)) - names - _CACHED_BY_PYTHON)
                  if not (c is nn.Module and _installed_by_torch_compile(vars(c)[name]))]
        if threads_before is not None:
            found += [f"a thread left running ({thread.name})" for thread in threading.enumerate()
                      if thread not in threads_before and thread.is_alive() and not _is_progress_monitor(thread)]
        if not _same(_tracers(), self.tracers):
            found.append("a trace or profile function (sys.settrace, sys.setprofile)")
        if _torch_modes() != self.torch_modes:
            found.append("a torch function or dispatch mode left active")
        if _torch_defaults() != self.torch_defaults:
            found.append("torch's default dtype or device")
        return found

    def verify(self, threads_before: tuple[threading.Thread, ...]) -> None:
        """Raise :class:`SubmissionRefused` naming what changed, if anything did."""
        found = self.changes(threads_before)
        if found:
            raise SubmissionRefused(
                f"since lessons_lib.assignment was imported, something changed what the grader relies on: "
                f"{', '.join(found[:5])}{' ...' if len(found) > 5 else ''}. Your function or a cell you ran did "
                "it; a submission may only build and return a model. Restart the kernel, run the cells in "
                "order, then grade again.")


# --- grading --------------------------------------------------------------------------------------

def _require_answers(model: GPT, x: torch.Tensor, vocab_size: int) -> None:
    """``model`` reads a batch of two problems and gives (2, T, vocab) logits."""
    try:
        with torch.no_grad():
            logits = model(x[:2])
    except Exception as error:
        raise SubmissionRefused(f"the returned model fails on a batch of problems (shape (2, {x.shape[1]})): "
                                f"{type(error).__name__}: {error}") from error
    expected = (2, x.shape[1], vocab_size)
    if tuple(logits.shape) != expected:
        raise SubmissionRefused(f"the returned model gives logits of shape {tuple(logits.shape)}; expected {expected} "
                                "(batch, positions, vocabulary): keep the embeddings and the output head as they are.")


def grade(prune_to_budget: Callable[[GPT, Addition], object]) -> Score:
    """Lesson 10's grading: ``prune_to_budget(dense, task)`` on a fresh copy of the shipped dense
    GPT and the lessons' task, then :func:`score_submission` on what it returns, under
    :func:`exam_rules`. Raises :class:`SubmissionRefused` saying why when that is not a plain GPT
    or when the call changed what the grader relies on (see :class:`Seal`).

    The rules and every function the grading uses are taken into locals before the learner's code
    runs. The dense model it is timed against is loaded, and the held-out problems are drawn
    (:func:`grading_seed`), only after that code has returned: it never saw either.
    """
    rules, seal, threads = exam_rules(), _SEAL, tuple(threading.enumerate())
    verify, sha256, seed_setting = seal.verify, seal.checkpoint_sha256, seal.seed_setting
    digest, dense_digest = model_digest, seal.dense_digest
    load, task, rebuild, check_answers = load_checkpoint, addition_task(3, seed=0), plain_copy, _require_answers
    pick_seed, draw, score, measure = grading_seed, held_out_problems, score_submission, speedup
    if seed_setting is not None:
        pick_seed(seed_setting)                   # a teacher's malformed seed fails before any training
    submission = prune_to_budget(load(), task)
    verify(threads)
    if not isinstance(submission, GPT):
        raise SubmissionRefused(f"prune_to_budget must return a GPT (lessons_lib.gpt.GPT), got "
                                f"{type(submission).__name__}; a slim model from slim_gpt or slim_gpt_to is one.")
    try:
        graded = rebuild(submission)
    except (TypeError, ValueError) as error:
        raise SubmissionRefused(f"the returned model cannot be graded: {error}") from None
    try:
        dense = load(expected_sha256=sha256)        # loaded only now: the submission never saw it
    except (OSError, ValueError) as error:
        raise SubmissionRefused(f"the shipped checkpoint changed while prune_to_budget ran: {error}") from None
    if dense_digest is None or digest(dense) != dense_digest:     # torch.load itself may have been replaced
        raise SubmissionRefused("the dense model loaded now differs from the one loaded when lessons_lib.assignment "
                                "was imported: something changed how checkpoints load. Restart the kernel, run the "
                                "cells in order, then grade again.")
    seed, teachers = pick_seed(seed_setting)
    x, y = draw(rules.held_out, seed)
    check_answers(graded, x, dense.config.vocab_size)
    result = score(submission, dense, x, y, rules, measure)
    verify(threads)                               # nothing the submission left behind acted while it was scored
    drawn = "the teacher's seed" if teachers else f"seed {seed} ({SEED_VARIABLE}={seed} draws them again)"
    return replace(result, note=f"held-out problems: {len(x):,} drawn with {drawn}")


_SEAL = Seal.now()      # last: it takes this module's own names too
