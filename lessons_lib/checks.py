"""Exercise checkers. Each runs a learner's function on a few cases and either prints one
line saying it passed, or raises :class:`ExerciseFailure` with a message that says what is
wrong in plain words: which case, what was expected, what came back, and a hint.

The checkers never change the tensors they pass in, and use their own random generator, so
calling one does not disturb a lesson's seeded state.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import torch

from .assignment import Score, held_out_problems, score_submission
from .gpt import GPT, Attention, load_checkpoint
from .sparsity import magnitude_mask
from .tasks import addition_task


class ExerciseFailure(AssertionError):
    """A learner's exercise does not pass yet; ``str(error)`` says why."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the message is the useful part.
        return [f"✗ {type(self).__name__}: {line}" if i == 0 else f"  {line}"
                for i, line in enumerate(str(self).splitlines())]


def _call(fn: Callable, fn_name: str, *args: object) -> object:
    """Call the learner's ``fn``; turn "not implemented" and crashes into plain messages."""
    if not callable(fn):
        raise ExerciseFailure(f"expected your function {fn_name}, got {type(fn).__name__} {fn!r}")
    try:
        return fn(*args)
    except NotImplementedError:
        raise ExerciseFailure(
            f"{fn_name} is not implemented yet: replace `raise NotImplementedError()` "
            "with your code, run that cell, then run this check again."
        ) from None
    except Exception as error:
        frame = traceback.extract_tb(error.__traceback__)[-1]
        raise ExerciseFailure(
            f"{fn_name} raised {type(error).__name__}: {error}\n"
            f"at line {frame.lineno} of {frame.name}: {frame.line}"
        ) from error


def _passed(fn_name: str, n_cases: int) -> None:
    print(f"✓ {fn_name} passes all {n_cases} checks.")


def check_count_zeros(count_zeros: Callable[[torch.Tensor], int]) -> None:
    """Lesson 00's warm-up: ``count_zeros(t)`` returns how many entries of ``t`` are exactly 0."""
    cases = [torch.tensor([0.0, 1.5, 0.0, -2.0]),
             torch.tensor([[0.0, 0.0], [0.0, 0.0]]),
             torch.tensor([[1.0, -1.0, 0.5], [0.0, 3.0, 0.0]])]
    for t in cases:
        before = t.clone()
        got = _call(count_zeros, "count_zeros", t)
        expected = int((t == 0).sum())
        if not torch.equal(t, before):
            raise ExerciseFailure("count_zeros changed the tensor it was given; it should only read it.")
        if isinstance(got, torch.Tensor):
            raise ExerciseFailure(f"count_zeros returned a tensor ({got!r}); return a Python int, "
                                  "e.g. with .item() or int(...).")
        if got == t.numel() - expected and got != expected:
            raise ExerciseFailure(f"for {t.tolist()} you returned {got}, the number of NON-zero "
                                  f"entries; count the zeros instead (expected {expected}).")
        if got != expected:
            raise ExerciseFailure(f"for {t.tolist()} expected {expected} zeros, got {got!r}.")
    _passed("count_zeros", len(cases))


def _magnitude_cases() -> list[tuple[torch.Tensor, float]]:
    """Weights of several shapes (distinct magnitudes, so the right answer is unique)."""
    g = torch.Generator().manual_seed(1234)
    return [
        (torch.tensor([[0.3, -0.9, 0.05, 0.6], [-0.2, 0.8, -0.7, 0.1]]), 0.5),
        (torch.randn(50, 100, generator=g), 0.3),
        (torch.randn(8, 3, 3, 3, generator=g), 0.75),
        (torch.randn(10, generator=g), 0.0),
        (torch.randn(7, 5, generator=g), 1.0),
        (torch.randn(20, 30, generator=g), 0.9),
    ]


def _as_keep_mask(result: object, weight: torch.Tensor, where: str) -> torch.Tensor:
    """Turn a learner's mask into bool (True = keep), or explain why it is not a mask."""
    if not isinstance(result, torch.Tensor):
        raise ExerciseFailure(f"{where}: expected a torch.Tensor mask, got {type(result).__name__}.")
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


def check_magnitude_mask(magnitude_mask_fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """Lesson 01's exercise: ``magnitude_mask(weight, amount)`` keeps the largest |weight|.

    Compares with the library's (and so ``prune.l1_unstructured``'s) mask on six weights of
    different shapes and amounts, including 0 and 1, and names the usual mistakes.
    """
    cases = _magnitude_cases()
    for weight, amount in cases:
        where = f"weight of shape {tuple(weight.shape)}, amount={amount}"
        before = weight.clone()
        result = _call(magnitude_mask_fn, "magnitude_mask", weight, amount)
        if not torch.equal(weight, before):
            raise ExerciseFailure(f"{where}: magnitude_mask changed the weight in place; build a new "
                                  "mask tensor and leave the weight as it was.")
        mask = _as_keep_mask(result, weight, where)
        n, k = weight.numel(), round(amount * weight.numel())
        expected = magnitude_mask(weight, amount)
        if torch.equal(mask, expected):
            continue
        zeros = int((~mask).sum())
        if k not in (0, n) and torch.equal(mask, ~magnitude_mask(weight, n - k)):
            raise ExerciseFailure(f"{where}: you kept the SMALLEST-magnitude weights and pruned the "
                                  "largest; magnitude pruning keeps the largest |w|.")
        if torch.equal(mask, ~expected):
            raise ExerciseFailure(f"{where}: your mask is exactly inverted. Here 1/True means KEEP "
                                  "and 0/False means prune.")
        if k not in (0, n) and torch.equal(mask, _signed_mask(weight, k)):
            raise ExerciseFailure(f"{where}: you ranked weights by their signed value, so large "
                                  "negative weights were pruned; rank by magnitude with .abs().")
        if zeros != k:
            hint = (" With a threshold t = kthvalue(k), the k-th smallest magnitude is itself pruned: "
                    "keep |w| > t (not >=)." if abs(zeros - k) == 1 else "")
            raise ExerciseFailure(f"{where}: expected round({amount} x {n}) = {k} zeros, your mask "
                                  f"has {zeros}.{hint}" + (" amount=0 must prune nothing (kthvalue "
                                  "needs k >= 1, so handle k = 0 on its own)." if k == 0 else ""))
        wrong = (mask != expected).nonzero()[0].tolist()
        raise ExerciseFailure(f"{where}: the right number of zeros, but {int((mask != expected).sum())} "
                              f"entries differ from the magnitude mask, e.g. at index {wrong}: weight "
                              f"{weight[tuple(wrong)].item():.3f} should be "
                              f"{'kept' if expected[tuple(wrong)] else 'pruned'}.")
    _passed("magnitude_mask", len(cases))


def _signed_mask(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The mistake of pruning the k smallest *signed* values (bool, True = keep)."""
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    keep[torch.sort(weight.flatten(), stable=True).indices[:k]] = False
    return keep.view_as(weight)


def _as_number(result: object, fn_name: str) -> float:
    if isinstance(result, torch.Tensor) and result.numel() == 1:
        return float(result)
    if isinstance(result, int | float) and not isinstance(result, bool):
        return float(result)
    raise ExerciseFailure(f"{fn_name} should return a number (a float), got {type(result).__name__} {result!r}")


def check_global_threshold(global_threshold_fn: Callable[[list[torch.Tensor], float], float]) -> None:
    """Lesson 02's exercise: ``global_threshold(weights, amount)`` returns the magnitude of the
    ``round(amount * N)``-th smallest |w| over all tensors in ``weights`` (0.0 when amount is 0)."""
    from .pruning import global_threshold

    g = torch.Generator().manual_seed(2024)
    layers = [torch.randn(8, 6, generator=g), 0.2 * torch.randn(12, 8, generator=g), torch.randn(3, 12, generator=g)]
    cases = [(layers, 0.5), (layers, 0.9), (layers[:2], 0.25), ([layers[1]], 0.7), (layers, 0.0)]
    for weights, amount in cases:
        shapes = [tuple(w.shape) for w in weights]
        where = f"weights of shapes {shapes}, amount={amount}"
        before = [w.clone() for w in weights]
        got = _as_number(_call(global_threshold_fn, "global_threshold", list(weights), amount), "global_threshold")
        if not all(torch.equal(w, b) for w, b in zip(weights, before, strict=True)):
            raise ExerciseFailure(f"{where}: global_threshold changed the weights it was given; only read them.")
        expected = global_threshold(weights, amount)
        if got == expected:
            continue
        scores = torch.cat([w.abs().flatten() for w in weights]).sort().values
        k = round(amount * scores.numel())
        per_layer = sum(w.abs().flatten().kthvalue(max(1, round(amount * w.numel()))).values.item()
                        for w in weights) / len(weights)
        signed = torch.cat([w.flatten() for w in weights]).kthvalue(max(k, 1)).values.item()
        if k > 0 and abs(got - per_layer) < 1e-6 and len(weights) > 1:
            raise ExerciseFailure(f"{where}: you averaged one threshold per layer ({got:.4f}); a global threshold "
                                  "ranks ALL weights together: concatenate them first (torch.cat of flattened |w|).")
        if k > 0 and abs(got - signed) < 1e-6:
            raise ExerciseFailure(f"{where}: you ranked signed values ({got:.4f}); rank magnitudes with .abs().")
        if 0 < k < len(scores) and got in (scores[k - 2].item() if k > 1 else None, scores[k].item()):
            raise ExerciseFailure(f"{where}: off by one: you returned the {'(k-1)' if got < expected else '(k+1)'}-th "
                                  f"smallest magnitude; the threshold is the k-th, k = round({amount} x {len(scores)}) "
                                  f"= {k} (kthvalue counts from 1).")
        raise ExerciseFailure(f"{where}: expected {expected:.6f}, got {got:.6f}.")
    _passed("global_threshold", len(cases))


def check_cubic_sparsity(cubic_fn: Callable[[float, float, float, float], float]) -> None:
    """Lesson 03's exercise: ``cubic_sparsity(step, final, start, end)`` is Zhu & Gupta's
    ``final * (1 - (1 - progress) ** 3)`` with ``progress = (step - start) / (end - start)``
    clamped to [0, 1] (sparsity 0 before ``start``, ``final`` from ``end`` on)."""
    from .schedules import cubic_sparsity

    points = [(0, 0.9, 0, 10), (10, 0.9, 0, 10), (5, 0.9, 0, 10), (2.5, 0.8, 0, 10), (7, 0.95, 2, 12),
              (-3, 0.9, 0, 10), (15, 0.9, 0, 10), (1, 0.5, 1, 5)]
    for step, final, start, end in points:
        where = f"cubic_sparsity(step={step}, final={final}, start={start}, end={end})"
        got = _as_number(_call(cubic_fn, "cubic_sparsity", step, final, start, end), "cubic_sparsity")
        expected = cubic_sparsity(step, final, start, end)
        if abs(got - expected) <= 1e-9:
            continue
        progress = (step - start) / (end - start)
        if abs(got - final * progress ** 3) < 1e-9:
            raise ExerciseFailure(f"{where}: you returned final * progress**3 = {got:.4f}, which rises slowly at "
                                  f"first; the cubic schedule rises FAST first: final * (1 - (1 - progress)**3) "
                                  f"= {expected:.4f}.")
        if abs(got - final * progress) < 1e-9:
            raise ExerciseFailure(f"{where}: you returned a straight line ({got:.4f}); the schedule is cubic: "
                                  f"final * (1 - (1 - progress)**3) = {expected:.4f}.")
        if not 0 <= progress <= 1:
            raise ExerciseFailure(f"{where}: expected {expected:.4f}, got {got:.4f}. Outside [start, end] the "
                                  "sparsity stays at 0 (before) or final (after): clamp progress to [0, 1].")
        raise ExerciseFailure(f"{where}: expected {expected:.4f}, got {got:.4f}.")
    _passed("cubic_sparsity", len(points))


def check_slim_pair(slim_pair_fn: Callable) -> None:
    """Lesson 04's exercise: ``slim_pair(layer, next_layer, keep)`` returns new, smaller
    ``(nn.Linear(in, k), nn.Linear(k, out))`` that compute what the pair computes when the
    neurons not in ``keep`` are removed (their row, their bias and their column)."""
    from torch import nn

    g = torch.Generator().manual_seed(7)
    cases = [((6, 5, 3), [0, 2, 4]), ((10, 8, 4), [1, 2, 3, 7]), ((4, 3, 2), [0, 1, 2]), ((5, 6, 3), [5])]
    for (n_in, width, n_out), keep in cases:
        layer, next_layer = nn.Linear(n_in, width), nn.Linear(width, n_out)
        with torch.no_grad():
            for p in (*layer.parameters(), *next_layer.parameters()):
                p.copy_(torch.randn(p.shape, generator=g))
        before = [p.detach().clone() for p in (*layer.parameters(), *next_layer.parameters())]
        where = f"layer Linear({n_in}, {width}), next_layer Linear({width}, {n_out}), keep={keep}"
        result = _call(slim_pair_fn, "slim_pair", layer, next_layer, torch.tensor(keep))
        after = [p.detach() for p in (*layer.parameters(), *next_layer.parameters())]
        if not all(torch.equal(a, b) for a, b in zip(before, after, strict=True)) or \
                layer.weight.shape != (width, n_in) or next_layer.weight.shape != (n_out, width):
            raise ExerciseFailure(f"{where}: slim_pair changed the layers it was given; build new nn.Linear "
                                  "layers and copy the kept slices into them.")
        if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(r, nn.Linear) for r in result)):
            raise ExerciseFailure(f"{where}: expected a tuple of two nn.Linear, got {type(result).__name__}.")
        small, following = result
        if small is layer or following is next_layer:
            raise ExerciseFailure(f"{where}: slim_pair returned the layers it was given; build new, smaller "
                                  "nn.Linear layers and copy the kept slices into them.")
        k = len(keep)
        if small.weight.shape != (k, n_in):
            hint = " You kept columns; a neuron is a ROW of layer.weight." if small.weight.shape == (width, k) else ""
            raise ExerciseFailure(f"{where}: the first layer's weight should be {(k, n_in)} (one row per kept "
                                  f"neuron), got {tuple(small.weight.shape)}.{hint}")
        if following.weight.shape != (n_out, k):
            raise ExerciseFailure(f"{where}: the next layer must lose the same neurons as INPUT columns: weight "
                                  f"{(n_out, k)} expected, got {tuple(following.weight.shape)}.")
        x = torch.randn(16, n_in, generator=g)
        with torch.no_grad():
            hidden = torch.relu(layer(x))
            hidden[:, [i for i in range(width) if i not in keep]] = 0
            expected = next_layer(hidden)
            got = following(torch.relu(small(x)))
        if not torch.allclose(got, expected, atol=1e-5):
            if small.bias is None or not torch.equal(small.bias.detach(), layer.bias.detach()[keep]):
                raise ExerciseFailure(f"{where}: the outputs differ; the kept neurons' biases must come along: "
                                      "small.bias = layer.bias[keep].")
            raise ExerciseFailure(f"{where}: the outputs differ from the original pair with those neurons removed "
                                  f"(max difference {float((got - expected).abs().max()):.3g}); check that the "
                                  "next layer keeps its own bias and the columns in the same order as keep.")
    _passed("slim_pair", len(cases))


def check_remove_heads(remove_heads_fn: Callable) -> None:
    """Lesson 07's exercise: ``remove_heads(attn, keep)`` returns a new ``gpt.Attention`` with only
    the heads in ``keep``, computing what ``attn`` computes with the other heads masked out."""
    g = torch.Generator().manual_seed(11)
    for n_heads, keep in ((4, [0, 2]), (4, [3]), (3, [0, 1, 2]), (4, [1, 2, 3])):
        attn = Attention(d_model=16, n_heads=n_heads, head_dim=4)
        with torch.no_grad():
            for p in attn.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        before = {k: v.clone() for k, v in attn.state_dict().items()}
        where = f"Attention with {n_heads} heads of size 4, keep={keep}"
        result = _call(remove_heads_fn, "remove_heads", attn, list(keep))
        if any(not torch.equal(before[k], v) for k, v in attn.state_dict().items()) or attn.n_heads != n_heads:
            raise ExerciseFailure(f"{where}: remove_heads changed the module it was given; build a new one.")
        if not isinstance(result, Attention) or result is attn:
            raise ExerciseFailure(f"{where}: expected a new Attention module, got {type(result).__name__}.")
        rows = len(keep) * 4
        if result.n_heads != len(keep):
            raise ExerciseFailure(f"{where}: the new module says n_heads={result.n_heads}; expected {len(keep)}.")
        for name in ("q", "k", "v"):
            if getattr(result, name).weight.shape != (rows, 16):
                raise ExerciseFailure(f"{where}: {name}.weight should be {(rows, 16)} (head_dim rows per kept head), "
                                      f"got {tuple(getattr(result, name).weight.shape)}.")
        if result.out.weight.shape != (16, rows):
            raise ExerciseFailure(f"{where}: out.weight should be {(16, rows)}: the kept heads' COLUMNS, "
                                  f"got {tuple(result.out.weight.shape)}.")
        x = torch.randn(2, 5, 16, generator=g)
        mask = torch.zeros(n_heads)
        mask[keep] = 1
        with torch.no_grad():
            expected, got = attn(x, mask), result(x)
        if not torch.allclose(got, expected, atol=1e-5):
            raise ExerciseFailure(f"{where}: outputs differ from the original with the other heads masked "
                                  f"(max difference {float((got - expected).abs().max()):.3g}). Head h owns rows "
                                  "h*head_dim:(h+1)*head_dim of q, k, v (with their biases) and those columns "
                                  "of out; out keeps its whole bias.")
    _passed("remove_heads", 4)


def check_assignment(prune_to_budget_fn: Callable) -> Score:
    """Lesson 08's grader: run ``prune_to_budget(dense, task)`` on a fresh copy of the shipped
    dense GPT and the lessons' addition task, then score what it returns on problems it never
    saw (see :mod:`lessons_lib.assignment`). Prints the score table and returns the
    :class:`~lessons_lib.assignment.Score`; a submission that cannot be scored raises
    :class:`ExerciseFailure` saying why."""
    dense, task = load_checkpoint(), addition_task(3, seed=0)
    submission = _call(prune_to_budget_fn, "prune_to_budget", load_checkpoint(), task)
    if not isinstance(submission, GPT):
        raise ExerciseFailure(f"prune_to_budget must return a GPT (lessons_lib.gpt.GPT), got "
                              f"{type(submission).__name__}; a slim model from slim_gpt or prune_to is one.")
    submission = submission.cpu()        # trained on a GPU? it is measured where the dense model runs
    x, y = held_out_problems()
    try:
        with torch.no_grad():
            logits = submission(x[:2])
    except Exception as error:
        raise ExerciseFailure(f"the returned model fails on a batch of problems (shape (2, {x.shape[1]})): "
                              f"{type(error).__name__}: {error}") from error
    expected = (2, x.shape[1], dense.config.vocab_size)
    if tuple(logits.shape) != expected:
        raise ExerciseFailure(f"the returned model gives logits of shape {tuple(logits.shape)}; expected {expected} "
                              "(batch, positions, vocabulary): keep the embeddings and the output head as they are.")
    score = score_submission(submission, dense, x, y)
    print(score.table())
    return score
