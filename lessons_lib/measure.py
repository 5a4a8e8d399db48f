"""Measuring a model: output error, and the three quantities of size and speed.

- parameters *stored*: :func:`count_parameters` (and :func:`count_nonzero` for the non-zero ones);
- multiply-adds per call: :func:`multiply_adds` (what runs, zeros included);
- latency: :func:`latency_ms` (and :func:`interleaved_latency_ms` to compare several).

A leaf module: it imports nothing from lessons_lib but ``validate``, so every other module can
measure. The experiments that prune copies and measure them are in ``experiments``."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import statistics
import sys
import time
import zlib
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .validate import require_linear_input, require_mask, require_module, require_positive_int, require_tensor


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
    require_linear_input(layer, x)
    weight = _unmasked(layer)
    mask = require_mask(mask, weight, "mask")
    reference = F.linear(x, weight, layer.bias)
    pruned = F.linear(x, weight * mask, layer.bias)
    return relative_error(reference, pruned)


# --- size and speed ---------------------------------------------------------------------------


def _unmasked(layer: nn.Module) -> torch.Tensor:
    """``weight_orig`` of a pruned layer, else ``weight`` (detached)."""
    return getattr(layer, "weight_orig", layer.weight).detach()


def count_parameters(model: nn.Module) -> int:
    """Number of values the model stores as parameters (weights and biases; a pruned layer's
    ``weight_orig`` counts, its mask buffer does not)."""
    require_module(model, "model")
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model: nn.Module) -> int:
    """Number of non-zero weights and biases as the model computes with them (masks applied)."""
    require_module(model, "model")
    total = 0
    for module in model.modules():
        for name, _ in module.named_parameters(recurse=False):
            total += int((getattr(module, name.removesuffix("_orig")) != 0).sum())
    return total


@torch.no_grad()
def multiply_adds(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-adds of one call ``model(x)``, counted by ``torch.utils.flop_counter`` (FLOPs / 2).

    It counts what runs: a masked weight is still multiplied, zeros and all (lesson 05's point),
    while a slimmed layer is smaller and counts less. It knows matrix products (``nn.Linear``,
    ``@``, ``bmm``), convolutions and attention (``scaled_dot_product_attention``: its two
    ``(T, T)`` products per head, in full even when causal); element-wise work (ReLU, softmax,
    LayerNorm, adding a bias) is not counted. ``x``: whatever ``model`` takes, e.g.
    ``(batch, features)``; the count is for the whole batch. The model runs once, in eval mode and
    without gradients, and is left in the mode it was in.
    """
    from torch.utils import flop_counter

    require_module(model, "model")
    require_tensor(x, "x")
    # torch counts attention's GPU kernels but not the CPU one in every release: count it the same way
    cpu_attention = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    mapping = {} if cpu_attention is None else {
        cpu_attention: lambda query, key, value, *args, **kwargs: flop_counter.sdpa_flop_count(query, key, value)}
    was_training = model.training
    model.eval()                                   # counting must not update BatchNorm statistics
    try:
        with torch.no_grad(), flop_counter.FlopCounterMode(display=False, custom_mapping=mapping) as counter:
            model(x)
    except (RuntimeError, IndexError, ValueError, TypeError) as error:
        raise ValueError(f"model could not run on x of shape {tuple(x.shape)} ({x.dtype}): {error}") from error
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


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


def benchmark_module():
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


def latency_ms(fn: Callable[[], object], min_run_time: float = 0.1, calls: int | None = None) -> float:
    """Median milliseconds of one call of ``fn()``, on the current threads.

    By default ``torch.utils.benchmark`` times it (after a warm-up, repeatedly for at least
    ``min_run_time`` seconds): the number to report. With ``calls=n`` it instead times ``n`` single
    calls with ``time.perf_counter`` and returns their median, no warm-up: a quick, noisier
    estimate for a widget that must redraw in milliseconds.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    if isinstance(min_run_time, bool) or not isinstance(min_run_time, (int, float)) or not 0 < min_run_time < math.inf:
        raise ValueError(f"min_run_time must be a finite number of seconds > 0, got {min_run_time!r}")
    if calls is not None:
        times = []
        for _ in range(require_positive_int(calls, "calls")):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)
    timer = benchmark_module().Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
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


def speedup_vs_arithmetic(dense: nn.Module, slim: nn.Module, x: torch.Tensor, rounds: int = 7) -> tuple[float, float]:
    """``(measured speed-up, multiply-add ratio)`` of ``slim`` over ``dense`` on the batch ``x``:
    forward passes timed in turns (:func:`interleaved_latency_ms`, no gradients), beside what the
    speed-up would be if arithmetic were all that took time (:func:`multiply_adds`)."""
    with torch.no_grad():
        ms = interleaved_latency_ms({"dense": lambda: dense(x), "slim": lambda: slim(x)}, rounds=rounds)
    return ms["dense"] / ms["slim"], multiply_adds(dense, x) / multiply_adds(slim, x)
