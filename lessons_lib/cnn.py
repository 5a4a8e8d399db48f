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

import contextlib
import math
import numbers
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .checkpoint import load_verified
from .data import Split
from .slimming import refuse_foreign_hooks
from .training import check_labels, train
from .validate import require_indices, require_lr, require_mapping, require_number, require_positive_int


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
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "classes", int(self.classes))

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

    @staticmethod
    def shapes(config: CNNConfig) -> dict[str, torch.Tensor]:
        """The state_dict a DigitsCNN of ``config`` has, as empty tensors on the meta device."""
        with torch.device("meta"):
            return DigitsCNN(config).state_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(as_images(x))))                     # (B, width, 8, 8)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))                                  # (B, width) -> (B, classes)


def as_images(x: object, like: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` as ``(B, 1, 8, 8)`` if it is a float tensor ``(B, 64)`` or ``(B, 1, 8, 8)``, B >= 1,
    with ``like``'s dtype and device when given."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.shape[1:] not in ((64,), (1, 8, 8)) \
            or x.shape[0] == 0:
        raise ValueError(f"x must be float images of shape (B, 64) or (B, 1, 8, 8) with B >= 1, got "
                         f"{getattr(x, 'shape', type(x).__name__)} of {getattr(x, 'dtype', '')}")
    if like is not None and (x.dtype, x.device) != (like.dtype, like.device):
        raise ValueError(f"x must have the model's dtype and device ({like.dtype} on {like.device}), "
                         f"got {x.dtype} on {x.device}")
    return x.reshape(-1, 1, 8, 8)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the ``with`` block; afterwards every submodule is back in the
    mode it was in (a model whose BatchNorms were frozen for fine-tuning stays so)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def require_cnn(model: object) -> DigitsCNN:
    """``model`` if it is exactly a DigitsCNN (not a subclass), without foreign hooks or pruning
    masks: the functions here rebuild the model from its config and tensors, and would drop them."""
    if type(model) is not DigitsCNN:
        raise TypeError(f"model must be a lessons_lib.cnn.DigitsCNN (not a subclass), got {type(model).__name__}")
    refuse_foreign_hooks(model)
    pruned = [name for name, module in model.named_modules() if any(n.endswith("_orig") for n, _ in
                                                                       module.named_parameters(recurse=False))]
    if pruned:
        raise ValueError(f"model has pruning masks on {pruned}: call pruning.remove_masks(model) first")
    parametrized = [name for name, module in model.named_modules() if parametrize.is_parametrized(module)]
    if parametrized:
        raise ValueError(f"model has parametrizations on {parametrized}: remove them first "
                         "(torch.nn.utils.parametrize.remove_parametrizations)")
    expected = {k: v.shape for k, v in DigitsCNN.shapes(model.config).items()}
    found = {k: v.shape for k, v in model.state_dict().items()}
    if found != expected:
        wrong = sorted(set(found) ^ set(expected)) or sorted(k for k in found if found[k] != expected[k])
        raise ValueError(f"model's layers do not match its config {model.config} (at {wrong[:3]}): it was "
                         "changed by hand; build it with slim_cnn or drop_blocks, which keep the two in step")
    return model


def _rebuild(model: DigitsCNN, config: CNNConfig, state: dict[str, torch.Tensor]) -> DigitsCNN:
    """A DigitsCNN of ``config`` holding ``state`` (fresh tensors, ``model``'s dtype and device and
    mode), built without initialising weights that are about to be replaced (so no random numbers
    are drawn)."""
    with torch.device("meta"):
        new = DigitsCNN(config)
    new.load_state_dict({k: v.detach().clone() for k, v in state.items()}, assign=True)
    return new.train(model.training)


def channel_groups(model: DigitsCNN) -> dict[str, list[tuple[str, int]]]:
    """The groups of tensor slices that must lose the same channels, listed by following this
    family's structure (stem, then each block's two convolutions and the classifier):
    name -> ``[(parameter or buffer name, dimension), ...]``.

    ``"residual"``: everything a skip connection adds together; ``"blocks.i.inner"``: block i's
    own channels. A channel index removed from a group is removed along that dimension of
    every tensor listed (BatchNorm's weight, bias and both running statistics included)."""
    require_cnn(model)

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
    channels' BatchNorm outputs forced to 0. Keeps are 1-D int indices (list, tensor or numpy
    array), distinct, at least one. ``model`` is not modified; the new model has its dtype,
    device and mode."""
    groups = channel_groups(model)
    config = model.config
    keep = {"residual": _indices(keep_residual, config.width, "keep_residual")}
    keep_inner = {} if keep_inner is None else require_mapping(keep_inner, "keep_inner", "'blocks.i.inner' to indices")
    for name in keep_inner:
        if name not in groups or name == "residual":
            raise ValueError(f"keep_inner has key {name!r}; expected one of {[g for g in groups if g != 'residual']}")
    for i, width in enumerate(config.inner):
        name = f"blocks.{i}.inner"
        keep[name] = _indices(keep_inner.get(name), width, f"keep_inner[{name!r}]")
    state = dict(model.state_dict())
    for group, slices in groups.items():
        for key, dim in slices:
            state[key] = state[key].index_select(dim, keep[group].to(state[key].device))
    return _rebuild(model, CNNConfig(width=len(keep["residual"]),
                                     inner=[len(keep[f"blocks.{i}.inner"]) for i in range(len(config.inner))],
                                     classes=config.classes), state)


def channel_scores(model: DigitsCNN, kind: str = "l1") -> dict[str, torch.Tensor]:
    """One score per channel of each group of :func:`channel_groups` (higher = keep):
    ``"l1"`` / ``"l2"``: the norm of the filters that *write* the channel (a block's ``conv1``
    filter for an inner channel; for a residual channel the stem's and every block's ``conv2``
    filters, their norms added); ``"bn"``: ``|γ|`` of the BatchNorm right after those filters
    (Network Slimming, Liu et al. 2017), added up the same way. Group name -> ``(channels,)``."""
    require_cnn(model)
    if kind not in ("l1", "l2", "bn"):
        raise ValueError(f"kind must be 'l1', 'l2' or 'bn', got {kind!r}")

    def score(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:          # (out_channels,)
        if kind == "bn":
            return bn.weight.detach().abs()
        return conv.weight.detach().flatten(1).norm(p=1 if kind == "l1" else 2, dim=1)

    residual = score(model.stem, model.stem_bn) + sum(score(b.conv2, b.bn2) for b in model.blocks)
    return {"residual": residual, **{f"blocks.{i}.inner": score(b.conv1, b.bn1) for i, b in enumerate(model.blocks)}}


def multiply_adds_per_image(model: DigitsCNN) -> int:
    """Multiply-adds of one 8x8 image through ``model``, counted from its config: each 3x3 conv
    does ``out · in · 9`` at each of the 64 positions, the classifier ``width · classes``. The same
    count as ``measure.multiply_adds(model, x[:1])`` (a test checks it), without running the model."""
    require_cnn(model)
    c = model.config
    convs = c.width * 1 + sum(2 * c.width * inner for inner in c.inner)           # (out · in) summed
    return convs * 9 * 64 + c.width * c.classes


def bn_l1_penalty(model: DigitsCNN, strength: float) -> torch.Tensor:
    """``strength · Σ|γ|`` over every BatchNorm of ``model``, a 0-d tensor: Network Slimming's
    sparsity term, added to the loss so that training pushes the scales of unneeded channels
    towards 0. ``strength`` is a number >= 0."""
    strength = require_number(strength, "strength", minimum=0)
    total = torch.zeros((), dtype=model.fc.weight.dtype, device=model.fc.weight.device)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            total = total + m.weight.abs().sum()
    return strength * total


def drop_blocks(model: DigitsCNN, keep_blocks: list[int]) -> DigitsCNN:
    """A new, shallower DigitsCNN with only the residual blocks ``keep_blocks`` (distinct indices,
    possibly none; they stay in the model's order). Each block reads the output of a ReLU, so
    skipping it is exactly the identity: the shallow model computes what ``model`` computes with
    those blocks' residual branches set to 0. ``model`` is not modified."""
    require_cnn(model)
    kept = sorted(require_indices(keep_blocks, len(model.blocks), "keep_blocks", allow_empty=True).tolist())
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("blocks."):
            index, rest = key.split(".", 2)[1:]
            if int(index) not in kept:
                continue
            key = f"blocks.{kept.index(int(index))}.{rest}"
        state[key] = value
    return _rebuild(model, CNNConfig(width=model.config.width, inner=[model.config.inner[b] for b in kept],
                                     classes=model.config.classes), state)


@torch.no_grad()
def block_scores_cosine(model: DigitsCNN, x: torch.Tensor) -> torch.Tensor:
    """``(blocks,)``: 1 − the mean cosine similarity between each block's input and output, over
    every pixel position (a ``width``-vector) of every image in ``x`` ``(B, 64)`` or
    ``(B, 1, 8, 8)``, in eval mode; positions where either vector is all zero are left out. A
    block whose output points where its input did changes little: the depth-pruning criterion of
    recent LLM work (e.g. Men et al., "ShortGPT", 2024), here with pixels for tokens."""
    require_cnn(model)
    x = as_images(x, model.fc.weight)
    scores = []
    with eval_mode(model):
        h = F.relu(model.stem_bn(model.stem(x)))
        for block in model.blocks:
            out = block(h)
            used = (h.norm(dim=1) > 0) & (out.norm(dim=1) > 0)                # (B, 8, 8): skip all-zero pixels
            cos = F.cosine_similarity(h, out, dim=1)[used]
            scores.append(1 - cos.mean() if cos.numel() else h.new_zeros(()))
            h = out
    return torch.stack(scores) if scores else x.new_zeros(0)


@torch.no_grad()
def block_scores_loss(model: DigitsCNN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(blocks,)``: how much the cross-entropy on images ``x`` ``(B, 64)`` with labels ``y``
    ``(B,)`` rises when each block alone is dropped (:func:`drop_blocks`), in eval mode: the
    ground truth the cosine score estimates."""
    require_cnn(model)
    x = as_images(x, model.fc.weight)
    check_labels(y, len(x), model.config.classes)
    n = len(model.blocks)
    if n == 0:
        return x.new_zeros(0)
    base = F.cross_entropy(drop_blocks(model, list(range(n))).eval()(x), y)
    return torch.stack([F.cross_entropy(drop_blocks(model, [b for b in range(n) if b != i]).eval()(x), y) - base
                        for i in range(n)])


def _indices(keep: object, width: int, name: str) -> torch.Tensor:
    """``keep`` (None = all) as sorted distinct int64 indices in ``[0, width)``, at least one."""
    if keep is None:
        return torch.arange(width)
    return require_indices(keep, width, name).sort().values


def save_cnn(model: DigitsCNN) -> dict:
    """Config (a plain dict) and a copy of the state_dict: what ``torch.load(..., weights_only=True)``
    reads."""
    require_cnn(model)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"config": model.config.to_dict(), "state_dict": state}


def load_cnn(saved: dict) -> DigitsCNN:
    """The model :func:`save_cnn` saved, in eval mode."""
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict) or "state_dict" not in saved:
        raise ValueError("saved must be what save_cnn returns: a dict with 'config' (a dict) and 'state_dict'")
    with torch.device("meta"):
        model = DigitsCNN(CNNConfig(**saved["config"]))
    model.load_state_dict({k: v.detach().clone() for k, v in saved["state_dict"].items()}, assign=True)
    return model.eval()                              # its own tensors: training it changes nothing else


CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "cnn_digits.pt"   # ships with the package


def train_cnn(model: DigitsCNN, data: Split, epochs: int = 20, lr: float = 3e-3, batch_size: int = 64,
              seed: int = 0, progress: bool = True, desc: str = "training", bn_l1: float = 0.0) -> list[float]:
    """The CNN recipe: :func:`training.train` with AdamW (weight decay 1e-4) whose learning rate
    falls from ``lr`` towards 0 along a half cosine over the ``epochs`` (set at each epoch's
    start); returns validation accuracy per epoch. With a constant rate the BatchNorm network's
    validation accuracy swung by several points from epoch to epoch; the decay lets it settle. ``bn_l1 > 0`` adds
    :func:`bn_l1_penalty` with that strength to the loss (Network Slimming)."""
    require_cnn(model)
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
