"""Exercise checkers. Each runs a learner's function on a few cases and either prints one
line saying it passed, or raises :class:`ExerciseFailure` with a message that says what is
wrong in plain words: which case, what was expected, what came back, and a hint. An exercise
not started yet (its stub still raises ``NotImplementedError``) is not an error: the checker
says so and returns :class:`NotDone`, worth 0 points, so that Run All goes on to the rest of
the lesson, which uses the library's own version.
(:func:`check_assignment`, lesson 10's grader, prints a score table and returns the score
instead; it raises only when it refuses a submission.)

The exercise checkers never change the tensors they pass in, and use their own random
generator, so calling one does not disturb a lesson's seeded state (the ones that build
modules, which draw their initial weights from torch's global generator, restore its state
afterwards). :func:`check_assignment` runs the learner's training, which may draw from it.

What counts as right is the library's own function (:mod:`lessons_lib.sparsity`,
:mod:`lessons_lib.pruning`, :mod:`lessons_lib.schedules`), with the conventions stated in each
checker's docstring: ``round(sparsity * n)`` is Python's round (halves to even, as
``torch.nn.utils.prune``); tied magnitudes may be broken either way; a number (a threshold, a
sparsity) may come back as a Python or numpy float or a one-entry tensor and is compared within
float32 precision, while ``count_zeros`` must return an int; new modules
must own new tensors.
"""

from __future__ import annotations

import contextlib
import copy
import dis
import functools
import math
import numbers
import os
import sys
import sysconfig
import traceback
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:                 # imported where used: lesson 00's checker must not load the GPT
    from .assignment import Score
    from .gpt import Attention



class ExerciseFailure(AssertionError):
    """A learner's exercise does not pass yet; ``str(error)`` says why."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the message is the useful part.
        return [f"✗ {type(self).__name__}: {line}" if i == 0 else f"  {line}"
                for i, line in enumerate(str(self).splitlines())]


class _NotImplementedYet(ExerciseFailure):
    """The learner's function still raises ``NotImplementedError`` (the exercise stub)."""


class NotDone:
    """What a checker returns for an exercise not implemented yet.

    Its plain-text form is ``0``: nbgrader reads a grade cell's last value as its points, so an
    untouched exercise scores 0 without raising, and a notebook run top to bottom carries on past
    it. Front ends that show HTML (JupyterLab, Colab) show "0 points (not implemented yet)".
    """

    points = 0

    def __init__(self, fn_name: str) -> None:
        self.fn_name = fn_name

    def __repr__(self) -> str:
        return "0"

    def _repr_html_(self) -> str:
        return f"<b>0 points</b>: <code>{self.fn_name}</code> is not implemented yet"


def _exercise_check(check: Callable) -> Callable:
    """Wrap a checker: an exercise not implemented yet prints the reason and returns NotDone."""
    @functools.wraps(check)
    def run(*args: object, **kwargs: object) -> object:          # a TypeError then names the checker
        try:
            return check(*args, **kwargs)
        except _NotImplementedYet as not_yet:
            print(f"✗ {not_yet}")
            return NotDone(not_yet.fn_name)
    return run


_TORCH_DIR = os.path.dirname(torch.__file__)
# Code that is not the learner's: torch, this library, the standard library and installed packages.
_LIBRARY_DIRS = tuple({_TORCH_DIR, os.path.dirname(__file__),
                       *(sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib"))})


def _learner_raised(error: BaseException) -> bool:
    """True when a ``raise`` statement in the learner's own code raised ``error`` (the exercise stub,
    or a case not written yet); False when torch or another library did (an operation that does not
    support its inputs, an ``nn.Module`` without ``forward``), which is a crash, not an unfinished stub."""
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if code.co_filename.startswith(_LIBRARY_DIRS):
        return False
    ops = {ins.offset: ins.opname for ins in dis.get_instructions(code)}
    return ops.get(tb.tb_lasti, "RAISE_VARARGS") == "RAISE_VARARGS"   # else a call into C code raised it


def _learner_line(error: Exception) -> str:
    """Where in the learner's code ``error`` happened (the last frame outside torch)."""
    frames = traceback.extract_tb(error.__traceback__)[1:]             # [0] is _call itself
    own = [f for f in frames if not f.filename.startswith(_TORCH_DIR)] or frames
    return f"\nat line {own[-1].lineno} of {own[-1].name}: {own[-1].line}" if own else ""


def _call(fn: Callable, fn_name: str, *args: object, where: str = "",
          hint: Callable[[Exception], str | None] | None = None) -> object:
    """Call the learner's ``fn``; turn "not implemented" and crashes into plain messages.

    ``where`` names the case (shapes, sparsity, keep ...); ``hint(error)`` may return advice for
    the exception that a usual mistake causes (or None).
    """
    if isinstance(fn, NotDone):
        raise ExerciseFailure(f"expected your function {fn_name}, got what a check returned (NotDone): was "
                              f"{fn_name} = check_...({fn_name}) run? Run the cell that defines {fn_name} again.")
    if not callable(fn):
        raise ExerciseFailure(f"expected your function {fn_name}, got {type(fn).__name__} {fn!r}")
    try:
        return fn(*args)
    except NotImplementedError as error:
        if not _learner_raised(error):
            raise ExerciseFailure(_crash_message(error, fn_name, where, len(args), hint)) from error
        raised = f"NotImplementedError({str(error)!r})" if str(error) else "NotImplementedError"
        not_yet = _NotImplementedYet(
            f"{fn_name} is not implemented yet: it raised {raised}" + (f" for {where}" if where else "")
            + ". Replace `raise NotImplementedError()` with your code, run that cell, then run this check again.\n"
            "The lesson goes on without it: where a later cell needs this function, it uses the library's own."
        )
        not_yet.fn_name = fn_name
        raise not_yet from None
    except Exception as error:
        raise ExerciseFailure(_crash_message(error, fn_name, where, len(args), hint)) from error


def _crash_message(error: Exception, fn_name: str, where: str, n_args: int,
                   hint: Callable[[Exception], str | None] | None) -> str:
    """What the learner's function raised, for which case, at which of their lines, and a hint."""
    case = f" for {where}" if where else ""
    tip = hint(error) if hint is not None else None
    if isinstance(error, NotImplementedError):
        tip = ("this NotImplementedError comes from torch (or another library), not from a `raise` of yours: "
               "the operation on that line does not support these inputs (a sparse tensor, this dtype, a "
               "module without forward, ...).")
    if isinstance(error, TypeError) and len(traceback.extract_tb(error.__traceback__)) == 1:
        tip = f"the check calls {fn_name} with {n_args} arguments; give your function exactly those parameters."
    text = str(error).split("\n\n", 1)[0]          # torch's dispatcher errors go on with pages of backends
    if len(text) > 300 and ". " in text:
        text = text.split(". ", 1)[0] + ". (...)"
    return (f"{fn_name} raised {type(error).__name__}{case}: {text}{_learner_line(error)}"
            + (f"\nHint: {tip}" if tip else ""))


def _passed(fn_name: str, n_cases: int) -> None:
    print(f"✓ {fn_name} passes all {n_cases} checks.")


def _values(t: torch.Tensor) -> str:
    """``t``'s entries as nested lists, each number in its shortest exact form (0.05, not 0.0500000007)."""
    def show(a: np.ndarray) -> str:
        return str(a[()]) if a.ndim == 0 else "[" + ", ".join(show(row) for row in a) + "]"
    text = show(t.detach().cpu().numpy())
    return text if t.dtype == torch.float32 else f"{text} ({str(t.dtype).removeprefix('torch.')})"


def _fmt(x: float) -> str:
    """All the digits of a float, so two different numbers never print alike (0.9 vs 0.8999999761581421)."""
    return repr(float(x))


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-d numpy array"
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    module, name = type(value).__module__, type(value).__name__
    return f"a Python {name}" if module == "builtins" else f"numpy {name}" if module == "numpy" else f"a {name}"


def _got(value: object) -> str:
    """What came back, in words: its kind and value (or a hint when it is None)."""
    if value is None:
        return "None (is a `return` missing?)"
    if isinstance(value, NotDone):
        return "NotDone, what a check returns for an exercise not done yet (not the number 0)"
    if not isinstance(value, torch.Tensor | np.ndarray | np.generic) and type(value).__module__ != "builtins":
        return _shown(value)                                    # e.g. Linear(in_features=2, ...)
    return f"{_kind(value)} {_shown(value)}"


def _shown(value: object) -> str:
    """``value`` as the learner would write it: 2.0 for a numpy float too (not np.float64(2.0))."""
    size = value.numel() if isinstance(value, torch.Tensor) else value.size if isinstance(value, np.ndarray) else 1
    if size > 6:
        return "(values not shown)"
    text = str(value) if isinstance(value, np.generic) else repr(value)
    return text if len(text) <= 80 else text[:77].replace("\n", " ") + "..."


def _rounded_to(got: float, expected: float) -> int | None:
    """The number of decimals ``expected`` was rounded to, if ``got`` is that (else None)."""
    return next((d for d in range(1, 7) if got == round(expected, d) != expected), None)


def _as_number(result: object, fn_name: str, where: str) -> float:
    """A learner's number as a float: Python, numpy (any float or int type) or a one-entry tensor."""
    if isinstance(result, torch.Tensor) and result.numel() == 1 and result.dtype != torch.bool \
            and not result.dtype.is_complex:
        return float(result.item())
    if isinstance(result, np.ndarray) and result.size == 1 and result.dtype.kind in "fiu":
        return float(result.item())
    if isinstance(result, numbers.Real) and not isinstance(result, bool | np.bool_):
        return float(result)
    raise ExerciseFailure(f"{where}: {fn_name} should return one number (a float), got {_got(result)}.")


def _shared_tensor(new: nn.Module, new_name: str, old: dict[str, torch.Tensor]) -> str | None:
    """Name the first parameter of ``new`` that is, or shares memory with, one of ``old``."""
    for name, p in new.named_parameters():
        for old_name, q in old.items():
            if p is q:
                return f"{new_name}.{name} is {old_name} itself"
            if p.untyped_storage().data_ptr() == q.untyped_storage().data_ptr():
                return f"{new_name}.{name} shares its memory with {old_name}"
    return None


def _require_dtype(where: str, modules: dict[str, nn.Module], dtype: torch.dtype) -> None:
    """Every parameter of ``modules`` must keep the original ``dtype`` (a slim model computes the same way)."""
    for module_name, module in modules.items():
        for name, p in module.named_parameters():
            if p.dtype != dtype:
                raise ExerciseFailure(f"{where}: {module_name}.{name} is {str(p.dtype).removeprefix('torch.')}, the "
                                      f"original is {str(dtype).removeprefix('torch.')}: keep its dtype (e.g. "
                                      "nn.Linear(..., dtype=layer.weight.dtype)).")


_ALIAS_HINT = ("the new module must own new tensors, or fine-tuning the slim model would change the "
               "original too. Copy the kept slices: indexing with a list or tensor of indices makes a copy, "
               "then .copy_() into a fresh layer under torch.no_grad() (also when every unit is kept).")


def _module_hint(error: Exception) -> str | None:
    """Advice for the exceptions that building a smaller layer usually raises."""
    text = str(error)
    if "leaf Variable that requires grad" in text:
        return "copy into a new layer's parameters inside `with torch.no_grad():`."
    if "cannot assign" in text and "as parameter" in text:
        return ("a module's weight must be an nn.Parameter: copy into it with .copy_() under "
                "torch.no_grad(), or wrap the tensor in nn.Parameter(...).")
    return None


def _is_shape_error(error: Exception) -> bool:
    text = str(error)
    return isinstance(error, IndexError) or (isinstance(error, RuntimeError) and any(
        word in text for word in ("size", "shape", "out of bounds", "index")))


def _count_zeros_cases() -> list[torch.Tensor]:
    return [torch.tensor([0.0, 1.5, 0.0, -2.0]),
            torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
            torch.tensor([[1.0, -1.0, 0.5], [0.0, 3.0, 0.0]]),
            torch.tensor([0.0, 0.05, -0.3, -0.0, 1e-8, 0.45, 2.0, 1e-30]),       # small non-zeros; -0.0 is 0
            torch.tensor([[0.0, 1e-300], [-0.0, 0.25]], dtype=torch.float64),     # 1e-300 is 0 in float32
            torch.zeros(2, 0)]


def _count_mistake(t: torch.Tensor, got: object, expected: int) -> str | None:
    """Name the mistake behind ``got`` for tensor ``t`` (or None when ``got`` is right)."""
    where = f"for {_values(t)}" if t.numel() else f"for an empty tensor of shape {tuple(t.shape)}"
    if isinstance(got, bool) or not isinstance(got, int | np.integer):
        fraction = (isinstance(got, float | np.floating) and t.numel() and not got.is_integer()
                    and abs(got - expected / t.numel()) < 1e-6)
        return (f"{where} expected the int {expected}, got {_got(got)}"
                + ("; that is the FRACTION of zeros, count them instead" if fraction else "")
                + ". Return a Python int, e.g. with .item() or int(...).")
    if got == expected:
        return None
    if got == t.numel() - expected:
        return (f"{where} you returned {got}, the number of NON-zero entries; count the zeros "
                f"instead (expected {expected}).")
    near = t[t != 0].flatten()
    near = near[near.abs().argsort()][:got - expected]           # the non-zeros closest to 0
    if expected < got and near.numel() == got - expected and bool(near.abs().max() < 1):
        return (f"{where} expected {expected} zeros, got {got}: you also counted entries that are close to "
                f"zero but not zero ({', '.join(str(v) for v in near.numpy())}). A pruned weight is "
                "exactly 0: count t == 0, with no tolerance and no conversion to another dtype.")
    return f"{where} expected {expected} zeros, got {got!r}."


@_exercise_check
def check_count_zeros(count_zeros: Callable[[torch.Tensor], int]) -> NotDone | None:
    """Lesson 00's warm-up: ``count_zeros(t)`` returns how many entries of ``t`` are exactly 0,
    as a Python int (a numpy integer is accepted too; a float, a tensor or a numpy array is not)."""
    cases = _count_zeros_cases()
    for t in cases:
        before = t.clone()
        where = f"t = {_values(t)}" if t.numel() else f"t of shape {tuple(t.shape)}"
        got = _call(count_zeros, "count_zeros", t, where=where)
        if not torch.equal(t, before):
            raise ExerciseFailure(f"{where}: count_zeros changed the tensor it was given; it should only read it.")
        mistake = _count_mistake(t, got, int((t == 0).sum()))
        if mistake:
            raise ExerciseFailure(mistake)
    _passed("count_zeros", len(cases))


ROUNDING = ("Python's round(sparsity * n), which sends halves to the even neighbour (round(2.5) = 2, "
            "round(3.5) = 4), as torch.nn.utils.prune and the library do")
TIES = ("with tied magnitudes at the cut-off, any of them may be pruned as long as the count is k: the library "
        "prunes the ones first in weight.flatten() order, torch.topk may pick others, and both are right")


def _other_roundings(x: float) -> dict[str, int]:
    """What the usual wrong rounding rules make of ``x = sparsity * n`` where they differ from round(x)."""
    if abs(x - round(x)) < 1e-9:                     # a whole number up to float noise: all rules agree
        return {}
    rules = {"floor (int(x) or math.floor)": math.floor(x), "ceil (math.ceil)": math.ceil(x),
             "round-half-up (int(x + 0.5))": math.floor(x + 0.5)}
    return {name: value for name, value in rules.items() if value != round(x)}


def _rounding_mistake(sparsity: float, n: int, got: int) -> str | None:
    """Say which usual rounding rule turns ``sparsity * n`` into ``got`` (None when none does)."""
    x = sparsity * n
    names = [name for name, value in _other_roundings(x).items() if value == got]
    if not names:
        return None
    return (f" {sparsity} x {n} = {x:g}, and you rounded it with {' or '.join(names)} to {got}; the convention "
            f"is {ROUNDING}: round({x:g}) = {round(x)}.")


def _magnitude_cases() -> list[tuple[torch.Tensor, float]]:
    """Weights of several shapes and dtypes; fractional sparsity * n (both kinds of halves); ties."""
    g = torch.Generator().manual_seed(1234)
    tied = torch.tensor([[0.5, -0.5, 0.25, 0.75], [0.25, -0.5, 0.75, -0.25]])      # |w|: three 0.25, three 0.5
    return [
        (torch.tensor([[0.3, -0.9, 0.05, 0.6], [-0.2, 0.8, -0.7, 0.1]]), 0.5),
        (torch.randn(50, 100, generator=g), 0.3),
        (torch.randn(8, 3, 3, 3, generator=g), 0.75),
        (torch.randn(10, generator=g), 0.0),
        (torch.randn(7, 5, generator=g), 1.0),
        (torch.randn(20, 30, generator=g), 0.9),
        (torch.randn(5, generator=g), 0.5),                       # 2.5 -> 2 (ceil and half-up say 3)
        (torch.randn(7, generator=g), 0.5),                       # 3.5 -> 4 (floor says 3)
        (torch.randn(2, 5, generator=g), 0.33),                   # 3.3 -> 3 (ceil says 4)
        (torch.randn(10, generator=g), 0.77),                     # 7.7 -> 8 (floor says 7)
        (torch.randn(6, 5, generator=g, dtype=torch.float64), 0.4),
        (tied, 0.5),                                              # k = 4: the three 0.25s and one 0.5
        (torch.tensor([[0.1, -0.1, 0.1], [-0.1, 0.1, 0.1]]), 0.5),   # every magnitude tied
    ]


def _prunes_smallest(keep: torch.Tensor, scores: torch.Tensor, k: int) -> bool:
    """Does the flat bool ``keep`` prune exactly ``k`` entries, none with a larger score than a kept one?"""
    pruned = ~keep
    if int(pruned.sum()) != k:
        return False
    return k in (0, keep.numel()) or bool(scores[pruned].max() <= scores[keep].min())


def _as_keep_mask(result: object, weight: torch.Tensor, where: str) -> torch.Tensor:
    """Turn a learner's mask into bool (True = keep), or explain why it is not a mask."""
    if not isinstance(result, torch.Tensor):
        raise ExerciseFailure(f"{where}: expected a torch.Tensor mask, got {_got(result)}.")
    if result.shape != weight.shape:
        raise ExerciseFailure(f"{where}: the mask has shape {tuple(result.shape)} but the weight has "
                              f"shape {tuple(weight.shape)}; a mask must match the weight entry "
                              "for entry (try .view_as(weight)).")
    if result.dtype != torch.bool:
        odd = result[(result != 0) & (result != 1)]
        if odd.numel():
            raise ExerciseFailure(f"{where}: a mask holds only 0/1 (or False/True), but yours "
                                  f"contains {odd.flatten()[0].item()!r}. Did you return the "
                                  "pruned weights instead of the mask?")
    return result.bool()


def _wrong_count(weight: torch.Tensor, sparsity: float, zeros: int) -> str:
    """Explain a mask that prunes ``zeros`` entries instead of round(sparsity * n)."""
    scores = weight.detach().abs().flatten()
    n, k = scores.numel(), round(sparsity * scores.numel())
    text = f"expected round({sparsity} x {n}) = {k} zeros, your mask has {zeros}."
    if k == 0:
        return text + " sparsity=0 must prune nothing (kthvalue needs k >= 1, so handle k = 0 on its own)."
    rounding = _rounding_mistake(sparsity, n, zeros)
    if rounding:
        return text + rounding
    if zeros == n - k:
        return text + (f" That is n - k = {n} - {k}: you pruned 1 - sparsity of the weights; sparsity is the fraction "
                       "to PRUNE (the mask keeps the other 1 - sparsity).")
    t = scores.kthvalue(k).values
    tied = int((scores == t).sum())
    if tied > 1 and zeros in (int((scores <= t).sum()), int((scores < t).sum())):
        return (text + f" {tied} weights tie at |w| = {_fmt(t)}, the k-th smallest magnitude, so a threshold "
                f"(|w| > t or |w| >= t) prunes all of them or none. {TIES[0].upper() + TIES[1:]}. Rank "
                "with torch.topk(scores, k, largest=False) or a sort, not with a threshold.")
    if zeros == k - 1 and zeros == int((scores < t).sum()):
        return (text + " With a threshold t = kthvalue(k), the k-th smallest magnitude is itself pruned: "
                "keep |w| > t (not >=).")
    return text


def _mask_mistake(mask: torch.Tensor, weight: torch.Tensor, sparsity: float) -> str | None:
    """Name what is wrong with the bool keep-``mask`` (None when it is a right answer)."""
    scores, keep = weight.detach().abs().flatten(), mask.flatten()
    n, k = scores.numel(), round(sparsity * scores.numel())
    if _prunes_smallest(keep, scores, k):
        return None
    inverted = _prunes_smallest(~keep, scores, k)
    reversed_order = k not in (0, n) and _prunes_smallest(keep, -scores, k)
    if inverted and reversed_order:                        # the same mask when k = n / 2
        return ("your mask is exactly inverted: it kept the SMALLEST-magnitude weights and pruned the largest. "
                "1/True means KEEP, 0/False means prune, and magnitude pruning keeps the largest |w|.")
    if reversed_order:
        return ("you kept the SMALLEST-magnitude weights and pruned the largest; magnitude pruning keeps the "
                "largest |w|.")
    if inverted:
        return "your mask is exactly inverted. Here 1/True means KEEP and 0/False means prune."
    if k not in (0, n) and _prunes_smallest(keep, weight.detach().flatten(), k):
        return ("you ranked weights by their signed value, so large negative weights were pruned; rank by "
                "magnitude with .abs().")
    zeros = int((~keep).sum())
    if zeros != k:
        return _wrong_count(weight, sparsity, zeros)
    lost = int(torch.where(~keep, scores, -1.0).argmax())         # the largest pruned magnitude ...
    kept = int(torch.where(keep, scores, math.inf).argmin())      # ... is above the smallest kept one
    flat = weight.detach().cpu().numpy().ravel()                  # numpy prints each entry's shortest form
    return (f"the right number of zeros, but your mask prunes weight {str(flat[lost])} (flat index {lost}) "
            f"and keeps the smaller-magnitude {str(flat[kept])} (flat index {kept}); every pruned |w| must be "
            f"<= every kept |w|. ({TIES[0].upper() + TIES[1:]}.)")


@_exercise_check
def check_magnitude_mask(magnitude_mask_fn: Callable[[torch.Tensor, float], torch.Tensor]) -> NotDone | None:
    """Lesson 01's exercise: ``magnitude_mask(weight, sparsity)`` keeps the largest |weight|.

    The reference is the library's :func:`~lessons_lib.sparsity.magnitude_mask` (and
    ``prune.l1_unstructured``): exactly ``round(sparsity * n)`` entries are pruned (Python's round,
    halves to even) and none of them is larger in magnitude than a kept one; among tied
    magnitudes at the cut-off, any choice is accepted.
    """
    cases = _magnitude_cases()
    for weight, sparsity in cases:
        shown = _values(weight) if weight.numel() <= 12 else f"of shape {tuple(weight.shape)}"
        where = f"weight {shown}, sparsity={sparsity}"
        before = weight.clone()
        result = _call(magnitude_mask_fn, "magnitude_mask", weight, sparsity, where=where, hint=_kthvalue_hint)
        if not torch.equal(weight, before):
            raise ExerciseFailure(f"{where}: magnitude_mask changed the weight in place; build a new "
                                  "mask tensor and leave the weight as it was.")
        mistake = _mask_mistake(_as_keep_mask(result, weight, where), weight, sparsity)
        if mistake:
            raise ExerciseFailure(f"{where}: {mistake}")
    _passed("magnitude_mask", len(cases))


def _kthvalue_hint(error: Exception) -> str | None:
    """Advice for the exceptions that computing k and calling kthvalue / topk usually raise."""
    text = str(error)
    if "kthvalue" in text and "out of range" in text:
        return ("sparsity=0 prunes nothing: handle k = 0 before calling kthvalue (it counts from 1, so k = 0 "
                "has no k-th smallest value).")
    if "must be int, not float" in text:
        return f"k must be an int: k = round(sparsity * n) ({ROUNDING})."
    if "selected index k out of range" in text:
        return "topk's k must be between 0 and the number of entries: k = round(sparsity * n)."
    if "Sizes of tensors must match" in text:
        return "flatten each tensor before torch.cat: torch.cat([w.abs().flatten() for w in weights])."
    if isinstance(error, AttributeError) and "'list' object" in text:
        return "weights is a list of tensors: concatenate their flattened magnitudes first (torch.cat)."
    return None


def _close(got: float, expected: float, rel: float = 1e-6) -> bool:
    """Equal up to float32 precision (relative 1e-6); an expected 0 must come back as 0."""
    return abs(got - expected) <= rel * abs(expected)


def _global_cases() -> list[tuple[list[torch.Tensor], float]]:
    """Layers of different scales; fractional sparsity * N (both kinds of halves); ties; float64."""
    g = torch.Generator().manual_seed(2024)
    layers = [torch.randn(8, 6, generator=g), 0.2 * torch.randn(12, 8, generator=g), torch.randn(3, 12, generator=g)]
    nine = [torch.randn(3, 2, generator=g), 0.5 * torch.randn(3, generator=g)]                 # N = 9
    eleven = [torch.randn(2, 3, generator=g), 0.5 * torch.randn(5, generator=g)]               # N = 11
    tied = [torch.tensor([[0.5, -0.5], [0.125, 0.375]]), torch.tensor([-0.125, 0.5, 0.375, -0.375])]
    doubles = [torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(7, generator=g, dtype=torch.float64)]
    return [(layers, 0.5), (layers, 0.9), (layers[:2], 0.25), ([layers[1]], 0.7), (layers, 0.0),
            (nine, 0.5),            # 4.5 -> 4 (ceil and half-up say 5)
            (eleven, 0.5),          # 5.5 -> 6 (floor says 5)
            (eleven, 0.3),          # 3.3 -> 3 (ceil says 4)
            (eleven, 0.7),          # 7.7 -> 8 (floor says 7)
            (tied, 0.25), (tied, 0.5),
            (doubles, 0.6)]


def _threshold_mistake(weights: list[torch.Tensor], sparsity: float, got: float) -> str:
    """Name the usual mistake that returns ``got`` instead of the global threshold."""
    scores = torch.cat([w.abs().flatten() for w in weights]).sort().values
    n, k = scores.numel(), round(sparsity * scores.numel())

    def kth(j: int) -> float:
        return scores[j - 1].item() if 1 <= j <= n else math.nan
    if k == 0:
        return "sparsity=0 prunes nothing, so the threshold is 0.0: return 0.0 when k = 0 (before calling kthvalue)."
    rules = _other_roundings(sparsity * n)
    for j in sorted(set(rules.values())):
        if _close(got, kth(j)):
            name = " or ".join(rule for rule, value in rules.items() if value == j)
            return (f"you took the {j}-th smallest magnitude: {sparsity} x {n} = {sparsity * n:g} rounded with {name}; "
                    f"the convention is {ROUNDING}: k = round({sparsity * n:g}) = {k}.")
    per_layer = [w.abs().flatten().kthvalue(max(1, round(sparsity * w.numel()))).values.item() for w in weights]
    if len(weights) > 1 and _close(got, sum(per_layer) / len(per_layer)):
        return ("you averaged one threshold per layer; a global threshold ranks ALL weights together: "
                "concatenate them first (torch.cat of flattened |w|).")
    if len(weights) > 1 and any(_close(got, t) for t in per_layer):
        return "that is one layer's own threshold; a global threshold ranks the weights of ALL layers together."
    signed = torch.cat([w.flatten() for w in weights]).sort().values[k - 1].item()
    if _close(got, signed):
        return "you ranked signed values; rank magnitudes with .abs()."
    distinct = scores.unique()
    if k <= distinct.numel() < n and _close(got, distinct[k - 1].item()):
        return ("you ranked the distinct magnitudes (unique()), so tied weights counted once; every weight "
                f"counts: the k-th smallest of all N = {n} magnitudes (tied ones included).")
    if _close(got, kth(k - 1)) or _close(got, kth(k + 1)):
        return (f"off by one: you returned the {'(k-1)' if got < kth(k) else '(k+1)'}-th smallest magnitude; the "
                f"threshold is the k-th, k = round({sparsity} x {n}) = {k} (kthvalue counts from 1; a sorted "
                "tensor's index k - 1).")
    if _close(got, torch.quantile(scores.double(), sparsity).item()):
        return ("torch.quantile interpolates between neighbouring magnitudes; the threshold is an actual "
                f"magnitude, the k-th smallest with k = round({sparsity} x {n}) = {k}.")
    if got == k:
        return f"you returned k = {k}, how many weights go; return the magnitude of the k-th smallest instead."
    if _close(got, kth(k) ** 2):
        return "you returned a squared magnitude; rank and return |w| (w.abs())."
    decimals = _rounded_to(got, kth(k))
    return f"you rounded the result to {decimals} decimals; return it as computed." if decimals else ""


@_exercise_check
def check_global_threshold(global_threshold_fn: Callable[[list[torch.Tensor], float], float]) -> NotDone | None:
    """Lesson 02's exercise: ``global_threshold(weights, sparsity)`` returns the magnitude of the
    ``round(sparsity * N)``-th smallest |w| over all tensors in ``weights`` (0.0 when sparsity is 0).

    The reference is :func:`lessons_lib.pruning.global_threshold` (Python's round, halves to even;
    with ties, the k-th smallest value is the same whichever tied entry is counted). Any number
    type is accepted (Python, numpy, a one-entry tensor), equal within float32 precision.
    """
    from .pruning import global_threshold

    cases = _global_cases()
    for weights, sparsity in cases:
        n = sum(w.numel() for w in weights)
        where = f"weights of shapes {[tuple(w.shape) for w in weights]} (N = {n}), sparsity={sparsity}"
        if weights[0].dtype != torch.float32:
            where += f", dtype {str(weights[0].dtype).removeprefix('torch.')}"
        before = [w.clone() for w in weights]
        result = _call(global_threshold_fn, "global_threshold", list(weights), sparsity, where=where,
                       hint=_kthvalue_hint)
        if not all(torch.equal(w, b) for w, b in zip(weights, before, strict=True)):
            raise ExerciseFailure(f"{where}: global_threshold changed the weights it was given; only read them.")
        got, expected = _as_number(result, "global_threshold", where), global_threshold(weights, sparsity)
        if not _close(got, expected):
            mistake = _threshold_mistake(weights, sparsity, got)
            raise ExerciseFailure(f"{where}: expected {_fmt(expected)}, got {_fmt(got)}"
                                  + (f": {mistake}" if mistake else "."))
    _passed("global_threshold", len(cases))


def _cubic_mistakes(step: float, final_sparsity: float, start: float, end: float) -> dict[str, float]:
    """What the usual mistakes return at this point: explanation -> value."""
    def clamp(p: float) -> float:
        return min(max(p, 0.0), 1.0)

    def cubic(p: float) -> float:
        return final_sparsity * (1.0 - (1.0 - p) ** 3)
    raw = (step - start) / (end - start)
    p = clamp(raw)
    right = "final_sparsity * (1 - (1 - progress)**3)"
    return {
        f"you returned final_sparsity * progress**3, which rises slowly at first; the cubic schedule rises "
        f"FAST first: {right}.":
            final_sparsity * p ** 3,
        f"you returned a straight line (final_sparsity * progress); the schedule is cubic: {right}.":
            final_sparsity * p,
        f"your schedule goes DOWN (final_sparsity * (1 - progress)**3); sparsity grows from 0 to "
        f"final_sparsity: {right}.":
            final_sparsity * (1 - p) ** 3,
        "you used a square, (1 - progress)**2; the exponent is 3.": final_sparsity * (1 - (1 - p) ** 2),
        "you measured progress from step 0; progress = (step - start) / (end - start).": cubic(clamp(step / end)),
        "you divided by end; progress = (step - start) / (end - start).": cubic(clamp((step - start) / end)),
        "you divided with //, which rounds progress down to a whole number; use /.":
            cubic(clamp((step - start) // (end - start))),
        "outside [start, end] the sparsity stays at 0 (before) or final_sparsity (after): clamp progress to [0, 1].":
            cubic(raw),
        "you returned a percentage; return a fraction in [0, 1].": 100 * cubic(p),
    }


def _cubic_hint(error: Exception) -> str | None:
    if isinstance(error, TypeError) and "Tensor" in str(error):
        return ("cubic_sparsity gets Python numbers, not tensors: clamp with min(max(progress, 0.0), 1.0) "
                "(or turn them into tensors first).")
    return None


@_exercise_check
def check_cubic_sparsity(cubic_fn: Callable[[float, float, float, float], float]) -> NotDone | None:
    """Lesson 03's exercise: ``cubic_sparsity(step, final_sparsity, start, end)`` is Zhu & Gupta's
    ``final_sparsity * (1 - (1 - progress) ** 3)`` with ``progress = (step - start) / (end - start)``
    clamped to [0, 1] (sparsity 0 before ``start``, ``final_sparsity`` from ``end`` on).

    The reference is :func:`lessons_lib.schedules.cubic_sparsity`; an answer within 1e-6 passes
    (float32 arithmetic is fine), returned as any number type (Python, numpy, one-entry tensor).
    """
    from .schedules import cubic_sparsity

    points = [(0, 0.9, 0, 10), (10, 0.9, 0, 10), (5, 0.9, 0, 10), (2.5, 0.8, 0, 10), (7, 0.95, 2, 12),
              (-3, 0.9, 0, 10), (15, 0.9, 0, 10), (1, 0.5, 1, 5), (1, 0.9, 0, 3), (4, 0.7, 3, 9), (1, 0.9, 2, 12)]
    for step, final_sparsity, start, end in points:
        where = f"cubic_sparsity(step={step}, final_sparsity={final_sparsity}, start={start}, end={end})"
        result = _call(cubic_fn, "cubic_sparsity", step, final_sparsity, start, end, where=where, hint=_cubic_hint)
        got, expected = _as_number(result, "cubic_sparsity", where), cubic_sparsity(step, final_sparsity, start, end)
        if abs(got - expected) <= 1e-6:
            continue
        text = f"{where}: expected {_fmt(expected)}, got {_fmt(got)}"
        reason = next((why for why, value in _cubic_mistakes(step, final_sparsity, start, end).items()
                       if abs(value - expected) > 1e-6 and abs(got - value) <= 1e-6), None)
        rounded = _rounded_to(got, expected)
        if reason is None and rounded is not None:
            reason = f"you rounded the result to {rounded} decimals; return it as computed."
        raise ExerciseFailure(f"{text}: {reason}" if reason else
                              f"{text} (difference {abs(got - expected):.2g}; within 1e-6 passes).")
    _passed("cubic_sparsity", len(points))


def _random_pair(n_in: int, width: int, n_out: int, g: torch.Generator) -> tuple[nn.Linear, nn.Linear]:
    layer, next_layer = nn.Linear(n_in, width), nn.Linear(width, n_out)
    with torch.no_grad():
        for p in (*layer.parameters(), *next_layer.parameters()):
            p.copy_(torch.randn(p.shape, generator=g))
    return layer, next_layer


def _slim_pair_hint(error: Exception) -> str | None:
    if _is_shape_error(error):
        return ("a neuron of `layer` is a ROW of layer.weight (shape (width, in)): layer.weight[keep] and "
                "layer.bias[keep]; in `next_layer` it is a COLUMN: next_layer.weight[:, keep], and "
                "next_layer.bias stays whole.")
    return _module_hint(error)


def _slim_pair_diagnosis(layer: nn.Linear, next_layer: nn.Linear, keep: list[int],
                         small: nn.Linear, following: nn.Linear) -> str:
    """Which part of the returned pair is wrong, given that its outputs differ."""
    w, b = small.weight.detach(), None if small.bias is None else small.bias.detach()
    orders = [o for o in (keep, sorted(keep)) if torch.equal(w, layer.weight.detach()[o])]
    if not orders:
        return "small.weight should hold the kept neurons' rows, layer.weight[keep]."
    order = orders[0]
    if b is None or not torch.equal(b, layer.bias.detach()[order]):
        return "the kept neurons' biases must come along: small.bias = layer.bias[keep]."
    columns = following.weight.detach()
    if not torch.equal(columns, next_layer.weight.detach()[:, order]):
        if any(torch.equal(columns, next_layer.weight.detach()[:, o]) for o in (keep, sorted(keep))):
            return ("the next layer's columns are not in the same order as the first layer's rows: use the "
                    "same order (keep's) for both.")
        return "following.weight should be the kept neurons' columns, next_layer.weight[:, keep]."
    if following.bias is None or not torch.equal(following.bias.detach(), next_layer.bias.detach()):
        return ("the next layer keeps its whole bias (one entry per output; no output is removed): copy "
                "next_layer.bias into following.bias.")
    return "check that the next layer keeps its own bias and the columns in the same order as keep."


def _check_new_pair(where: str, layer: nn.Linear, next_layer: nn.Linear, keep: list[int], result: object) -> None:
    """Type, shapes, new tensors and outputs of what ``slim_pair`` returned."""
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(r, nn.Linear) for r in result)):
        raise ExerciseFailure(f"{where}: expected a tuple of two nn.Linear, got {_got(result)}.")
    small, following = result
    if small is layer or following is next_layer:
        raise ExerciseFailure(f"{where}: slim_pair returned the layers it was given; build new, smaller "
                              "nn.Linear layers and copy the kept slices into them.")
    (n_out, width), n_in, k = next_layer.weight.shape, layer.in_features, len(keep)
    if small.weight.shape != (k, n_in):
        hint = " You kept columns; a neuron is a ROW of layer.weight." if small.weight.shape == (width, k) else ""
        raise ExerciseFailure(f"{where}: the first layer's weight should be {(k, n_in)} (one row per kept "
                              f"neuron), got {tuple(small.weight.shape)}.{hint}")
    if following.weight.shape != (n_out, k):
        raise ExerciseFailure(f"{where}: the next layer must lose the same neurons as INPUT columns: weight "
                              f"{(n_out, k)} expected, got {tuple(following.weight.shape)}.")
    sizes = (small.in_features, small.out_features, following.in_features, following.out_features)
    if sizes != (n_in, k, k, n_out):
        raise ExerciseFailure(f"{where}: the new layers' weights have the right shapes, but they say "
                              f"Linear({sizes[0]}, {sizes[1]}) and Linear({sizes[2]}, {sizes[3]}); expected "
                              f"Linear({n_in}, {k}) and Linear({k}, {n_out}). Build them with nn.Linear(...) "
                              "rather than editing a copy of the old layers.")
    old = {f"layer.{n}": p for n, p in layer.named_parameters()} | \
          {f"next_layer.{n}": p for n, p in next_layer.named_parameters()}
    shared = _shared_tensor(small, "small", old) or _shared_tensor(following, "following", old)
    if shared:
        raise ExerciseFailure(f"{where}: {shared}; {_ALIAS_HINT}")
    _require_dtype(where, {"small": small, "following": following}, layer.weight.dtype)
    if not all(p.requires_grad for p in (*small.parameters(), *following.parameters())):
        raise ExerciseFailure(f"{where}: some returned parameters do not require grad, so fine-tuning could not "
                              "train them; copy into the new layers' own parameters instead.")
    x = torch.randn(16, n_in, generator=torch.Generator().manual_seed(k))
    with torch.no_grad():
        hidden = torch.relu(layer(x))
        hidden[:, [i for i in range(width) if i not in keep]] = 0
        expected, got = next_layer(hidden), following(torch.relu(small(x)))
    if not torch.allclose(got, expected, atol=1e-5):
        raise ExerciseFailure(f"{where}: the outputs differ from the original pair with the other neurons removed "
                              f"(max difference {float((got - expected).abs().max()):.3g}); "
                              + _slim_pair_diagnosis(layer, next_layer, keep, small, following))


@_exercise_check
def check_slim_pair(slim_pair_fn: Callable) -> NotDone | None:
    """Lesson 04's exercise: ``slim_pair(layer, next_layer, keep)`` returns new, smaller
    ``(nn.Linear(in, k), nn.Linear(k, out))`` that compute what the pair computes when the
    neurons not in ``keep`` are removed (their row, their bias and their column).

    The new layers must own new tensors (none shared with the given layers, also when every
    neuron is kept); ``keep`` may be in any order (rows and columns then follow that order).
    """
    g = torch.Generator().manual_seed(7)
    cases = [((6, 5, 3), [0, 2, 4]), ((10, 8, 4), [1, 2, 3, 7]), ((4, 3, 2), [0, 1, 2]), ((5, 6, 3), [5]),
             ((6, 7, 5), [6, 0, 3]), ((3, 4, 6), [0, 1, 2, 3])]
    with torch.random.fork_rng(devices=[]):                 # nn.Linear(...) draws from the global generator
        for (n_in, width, n_out), keep in cases:
            layer, next_layer = _random_pair(n_in, width, n_out, g)
            params = list((*layer.parameters(), *next_layer.parameters()))
            before = [p.detach().clone() for p in params]
            where = f"layer Linear({n_in}, {width}), next_layer Linear({width}, {n_out}), keep={keep}"
            result = _call(slim_pair_fn, "slim_pair", layer, next_layer, torch.tensor(keep), where=where,
                           hint=_slim_pair_hint)
            after = list((*layer.parameters(), *next_layer.parameters()))
            if len(after) != len(params) or any(a is not p or not torch.equal(a.detach(), b)
                                                 for a, p, b in zip(after, params, before, strict=True)):
                raise ExerciseFailure(f"{where}: slim_pair changed the layers it was given; build new nn.Linear "
                                      "layers and copy the kept slices into them.")
            _check_new_pair(where, layer, next_layer, keep, result)
    _passed("slim_pair", len(cases))


def _random_conv_bn(c_in: int, width: int, c_out: int, case: dict, g: torch.Generator
                    ) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    """A conv, its BatchNorm with trained-looking statistics, and the next conv; ``case`` may set
    ``kernel``, ``stride``, ``bias``, ``next_bias``, ``eps`` and ``momentum``."""
    k, stride = case.get("kernel", 3), case.get("stride", 1)
    conv = nn.Conv2d(c_in, width, k, stride=stride, padding=k // 2, bias=case.get("bias", False))
    bn = nn.BatchNorm2d(width, eps=case.get("eps", 1e-5), momentum=case.get("momentum", 0.1))
    next_conv = nn.Conv2d(width, c_out, 3, stride=stride, padding=1, bias=case.get("next_bias", False))
    with torch.no_grad():
        for p in (*conv.parameters(), *next_conv.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        bn.weight.copy_(torch.rand(width, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(width, generator=g) * 0.5)
        bn.running_mean.copy_(torch.randn(width, generator=g))
        bn.running_var.copy_(torch.rand(width, generator=g) * 2 + 0.5)
        bn.num_batches_tracked.fill_(100)
    return conv, bn.eval(), next_conv


def _conv_bn_hint(error: Exception) -> str | None:
    text = str(error)
    if "should contain" in text and "elements" in text:
        return ("a BatchNorm tensor still has one entry per ORIGINAL channel: the BatchNorm must shrink with its "
                "conv (weight, bias, running_mean and running_var, all indexed with keep).")
    if _is_shape_error(error):
        return ("a channel is dim 0 of conv.weight (shape (out, in, kh, kw)), one entry of each BatchNorm "
                "tensor, and dim 1 of next_conv.weight: conv.weight[keep], bn.weight[keep], ..., "
                "next_conv.weight[:, keep].")
    return _module_hint(error)


_CONV_SETTINGS = ("kernel_size", "stride", "padding", "dilation", "groups")


def _conv_bn_diagnosis(conv: nn.Conv2d, bn: nn.BatchNorm2d, next_conv: nn.Conv2d, keep: list[int],
                       new: tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]) -> str:
    """Which part of the returned triple is wrong, given that its outputs differ."""
    small, small_bn, following = new

    def same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
        return (a is None and b is None) or (a is not None and b is not None and torch.equal(a.detach(), b.detach()))
    for order in (keep, sorted(keep)):
        if same(small.weight, conv.weight[order]):
            break
    else:
        return "the new conv's weight should hold the kept filters: conv.weight[keep] (dim 0, the output channels)."
    if not same(small.bias, None if conv.bias is None else conv.bias[order]):
        return "the conv's bias entries of the kept channels must come along, in keep's order: conv.bias[keep]."
    if not (same(small_bn.weight, bn.weight[order]) and same(small_bn.bias, bn.bias[order])):
        return "the BatchNorm's weight (γ) and bias (β) must be sliced like the conv: bn.weight[keep], bn.bias[keep]."
    if not (same(small_bn.running_mean, bn.running_mean[order]) and same(small_bn.running_var, bn.running_var[order])):
        fresh = bool((small_bn.running_mean == 0).all()) and bool((small_bn.running_var == 1).all())
        return ("the running statistics were dropped: a new BatchNorm starts with mean 0 and variance 1, but "
                "in eval mode it normalises with the statistics it learned; slice them too: "
                "bn.running_mean[keep] and bn.running_var[keep]." if fresh else
                "the running statistics must be sliced like the conv: bn.running_mean[keep] and bn.running_var[keep].")
    if not same(following.weight, next_conv.weight[:, order]):
        return ("the next conv should keep the same channels as INPUTS, in the same order: "
                "next_conv.weight[:, keep] (dim 1).")
    if not same(following.bias, next_conv.bias):
        return "the next conv keeps its whole bias (one entry per output; no output is removed): copy next_conv.bias."
    return "compare the new modules' settings with the originals'."


def _conv_bn_settings(where: str, conv: nn.Conv2d, bn: nn.BatchNorm2d, next_conv: nn.Conv2d,
                      small: nn.Conv2d, small_bn: nn.BatchNorm2d, following: nn.Conv2d, k: int) -> None:
    """Everything but the numbers: settings, biases present, BatchNorm tensors one by one."""
    for name, old, new in (("conv", conv, small), ("next_conv", next_conv, following)):
        for setting in _CONV_SETTINGS:
            if getattr(new, setting) != getattr(old, setting):
                raise ExerciseFailure(f"{where}: the new {name} has {setting}={getattr(new, setting)}, the original "
                                      f"{getattr(old, setting)}: keep it (nn.Conv2d(..., {setting}={name}.{setting})).")
        if (new.bias is None) != (old.bias is None):
            has = "has no bias" if old.bias is None else "has a bias"
            raise ExerciseFailure(f"{where}: the original {name} {has}, the new one does not match: build it with "
                                  f"bias={name}.bias is not None.")
    if not small_bn.affine or not small_bn.track_running_stats:
        missing = "γ and β (affine=False)" if not small_bn.affine else "running statistics (track_running_stats=False)"
        raise ExerciseFailure(f"{where}: the new BatchNorm has no {missing}; build it as nn.BatchNorm2d(k) like the "
                              "original and copy the kept entries into it.")
    for name in ("weight", "bias", "running_mean", "running_var"):
        tensor = getattr(small_bn, name)
        if tensor is None or tensor.shape != (k,):
            got = "None" if tensor is None else f"shape {tuple(tensor.shape)}"
            raise ExerciseFailure(f"{where}: the BatchNorm must shrink with its conv to {k} channels; its {name} "
                                  f"has {got}: bn.{name}[keep].")
    if small_bn.num_features != k:
        raise ExerciseFailure(f"{where}: the BatchNorm's tensors have {k} entries but it says num_features="
                              f"{small_bn.num_features}: build it with nn.BatchNorm2d(k) rather than editing a copy.")
    if not isinstance(small_bn.weight, nn.Parameter) or not isinstance(small_bn.bias, nn.Parameter):
        raise ExerciseFailure(f"{where}: the BatchNorm's weight and bias must stay parameters, so that fine-tuning "
                              "trains them: copy into them with .copy_() under torch.no_grad().")
    for name in ("eps", "momentum"):
        if getattr(small_bn, name) != getattr(bn, name):
            raise ExerciseFailure(f"{where}: the new BatchNorm has {name}={getattr(small_bn, name)}, the original "
                                  f"{name}={getattr(bn, name)}: keep it (nn.BatchNorm2d(k, {name}=bn.{name})).")


def _check_new_conv_bn(where: str, given: tuple[nn.Module, ...], originals: tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d],
                       keep: list[int], result: object) -> None:
    """Type, shapes, settings, new tensors and outputs (eval mode) of what ``slim_conv_bn`` returned;
    ``originals`` are untouched copies of the modules the learner was given."""
    conv, bn, next_conv = originals
    kinds = (nn.Conv2d, nn.BatchNorm2d, nn.Conv2d)
    if not (isinstance(result, tuple) and len(result) == 3
            and all(type(r) is t for r, t in zip(result, kinds, strict=True))):
        got = (f"({', '.join(type(r).__name__ for r in result)})" if isinstance(result, tuple | list)
               else _got(result))
        raise ExerciseFailure(f"{where}: expected a tuple (Conv2d, BatchNorm2d, Conv2d), got {got}.")
    if any(r is m for r, m in zip(result, given, strict=True)):
        raise ExerciseFailure(f"{where}: slim_conv_bn returned a module it was given; build new, smaller modules "
                              "and copy the kept slices into them.")
    small, small_bn, following = result
    k, width, c_in, n_out = len(keep), conv.out_channels, conv.in_channels, next_conv.out_channels
    for name, module in (("conv", small), ("next_conv", following)):
        if not isinstance(module.weight, nn.Parameter) or module.weight.dim() != 4:
            raise ExerciseFailure(f"{where}: the new {name}'s weight should be a 4-d nn.Parameter, got "
                                  f"{_got(module.weight)}; build it with nn.Conv2d(...) and copy into it.")
    if small.weight.shape != (k, c_in, *conv.kernel_size):
        hint = (" You sliced dim 1 (the conv's INPUT channels); a channel this conv writes is dim 0."
                if small.weight.shape[:2] == (width, k) else "")
        raise ExerciseFailure(f"{where}: the new conv's weight should be {(k, c_in, *conv.kernel_size)} (one filter "
                              f"per kept channel), got {tuple(small.weight.shape)}.{hint}")
    if following.weight.shape != (n_out, k, *next_conv.kernel_size):
        shape = tuple(following.weight.shape)
        hint = (" You sliced its OUTPUT channels (dim 0); it reads the kept channels along dim 1."
                if shape[:2] == (k, width) else
                " Its input channels were not sliced: next_conv.weight[:, keep]." if shape[1] == width else "")
        raise ExerciseFailure(f"{where}: the next conv must lose the same channels as INPUTS: weight "
                              f"{(n_out, k, *next_conv.kernel_size)} expected, got {shape}.{hint}")
    if (small.in_channels, small.out_channels, following.in_channels, following.out_channels) != (c_in, k, k, n_out):
        raise ExerciseFailure(f"{where}: the weights have the right shapes but the convs say "
                              f"Conv2d({small.in_channels}, {small.out_channels}) and Conv2d({following.in_channels}, "
                              f"{following.out_channels}); build them with nn.Conv2d(...) rather than editing a copy.")
    _conv_bn_settings(where, conv, bn, next_conv, small, small_bn, following, k)
    old = {f"{m}.{n}": t for m, module in zip(("conv", "bn", "next_conv"), given, strict=True)
           for n, t in (*module.named_parameters(), *module.named_buffers())}
    for name, module in (("conv", small), ("bn", small_bn), ("next_conv", following)):
        shared = _shared_tensor(module, name, old) or next(
            (f"{name}.{n} shares its memory with the original's" for n, b in module.named_buffers()
             if any(b.untyped_storage().data_ptr() == q.untyped_storage().data_ptr() for q in old.values())), None)
        if shared:
            raise ExerciseFailure(f"{where}: {shared}; {_ALIAS_HINT}")
    _require_dtype(where, {"conv": small, "bn": small_bn, "next_conv": following}, conv.weight.dtype)
    if not all(p.requires_grad for m in result for p in m.parameters()):
        raise ExerciseFailure(f"{where}: some returned parameters do not require grad, so fine-tuning could not "
                              "train them; copy into the new modules' own parameters instead.")
    x = torch.randn(4, c_in, 6, 6, generator=torch.Generator().manual_seed(k))
    removed = [c for c in range(width) if c not in keep]
    modes = [m.training for m in result]
    try:
        for m in result:
            m.eval()
        with torch.no_grad():
            hidden = torch.relu(bn(conv(x)))
            hidden[:, removed] = 0
            expected = next_conv(hidden)
            got = following(torch.relu(small_bn(small(x))))
    except Exception as error:  # noqa: BLE001 -- whatever the learner's modules raise, say so plainly
        raise ExerciseFailure(f"{where}: the returned modules do not run one after the other "
                              f"({type(error).__name__}: {str(error)[:160]}); "
                              + (_conv_bn_hint(error) or "")) from error
    finally:
        for m, mode in zip(result, modes, strict=True):
            m.train(mode)
    if got.shape != expected.shape or not torch.allclose(got, expected, atol=1e-5):
        diff = "shapes differ" if got.shape != expected.shape else \
            f"max difference {float((got - expected).abs().max()):.3g}"
        raise ExerciseFailure(f"{where}: in eval mode the outputs differ from the original with the other channels "
                              f"removed ({diff}); " + _conv_bn_diagnosis(conv, bn, next_conv, keep, result))


def _describe_conv_bn(c_in: int, width: int, c_out: int, case: dict, keep: list[int]) -> str:
    """The case as the learner would build it, naming only settings that are not the defaults."""
    k, stride = case.get("kernel", 3), case.get("stride", 1)
    extra = f", stride={stride}" if stride != 1 else ""
    bn_extra = "".join(f", {n}={case[n]}" for n in ("eps", "momentum") if n in case)
    return (f"conv Conv2d({c_in}, {width}, {k}{extra}{', bias' if case.get('bias') else ''}), "
            f"bn BatchNorm2d({width}{bn_extra}), next_conv Conv2d({width}, {c_out}, 3{extra}"
            f"{', bias' if case.get('next_bias') else ''}), keep={keep}")


def _module_snapshot(module: nn.Module) -> tuple:
    """What the learner must leave alone: settings (in repr), mode and every tensor's values."""
    return repr(module), module.training, {k: v.clone() for k, v in module.state_dict().items()}


@_exercise_check
def check_slim_conv_bn(slim_conv_bn_fn: Callable) -> NotDone | None:
    """Lesson 06's exercise: ``slim_conv_bn(conv, bn, next_conv, keep)`` returns new, smaller
    ``(nn.Conv2d, nn.BatchNorm2d, nn.Conv2d)`` that compute, in eval mode, what
    ``next_conv(relu(bn(conv(x))))`` computes when the channels not in ``keep`` are removed: the
    conv's filters (dim 0, and its bias if it has one), all four BatchNorm tensors (γ, β, running
    mean and variance; ``eps`` and ``momentum`` kept) and the next conv's input channels (dim 1;
    its bias, if any, whole). Kernel size, stride and padding stay.

    The new modules must own new tensors; ``keep`` may be in any order (every slice then follows it).
    """
    g = torch.Generator().manual_seed(16)
    cases = [((3, 6, 4), {}, [0, 2, 5]), ((4, 8, 5), {"next_bias": True}, [1, 2, 3, 7]),
             ((2, 5, 3), {"bias": True}, [4, 0, 2]), ((3, 6, 2), {"kernel": 1, "stride": 2}, [5, 0, 3]),
             ((2, 4, 3), {"kernel": 5, "momentum": 0.3}, [0, 1, 2, 3]), ((3, 6, 4), {"eps": 1e-3}, [1, 4])]
    with torch.random.fork_rng(devices=[]):                 # nn.Conv2d(...) draws from the global generator
        for (c_in, width, c_out), case, keep in cases:
            modules = _random_conv_bn(c_in, width, c_out, case, g)
            originals = tuple(copy.deepcopy(m) for m in modules)
            before = [_module_snapshot(m) for m in modules]
            conv, bn, next_conv = modules
            where = _describe_conv_bn(c_in, width, c_out, case, keep)
            result = _call(slim_conv_bn_fn, "slim_conv_bn", *modules, torch.tensor(keep), where=where,
                           hint=_conv_bn_hint)
            after = [_module_snapshot(m) for m in modules]
            if any(a[:2] != b[:2] or a[2].keys() != b[2].keys() or any(not torch.equal(b[2][k], v)
                                                                       for k, v in a[2].items())
                   for a, b in zip(after, before, strict=True)):
                raise ExerciseFailure(f"{where}: slim_conv_bn changed the modules it was given (their tensors, "
                                      "settings or train/eval mode); build new ones and copy the kept slices "
                                      "into them.")
            _check_new_conv_bn(where, modules, originals, keep, result)
    _passed("slim_conv_bn", len(cases))


def _head_rows(keep: list[int], head_dim: int) -> torch.Tensor:
    return torch.cat([torch.arange(h * head_dim, (h + 1) * head_dim) for h in keep])


def _remove_heads_diagnosis(attn: Attention, keep: list[int], new: Attention) -> str:
    """Which part of the returned module is wrong, given that its outputs differ."""
    def same(a: torch.Tensor | None, b: torch.Tensor) -> bool:
        return a is not None and torch.equal(a.detach(), b.detach())
    for order in (keep, sorted(keep)):
        rows = _head_rows(order, attn.head_dim)
        if all(same(getattr(new, n).weight, getattr(attn, n).weight[rows]) for n in ("q", "k", "v")):
            break
    else:
        return (f"q, k and v should hold the kept heads' rows: head h owns rows h*head_dim:(h+1)*head_dim "
                f"(head_dim = {attn.head_dim} here), in the same order for all three.")
    if not all(same(getattr(new, n).bias, getattr(attn, n).bias[rows]) for n in ("q", "k", "v")):
        return "the kept heads' biases of q, k and v must come along (the same rows as the weights)."
    if not same(new.out.weight, attn.out.weight[:, rows]):
        return "out.weight should hold the kept heads' COLUMNS, in the same order as the rows of q, k and v."
    if not same(new.out.bias, attn.out.bias):
        return "out keeps its whole bias (one entry per model dimension): copy attn.out.bias."
    return "check that n_heads and head_dim of the new module match the rows you copied."


def _remove_heads_hint(error: Exception) -> str | None:
    if _is_shape_error(error):
        return ("head h owns rows h*head_dim:(h+1)*head_dim of q, k and v (and those columns of out), with "
                "head_dim = attn.head_dim (it need not be d_model // n_heads); indexing a weight with the head "
                "numbers themselves takes one row per head.")
    return _module_hint(error)


def _check_new_attention(where: str, attn: Attention, keep: list[int], result: object) -> None:
    """Type, shapes, new tensors and outputs of what ``remove_heads`` returned."""
    from .gpt import Attention

    if not isinstance(result, Attention) or result is attn:
        said = "the module it was given" if result is attn else _got(result)
        raise ExerciseFailure(f"{where}: expected a new Attention module, got {said}.")
    d_model, rows = attn.q.in_features, len(keep) * attn.head_dim
    if result.n_heads != len(keep) or result.head_dim != attn.head_dim:
        raise ExerciseFailure(f"{where}: the new module has n_heads={result.n_heads}, head_dim={result.head_dim}; "
                              f"expected n_heads={len(keep)}, head_dim={attn.head_dim} (heads go, their size stays).")
    for name in ("q", "k", "v"):
        shape = tuple(getattr(result, name).weight.shape)
        if shape != (rows, d_model):
            hint = (" You took one row per head number; head h owns rows h*head_dim:(h+1)*head_dim."
                    if shape == (len(keep), d_model) else "")
            raise ExerciseFailure(f"{where}: {name}.weight should be {(rows, d_model)} (head_dim rows per kept "
                                  f"head), got {shape}.{hint}")
    if result.out.weight.shape != (d_model, rows):
        raise ExerciseFailure(f"{where}: out.weight should be {(d_model, rows)}: the kept heads' COLUMNS, "
                              f"got {tuple(result.out.weight.shape)}.")
    shared = _shared_tensor(result, "new", {f"attn.{n}": p for n, p in attn.named_parameters()})
    if shared:
        raise ExerciseFailure(f"{where}: {shared}; {_ALIAS_HINT}")
    _require_dtype(where, {"new": result}, attn.q.weight.dtype)
    if not all(p.requires_grad for p in result.parameters()):
        raise ExerciseFailure(f"{where}: some returned parameters do not require grad, so fine-tuning could not "
                              "train them; copy into the new module's own parameters instead.")
    x = torch.randn(2, 5, d_model, generator=torch.Generator().manual_seed(len(keep)))
    mask = torch.zeros(attn.n_heads)
    mask[keep] = 1
    with torch.no_grad():
        expected, got = attn(x, mask), result(x)
    if not torch.allclose(got, expected, atol=1e-5):
        raise ExerciseFailure(f"{where}: outputs differ from the original with the other heads masked "
                              f"(max difference {float((got - expected).abs().max()):.3g}); "
                              + _remove_heads_diagnosis(attn, keep, result))


@_exercise_check
def check_remove_heads(remove_heads_fn: Callable) -> NotDone | None:
    """Lesson 09's exercise: ``remove_heads(attn, keep)`` returns a new ``gpt.Attention`` with only
    the heads in ``keep``, computing what ``attn`` computes with the other heads masked out.

    The new module must own new tensors (none shared with ``attn``, also when every head is
    kept); ``keep`` may be in any order.
    """
    from .gpt import Attention

    g = torch.Generator().manual_seed(11)
    cases = [(16, 4, 4, [0, 2]), (16, 4, 4, [3]), (16, 3, 4, [0, 1, 2]), (16, 4, 4, [1, 2, 3]),
             (16, 4, 4, [2, 0]), (12, 4, 5, [1, 3])]
    with torch.random.fork_rng(devices=[]):                 # Attention(...) draws from the global generator
        for d_model, n_heads, head_dim, keep in cases:
            attn = Attention(d_model=d_model, n_heads=n_heads, head_dim=head_dim)
            with torch.no_grad():
                for p in attn.parameters():
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            params, before = list(attn.parameters()), {k: v.clone() for k, v in attn.state_dict().items()}
            where = f"Attention(d_model={d_model}) with {n_heads} heads of size {head_dim}, keep={keep}"
            result = _call(remove_heads_fn, "remove_heads", attn, list(keep), where=where, hint=_remove_heads_hint)
            after = list(attn.parameters())
            if len(after) != len(params) or any(a is not p for a, p in zip(after, params, strict=True)) or \
                    attn.n_heads != n_heads or attn.state_dict().keys() != before.keys() or \
                    any(not torch.equal(before[k], v) for k, v in attn.state_dict().items()):
                raise ExerciseFailure(f"{where}: remove_heads changed the module it was given; build a new one.")
            _check_new_attention(where, attn, keep, result)
    _passed("remove_heads", len(cases))


def check_assignment(prune_to_budget_fn: Callable) -> Score:
    """Lesson 10's grader: run ``prune_to_budget(dense, task)`` on a fresh copy of the shipped
    dense GPT and the lessons' addition task, then score what it returns on problems it never
    saw, drawn afresh (see :func:`lessons_lib.assignment.grade`). Prints the score table and
    returns the :class:`~lessons_lib.assignment.Score`; a submission that cannot be scored, or
    that changed the grader or the library while it ran, raises :class:`ExerciseFailure` saying
    why (0 points).

    A ``prune_to_budget`` that still raises ``NotImplementedError`` (the untouched stub) is not an
    error: the checker says so and returns a 0-point Score (``Score.not_run``) whose ``points``,
    ``table()`` and ``summary()`` work, so the cells after the grade cell still run.

    While it runs, anything written to stderr (a progress bar printed as text) goes to stdout, and
    warnings are printed to stdout after it: nbgrader gives 0 points to a grade cell that writes
    to stderr."""
    from .assignment import Score, SubmissionRefused, grade

    caught = []
    try:
        with contextlib.redirect_stderr(sys.stdout), warnings.catch_warnings(record=True) as caught:
            score = grade(lambda dense, task: _call(prune_to_budget_fn, "prune_to_budget", dense, task))
    except _NotImplementedYet:
        print("✗ prune_to_budget is not implemented yet: replace `raise NotImplementedError()` with your "
              "code, run that cell, then run this check again. It scores 0 points until then; the cells "
              "below still run.")
        return Score.not_run("prune_to_budget is not implemented yet: nothing was graded")
    except SubmissionRefused as refused:
        raise ExerciseFailure(str(refused)) from None
    finally:
        for warning in caught:
            print(f"warning: {warning.category.__name__}: {warning.message}")
    print(score.table())
    return score
