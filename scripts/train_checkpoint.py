"""Train the lessons' tiny GPT on 3-digit addition and write its checkpoint.

    python scripts/train_checkpoint.py [OUT_DIR]     # ~1.5 min on one CPU thread

Writes OUT_DIR/gpt_addition.pt (config + state_dict, loadable with weights_only=True) and
OUT_DIR/gpt_addition.json (its SHA-256 and the metrics it reached). OUT_DIR defaults to
lessons_lib/checkpoints/. Deterministic: one thread, fixed seeds; the same machine gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch

from lessons_lib.gpt import CHECKPOINT, GPT, GPTConfig, save_gpt
from lessons_lib.repro import seed_everything
from lessons_lib.tasks import addition_task, answer_loss, exact_match, train_on_task

STEPS = ((1500, 3e-3), (500, 1e-3))     # (steps, learning rate): a fast phase, then a calmer one


def main(out_dir: Path) -> dict:
    seed_everything(0, threads=1)
    task = addition_task(n_digits=3, seed=0)
    model = GPT(GPTConfig(block_size=task.x_train.shape[1]))
    for phase, (steps, lr) in enumerate(STEPS):
        train_on_task(model, task, steps, lr=lr, seed=phase, desc=f"phase {phase + 1}")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "gpt_addition.pt"
    torch.save(save_gpt(model), path)
    with torch.no_grad():
        metrics = {"val_exact_match": exact_match(model, task.x_val, task.y_val),
                   "test_exact_match": exact_match(model, task.x_test, task.y_test),
                   "test_loss": round(answer_loss(model, task.x_test, task.y_test).item(), 4)}
    record = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "parameters": sum(p.numel() for p in model.parameters()), "steps": STEPS,
              "torch": torch.__version__.split("+")[0], **metrics}
    (out_dir / "gpt_addition.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    return record


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else CHECKPOINT.parent)
