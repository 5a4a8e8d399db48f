"""A small residual CNN on the 8x8 digits, and the channel groups that pruning must respect.

``DigitsCNN(CNNConfig())``: a stem ``Conv(1 -> width, 3x3) -> BatchNorm -> ReLU``, then residual
blocks ``x + BN(Conv(ReLU(BN(Conv(x)))))`` followed by a ReLU, global average pooling and a
Linear layer to the 10 classes. Every convolution is 3x3 with padding 1 and no bias (the
BatchNorm after it has one), so the 8x8 image keeps its size through the network.

Two kinds of channels, and the rule that follows from the skip connections:

- a block's **inner** channels (``conv1``'s outputs, ``bn1``, ``conv2``'s inputs) belong to that
  block alone: removing some touches three tensors of one block;
- the **residual** channels are added together by every skip connection: the stem's outputs,
  every block's input and ``conv2``/``bn2`` outputs, and the classifier's inputs are one group.
  Channel c of one of them is channel c of all of them, so they can only be removed together.

:func:`channel_groups` finds these groups by following the model's structure, in the spirit of
DepGraph (Fang et al., 2023) but only for this family of models. The config lists every width, so
a slimmed model is rebuilt from its config and state_dict alone (:func:`save_cnn`, :func:`load_cnn`).

Shapes: images ``(B, 64)`` (the digits' flattened pixels, as ``data.digits_split`` gives them) or
``(B, 1, 8, 8)``; logits ``(B, 10)``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_verified
from .data import Split
from .training import train
from .validate import require_lr, require_number, require_positive_int


@dataclass(frozen=True)
class CNNConfig:
    """``width``: residual channels; ``inner``: each block's inner channels (its length is the
    number of blocks); ``classes``: outputs."""

    width: int = 32
    inner: list[int] = field(default_factory=lambda: [32, 32, 32])
    classes: int = 10

    def __post_init__(self) -> None:
        for name in ("width", "classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.inner, (list, tuple)) or not all(
                isinstance(c, numbers.Integral) and not isinstance(c, bool) and c >= 1 for c in self.inner):
            raise ValueError(f"inner must be a list of ints >= 1, one per block, got {self.inner!r}")
        object.__setattr__(self, "inner", [int(c) for c in self.inner])

    def to_dict(self) -> dict:
        return asdict(self)


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False)


class ResidualBlock(nn.Module):
    """``relu(x + bn2(conv2(relu(bn1(conv1(x))))))``: (B, width, 8, 8) -> (B, width, 8, 8)."""

    def __init__(self, width: int, inner: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv(width, inner), nn.BatchNorm2d(inner)
        self.conv2, self.bn2 = _conv(inner, width), nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class DigitsCNN(nn.Module):
    """Stem, residual blocks, global average pooling, classifier. See the module docstring."""

    def __init__(self, config: CNNConfig | None = None) -> None:
        super().__init__()
        config = CNNConfig() if config is None else config
        if not isinstance(config, CNNConfig):
            raise TypeError(f"config must be a CNNConfig, got {type(config).__name__}")
        self.config = config
        self.stem, self.stem_bn = _conv(1, config.width), nn.BatchNorm2d(config.width)
        self.blocks = nn.ModuleList(ResidualBlock(config.width, c) for c in config.inner)
        self.fc = nn.Linear(config.width, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.shape[1:] not in ((64,), (1, 8, 8)):
            raise ValueError(f"x must be float images of shape (B, 64) or (B, 1, 8, 8), got "
                             f"{getattr(x, 'shape', type(x).__name__)} of {getattr(x, 'dtype', '')}")
        x = F.relu(self.stem_bn(self.stem(x.reshape(-1, 1, 8, 8))))         # (B, width, 8, 8)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))                                  # (B, width) -> (B, classes)


def channel_groups(model: DigitsCNN) -> dict[str, list[tuple[str, int]]]:
    """The groups of tensor slices that must lose the same channels, found by walking the model:
    name -> ``[(parameter or buffer name, dimension), ...]``.

    ``"residual"``: everything a skip connection adds together; ``"blocks.i.inner"``: block i's
    own channels. A channel index removed from a group is removed along that dimension of
    every tensor listed (BatchNorm's weight, bias and both running statistics included)."""
    if not isinstance(model, DigitsCNN):
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN, got {type(model).__name__}")

    def batchnorm(name: str) -> list[tuple[str, int]]:
        return [(f"{name}.{t}", 0) for t in ("weight", "bias", "running_mean", "running_var")]

    residual = [("stem.weight", 0), *batchnorm("stem_bn"), ("fc.weight", 1)]
    groups: dict[str, list[tuple[str, int]]] = {}
    for i in range(len(model.blocks)):
        block = f"blocks.{i}"
        residual += [(f"{block}.conv1.weight", 1), (f"{block}.conv2.weight", 0), *batchnorm(f"{block}.bn2")]
        groups[f"{block}.inner"] = [(f"{block}.conv1.weight", 0), *batchnorm(f"{block}.bn1"),
                                    (f"{block}.conv2.weight", 1)]
    return {"residual": residual, **groups}


def slim_cnn(model: DigitsCNN, keep_residual: torch.Tensor | list[int] | None = None,
             keep_inner: dict[str, torch.Tensor | list[int]] | None = None) -> DigitsCNN:
    """A new, smaller DigitsCNN keeping the residual channels ``keep_residual`` and, for each
    ``"blocks.i.inner"`` named in ``keep_inner``, those inner channels (groups not named keep
    everything). Every tensor of :func:`channel_groups` is sliced, BatchNorm statistics
    included, so in eval mode the slim model computes what ``model`` computes with the other
    channels' BatchNorm outputs forced to 0. ``model`` is not modified."""
    groups = channel_groups(model)
    config = model.config
    keep = {"residual": _indices(keep_residual, config.width, "keep_residual")}
    keep_inner = {} if keep_inner is None else keep_inner
    for name in keep_inner:
        if name not in groups or name == "residual":
            raise ValueError(f"keep_inner has key {name!r}; expected one of {[g for g in groups if g != 'residual']}")
    for i, width in enumerate(config.inner):
        name = f"blocks.{i}.inner"
        keep[name] = _indices(keep_inner.get(name), width, f"keep_inner[{name!r}]")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    for group, slices in groups.items():
        for key, dim in slices:
            state[key] = state[key].index_select(dim, keep[group])
    new = DigitsCNN(CNNConfig(width=len(keep["residual"]),
                              inner=[len(keep[f"blocks.{i}.inner"]) for i in range(len(config.inner))],
                              classes=config.classes))
    new.load_state_dict(state)
    return new.to(next(model.parameters()).device).train(model.training)


def channel_scores(model: DigitsCNN, kind: str = "l1") -> dict[str, torch.Tensor]:
    """One score per channel of each group of :func:`channel_groups` (higher = keep):
    ``"l1"`` / ``"l2"``: the norm of the filters that *write* the channel (a block's ``conv1``
    filter for an inner channel; for a residual channel the stem's and every block's ``conv2``
    filters, their norms added); ``"bn"``: ``|γ|`` of the BatchNorm right after those filters
    (Network Slimming, Liu et al. 2017), added up the same way. Group name -> ``(channels,)``."""
    if not isinstance(model, DigitsCNN):
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN, got {type(model).__name__}")
    if kind not in ("l1", "l2", "bn"):
        raise ValueError(f"kind must be 'l1', 'l2' or 'bn', got {kind!r}")

    def score(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:          # (out_channels,)
        if kind == "bn":
            return bn.weight.detach().abs()
        return conv.weight.detach().flatten(1).norm(p=1 if kind == "l1" else 2, dim=1)

    residual = score(model.stem, model.stem_bn) + sum(score(b.conv2, b.bn2) for b in model.blocks)
    return {"residual": residual, **{f"blocks.{i}.inner": score(b.conv1, b.bn1) for i, b in enumerate(model.blocks)}}


def bn_l1_penalty(model: DigitsCNN, strength: float) -> torch.Tensor:
    """``strength · Σ|γ|`` over every BatchNorm of ``model``: Network Slimming's sparsity term,
    added to the loss so that training pushes the scales of unneeded channels towards 0."""
    return strength * sum(m.weight.abs().sum() for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def drop_blocks(model: DigitsCNN, keep_blocks: list[int]) -> DigitsCNN:
    """A new, shallower DigitsCNN with only the residual blocks ``keep_blocks`` (in order). Each
    block reads the output of a ReLU, so skipping it is exactly the identity: the shallow model
    computes what ``model`` computes with those blocks' residual branches set to 0."""
    if not isinstance(model, DigitsCNN):
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN, got {type(model).__name__}")
    n = len(model.blocks)
    if not isinstance(keep_blocks, (list, tuple, range)) or not all(
            isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in keep_blocks) or (
            len(set(keep_blocks)) != len(keep_blocks) or any(not 0 <= b < n for b in keep_blocks)):
        raise ValueError(f"keep_blocks must be a list of distinct block indices in [0, {n}), got {keep_blocks!r}")
    kept = sorted(int(b) for b in keep_blocks)
    new = DigitsCNN(CNNConfig(width=model.config.width, inner=[model.config.inner[b] for b in kept],
                              classes=model.config.classes))
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("blocks."):
            index, rest = key.split(".", 2)[1:]
            if int(index) not in kept:
                continue
            key = f"blocks.{kept.index(int(index))}.{rest}"
        state[key] = value.detach().clone()
    new.load_state_dict(state)
    return new.to(next(model.parameters()).device).train(model.training)


@torch.no_grad()
def block_scores_cosine(model: DigitsCNN, x: torch.Tensor) -> torch.Tensor:
    """``(blocks,)``: 1 − the mean cosine similarity between each block's input and output, over
    every pixel position of every image in ``x`` (each position a ``width``-vector), in eval
    mode. A block whose output points where its input did changes little: the depth-pruning
    criterion of recent LLM work (e.g. Men et al., "ShortGPT", 2024), here with pixels for tokens."""
    if not isinstance(model, DigitsCNN):
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN, got {type(model).__name__}")
    scores, was_training = [], model.training
    model.eval()
    try:
        h = F.relu(model.stem_bn(model.stem(x.reshape(-1, 1, 8, 8))))
        for block in model.blocks:
            out = block(h)
            cos = F.cosine_similarity(h.flatten(2), out.flatten(2), dim=1, eps=1e-8)      # (B, 64)
            scores.append(1 - cos.mean())
            h = out
    finally:
        model.train(was_training)
    return torch.stack(scores)


@torch.no_grad()
def block_scores_loss(model: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(blocks,)``: how much the cross-entropy on ``x``, ``y`` rises when each block alone is
    dropped (:func:`drop_blocks`), in eval mode: the ground truth the cosine score estimates."""
    if not isinstance(model, DigitsCNN):
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN, got {type(model).__name__}")
    n = len(model.blocks)
    base = F.cross_entropy(drop_blocks(model, list(range(n))).eval()(x), y)
    return torch.stack([F.cross_entropy(drop_blocks(model, [b for b in range(n) if b != i]).eval()(x), y) - base
                        for i in range(n)])


def _indices(keep: object, width: int, name: str) -> torch.Tensor:
    """``keep`` (None = all) as sorted distinct int64 indices in ``[0, width)``, at least one."""
    if keep is None:
        return torch.arange(width)
    values = keep.tolist() if isinstance(keep, torch.Tensor) else keep
    if not isinstance(values, (list, tuple, range)) or not all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must be a list or 1-D tensor of int channel indices, got {keep!r:.80}")
    if not values or len(set(values)) != len(values) or min(values) < 0 or max(values) >= width:
        raise ValueError(f"{name} must hold at least one distinct index in [0, {width}), got {list(values)!r:.80}")
    return torch.tensor(sorted(int(v) for v in values), dtype=torch.int64)


def save_cnn(model: DigitsCNN) -> dict:
    """Config (a plain dict) and state_dict: what ``torch.load(..., weights_only=True)`` reads."""
    return {"config": model.config.to_dict(), "state_dict": model.state_dict()}


def load_cnn(saved: dict) -> DigitsCNN:
    """The model :func:`save_cnn` saved, in eval mode."""
    model = DigitsCNN(CNNConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "cnn_digits.pt"   # ships with the package


def train_cnn(model: DigitsCNN, data: Split, epochs: int = 20, lr: float = 3e-3, batch_size: int = 64,
              seed: int = 0, progress: bool = True, desc: str = "training", bn_l1: float = 0.0) -> list[float]:
    """The CNN recipe: :func:`training.train` with AdamW (weight decay 1e-4) whose learning rate
    falls from ``lr`` to 0 along a half cosine over the ``epochs``; returns validation accuracy
    per epoch. With a constant rate the BatchNorm network's validation accuracy swung by several
    points from epoch to epoch; the decay lets it settle. ``bn_l1 > 0`` adds
    :func:`bn_l1_penalty` with that strength to the loss (Network Slimming)."""
    if not isinstance(model, DigitsCNN):
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN, got {type(model).__name__}")
    epochs, lr = require_positive_int(epochs, "epochs"), require_lr(lr)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)

    def cosine(epoch: int) -> None:
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))

    bn_l1 = require_number(bn_l1, "bn_l1", minimum=0)
    return train(model, data, epochs, batch_size=batch_size, seed=seed, optimizer=optimizer,
                 on_epoch_start=cosine, progress=progress, desc=desc,
                 penalty=(lambda m: bn_l1_penalty(m, bn_l1)) if bn_l1 else None)


def load_trained_cnn(path: str | Path = CHECKPOINT, expected_sha256: str | None = None) -> DigitsCNN:
    """The trained CNN ``scripts/train_cnn_checkpoint.py`` wrote (by default the shipped
    :data:`CHECKPOINT`), in eval mode, after checking the file's SHA-256 (see
    :func:`checkpoint.load_verified`)."""
    return load_cnn(load_verified(path, expected_sha256, script="scripts/train_cnn_checkpoint.py"))
