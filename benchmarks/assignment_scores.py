"""Lesson 10's assignment on the published curve: what the reference solution, a quick
300-step attempt and a 1,000-step attempt score, each over a few fine-tuning seeds.

    python benchmarks/assignment_scores.py                 # ~5 min on an idle core; prints a table
    python benchmarks/assignment_scores.py --seeds 0 1 2 --jobs 3
    python benchmarks/assignment_scores.py --explore       # adds two 4,000-step attempts at other shapes
    python benchmarks/assignment_scores.py --only "300 steps" --seeds 0

Every attempt is trained on one thread (``--jobs`` trains several at once, in separate
processes), then scored one after another in this process, with nothing else of ours running,
exactly as the grader scores: ``score_submission`` under ``exam_rules()``, against the shipped
dense model, on ``--draws`` fixed draws of 2,000 held-out problems (seeds 1, 2, ...), one timing
per draw. The speed-up, and through the all-floors rule every point beyond the floors, depends
on the machine and on how busy it is: say which machine, and whether it was idle, when quoting.

The attempts (fine-tuning seed ``s`` from ``--seeds``):
- reference: lesson 10's solution cell (``s = 0`` is that cell exactly): cut to 3 heads and 128
  FFN neurons per layer, 200 steps; then to 3 heads and 53 neurons, 600 steps; ``lr=2e-3``,
  batch 256, fine-tuning seed ``steps + s``.
- the reference's recipe with 300 steps (75 + 225) and with 1,000 (250 + 750).
- lesson 09's recipe at the shape the old planning table handed out (2 heads and 85 neurons per
  layer): one cut, then 300 or 1,000 steps, ``lr=3e-3``, batch 128, seed ``1 + s``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import torch

from lessons_lib.assignment import exam_rules, held_out_problems, score_submission
from lessons_lib.gpt import GPT, GPTConfig, load_checkpoint
from lessons_lib.gpt_structured import slim_gpt_to
from lessons_lib.repro import seed_everything
from lessons_lib.tasks import addition_task, train_on_task

REFERENCE = ((3, 128, 200), (3, 53, 600))


def scaled(plan: tuple, total: int) -> tuple:
    """``plan`` with its fine-tuning steps scaled to ``total`` (the last step takes the rounding)."""
    steps = [round(total * s / sum(p[2] for p in plan)) for *_, s in plan]
    steps[-1] = total - sum(steps[:-1])
    return tuple((heads, ffn, s) for (heads, ffn, _), s in zip(plan, steps, strict=True))


ATTEMPTS = {   # name: (cuts as (heads, ffn, steps), lr, batch size, calibration problems, seed offset)
    "reference (10's solution cell)": (REFERENCE, 2e-3, 256, 512, 0),
    "reference recipe, 300 steps": (scaled(REFERENCE, 300), 2e-3, 256, 512, 0),
    "reference recipe, 1,000 steps": (scaled(REFERENCE, 1000), 2e-3, 256, 512, 0),
    "lesson 09's recipe, 2 heads + 85, 300 steps": (((2, 85, 300),), 3e-3, 128, 256, 1),
    "lesson 09's recipe, 2 heads + 85, 1,000 steps": (((2, 85, 1000),), 3e-3, 128, 256, 1),
}
EXPLORED = {
    "explored: 2 heads + 16, 4,000 steps": (((3, 128, 300), (2, 64, 700),
                                             (2, 16, 3000)), 3e-3, 256, 512, 0),
    "explored: 1 head + 40, 4,000 steps": (((3, 128, 300), (2, 96, 400),
                                            (1, 64, 300), (1, 40, 3000)), 2e-3, 256, 512, 0),
}


def train(job: tuple[str, tuple, int]) -> tuple[str, int, dict, dict, float]:
    """Run one attempt with fine-tuning seed ``seed``; returns its config, weights and seconds."""
    name, (cuts, lr, batch, calibration, offset), seed = job
    seed_everything(0, threads=1)
    task = addition_task(3, seed=0)
    val = (task.x_val[:500], task.y_val[:500])
    start = time.perf_counter()
    model = load_checkpoint()
    for heads, ffn, steps in cuts:
        model = slim_gpt_to(model, heads, ffn, *val, task.x_train[:calibration])
        train_on_task(model, task, steps, lr=lr, batch_size=batch, seed=(steps if offset == 0 else offset) + seed,
                      progress=False)
    return name, seed, model.config.to_dict(), model.state_dict(), time.perf_counter() - start


def score(config: dict, weights: dict, draws: list[tuple[torch.Tensor, torch.Tensor]]) -> list:
    """The grader's Score of the model on each draw (one timing per draw)."""
    model = GPT(GPTConfig(**config))
    model.load_state_dict(weights)
    dense = load_checkpoint()
    return [score_submission(model.eval(), dense, x, y, exam_rules()) for x, y in draws]


def row(name: str, seed: int, seconds: float, scores: list) -> str:
    accuracy = statistics.mean(float(s.criteria[1].measured.split("%")[0]) for s in scores)
    faster = statistics.median(float(s.criteria[2].measured.split("x")[0]) for s in scores)
    points = [s.points for s in scores]
    beyond = [statistics.mean(float(s.criteria[i].bonus) for s in scores) for i in range(3)]
    return (f"{name:<47} {seed:>4} {seconds:>6.0f} {scores[0].criteria[0].measured.split('(')[1].split()[0]:>6} "
            f"{accuracy:>6.1f}% {faster:>6.2f}x  {' '.join(f'{p:4.1f}' for p in points):<15} "
            f"{statistics.mean(points):5.1f}  ({beyond[0]:.1f} + {beyond[1]:.1f} + {beyond[2]:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--explore", action="store_true")
    parser.add_argument("--only", default="", help="run only the attempts whose name contains this")
    args = parser.parse_args()
    attempts = {name: attempt for name, attempt in {**ATTEMPTS, **(EXPLORED if args.explore else {})}.items()
                if args.only in name}
    jobs = [(name, attempt, seed) for name, attempt in attempts.items() for seed in args.seeds]
    if args.jobs > 1:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            trained = pool.map(train, jobs, chunksize=1)
    else:
        trained = [train(job) for job in jobs]
    seed_everything(0, threads=1)
    draws = [held_out_problems(2_000, seed) for seed in range(1, args.draws + 1)]
    print(f"{'attempt':<47} {'seed':>4} {'train':>6} {'params':>6} {'exact':>7} {'speed':>7}  "
          f"{'points per draw':<15} {'mean':>5}  (beyond: params + accuracy + speed)")
    for name, seed, config, weights, seconds in trained:
        print(row(name, seed, seconds, score(config, weights, draws)), flush=True)
    print(f"max {exam_rules().points} + {exam_rules().bonus} = {sum(exam_rules().points) + sum(exam_rules().bonus)} "
          f"points; train: seconds of fine-tuning on one thread{' (several at once)' if args.jobs > 1 else ''}")


if __name__ == "__main__":
    main()
