"""Train the residual digits CNN the channel-pruning lesson starts from, and write its checkpoint.

    python scripts/train_cnn_checkpoint.py [OUT_DIR]     # ~10 s on one CPU thread

Writes OUT_DIR/cnn_digits.pt (config + state_dict, loadable with weights_only=True) and
OUT_DIR/cnn_digits.json (its SHA-256 and the accuracies it reached). OUT_DIR defaults to
lessons_lib/checkpoints/. Deterministic: one thread, fixed seeds; the same machine gives the same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lessons_lib.checkpoint import write_record
from lessons_lib.cnn import CHECKPOINT, CNNConfig, DigitsCNN, save_cnn, train_cnn
from lessons_lib.data import digits_split
from lessons_lib.repro import seed_everything
from lessons_lib.training import accuracy

EPOCHS, LR = 20, 3e-3


def main(out_dir: Path) -> dict:
    seed_everything(0, threads=1)
    data = digits_split()
    model = DigitsCNN(CNNConfig())
    history = train_cnn(model, data, EPOCHS, lr=LR, seed=0, desc="dense CNN")
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT.name
    torch.save(save_cnn(model), path)
    test = accuracy(model, data.x_test, data.y_test)
    return write_record(path, parameters=sum(p.numel() for p in model.parameters()), epochs=EPOCHS, lr=LR,
                        val_accuracy=round(history[-1], 4), test_accuracy=round(test, 4))


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else CHECKPOINT.parent))
