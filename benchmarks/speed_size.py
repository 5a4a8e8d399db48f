"""Reproduce lessons 04-05's measurements: slim speed-up, CSR crossover, storage, neuron scores.

    python benchmarks/speed_size.py     # ~1 min on 2 cores; writes benchmarks/results/speed_size.md

Timings use one PyTorch thread and torch.utils.benchmark (median of repeated runs). Accuracies
are on the test split, mean over 3 seeds; nothing is chosen on the test split.
"""

from __future__ import annotations

import copy
import statistics
import warnings
from datetime import date
from pathlib import Path

import torch

import lessons_lib.sparsity as sp
from lessons_lib.data import digits_split
from lessons_lib.experiments import storage_bytes
from lessons_lib.measure import interleaved_latency_ms, latency_ms, state_dict_bytes
from lessons_lib.models import MLP
from lessons_lib.pruning import prune_global, remove_masks
from lessons_lib.repro import seed_everything
from lessons_lib.slimming import keep_top
from lessons_lib.structured import (
    neuron_scores_activation,
    neuron_scores_l2,
    neuron_scores_outgoing,
    neuron_scores_taylor,
    slim_mlp,
    slim_mlp_refit,
)
from lessons_lib.training import accuracy, train, train_together, trained_mlp

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


def criteria_accuracy(seeds=range(5), draws: int = 20) -> tuple[dict, dict]:
    """Lesson 04's comparison: validation accuracy after removing 50% / 75% of both hidden layers'
    neurons by each score and by ``draws`` random choices, on the models trained_mlp(seed):
    zeroed (dropped, no folding), refit by least squares, and fine-tuned 10 epochs (scores and the
    first 4 random draws). Returns (rows for the table, claims)."""
    data = digits_split()
    val = (data.x_val, data.y_val)
    calibration, labels = data.x_train[:512], data.y_train[:512]
    criteria = ("weight norm", "outgoing norm", "activation", "Taylor")
    zeroed, refit, tuned, dense_val = {}, {}, {}, {}
    for seed in seeds:
        dense = trained_mlp(seed, progress=False)
        dense_val[seed] = accuracy(dense, *val)
        scores = {"weight norm": neuron_scores_l2(dense), "outgoing norm": neuron_scores_outgoing(dense),
                  "activation": neuron_scores_activation(dense, calibration),
                  "Taylor": neuron_scores_taylor(dense, calibration, labels)}
        for d in range(draws):
            g = torch.Generator().manual_seed(d)
            scores[f"random {d}"] = {"layers.0": torch.rand(256, generator=g), "layers.1": torch.rand(128, generator=g)}
        for fraction in (0.5, 0.75):
            runs, keys = [], []
            for name, per_layer in scores.items():
                kind = "random" if name.startswith("random") else name
                keep = {n: keep_top(x, round((1 - fraction) * len(x))) for n, x in per_layer.items()}
                zeroed.setdefault((fraction, kind, seed), []).append(accuracy(slim_mlp(dense, keep), *val))
                refit.setdefault((fraction, kind, seed), []).append(
                    accuracy(slim_mlp_refit(dense, keep, calibration), *val))
                if kind != "random" or int(name.split()[1]) < 4:
                    runs.append(slim_mlp(dense, keep))
                    keys.append(kind)
            train_together(runs, data, 10, [seed + 1] * len(runs), progress=False)
            for kind, run in zip(keys, runs, strict=True):
                tuned.setdefault((fraction, kind, seed), []).append(accuracy(run, *val))

    def mean(results, fraction, kind):
        return 100 * statistics.mean(v for seed in seeds for v in results[fraction, kind, seed])

    rows = {(f, kind): (mean(zeroed, f, kind), mean(refit, f, kind), mean(tuned, f, kind))
            for f in (0.5, 0.75) for kind in (*criteria, "random")}
    median = {(f, seed): statistics.median(zeroed[f, "random", seed]) for f in (0.5, 0.75) for seed in seeds}
    claims = {
        "04: no score beats random by more than 2 points on average before fine-tuning (50%, 75%)":
            all(rows[f, k][0] < rows[f, "random"][0] + 2 for f in (0.5, 0.75) for k in criteria),
        "04: at 75% activation and Taylor below the median random draw on every model":
            all(zeroed[0.75, k, seed][0] < median[0.75, seed] for k in ("activation", "Taylor") for seed in seeds),
        "04: least-squares refit brings every choice within 5 points of its dense model":
            all(v > dense_val[seed] - 0.05 for (f, k, seed), vs in refit.items() for v in vs),
        "04: 10 epochs of fine-tuning bring every run within 5 points of its dense model":
            all(v > dense_val[seed] - 0.05 for (f, k, seed), vs in tuned.items() for v in vs),
    }
    return rows, claims


def quantization_and_choice(seeds=range(3)) -> dict:
    """Lesson 05's claims over training seeds: int8 vs float32, pruning + int8, and the 'potential
    sparsity' chosen on validation."""
    data = digits_split()
    claims = {k: True for k in ("int8 under 30% of the bytes, within 1 point", "int8 faster than float32 at batch 256",
                                "pruned 90% + int8 zipped under half of either alone, within 1.5 points of dense",
                                "unstructured 90% within 1 point on validation")}
    for seed in seeds:
        dense = trained_mlp(seed, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic
            q = quantize_dynamic(dense, {torch.nn.Linear}, dtype=torch.qint8)
            pruned = copy.deepcopy(dense)
            prune_global(pruned, 0.9)
            train(pruned, data, epochs=10, seed=1, progress=False)
            remove_masks(pruned)
            pq = quantize_dynamic(pruned, {torch.nn.Linear}, dtype=torch.qint8)
        acc = {k: accuracy(m, data.x_test, data.y_test) for k, m in (("d", dense), ("q", q), ("p", pruned), ("pq", pq))}
        zipped = {k: state_dict_bytes(m, compress=True) for k, m in (("q", q), ("p", pruned), ("pq", pq))}
        x = data.x_test.repeat(2, 1)[:256]
        with torch.no_grad():
            ms = interleaved_latency_ms({"d": lambda d=dense, x=x: d(x), "q": lambda q=q, x=x: q(x)}, rounds=5,
                                        min_run_time=0.02)
        claims["int8 under 30% of the bytes, within 1 point"] &= (
            state_dict_bytes(q) < 0.3 * state_dict_bytes(dense) and abs(acc["q"] - acc["d"]) < 0.01)
        claims["int8 faster than float32 at batch 256"] &= ms["q"] < ms["d"]
        claims["pruned 90% + int8 zipped under half of either alone, within 1.5 points of dense"] &= (
            zipped["pq"] < 0.5 * min(zipped["q"], zipped["p"]) and acc["pq"] > acc["d"] - 0.015)
        claims["unstructured 90% within 1 point on validation"] &= (
            accuracy(pruned, data.x_val, data.y_val) >= accuracy(dense, data.x_val, data.y_val) - 0.01)
    return {f"05: {k} (seeds {list(seeds)})": v for k, v in claims.items()}


def main() -> None:
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    seed_everything(0, threads=1)
    speedup, crossover = layer_timings()
    data = digits_split()
    model = trained_mlp(0, progress=False)
    mlp = mlp_speedup(model, data.x_test)
    storage = {s: storage_bytes(model, s) for s in (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)}
    criteria, claims = criteria_accuracy()
    claims |= quantization_and_choice()

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
    lines += ["", "## Removing hidden neurons (both layers): validation accuracy %, mean of 5 trained models",
              "", "Random: 20 draws per model. Zeroed: removed neurons dropped; refit: next layers refit by",
              "least squares on 512 calibration images; fine-tuned: 10 epochs (random: the first 4 draws).", "",
              "| removed | choice | zeroed | refit | fine-tuned |", "|---|---|---|---|---|"]
    lines += [f"| {f:.0%} | {name} | {z:.1f} | {r:.1f} | {t:.1f} |" for (f, name), (z, r, t) in criteria.items()]
    lines += ["", "## The lessons' claims", "", "| claim | holds |", "|---|---|"]
    lines += [f"| {claim} | {met(ok)} |" for claim, ok in claims.items()]
    lines += ["", f"_Measured {date.today().isoformat()} by `benchmarks/speed_size.py` (one PyTorch thread)._"]
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "speed_size.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
