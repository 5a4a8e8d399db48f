"""Reproduce lessons 04-05's measurements: slim speed-up, CSR crossover, storage, neuron scores.

    python benchmarks/speed_size.py     # ~1 min on 2 cores; writes benchmarks/results/speed_size.md

Timings use one PyTorch thread and torch.utils.benchmark (median of repeated runs). Accuracies
are on the test split, mean over 3 seeds; nothing is chosen on the test split.
"""

from __future__ import annotations

import statistics
import warnings
from datetime import date
from pathlib import Path

import torch

import lessons_lib.sparsity as sp
from lessons_lib.data import digits_split
from lessons_lib.experiments import storage_bytes
from lessons_lib.measure import latency_ms
from lessons_lib.models import MLP
from lessons_lib.repro import seed_everything
from lessons_lib.slimming import keep_top
from lessons_lib.structured import neuron_scores_activation, neuron_scores_l2, neuron_scores_taylor, slim_mlp
from lessons_lib.training import accuracy, train, trained_mlp

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SPARSITIES = [0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99]


def layer_timings() -> tuple[dict, dict]:
    """Slim-50% speed-up and CSR crossover for a 1024x1024 weight at batch 1 and 256."""
    weight = torch.randn(1024, 1024)
    speedup, crossover = {}, {}
    for batch in (1, 256):
        x = torch.randn(1024, batch)
        dense = latency_ms(lambda x=x: weight @ x)
        half = weight[:512].contiguous()
        speedup[batch] = dense / latency_ms(lambda x=x, half=half: half @ x)
        crossover[batch] = None
        for sparsity in SPARSITIES:
            csr = (weight * sp.magnitude_mask(weight, sparsity)).to_sparse_csr()
            if latency_ms(lambda x=x, csr=csr: csr @ x) < dense:
                crossover[batch] = sparsity
                break
    return speedup, crossover


def mlp_speedup(model: MLP, x_pool: torch.Tensor) -> dict:
    """Slim (half the hidden neurons, by weight norm) vs dense MLP forward, batch 1 and 256."""
    slim = slim_mlp(model, {name: keep_top(s, len(s) // 2) for name, s in neuron_scores_l2(model).items()},
                    activation=torch.relu)
    result = {}
    with torch.no_grad():
        for batch in (1, 256):
            x = x_pool[:batch]
            result[batch] = latency_ms(lambda x=x: model(x)) / latency_ms(lambda x=x: slim(x))
    return result


def criteria_accuracy(seeds=range(3)) -> dict:
    """Test accuracy before / after 10 epochs of fine-tuning when removing 25/50/75% of neurons."""
    results = {}
    for seed in seeds:
        seed_everything(seed, threads=1)
        data = digits_split()
        dense = trained_mlp(seed, progress=False)
        g = torch.Generator().manual_seed(seed)
        scores = {"weight norm": neuron_scores_l2(dense), "activation": neuron_scores_activation(dense, data.x_train),
                  "Taylor": neuron_scores_taylor(dense, data.x_train, data.y_train),
                  "random": {"layers.0": torch.rand(256, generator=g), "layers.1": torch.rand(128, generator=g)}}
        for fraction in (0.25, 0.5, 0.75):
            for name, per_layer in scores.items():
                keep = {layer: keep_top(s, round((1 - fraction) * len(s))) for layer, s in per_layer.items()}
                model = slim_mlp(dense, keep, activation=torch.relu)
                before = accuracy(model, data.x_test, data.y_test)
                train(model, data, 10, seed=seed + 1, progress=False)
                results.setdefault((name, fraction), []).append((before, accuracy(model, data.x_test, data.y_test)))
    return {k: (100 * statistics.mean(b for b, _ in v), 100 * statistics.mean(a for _, a in v))
            for k, v in results.items()}


def main() -> None:
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    seed_everything(0, threads=1)
    speedup, crossover = layer_timings()
    data = digits_split()
    model = trained_mlp(0, progress=False)
    mlp = mlp_speedup(model, data.x_test)
    storage = {s: storage_bytes(model, s) for s in (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)}
    criteria = criteria_accuracy()

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    lines = ["# Speed and size results (lessons 04-05)", "",
             "## Slim (half the neurons / rows) vs dense, one thread", "",
             "| what | batch 1 | batch 256 | target >= 1.8x met |", "|---|---|---|---|",
             f"| 1024x1024 weight, half the rows | {speedup[1]:.2f}x | {speedup[256]:.2f}x | "
             f"{met(min(speedup.values()) >= 1.8)} |",
             f"| digits MLP 64-256-128-10, half the hidden neurons | {mlp[1]:.2f}x | {mlp[256]:.2f}x | "
             f"{met(min(mlp.values()) >= 1.8)} |", "",
             "CSR (`to_sparse_csr`, 1024x1024, magnitude mask) first faster than dense at: "
             + ", ".join(f"batch {b}: {'never' if c is None else f'{c:.0%}'}" for b, c in crossover.items())
             + f" (tested {', '.join(f'{a:.0%}' for a in SPARSITIES)}).", "",
             "## Storage of the digits MLP (kB), global magnitude pruning", "",
             "| sparsity | dense | masked (prune) | CSR int64 | CSR int32 | zlib of dense |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {a:.0%} | " + " | ".join(f"{b[k] / 1e3:.0f}" for k in ("dense", "masked", "csr_int64", "csr_int32",
                                                                        "compressed")) + " |"
              for a, b in storage.items()]
    lines += ["", "## Removing hidden neurons (both layers), test accuracy %, mean of 3 seeds", "",
              "| removed | criterion | before fine-tuning | after 10 epochs |", "|---|---|---|---|"]
    lines += [f"| {f:.0%} | {name} | {b:.1f} | {a:.1f} |" for (name, f), (b, a) in criteria.items()]
    lines += ["", f"_Measured {date.today().isoformat()} by `benchmarks/speed_size.py` (one PyTorch thread)._"]
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "speed_size.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
