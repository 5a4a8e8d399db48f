"""Lesson 08's assignment: prune the tiny GPT to a budget. The rules, the grader's held-out
problems, and how a submission is measured and scored.

A submission is a :class:`~lessons_lib.gpt.GPT` that must
- store at most :data:`BUDGET` of the dense model's non-embedding parameters (every value the
  model stores counts, zero or not: a masked weight still costs memory and time),
- answer at least :data:`ACCURACY_FLOOR` of the grader's held-out problems exactly, and
- run a batch of 256 problems at least :data:`MIN_SPEEDUP` times faster than the dense model.

The held-out problems are the *last* pairs of the permutation that ``addition_task(3, seed=0)``
draws its train/validation/test splits from, so no split a lesson uses contains them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import torch
from torch import nn

from .gpt import GPT, GPTConfig
from .measure import latency_ms
from .tasks import encode, exact_match
from .validate import require_positive_int

BUDGET = 0.40            # share of the dense model's non-embedding parameters a submission may keep
ACCURACY_FLOOR = 0.90    # exact match on the held-out problems
MIN_SPEEDUP = 1.25       # dense time / submission time, batch of 256 problems, one thread
POINTS = {"parameter budget": 4, "accuracy floor": 4, "speed-up": 2}
EMBEDDINGS = ("tok_emb.", "pos_emb.")


def non_embedding_parameters(model: nn.Module) -> int:
    """Values stored as parameters outside the token and position embeddings (Kaplan et al.'s
    count). A pruned layer's ``weight_orig`` counts in full: a mask removes nothing from storage."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(EMBEDDINGS))


def allowed_parameters(dense: nn.Module) -> int:
    """The budget in parameters: :data:`BUDGET` of ``dense``'s non-embedding parameters, rounded down."""
    return int(BUDGET * non_embedding_parameters(dense))


def parameter_costs(config: GPTConfig) -> dict[str, int]:
    """Parameters one attention head and one FFN neuron cost: a head owns E rows (weights and
    biases) of q, k and v and E columns of out (4·D·E + 3·E); a neuron a row of fc1 with its
    bias and a column of fc2 (2·D + 1). D = d_model, E = head_dim."""
    D, E = config.d_model, config.head_dim
    return {"head": 4 * D * E + 3 * E, "FFN neuron": 2 * D + 1}


def held_out_problems(n: int = 2_000) -> tuple[torch.Tensor, torch.Tensor]:
    """The grader's problems: ``x`` (n, 11) inputs and ``y`` (n, 4) answers of 3-digit addition,
    disjoint from every split of ``addition_task(3, seed=0)`` (up to 10**6 - n problems drawn)."""
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
        raise ValueError(f"n must be an int in [1, 100000], got {n!r}")
    pairs = torch.randperm(10**6, generator=torch.Generator().manual_seed(0))[-n:]
    return encode(pairs // 1000, pairs % 1000, 3)


def speedup(dense: nn.Module, model: nn.Module, x: torch.Tensor, rounds: int = 3) -> float:
    """Median over ``rounds`` of dense time / ``model`` time for one forward pass over ``x``,
    one thread, timed alternately so a busy moment hits both."""
    require_positive_int(rounds, "rounds")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            ratios = [latency_ms(lambda: dense(x)) / latency_ms(lambda: model(x)) for _ in range(rounds)]
    finally:
        torch.set_num_threads(threads)
    return statistics.median(ratios)


@dataclass(frozen=True)
class Criterion:
    """One line of the score table."""

    name: str
    measured: str
    target: str
    passed: bool
    max_points: int
    hint: str = ""
    timed: bool = False            # decided by a timing, so a busy or slower machine can change it

    @property
    def points(self) -> int:
        return self.max_points if self.passed else 0


@dataclass(frozen=True)
class Score:
    """The graded criteria; ``points`` is what nbgrader reads as the grade cell's partial credit."""

    criteria: tuple[Criterion, ...]

    @property
    def points(self) -> int:
        return sum(c.points for c in self.criteria)

    @property
    def max_points(self) -> int:
        return sum(c.max_points for c in self.criteria)

    def table(self) -> str:
        """The score table, with what was measured (a timing among it) and a hint per miss."""
        rows = [("criterion", "measured", "target", "points")]
        rows += [(c.name, c.measured, c.target, f"{c.points} / {c.max_points}") for c in self.criteria]
        rows.append(("total", "", "", f"{self.points} / {self.max_points}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines += [f"✗ {c.name}: {c.hint}" for c in self.criteria if not c.passed and c.hint]
        return "\n".join(lines)

    def summary(self, timed: bool = True) -> str:
        """One line per criterion without the timing's digits. A timed criterion can still pass on
        one machine and fail on a slower or busier one; ``timed=False`` leaves those out, so what
        is left reads the same on every machine."""
        criteria = [c for c in self.criteria if timed or not c.timed]
        total = f"{sum(c.points for c in criteria)} / {sum(c.max_points for c in criteria)}"
        return "\n".join(f"{'✓' if c.passed else '✗'} {c.name:<16} {c.points} / {c.max_points}"
                         for c in criteria) + f"\n  {'total' if timed else 'without timing':<16} {total}"


def score_submission(submission: GPT, dense: GPT, x: torch.Tensor, y: torch.Tensor) -> Score:
    """Measure ``submission`` against ``dense`` on held-out problems ``x`` (n, 11), ``y`` (n, 4).
    Accuracy and speed earn points only within the budget: the dense model itself earns none."""
    for name, model in (("submission", submission), ("dense", dense)):
        if not isinstance(model, GPT):
            raise TypeError(f"{name} must be a GPT, got {type(model).__name__}")
    costs = parameter_costs(dense.config)
    kept, full = non_embedding_parameters(submission), non_embedding_parameters(dense)
    allowed = allowed_parameters(dense)
    within = kept <= allowed
    masked = any(name.endswith("_mask") for name, _ in submission.named_buffers())
    accuracy = exact_match(submission, x, y)
    faster = speedup(dense, submission, x[:256])
    over = "met, but it counts only once the model is within the parameter budget"
    return Score((
        Criterion("parameter budget", f"{kept:,} ({kept / full:.1%} of dense)",
                  f"<= {allowed:,} ({BUDGET:.0%})", within, POINTS["parameter budget"],
                  "masks zero weights but store them all: remove heads and neurons (slim_gpt, prune_to)"
                  if masked else f"remove {kept - allowed:,} more (a head costs {costs['head']:,}, "
                  f"an FFN neuron {costs['FFN neuron']})"),
        Criterion("accuracy floor", f"{accuracy:.1%} of {len(x):,} held-out", f">= {ACCURACY_FLOOR:.0%}",
                  within and accuracy >= ACCURACY_FLOOR, POINTS["accuracy floor"],
                  over if accuracy >= ACCURACY_FLOOR else
                  "fine-tune longer, prune in more steps, or keep more heads and fewer FFN neurons"),
        Criterion("speed-up", f"{faster:.2f}x (batch 256, 1 thread)", f">= {MIN_SPEEDUP}x",
                  within and faster >= MIN_SPEEDUP, POINTS["speed-up"],
                  over if faster >= MIN_SPEEDUP else
                  "only removed structure runs faster; zeros in dense matrices cost the same time",
                  timed=True),
    ))
