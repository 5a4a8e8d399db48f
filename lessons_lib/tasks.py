"""A synthetic character-level task, generated in code: adding two n-digit numbers.

A problem ``123+456=`` is followed by its sum with n+1 digits, most significant first (``0579``).
That order makes the task genuinely hard for a small model: to write the first digit it must
already know whether carries ripple up from the digits to the right, which takes several
attention heads working together. Vocabulary: digits 0-9 are tokens 0-9, ``+`` is 10, ``=`` is 11.

Train, validation and test problems are disjoint pairs (a, b), drawn once from a seed: the test
problems were never seen in training.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .progress import progress_bar
from .validate import require_bool, require_int, require_lr, require_module, require_number, require_positive_int

PLUS, EQUALS = 10, 11


class Addition(NamedTuple):
    """Token tensors: ``x_*`` are ``(n, 3n+2)`` model inputs, ``y_*`` ``(n, n+1)`` answer digits."""

    n_digits: int
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def _digits(numbers: torch.Tensor, width: int) -> torch.Tensor:
    """(n,) ints -> (n, width) digits, most significant first."""
    powers = 10 ** torch.arange(width - 1, -1, -1, device=numbers.device)
    return numbers[:, None].long() // powers % 10


def _check_operands(a: object, b: object, n_digits: int) -> None:
    """``a`` and ``b``: int tensors ``(n,)`` of numbers in ``[0, 10**n_digits)``."""
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of ints, got {type(t).__name__}")
        if t.dim() != 1 or t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"{name} must be a 1-D int tensor (n,), got shape {tuple(t.shape)} of {t.dtype}")
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= 10 ** n_digits):
            raise ValueError(f"{name} must hold numbers in [0, {10 ** n_digits}) (n_digits={n_digits}), "
                             f"got values from {int(t.min())} to {int(t.max())}")
    if a.shape != b.shape or a.device != b.device:
        raise ValueError(f"a and b must have the same length and device, got {tuple(a.shape)} on {a.device} "
                         f"and {tuple(b.shape)} on {b.device}")


def encode(a: torch.Tensor, b: torch.Tensor, n_digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and answers for problems a + b: x (n, 3n+2) = a + b = and the answer but its last
    digit (teacher forcing); y (n, n+1) = the sum, zero-padded to n+1 digits. ``a`` and ``b``
    are int tensors ``(n,)`` of numbers that fit ``n_digits`` digits (0 to 10**n_digits - 1);
    the results are int64 on their device."""
    n_digits = require_positive_int(n_digits, "n_digits")
    _check_operands(a, b, n_digits)
    a, b = a.long(), b.long()
    answer = _digits(a + b, n_digits + 1)                                         # e.g. 0579
    n = len(a)
    full = torch.cat([_digits(a, n_digits), torch.full((n, 1), PLUS, device=a.device), _digits(b, n_digits),
                      torch.full((n, 1), EQUALS, device=a.device), answer], dim=1)
    return full[:, :-1], answer


def addition_task(n_digits: int = 3, n_train: int = 20_000, n_val: int = 1_000, n_test: int = 2_000,
                  seed: int = 0) -> Addition:
    """Disjoint random problems with operands in [0, 10**n_digits); ``n_train``, ``n_val`` and
    ``n_test`` are ints >= 1 that together fit the ``10**(2 * n_digits)`` distinct problems."""
    if isinstance(n_digits, bool) or not isinstance(n_digits, numbers.Integral) or not 1 <= n_digits <= 4:
        raise ValueError(f"n_digits must be in [1, 4], got {n_digits!r}")
    n_digits = int(n_digits)
    for name, value in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        require_positive_int(value, name)
    require_int(seed, "seed", 0)
    space = 10 ** (2 * n_digits)
    if n_train + n_val + n_test > space:
        raise ValueError(f"n_train + n_val + n_test must be <= {space} distinct problems, "
                         f"got {n_train + n_val + n_test}")
    pairs = torch.randperm(space, generator=torch.Generator().manual_seed(seed))[: n_train + n_val + n_test]
    a, b = pairs // 10 ** n_digits, pairs % 10 ** n_digits
    parts = []
    for lo, hi in ((0, n_train), (n_train, n_train + n_val), (n_train + n_val, len(pairs))):
        parts += encode(a[lo:hi], b[lo:hi], n_digits)
    return Addition(n_digits, *parts)


def check_tokens(model: nn.Module, t: object, name: str, dims: int = 2) -> torch.Tensor:
    """``t`` if it is a non-empty int64 tensor of token ids the model knows (its config's vocab),
    rows no longer than its block size."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(t).__name__}")
    if t.dim() != dims or t.numel() == 0 or t.dtype != torch.int64:
        raise ValueError(f"{name} must be a non-empty {dims}-D int64 tensor of token ids, "
                         f"got shape {tuple(t.shape)} of {t.dtype}")
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    block = getattr(getattr(model, "config", None), "block_size", None)
    if block is not None and t.shape[-1] > block:
        raise ValueError(f"{name} must have at most block_size={block} tokens per row, got {t.shape[-1]}")
    low, high = int(t.min()), int(t.max())
    if low < 0 or (vocab is not None and high >= vocab):
        raise ValueError(f"{name} must hold token ids in [0, {vocab if vocab is not None else 'vocab'}), "
                         f"got values from {low} to {high}")
    return t


def check_problems(model: nn.Module, x: object, y: object) -> None:
    """``x`` ``(n, T)`` problems and ``y`` ``(n, d)`` answer digits (``d < T``), as the model takes them."""
    require_module(model, "model")
    check_tokens(model, x, "x")
    check_tokens(model, y, "y")
    if y.shape[0] != x.shape[0] or not y.shape[1] < x.shape[1]:
        raise ValueError(f"y must hold one answer per problem in x, shorter than the problem: x has shape "
                         f"{tuple(x.shape)}, y {tuple(y.shape)}")
    param = next(model.parameters(), None)
    if param is not None and (x.device != param.device or y.device != param.device):
        raise ValueError(f"x and y must be on the model's device {param.device}, got {x.device} and {y.device}")


def answer_logits(model: nn.Module, x: torch.Tensor, n_answer: int) -> torch.Tensor:
    """Logits the model gives for the last ``n_answer`` positions of ``x`` ``(n, T)``, the answer
    digits: ``(n, n_answer, vocab)``. ``n_answer`` is in ``[1, T]``; int32 tokens work too."""
    require_module(model, "model")
    check_tokens(model, x.long() if isinstance(x, torch.Tensor) and x.dtype == torch.int32 else x, "x")
    n_answer = require_positive_int(n_answer, "n_answer")
    if n_answer > x.shape[1]:
        raise ValueError(f"n_answer must be at most the problem's length ({x.shape[1]} positions), got {n_answer}")
    return _answer_logits(model, x, n_answer)


def _answer_logits(model: nn.Module, x: torch.Tensor, n_answer: int) -> torch.Tensor:
    """:func:`answer_logits` without the checks, for callers that checked once already."""
    return model(x)[:, -n_answer:]


def answer_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                head_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Cross-entropy on the answer digits only (the problem itself is given, not predicted).
    ``x``: ``(n, T)`` problems, ``y``: ``(n, d)`` answer digits; returns a 0-d tensor.
    ``head_masks``: passed on as ``model(x, head_masks)`` (the GPT: one ``(H_i,)`` tensor per
    layer, 1 = head on, 0 = off); ``None`` runs ``model(x)``."""
    check_problems(model, x, y)
    logits = (model(x) if head_masks is None else model(x, head_masks))[:, -y.shape[1]:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def exact_match(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Fraction of problems whose every answer digit is the model's top prediction.

    With teacher forcing each digit is predicted from the true digits before it; if all of them
    are right, greedy generation writes exactly this answer, so this equals generation accuracy.
    ``x``: ``(n, T)`` problems, ``y``: ``(n, d)`` answer digits. The first number of :func:`evaluate`.
    """
    return evaluate(model, x, y, batch_size)[0]


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> tuple[float, float]:
    """``(exact match, answer loss)`` of ``model`` on problems ``x`` ``(n, T)`` with answers
    ``y`` ``(n, d)``: the two numbers the GPT lessons report for every model, from one forward
    pass per batch of ``batch_size`` problems, in eval mode (the model's mode is restored). The
    loss is the mean cross-entropy over every answer digit, as :func:`answer_loss` gives it."""
    check_problems(model, x, y)
    require_positive_int(batch_size, "batch_size")
    was_training = model.training
    model.eval()
    correct, total_loss = 0, 0.0
    try:
        for start in range(0, len(x), batch_size):
            xs, ys = x[start:start + batch_size], y[start:start + batch_size]
            logits = _answer_logits(model, xs, ys.shape[1])                        # (b, d, vocab)
            correct += (logits.argmax(-1) == ys).all(dim=1).sum().item()
            total_loss += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys.reshape(-1),
                                          reduction="sum").item()
    finally:
        model.train(was_training)                    # even when the model's forward raises
    return correct / len(x), total_loss / y.numel()


def _check_training(model: nn.Module, task: object, steps: object, lr: object, batch_size: object, seed: object,
                    weight_decay: object, progress: object, lr_decay: object) -> None:
    """The arguments :func:`train_on_task` and :func:`distill_on_task` share, checked."""
    require_module(model, "model")
    if not isinstance(task, Addition):
        raise TypeError(f"task must be a tasks.Addition (from addition_task), got {type(task).__name__}")
    require_positive_int(steps, "steps")
    require_bool(progress, "progress")
    require_bool(lr_decay, "lr_decay")
    require_positive_int(batch_size, "batch_size")
    require_lr(lr)
    require_number(weight_decay, "weight_decay", minimum=0)
    require_int(seed, "seed", 0)
    check_problems(model, task.x_train, task.y_train)


def _train(model: nn.Module, task: Addition, steps: int, lr: float, batch_size: int, seed: int, weight_decay: float,
           progress: bool, desc: str, loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
           lr_decay: bool = False) -> list[float]:
    """AdamW on ``loss_of(x, y)`` for random training batches ``x`` ``(batch_size, T)``, ``y``
    ``(batch_size, d)`` drawn from a generator seeded with ``seed``; the loss of every step. With
    ``lr_decay`` the learning rate falls from ``lr`` to 0 along a half cosine over the steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps) if lr_decay else None
    generator = torch.Generator().manual_seed(seed)
    model.train()
    losses = []
    for _ in progress_bar(steps, desc, "step", enabled=progress):
        batch = torch.randint(len(task.x_train), (batch_size,), generator=generator)
        loss = loss_of(task.x_train[batch], task.y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train_on_task(model: nn.Module, task: Addition, steps: int, lr: float = 3e-3, batch_size: int = 256,
                  seed: int = 0, weight_decay: float = 0.01, progress: bool = True,
                  desc: str = "training", lr_decay: bool = False) -> list[float]:
    """AdamW on random training batches for ``steps`` steps; returns the loss of every step.
    ``lr_decay``: the learning rate falls from ``lr`` to 0 along a half cosine (else constant).

    Works unchanged on pruned models (masks stay in force through prune's hooks). The batches
    come from a generator seeded with ``seed``, so the same call gives the same weights.
    """
    _check_training(model, task, steps, lr, batch_size, seed, weight_decay, progress, lr_decay)
    return _train(model, task, steps, lr, batch_size, seed, weight_decay, progress, desc,
                  lambda x, y: answer_loss(model, x, y), lr_decay)


def distill_on_task(student: nn.Module, teacher: nn.Module, task: Addition, steps: int, temperature: float = 2.0,
                    alpha: float = 0.5, hidden_weight: float = 0.0, lr: float = 3e-3, batch_size: int = 256,
                    seed: int = 0, weight_decay: float = 0.01, progress: bool = True,
                    desc: str = "distilling", lr_decay: bool = False) -> list[float]:
    """Train ``student`` to match ``teacher`` (knowledge distillation, Hinton et al. 2015) on the
    same batches :func:`train_on_task` would draw with ``seed``; returns the loss of every step.

    Loss on the answer digits of a batch, student logits ``s`` and teacher logits ``t`` ``(B, A, vocab)``:
    ``(1 - alpha) * cross-entropy(s, answers) + alpha * temperature² * KL(softmax(t/T) ‖ softmax(s/T))``
    (the soft term's gradients shrink as ``1/T²``, so Hinton et al. multiply it by ``T²`` to keep the
    two terms' balance when ``T`` changes), plus, with
    ``hidden_weight > 0``, that weight times the mean squared difference between the two models'
    residual streams after every block (``blocks.i`` outputs, ``(B, T, D)``: both models need the
    same number of blocks and width, as a slimmed GPT has). ``alpha=0`` and ``hidden_weight=0``
    is :func:`train_on_task` (``lr_decay`` too). The teacher is only read (in eval mode, no gradients;
    its mode is restored) and must give logits of the student's shape.
    """
    _check_training(student, task, steps, lr, batch_size, seed, weight_decay, progress, lr_decay)
    require_module(teacher, "teacher")
    if teacher is student:
        raise ValueError("teacher must be another model than student (the dense model the student was cut from)")
    check_problems(teacher, task.x_train[:2], task.y_train[:2])
    with torch.no_grad():
        shapes = [tuple(m(task.x_train[:2]).shape) for m in (student, teacher)]
    if shapes[0] != shapes[1]:
        raise ValueError(f"teacher must give logits of the student's shape on the task: student {shapes[0]}, "
                         f"teacher {shapes[1]}")
    temperature = require_number(temperature, "temperature", positive=True)
    if not 0.1 <= temperature <= 20:
        raise ValueError(f"temperature must be in [0.1, 20] (typical: 1 to 10), got {temperature}")
    alpha = require_number(alpha, "alpha", minimum=0)
    if alpha > 1:
        raise ValueError(f"alpha must be in [0, 1] (the weight of the distillation term), got {alpha}")
    hidden_weight = require_number(hidden_weight, "hidden_weight", minimum=0)
    blocks = [getattr(m, "blocks", None) for m in (student, teacher)]
    if hidden_weight and (blocks[0] is None or blocks[1] is None or len(blocks[0]) != len(blocks[1])):
        raise ValueError("hidden_weight > 0 needs student and teacher with the same number of .blocks")
    teacher_was_training = teacher.training
    teacher.eval()

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), _block_outputs(teacher, hidden_weight > 0) as teacher_hidden:
            t = teacher(x)[:, -y.shape[1]:]
        with _block_outputs(student, hidden_weight > 0) as student_hidden:
            s = student(x)[:, -y.shape[1]:]
        hard = F.cross_entropy(s.reshape(-1, s.shape[-1]), y.reshape(-1))
        soft = F.kl_div(F.log_softmax(s / temperature, -1).reshape(-1, s.shape[-1]),
                        F.log_softmax(t / temperature, -1).reshape(-1, s.shape[-1]),
                        log_target=True, reduction="batchmean") * temperature ** 2
        loss = (1 - alpha) * hard + alpha * soft
        if hidden_weight:
            loss = loss + hidden_weight * torch.stack(
                [F.mse_loss(a, b) for a, b in zip(student_hidden, teacher_hidden, strict=True)]).mean()
        return loss

    try:
        return _train(student, task, steps, lr, batch_size, seed, weight_decay, progress, desc, loss_of, lr_decay)
    finally:
        teacher.train(teacher_was_training)


@contextlib.contextmanager
def _block_outputs(model: nn.Module, enabled: bool) -> Iterator[list[torch.Tensor]]:
    """While active, the output of each of ``model.blocks`` (the residual stream after it) is
    appended to the yielded list on every forward pass; nothing when ``enabled`` is False."""
    outputs: list[torch.Tensor] = []
    handles = [block.register_forward_hook(lambda module, inputs, output: outputs.append(output))
               for block in (model.blocks if enabled else [])]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
