"""Reproducibility: one call at the top of every lesson."""

from __future__ import annotations

import numbers
import random

import numpy as np
import torch

from .validate import require_positive_int


def seed_everything(seed: int = 0, threads: int = 1) -> None:
    """Seed Python, NumPy and PyTorch, and fix PyTorch's CPU thread count.

    One thread is the default on purpose: these lessons use small models, where a second
    thread gains little, and on a busy 2-core machine (Binder, Colab, a classroom laptop)
    two threads fighting another process can be 10x slower than one. A fixed count also keeps
    floating-point sums in the same order, so printed numbers repeat on the same CPU and PyTorch
    version; another CPU or version may add in another order and move the last bits.

    Args:
        seed: an int in [0, 2**32).
        threads: number of intra-op CPU threads for PyTorch, >= 1.
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32) (numpy's limit), got {seed!r}")
    seed = int(seed)
    threads = require_positive_int(threads, "threads")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
