"""Reproduce the headline accuracy results of lessons 02-03 over 5 seeds, and check the targets and the
lessons' claims (yes/no each).

    python benchmarks/pruning_results.py     # ~1.5 min on 2 cores; writes benchmarks/results/pruning.md

Everything is reported on the test split; nothing is chosen on it (the plans, learning rate
and epochs are fixed in lessons_lib.schedules).
"""

from __future__ import annotations

import copy
import json
import statistics
import sys
from datetime import date
from pathlib import Path

import torch

from lessons_lib.data import digits_split
from lessons_lib.models import MLP
from lessons_lib.pruning import linear_layers, prune_global, prune_lamp, prune_layerwise
from lessons_lib.repro import seed_everything
from lessons_lib.schedules import METHODS, compare_schedules, cubic_plan, train_with_plan
from lessons_lib.training import accuracy, train

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
SEEDS = range(5)
TARGETS = (0.8, 0.9, 0.95, 0.98)
SCOPE_SPARSITIES = (0.9, 0.95, 0.98)
STAGES = {"no fine-tuning": "one-shot, no fine-tuning", "one-shot": "one-shot + 30 epochs",
          "cubic": "cubic schedule, 30 epochs"}


def scope_comparison(data, seed: int, sparsities=SCOPE_SPARSITIES, epochs: int = 30) -> dict:
    """Layer-wise vs global magnitude pruning: one-shot before and after ``epochs`` of fine-tuning,
    and the cubic schedule over the same ``epochs``."""
    seed_everything(seed, threads=1)
    dense = MLP()
    train(dense, data, 30, seed=seed, progress=False)
    result = {}
    for sparsity in sparsities:
        for scope, prune_fn in (("layer-wise", prune_layerwise), ("global", prune_global)):
            model = copy.deepcopy(dense)
            prune_fn(model, sparsity)
            result[scope, "no fine-tuning", sparsity] = accuracy(model, data.x_test, data.y_test)
            train(model, data, epochs, seed=seed + 1000, progress=False)
            result[scope, "one-shot", sparsity] = accuracy(model, data.x_test, data.y_test)
            model = copy.deepcopy(dense)
            train_with_plan(model, data, cubic_plan(sparsity, epochs, 10), epochs, seed=seed + 1000,
                            progress=False, scope=scope)
            result[scope, "cubic", sparsity] = accuracy(model, data.x_test, data.y_test)
        model = copy.deepcopy(dense)                     # lesson 02's fix for layer collapse
        prune_lamp(model, sparsity)
        result["LAMP", "no fine-tuning", sparsity] = accuracy(model, data.x_test, data.y_test)
        result["LAMP", "layers.1 weights left", sparsity] = int((linear_layers(model)["layers.1"].weight != 0).sum())
    return result


def stats(values: list[float]) -> tuple[float, float]:
    return 100 * statistics.mean(values), 100 * statistics.stdev(values)


def main() -> None:
    torch.set_num_threads(1)
    data = digits_split()
    runs = compare_schedules(data, SEEDS, TARGETS)
    scopes = [scope_comparison(data, seed) for seed in SEEDS]
    control = stats([r.control for r in runs])
    table = {(m, t): stats([r.accuracy[m, t] for r in runs]) for m in METHODS for t in TARGETS}
    scope = {k: stats([s[k] for s in scopes]) for k in scopes[0] if k[1] != "layers.1 weights left"}
    paired = {(m, t): [r.accuracy[m, t] for r in runs] for m in METHODS for t in TARGETS}
    tuned = ("one-shot", "iterative", "cubic")
    best = {t: max(table[m, t][0] for m in tuned) for t in TARGETS}
    checks = [
        ("90%: no loss vs control (within 0.3 points)", control[0] - best[0.9] <= 0.3),
        ("95%: within 1 point of control", control[0] - best[0.95] <= 1.0),
        ("98%: within 5 points of control", control[0] - best[0.98] <= 5.0),
        *[(f"global beats layer-wise at {t:.0%}, {STAGES[stage]}",
           scope["global", stage, t][0] > scope["layer-wise", stage, t][0])
          for stage in STAGES for t in SCOPE_SPARSITIES],
        ("every fine-tuned result beats the same sparsity without fine-tuning",
         all(table[m, t][0] > table["no fine-tuning", t][0] for m in tuned for t in TARGETS)),
        # the lessons' claims (issue 14): 02's LAMP, 03's scope control
        ("02: LAMP beats global magnitude before fine-tuning at 90% and 95%, every seed",
         all(s["LAMP", "no fine-tuning", t] > s["global", "no fine-tuning", t] for s in scopes for t in (0.9, 0.95))),
        ("02: at 98% LAMP keeps more than 100 of layers.1's weights, every seed",
         all(s["LAMP", "layers.1 weights left", 0.98] > 100 for s in scopes)),
        ("03: layer-wise one-shot beats global one-shot (+30 epochs) at 95% and 98%, every seed",
         all(lw > gl for t in (0.95, 0.98)
             for lw, gl in zip(paired["one-shot layer-wise", t], paired["one-shot", t], strict=True))),
        ("03: cubic beats layer-wise one-shot at 98%, every seed",
         all(c > lw for c, lw in zip(paired["cubic", 0.98], paired["one-shot layer-wise", 0.98], strict=True))),
    ]

    def cell(mean_std: tuple[float, float]) -> str:
        return f"{mean_std[0]:.1f} ± {mean_std[1]:.1f}"

    lines = [f"# Pruning results (lessons 02-03), {len(SEEDS)} seeds", "",
             f"Test accuracy (%), mean ± std over seeds {list(SEEDS)}. Dense: {stats([r.dense for r in runs])[0]:.1f}; "
             f"dense control trained the same 30 extra epochs: {cell(control)}.", "",
             "| global magnitude pruning, 30 epochs after the dense model | "
             + " | ".join(f"{t:.0%}" for t in TARGETS) + " |", "|---|" + "---|" * len(TARGETS)]
    lines += [f"| {m} | " + " | ".join(cell(table[m, t]) for t in TARGETS) + " |" for m in METHODS]
    lines += ["", "| scope | " + " | ".join(f"{t:.0%}" for t in SCOPE_SPARSITIES) + " |", "|---|---|---|---|"]
    lines += [f"| {sc}, {label} | " + " | ".join(cell(scope[sc, stage, t]) for t in SCOPE_SPARSITIES) + " |"
              for stage, label in STAGES.items() for sc in ("layer-wise", "global")]
    lines += ["| LAMP (lesson 02), one-shot, no fine-tuning | "
              + " | ".join(cell(scope["LAMP", "no fine-tuning", t]) for t in SCOPE_SPARSITIES) + " |"]
    lines += ["", "| target or claim | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in checks]
    lines += ["", f"_Measured {date.today().isoformat()} by `benchmarks/pruning_results.py` (one PyTorch thread)._"]
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "pruning.md").write_text(text)
    flat = {" | ".join(map(str, k)): v for k, v in {**table, **scope}.items()}
    (OUT / "pruning.json").write_text(json.dumps({"control": control, "accuracy": flat,
                                                  "targets": dict(checks)}, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
