"""Issue 16's targets for the residual digits CNN, over seeds, with yes/no per line.

    python benchmarks/cnn_results.py     # ~4 min on one thread; writes benchmarks/results/cnn.md

The dense model is the committed checkpoint (scripts/train_cnn_checkpoint.py); the dense recipe's
stability is checked by training it again from 5 seeds. Accuracies are on the digits' test split;
every choice (channels, blocks) uses training or validation images only.
"""

from __future__ import annotations

import copy
import statistics
from datetime import date
from pathlib import Path

import torch

from lessons_lib.cnn import (
    CNNConfig,
    DigitsCNN,
    block_scores_cosine,
    block_scores_loss,
    channel_scores,
    drop_blocks,
    load_trained_cnn,
    slim_cnn,
    train_cnn,
)
from lessons_lib.data import digits_split
from lessons_lib.measure import count_parameters, speedup_vs_arithmetic
from lessons_lib.repro import seed_everything
from lessons_lib.slimming import keep_top
from lessons_lib.training import accuracy

OUT = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
SEEDS = (0, 1, 2)
FINE_TUNE = dict(epochs=10, lr=1e-3)


def fine_tuned(model_fn, data) -> list[float]:
    """Test accuracy after the fine-tuning recipe, one fresh model per seed."""
    result = []
    for seed in SEEDS:
        model = model_fn()
        train_cnn(model, data, seed=seed, progress=False, **FINE_TUNE)
        result.append(accuracy(model, data.x_test, data.y_test))
    return result


def speed(dense, slim, data) -> dict:
    """batch -> (measured speed-up, multiply-add ratio), interleaved timing, one thread."""
    return {n: speedup_vs_arithmetic(dense, slim, data.x_test[:n]) for n in (1, 64)}


def scores_vs_random(model, data, removed=(0.125, 0.25), draws=10) -> dict:
    """Lesson 06's section 4 on one trained model: validation accuracy, no fine-tuning, with a share
    of every block's inner channels removed by each score, and the median of ``draws`` random choices."""
    result = {}
    for fraction in removed:
        n = round((1 - fraction) * model.config.inner[0])
        for kind in ("l1", "l2", "bn"):
            scores = channel_scores(model, kind)
            keep = {name: keep_top(s, n) for name, s in scores.items() if name != "residual"}
            result[fraction, kind] = accuracy(slim_cnn(model, None, keep), data.x_val, data.y_val)
        randoms = []
        for draw in range(draws):                     # random scores drawn as the lesson draws them
            g = torch.Generator().manual_seed(draw)
            keep = {f"blocks.{i}.inner": keep_top(torch.rand(c, generator=g), n)
                    for i, c in enumerate(model.config.inner)}
            randoms.append(accuracy(slim_cnn(model, None, keep), data.x_val, data.y_val))
        result[fraction, "random"] = statistics.median(randoms)
    return result


def l1_run(dense, data, seed: int) -> dict:
    """Lesson 06's Network Slimming run: the same 6 epochs at lr 1e-2 with and without the L1
    penalty on γ (strength 1e-2); median |γ| and max/min |γ| over every BatchNorm."""
    result = {}
    for strength in (0.0, 1e-2):
        model = copy.deepcopy(dense)
        train_cnn(model, data, epochs=6, lr=1e-2, seed=seed, progress=False, bn_l1=strength)
        gammas = torch.cat([m.weight.detach().abs() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)])
        n = round(0.75 * model.config.inner[0])                 # a quarter of each block's inner channels cut
        scores = channel_scores(model, "bn")
        cut = slim_cnn(model, None, {k: keep_top(s, n) for k, s in scores.items() if k != "residual"})
        result[strength] = (float(gammas.median()), float(gammas.min()), accuracy(model, data.x_val, data.y_val),
                            accuracy(cut, data.x_val, data.y_val))
    return result


def pct(values) -> str:
    return f"{100 * statistics.mean(values):.1f} [{100 * min(values):.1f}-{100 * max(values):.1f}]"


def main() -> None:
    seed_everything(0, threads=1)
    data = digits_split()
    dense = load_trained_cnn()
    dense_acc = accuracy(dense, data.x_test, data.y_test)
    stability, retrained = [], []
    for seed in range(5):
        torch.manual_seed(seed)
        model = DigitsCNN(CNNConfig())
        train_cnn(model, data, seed=seed, progress=False)
        stability.append(accuracy(model, data.x_test, data.y_test))
        retrained.append(model.eval())
    choice = {seed: scores_vs_random(model, data) for seed, model in enumerate(retrained)}
    rankings = [torch.equal(block_scores_cosine(m, data.x_val).argsort(),
                            block_scores_loss(m, data.x_val, data.y_val).argsort()) for m in retrained]
    scratch = {}                                   # the half-width network trained from random weights
    for epochs in (10, 20):
        scratch[epochs] = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = DigitsCNN(CNNConfig(width=16, inner=[16, 16, 16]))
            train_cnn(model, data, epochs=epochs, seed=seed, progress=False)
            scratch[epochs].append(accuracy(model, data.x_test, data.y_test))
    slimming = {seed: l1_run(dense, data, seed) for seed in SEEDS}

    scores = channel_scores(dense, "bn")
    inner = {name: keep_top(s, len(s) // 2) for name, s in scores.items() if name != "residual"}
    residual = keep_top(scores["residual"], len(scores["residual"]) // 2)
    variants = {"inner channels halved (|γ|)": lambda: slim_cnn(dense, None, inner),
                "inner and residual channels halved (|γ|)": lambda: slim_cnn(dense, residual, inner)}
    width = {name: fine_tuned(make, data) for name, make in variants.items()}
    speeds = {name: speed(dense, make(), data) for name, make in variants.items()}

    cosine, loss = block_scores_cosine(dense, data.x_val), block_scores_loss(dense, data.x_val, data.y_val)
    drop = int(cosine.argmin())
    shallow = lambda: drop_blocks(dense, [b for b in range(len(dense.blocks)) if b != drop])   # noqa: E731
    budget = count_parameters(shallow())
    # width pruning to the same parameter budget: the most channels that stay within it, inner only
    # or every group (residual and inner alike)
    def narrowed(k: int, residual_too: bool):
        return slim_cnn(dense, keep_top(scores["residual"], k) if residual_too else None,
                        {n: keep_top(s, k) for n, s in scores.items() if n != "residual"})

    arms = {f"depth: block {drop} dropped (lowest 1 - cos)": shallow}
    for residual_too, what in ((False, "inner channels per block"), (True, "channels in every group")):
        k = max(k for k in range(1, 33) if count_parameters(narrowed(k, residual_too)) <= budget)
        arms[f"width: {k} {what} (|γ|)"] = lambda k=k, r=residual_too: narrowed(k, r)
    depth_vs_width = {name: (count_parameters(make()), fine_tuned(make, data)) for name, make in arms.items()}
    depth_speed = {name: speed(dense, make(), data) for name, make in arms.items()}
    # speed does not depend on the weights' values: every group narrowed to each width, untrained
    widths = {k: speedup_vs_arithmetic(dense, narrowed(k, True).eval(), data.x_test[:64]) for k in range(16, 33, 2)}
    both = width["inner and residual channels halved (|γ|)"]
    lines = ["# CNN results (issue 16)", "",
             f"Shipped dense CNN: {count_parameters(dense):,} parameters, test accuracy {100 * dense_acc:.1f}%. "
             f"The recipe retrained from 5 seeds: {pct(stability)} (mean [min-max]).", "",
             f"## Channels halved, fine-tuned {FINE_TUNE['epochs']} epochs (seeds {', '.join(map(str, SEEDS))})", "",
             "| variant | parameters | test accuracy | speed-up batch 1 | batch 64 | multiply-add ratio |",
             "|---|---|---|---|---|---|"]
    for name, make in variants.items():
        (s1, _), (s64, ratio) = speeds[name][1], speeds[name][64]
        lines.append(f"| {name} | {count_parameters(make()):,} | {pct(width[name])} | {s1:.2f}x | {s64:.2f}x | "
                     f"{ratio:.2f}x |")
    lines += ["", "## Whole blocks", "",
              "| block | 1 - cos(input, output) | loss increase when dropped |", "|---|---|---|"]
    lines += [f"| {b} | {cosine[b]:.3f} | {loss[b]:.3f} |" for b in range(len(cosine))]
    lines += ["", f"On the 5 retrained models, the two rank the blocks alike on {sum(rankings)} of 5."]
    lines += ["", "| equal parameters, fine-tuned | parameters | test accuracy | speed-up batch 1 | batch 64 | "
              "multiply-add ratio |", "|---|---|---|---|---|---|"]
    for (name, (params, accs)), sp in zip(depth_vs_width.items(), depth_speed.values(), strict=True):
        lines.append(f"| {name} | {params:,} | {pct(accs)} | {sp[1][0]:.2f}x | {sp[64][0]:.2f}x | {sp[64][1]:.2f}x |")
    lines += ["", f"Half of every group fine-tuned 10 epochs: {pct(both)}; the same shape (16 channels everywhere) "
              f"trained from random weights with the recipe: {pct(scratch[10])} in 10 epochs, {pct(scratch[20])} "
              f"in 20 (seeds {', '.join(map(str, SEEDS))}; test accuracy)."]
    lines += ["", "Every group narrowed to k channels (untrained: speed does not depend on the weights), batch 64:", "",
              "| k | " + " | ".join(str(k) for k in widths) + " |", "|---|" + "---|" * len(widths),
              "| speed-up | " + " | ".join(f"{s:.2f}x" for s, _ in widths.values()) + " |",
              "| multiply-add ratio | " + " | ".join(f"{r:.2f}x" for _, r in widths.values()) + " |"]
    lines += ["", "## Choosing inner channels without fine-tuning (the 5 retrained models, validation accuracy)", "",
              "| removed | L1 | L2 | abs(γ) | median of 10 random | abs(γ) above the random median |",
              "|---|---|---|---|---|---|"]
    for fraction in (0.125, 0.25):
        cols = [[choice[s][fraction, k] for s in choice] for k in ("l1", "l2", "bn", "random")]
        above = sum(b > r for b, r in zip(cols[2], cols[3], strict=True))
        lines.append(f"| {fraction:.1%} | " + " | ".join(pct(c) for c in cols) + f" | {above} of {len(choice)} |")
    lines += ["", "## Network Slimming's L1 penalty on γ: 6 epochs at lr 1e-2 from the shipped model", "",
              "| seed | median abs(γ) without / with | smallest abs(γ) | validation | validation, a quarter of the "
              "inner channels cut by abs(γ), no fine-tuning |", "|---|---|---|---|---|"]
    for seed, runs in slimming.items():
        (m0, s0, a0, c0), (m1, s1, a1, c1) = runs[0.0], runs[1e-2]
        lines.append(f"| {seed} | {m0:.3f} / {m1:.3f} | {s0:.3f} / {s1:.3f} | {100 * a0:.1f} / {100 * a1:.1f} | "
                     f"{100 * c0:.1f} / {100 * c1:.1f} |")
    targets = [
        ("the dense recipe is stable: every one of 5 seeds within 2 points of the best",
         max(stability) - min(stability) <= 0.02),
        ("half the channels of every block (inner and residual) removed and fine-tuned: within 1 point of dense "
         "(mean of 3 seeds)", statistics.mean(both) >= dense_acc - 0.01),
        ("... and >= 1.6x faster at batch 64", speeds["inner and residual channels halved (|γ|)"][64][0] >= 1.6),
        ("the cosine score and the loss increase rank the blocks alike",
         torch.equal(cosine.argsort(), loss.argsort())),
    ]
    lines += ["", "## Targets", "", "| target | met |", "|---|---|"]
    lines += [f"| {text} | {'yes' if flag else '**no**'} |" for text, flag in targets]
    lines += ["", f"_Measured {date.today().isoformat()} by `benchmarks/cnn_results.py` (one PyTorch thread)._"]
    text = "\n".join(lines) + "\n"
    OUT.mkdir(exist_ok=True)
    (OUT / "cnn.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
