"""Measuring what pruning does: to one layer's output, and to a model's accuracy."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import statistics
import sys
import zlib
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune

from .models import linear_layers
from .pruning import copy_model, prune_per_layer
from .sparsity import unpruned_weight
from .training import accuracy, check_examples
from .validate import (
    is_sequence,
    require_callable,
    require_fraction,
    require_mask,
    require_positive_int,
    require_tensor,
)

MaskFn = Callable[[torch.Tensor, float], torch.Tensor]


def relative_error(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """``||approx - reference|| / ||reference||`` (Frobenius norms), a number >= 0.

    0 means identical; 1 means as far off as outputting zeros would be.
    """
    reference = require_tensor(reference, "reference")
    approx = require_tensor(approx, "approx")
    if reference.shape != approx.shape:
        raise ValueError(
            f"approx must have reference's shape {tuple(reference.shape)}, got {tuple(approx.shape)}"
        )
    norm = reference.norm()
    if norm == 0:
        raise ValueError("reference must not be all zeros: relative error is undefined")
    return ((approx - reference).norm() / norm).item()


def _check_linear_input(layer: nn.Module, x: torch.Tensor) -> None:
    """``layer`` an ``nn.Linear``; ``x`` a float tensor ``(batch, in_features)`` of its dtype and device."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear, got {type(layer).__name__}")
    x = require_tensor(x, "x")
    if x.dim() != 2 or x.shape[-1] != layer.in_features:
        raise ValueError(
            f"x must have {layer.in_features} features in its last dimension (layer.in_features), "
            f"as a 2-D (batch, {layer.in_features}) tensor, got shape {tuple(x.shape)}"
        )
    weight = unpruned_weight(layer)
    if (x.dtype, x.device) != (weight.dtype, weight.device):
        raise ValueError(f"x must have the layer's dtype and device ({weight.dtype} on {weight.device}), "
                         f"got {x.dtype} on {x.device}")


def _check_amounts(amounts: object) -> list[float]:
    """A non-empty list (or tuple) of fractions in [0, 1]."""
    if not is_sequence(amounts):
        raise TypeError(f"amounts must be a list of fractions in [0, 1], got {type(amounts).__name__} {amounts!r}")
    if len(amounts) == 0:
        raise ValueError("amounts must hold at least one fraction, got an empty sequence")
    return [require_fraction(a, f"amounts[{i}]") for i, a in enumerate(amounts)]


@torch.no_grad()
def output_error(layer: nn.Linear, x: torch.Tensor, mask: torch.Tensor) -> float:
    """Relative error of ``layer``'s output on ``x`` when its weight is multiplied by ``mask``.

    The reference is the *unpruned* layer (``weight_orig`` if the layer is pruned). The layer
    itself is not changed.

    Args:
        layer: an ``nn.Linear(in_features, out_features)``.
        x: inputs of shape ``(batch, in_features)``.
        mask: shape ``(out_features, in_features)``, bool or 0/1 (1 = keep), on the weight's device.
    """
    _check_linear_input(layer, x)
    weight = unpruned_weight(layer)
    mask = require_mask(mask, weight, "mask")
    reference = F.linear(x, weight, layer.bias)
    pruned = F.linear(x, weight * mask, layer.bias)
    return relative_error(reference, pruned)


def error_vs_sparsity(
    layer: nn.Linear, x: torch.Tensor, amounts: Sequence[float], mask_fn: MaskFn
) -> list[float]:
    """:func:`output_error` of ``layer`` on ``x`` for each fraction in ``amounts`` (a list of
    fractions in [0, 1]).

    ``mask_fn(weight, amount)`` returns the mask, e.g. ``sparsity.magnitude_mask``. Every mask
    is computed from the unpruned weight, so nothing compounds.
    """
    _check_linear_input(layer, x)
    amounts = _check_amounts(amounts)
    require_callable(mask_fn, "mask_fn")
    weight = unpruned_weight(layer)
    return [output_error(layer, x, mask_fn(weight, a)) for a in amounts]


def accuracy_vs_sparsity(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amounts: Sequence[float],
                         prune_fn: Callable[[nn.Module, float], None]) -> list[float]:
    """Accuracy of a pruned *copy* of ``model`` for each fraction in ``amounts`` (fractions in
    [0, 1]) on ``x`` ``(n, features)`` and labels ``y`` ``(n,)``.

    ``prune_fn(copy, amount)`` prunes the copy in place, e.g. ``pruning.prune_global``. The
    model itself is never pruned, so nothing compounds. A model that already carries masks is
    copied with them (:func:`pruning.copy_model`), and ``prune_fn`` prunes on top of them.
    """
    check_examples(model, x, y)
    amounts = _check_amounts(amounts)
    require_callable(prune_fn, "prune_fn")
    results = []
    for amount in amounts:
        pruned = copy_model(model)
        prune_fn(pruned, amount)
        results.append(accuracy(pruned, x, y))
    return results


def sensitivity_scan(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                     amounts: Sequence[float]) -> dict[str, list[float]]:
    """For each Linear layer alone, accuracy when only that layer is pruned by magnitude.

    Returns layer name -> one accuracy per fraction in ``amounts`` (fractions in [0, 1]). Use
    validation data: the result is meant for choosing per-layer sparsities.
    """
    layers = linear_layers(model)
    check_examples(model, x, y)
    amounts = _check_amounts(amounts)
    return {name: accuracy_vs_sparsity(model, x, y, amounts,
                                       lambda m, a, name=name: prune_per_layer(m, {name: a}))
            for name in layers}


# --- size and speed ---------------------------------------------------------------------------


def count_parameters(model: nn.Module) -> int:
    """Number of values the model stores as parameters (weights and biases; a pruned layer's
    ``weight_orig`` counts, its mask buffer does not)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero weights and biases as the model computes with them (masks applied)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total = 0
    for module in model.modules():
        for name, _ in module.named_parameters(recurse=False):
            total += int((getattr(module, name.removesuffix("_orig")) != 0).sum())
    return total


def state_dict_bytes(model: nn.Module, compress: bool = False) -> int:
    """Bytes of ``torch.save(model.state_dict())``; with ``compress=True``, after zlib (level 9),
    as a zip archive of the file would roughly be."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(compress, bool):
        raise TypeError(f"compress must be True or False, got {compress!r}")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    data = buffer.getvalue()
    return len(zlib.compress(data, 9)) if compress else len(data)


def csr_bytes(weight: torch.Tensor, index_dtype: torch.dtype = torch.int64) -> int:
    """Bytes to store a 2-D ``weight`` in CSR form: non-zero values, one column index per value,
    and ``rows + 1`` row pointers. PyTorch uses int64 indices; int32 is the common alternative
    (``index_dtype`` must be one of the two). A weight with no entries needs only the pointers."""
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dim() != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if index_dtype not in (torch.int32, torch.int64):
        raise ValueError(f"index_dtype must be torch.int32 or torch.int64 (CSR indices are ints), got {index_dtype!r}")
    nnz = int((weight != 0).sum())
    index_size = torch.tensor([], dtype=index_dtype).element_size()
    return nnz * weight.element_size() + nnz * index_size + (weight.shape[0] + 1) * index_size


def _benchmark_module():
    """``torch.utils.benchmark``, imported quietly. On a CUDA build of PyTorch with no GPU (Colab's
    CPU runtime, a pip install on Linux) the import makes ``torch.utils.cpp_extension`` say "No
    CUDA runtime is found", which is about compiling C++ extensions, not timing: a log record in
    recent releases, a print to stderr in older ones (and nbgrader fails a grade cell that writes
    to stderr). Only that one message is dropped; anything else the import writes is passed on."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    no_cuda = logging.Filter()
    no_cuda.filter = lambda record: "No CUDA runtime is found" not in record.getMessage()
    captured = io.StringIO()
    logger.addFilter(no_cuda)
    try:
        with contextlib.redirect_stderr(captured):
            import torch.utils.benchmark as benchmark
    finally:
        logger.removeFilter(no_cuda)
        for line in captured.getvalue().splitlines(keepends=True):
            if "No CUDA runtime is found" not in line:
                sys.stderr.write(line)
    return benchmark


def latency_ms(fn: Callable[[], object], min_run_time: float = 0.1) -> float:
    """Median milliseconds of one call of ``fn()`` with ``torch.utils.benchmark`` (which runs it
    repeatedly for at least ``min_run_time`` seconds, after a warm-up), on the current threads."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)) or not 0 < min_run_time < math.inf:
        raise ValueError(f"min_run_time must be a finite number of seconds > 0, got {min_run_time!r}")
    timer = _benchmark_module().Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1000


def interleaved_latency_ms(fns: Mapping[str, Callable[[], object]], rounds: int = 5,
                           min_run_time: float = 0.02) -> dict[str, float]:
    """Median milliseconds per call of each function, timed in turns: A B C, A B C, ...

    Every round times each function once with :func:`latency_ms`; the result is the median over
    ``rounds``, after one round that is thrown away (caches, memory pages and the CPU's clock
    settle during it). Sustained load (another notebook, a browser) then slows every function
    alike instead of whichever was being timed when it started, so the *ratios* hold on a busy
    machine even when the absolute times do not; a short burst spoils one round of one function,
    and the median drops it.
    """
    if not isinstance(fns, Mapping) or not fns or not all(callable(fn) for fn in fns.values()):
        raise TypeError(f"fns must map names to callables, got {fns!r}")
    rounds = require_positive_int(rounds, "rounds")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds + 1):
        for name, fn in fns.items():
            times[name].append(latency_ms(fn, min_run_time))
    return {name: statistics.median(values[1:]) for name, values in times.items()}


def storage_bytes(model: nn.Module, amount: float) -> dict[str, int]:
    """Bytes to store ``model`` (an MLP-like model of Linear layers) pruned globally to overall
    sparsity ``amount`` (a fraction in [0, 1]; masks it already carries count towards it, as in
    :func:`pruning.prune_global_to`):

    - ``dense``: the state_dict with zeros in it; ``masked``: prune's form (weight_orig + mask);
    - ``csr_int64`` / ``csr_int32``: weights in CSR with 8- / 4-byte indices, plus biases;
    - ``compressed``: the dense state_dict after zlib.
    The model itself is not changed (each form is built on a copy).
    """
    from .pruning import prune_global_to, remove_masks

    linear_layers(model)
    amount = require_fraction(amount, "amount")
    masked = copy_model(model)
    prune_global_to(masked, amount)
    for layer in linear_layers(masked).values():     # prune's form everywhere, even at amount 0
        if "weight_mask" not in dict(layer.named_buffers(recurse=False)):
            prune.identity(layer, "weight")
    zeros = copy_model(masked)
    remove_masks(zeros)
    layers = linear_layers(zeros).values()
    biases = sum(layer.bias.numel() * layer.bias.element_size() for layer in layers if layer.bias is not None)
    return {"dense": state_dict_bytes(zeros), "masked": state_dict_bytes(masked),
            "csr_int64": sum(csr_bytes(layer.weight.detach()) for layer in layers) + biases,
            "csr_int32": sum(csr_bytes(layer.weight.detach(), torch.int32) for layer in layers) + biases,
            "compressed": state_dict_bytes(zeros, compress=True)}
