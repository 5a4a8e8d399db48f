"""Reproduce lessons 06-08's transformer results, over 3 seeds, and check the targets.

    python benchmarks/transformer_results.py     # ~7 min on one thread; writes benchmarks/results/transformer.md

The dense model is the committed checkpoint (trained once by scripts/train_checkpoint.py); the
seeds vary the calibration batch and the fine-tuning. Accuracies are exact match on the 2,000
test problems; head and neuron choices use validation problems only.
"""

from __future__ import annotations

import statistics
from datetime import date
from pathlib import Path

import torch

import lessons_lib.sparsity as sp
from lessons_lib.gpt import CHECKPOINT, load_checkpoint
from lessons_lib.gpt_structured import slim_gpt_to
from lessons_lib.measure import count_parameters, latency_ms
from lessons_lib.pruning import input_norms, masked_copy, prunable_layers
from lessons_lib.repro import seed_everything
from lessons_lib.sparsity import wanda_mask
from lessons_lib.tasks import addition_task, exact_match, train_on_task

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
SEEDS = range(3)


def unstructured(dense, task, seed: int) -> dict:
    """Row-wise magnitude vs Wanda at 50/60/70% and 2:4, calibration batch drawn with ``seed``."""
    calibration = task.x_train[torch.randperm(len(task.x_train), generator=torch.Generator().manual_seed(seed))[:128]]
    norms = input_norms(dense, calibration, prunable_layers(dense))
    result = {}
    for pattern in ("50%", "60%", "70%", "2:4"):
        for method in ("magnitude", "Wanda"):
            def mask(name, weight, pattern=pattern, method=method):
                n = norms[name] if method == "Wanda" else None
                if pattern == "2:4":
                    return sp.n_m_mask(weight.detach().abs() * (1 if n is None else n[None, :]), 2, 4)
                return wanda_mask(weight, n, int(pattern[:-1]) / 100)
            masks = {name: mask(name, layer.weight) for name, layer in prunable_layers(dense).items()}
            model = masked_copy(dense, masks)
            result[method, pattern] = exact_match(model, task.x_test, task.y_test)
    return result


def structured(dense, task, seed: int, steps: int) -> dict:
    """Half the heads and half the FFN: one-shot vs two-step iterative, ``steps`` of fine-tuning."""
    val, calibration = (task.x_val[:500], task.y_val[:500]), task.x_train[:256]
    one_shot = slim_gpt_to(dense, 2, 128, *val, calibration)
    before = exact_match(one_shot, task.x_test, task.y_test)
    train_on_task(one_shot, task, steps, lr=3e-3, seed=seed, progress=False)
    step = slim_gpt_to(dense, 3, 192, *val, calibration)
    train_on_task(step, task, steps // 2, lr=3e-3, seed=seed, progress=False)
    iterative = slim_gpt_to(step, 2, 128, *val, calibration)
    train_on_task(iterative, task, steps - steps // 2, lr=3e-3, seed=seed + 100, progress=False)
    return {"before fine-tuning": before, "one-shot": exact_match(one_shot, task.x_test, task.y_test),
            "iterative": exact_match(iterative, task.x_test, task.y_test), "model": one_shot}


def curve(dense, task, seed: int, steps: int = 300) -> dict:
    """Exact match after ``steps`` of fine-tuning vs the fraction of heads and FFN neurons kept."""
    val, calibration = (task.x_val[:500], task.y_val[:500]), task.x_train[:256]
    points = {}
    for heads, ffn in ((3, 192), (2, 128), (1, 64)):
        model = slim_gpt_to(dense, heads, ffn, *val, calibration)
        train_on_task(model, task, steps, lr=3e-3, seed=seed, progress=False)
        points[1 - count_parameters(model) / count_parameters(dense)] = exact_match(model, task.x_test, task.y_test)
    return points


def mean(values) -> float:
    return 100 * statistics.mean(values)


def main() -> None:
    seed_everything(0, threads=1)
    dense = load_checkpoint(CHECKPOINT)
    task = addition_task(3)
    dense_em = 100 * exact_match(dense, task.x_test, task.y_test)
    unstr = [unstructured(dense, task, s) for s in SEEDS]
    struct = {steps: [structured(dense, task, s, steps) for s in SEEDS] for steps in (300, 1000)}
    curves = [curve(dense, task, s) for s in SEEDS]
    batch = task.x_test[:256]
    with torch.no_grad():
        speedup = latency_ms(lambda: dense(batch)) / latency_ms(lambda: struct[300][0]["model"](batch))

    lines = ["# Transformer results (lessons 06-08)", "",
             f"Dense checkpoint: {dense_em:.1f}% test exact match (2,000 held-out problems). Means over "
             f"{len(SEEDS)} seeds (calibration batch / fine-tuning order).", "",
             "## Without retraining: per-row magnitude vs Wanda-style |W|·‖X‖", "",
             "| pattern | magnitude | Wanda | Wanda better |", "|---|---|---|---|"]
    for pattern in ("50%", "60%", "70%", "2:4"):
        m, w = mean([u["magnitude", pattern] for u in unstr]), mean([u["Wanda", pattern] for u in unstr])
        lines.append(f"| {pattern} | {m:.1f} | {w:.1f} | {'yes' if w > m else 'no'} |")
    lines += ["", "## Half the heads and half the FFN neurons (52% of parameters kept)", "",
              "| fine-tuning steps | before fine-tuning | one-shot | iterative (2 steps) | within 1 point of dense |",
              "|---|---|---|---|---|"]
    for steps, runs in struct.items():
        best = max(mean([r["one-shot"] for r in runs]), mean([r["iterative"] for r in runs]))
        lines.append(f"| {steps} | {mean([r['before fine-tuning'] for r in runs]):.1f} | "
                     f"{mean([r['one-shot'] for r in runs]):.1f} | {mean([r['iterative'] for r in runs]):.1f} | "
                     f"{'yes' if dense_em - best <= 1 else '**no**'} |")
    lines += ["", f"Latency, batch 256, one thread: slim {speedup:.2f}x faster than dense "
              f"(target >= 1.6x: {'met' if speedup >= 1.6 else '**not met**'}).", "",
              "## Exact match after 300 fine-tuning steps vs parameters removed", "",
              "| parameters removed | exact match |", "|---|---|"]
    for removed in curves[0]:
        lines.append(f"| {removed:.0%} | {mean([c[removed] for c in curves]):.1f} |")
    lines += ["", f"_Measured {date.today().isoformat()} by `benchmarks/transformer_results.py` (one PyTorch thread)._"]
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "transformer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
