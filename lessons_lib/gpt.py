"""A tiny GPT-style decoder, small enough to read in one sitting and to prune on a laptop.

Shapes: B = batch, T = sequence length, D = ``d_model``, H = heads in a layer, E = ``head_dim``.

Each attention layer has separate ``q``, ``k`` and ``v`` projections of shape ``(H * E, D)``:
head ``h`` owns rows ``h*E : (h+1)*E`` of each, and columns ``h*E : (h+1)*E`` of the output
projection ``out``. Removing a head means deleting exactly those slices. The config records the
heads and FFN width of *every* layer, so a pruned model is rebuilt from ``config`` +
``state_dict`` alone (no pickled modules).
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import load_verified
from .validate import is_sequence


@dataclass
class GPTConfig:
    vocab_size: int = 12
    block_size: int = 16
    d_model: int = 64
    head_dim: int = 16
    heads: list[int] = field(default_factory=lambda: [4, 4])   # heads per layer
    ffn: list[int] = field(default_factory=lambda: [256, 256])  # FFN hidden width per layer

    def __post_init__(self) -> None:
        """Checks every field; ``heads`` and ``ffn`` become plain lists of ints."""
        for name in ("vocab_size", "block_size", "d_model", "head_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
            setattr(self, name, int(value))              # a numpy int works, and the config stays JSON
        for name in ("heads", "ffn"):
            value = getattr(self, name)
            if not is_sequence(value):
                raise TypeError(f"{name} must be a list of ints (one per layer), got {type(value).__name__} {value!r}")
            if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value):
                raise ValueError(f"{name} must hold ints (one per layer), got {list(value)!r}")
        if len(self.heads) != len(self.ffn) or len(self.heads) == 0:
            raise ValueError(f"heads and ffn must list one entry per layer (same length, >= 1), "
                             f"got heads={self.heads}, ffn={self.ffn}")
        if any(h < 0 for h in self.heads) or any(f < 0 for f in self.ffn):
            raise ValueError(f"heads and ffn must be >= 0 per layer, got heads={self.heads}, ffn={self.ffn}")
        self.heads, self.ffn = [int(h) for h in self.heads], [int(f) for f in self.ffn]

    @property
    def n_layers(self) -> int:
        return len(self.heads)

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def allow_empty_layers() -> Iterator[None]:
    """Build Linear layers with 0 outputs or inputs quietly: a layer pruned to 0 heads or 0 FFN
    neurons is legitimate, and torch's "zero-element tensors" init warning would only alarm."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
        yield


class Attention(nn.Module):
    """Causal multi-head self-attention with ``n_heads`` heads of size ``head_dim``."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int) -> None:
        super().__init__()
        self.n_heads, self.head_dim = n_heads, head_dim
        self.q = nn.Linear(d_model, n_heads * head_dim)
        self.k = nn.Linear(d_model, n_heads * head_dim)
        self.v = nn.Linear(d_model, n_heads * head_dim)
        self.out = nn.Linear(n_heads * head_dim, d_model)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D) -> (B, T, D). ``head_mask`` scales each head's output (1 = on): ``(H,)``
        for the whole batch, or ``(B, H)``, one mask per example (per-example head gradients)."""
        B, T, _ = x.shape
        if self.n_heads == 0:                                   # every head removed: out's bias alone
            return self.out(x.new_zeros(B, T, 0))

        def split(t: torch.Tensor) -> torch.Tensor:            # (B, T, H*E) -> (B, H, T, E)
            return t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)

        heads = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                               is_causal=True)   # (B, H, T, E)
        if head_mask is not None:
            heads = heads * head_mask.view(-1 if head_mask.dim() == 2 else 1, self.n_heads, 1, 1)
        return self.out(heads.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attention(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, d_model: int, n_heads: int, head_dim: int, ffn: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, n_heads, head_dim)
        self.fc1, self.fc2 = nn.Linear(d_model, ffn), nn.Linear(ffn, d_model)   # FFN: (ffn, D), (D, ffn)

    def forward(self, x: torch.Tensor, head_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), head_mask)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class GPT(nn.Module):
    """Token + position embeddings, ``n_layers`` blocks, a final LayerNorm and an output head."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.block_size, config.d_model)
        with allow_empty_layers():
            self.blocks = nn.ModuleList(Block(config.d_model, h, config.head_dim, f)
                                        for h, f in zip(config.heads, config.ffn, strict=True))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, idx: torch.Tensor, head_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """idx: (B, T) token ids -> logits (B, T, vocab). ``head_masks``: one (H,) or (B, H) per layer."""
        self._check_inputs(idx, head_masks)
        B, T = idx.shape
        if self.config.block_size < T:
            raise ValueError(f"sequence length must be <= block_size ({self.config.block_size}), got {T}")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        for i, block in enumerate(self.blocks):
            x = block(x, None if head_masks is None else head_masks[i])
        return self.head(self.ln_f(x))

    def prunable_layers(self) -> dict[str, nn.Linear]:
        """The Linear layers whose weights pruning considers, by name: every block's ``attn.q``,
        ``attn.k``, ``attn.v``, ``attn.out``, ``fc1`` and ``fc2``. Embeddings, LayerNorms and the
        output head are left out: a small share of the weights here, and pruning them hurts most.
        ``pruning.prunable_layers`` asks the model this (the one definition of what counts)."""
        return {name: m for name, m in self.named_modules() if isinstance(m, nn.Linear) and name.startswith("blocks.")}

    def _check_inputs(self, idx: object, head_masks: object) -> None:
        """Shapes, dtypes and the token range (one cheap pass over the ids, not the activations)."""
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"idx must be a 2-D int64 tensor of token ids (B, T), got "
                             f"{getattr(idx, 'shape', type(idx).__name__)} of {getattr(idx, 'dtype', '')}")
        if idx.numel() and not idx.is_meta and not torch.compiler.is_compiling():
            try:
                low, high = int(idx.min()), int(idx.max())
            except RuntimeError:       # values unknown while tracing (vmap, export): the embedding checks later
                low, high = 0, 0
            if low < 0 or high >= self.config.vocab_size:
                raise ValueError(f"idx must hold token ids in [0, {self.config.vocab_size - 1}], got values from "
                                 f"{low} to {high}")
        if head_masks is None:
            return
        shapes = [getattr(m, "shape", None) for m in head_masks] if isinstance(head_masks, (list, tuple)) else None
        batch = idx.shape[0]
        if shapes is None or len(shapes) != len(self.config.heads) or any(
                shape not in ((h,), (batch, h)) for shape, h in zip(shapes, self.config.heads, strict=True)):
            raise ValueError(f"head_masks must be a list of one (H,) or (B, H) tensor per layer, H = "
                             f"{self.config.heads}, B = {batch}; got shapes {shapes}")
        dtype = self.tok_emb.weight.dtype
        if any(m.dtype != dtype for m in head_masks):
            raise ValueError(f"head_masks must have the model's dtype {dtype}, got {[m.dtype for m in head_masks]}")


def save_gpt(model: GPT) -> dict:
    """What to ``torch.save``: the config as a plain dict and the state_dict (weights only).
    A model with prune masks attached is refused: its state_dict holds ``weight_orig`` and
    ``weight_mask``, which a fresh GPT cannot load (``pruning.remove_masks`` first)."""
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    if any(key.endswith(("_orig", "_mask")) for key in model.state_dict()):
        raise ValueError("model carries prune masks (weight_orig / weight_mask): call "
                         "pruning.remove_masks(model) before saving it")
    return {"config": model.config.to_dict(), "state_dict": model.state_dict()}


def load_gpt(saved: dict) -> GPT:
    """Rebuild a (possibly pruned) GPT from :func:`save_gpt`'s dict."""
    if not isinstance(saved, dict) or set(saved) != {"config", "state_dict"}:
        raise ValueError("saved must be a dict with keys 'config' and 'state_dict' (from save_gpt)")
    if not isinstance(saved["config"], dict) or not set(saved["config"]) <= set(GPTConfig.__dataclass_fields__):
        raise ValueError(f"saved['config'] must be a dict of GPTConfig fields, got {saved['config']!r}")
    model = GPT(GPTConfig(**saved["config"]))
    if isinstance(saved["state_dict"], dict):         # a float64 model comes back float64
        dtypes = {t.dtype for t in saved["state_dict"].values()
                  if isinstance(t, torch.Tensor) and t.is_floating_point()}
        if len(dtypes) == 1:
            model = model.to(dtypes.pop())
    try:
        model.load_state_dict(saved["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"saved['state_dict'] does not fit saved['config']: {error}") from error
    return model


def head_slice(head: int, head_dim: int) -> slice:
    """Where head ``head`` lives in the stacked ``H * head_dim`` dimension: its rows of ``q``, ``k``
    and ``v`` and its columns of ``out``, ``slice(head * head_dim, (head + 1) * head_dim)``."""
    for name, value, minimum in (("head", head, 0), ("head_dim", head_dim, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return slice(head * head_dim, (head + 1) * head_dim)


CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "gpt_addition.pt"   # ships with the package


def load_checkpoint(path: str | Path = CHECKPOINT, expected_sha256: str | None = None) -> GPT:
    """Load a GPT saved by ``scripts/train_checkpoint.py`` (by default the shipped
    :data:`CHECKPOINT`, trained on 3-digit addition) after checking the file's SHA-256.

    ``expected_sha256`` (64 hex digits, either case) defaults to the one recorded next to the file
    (``<name>.json``). The file is read with ``torch.load(..., weights_only=True)``: tensors and
    plain data only, no code.
    """
    return load_gpt(load_verified(path, expected_sha256))

