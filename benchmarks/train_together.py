"""How much faster is training R digits MLPs together (``training.train_together``) than one by one?

    python benchmarks/train_together.py     # ~1 minute; writes benchmarks/results/train_together.md

Milliseconds per model and epoch, one PyTorch thread: R separate ``train`` calls against one
``train_together`` call over the same R models (half of them with a 90% global mask, as in
lesson 03), median of 3 repetitions. Lesson 03 trains 5 dense models, then 65 runs together.
"""

from __future__ import annotations

import statistics
import time
from datetime import date
from pathlib import Path

import torch

from lessons_lib.data import digits_split
from lessons_lib.models import MLP
from lessons_lib.pruning import prune_global
from lessons_lib.training import train, train_together

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "train_together.md"
EPOCHS = 3


def models(r: int) -> list[MLP]:
    torch.manual_seed(0)
    out = [MLP() for _ in range(r)]
    for model in out[::2]:
        prune_global(model, 0.9)
    return out


def ms_per_model_epoch(r: int, data) -> tuple[float, float]:
    separate, together = [], []
    for _ in range(3):
        group = models(r)
        start = time.perf_counter()
        for i, model in enumerate(group):
            train(model, data, EPOCHS, seed=i, progress=False)
        separate.append((time.perf_counter() - start) / (r * EPOCHS))
        group = models(r)
        start = time.perf_counter()
        train_together(group, data, EPOCHS, seeds=list(range(r)), progress=False)
        together.append((time.perf_counter() - start) / (r * EPOCHS))
    return 1000 * statistics.median(separate), 1000 * statistics.median(together)


if __name__ == "__main__":
    torch.set_num_threads(1)
    data = digits_split()
    train_together(models(2), data, 1, seeds=[0, 1], progress=False)            # warm-up
    lines = ["# Training many MLPs together", "",
             "| models | one by one (ms per model-epoch) | together (ms per model-epoch) | speed-up |",
             "|---|---|---|---|"]
    for r in (5, 13, 65):
        alone, joint = ms_per_model_epoch(r, data)
        lines.append(f"| {r} | {alone:.1f} | {joint:.1f} | {alone / joint:.1f}x |")
    lines += ["", f"_Measured {date.today().isoformat()} with torch {torch.__version__}, CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}, one thread, by `benchmarks/train_together.py`._"]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
