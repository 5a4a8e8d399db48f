"""Structured pruning of the tiny GPT: scoring and removing attention heads and FFN neurons.

Head ``h`` of a layer owns rows ``h*E:(h+1)*E`` of ``q``, ``k`` and ``v`` (E = head_dim) and the
same columns of ``out``; FFN neuron ``i`` owns row ``i`` of ``fc1`` (and its bias) and column
``i`` of ``fc2``. Removing them gives a smaller GPT whose config lists the new head counts and
FFN widths, so it can be saved and rebuilt from config + state_dict.

A layer may keep no head or no FFN neuron at all (``GPTConfig(heads=[0, 4])`` is a valid GPT).
The scores then give an empty ``(0,)`` tensor for that layer, and the counts for it must be 0.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .gpt import GPT, GPTConfig, allow_empty_layers
from .structured import _check_indices, _check_scores, _current, _refuse_foreign_hooks
from .validate import is_sequence, require_gradients


def head_slices(head: int, head_dim: int) -> slice:
    """The rows of q/k/v (and columns of out) that belong to ``head``."""
    for name, value, minimum in (("head", head, 0), ("head_dim", head_dim, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return slice(head * head_dim, (head + 1) * head_dim)


# --- checks ---------------------------------------------------------------------------------------

def _require_gpt(model: object, exact: bool = False) -> dict[str, torch.Size]:
    """Check that ``model`` is a GPT (exactly the class with ``exact``) whose tensors have the
    shapes its config describes; return those shapes by state_dict key."""
    if not isinstance(model, GPT) or (exact and type(model) is not GPT):
        kind = "lessons_lib.gpt.GPT (not a subclass: the slim model is a plain GPT)" if exact else "lessons_lib.gpt.GPT"
        raise TypeError(f"model must be a {kind}, got {type(model).__name__}")
    try:
        config = GPTConfig(**model.config.to_dict())            # runs the config's own checks again
        with torch.device("meta"), allow_empty_layers():
            shapes = {key: value.shape for key, value in GPT(config).state_dict().items()}
    except (AttributeError, TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"model.config does not describe a GPT: {error}") from error
    for key, shape in shapes.items():
        tensor = _tensor_at(model, key)
        if tensor is None or tensor.shape != shape:
            raise ValueError(f"model does not match model.config: {key} should have shape {tuple(shape)}, "
                             f"got {None if tensor is None else tuple(tensor.shape)}")
    return shapes


def _tensor_at(model: nn.Module, key: str) -> torch.Tensor | None:
    """The tensor a state_dict key such as ``blocks.0.fc1.weight`` names, masked if pruned."""
    path, _, name = key.rpartition(".")
    try:
        return _current(model.get_submodule(path), name)
    except AttributeError:
        return None


def _check_tokens(model: GPT, x: object, name: str = "x") -> torch.Tensor:
    """``x`` as int64 if it is a ``(B, T)`` batch of token ids, B >= 1 and 1 <= T <= block_size."""
    config, device = model.config, model.tok_emb.weight.device
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, shape (batch, length), got {type(x).__name__}")
    if x.dtype == torch.bool or x.is_floating_point() or x.is_complex():
        raise TypeError(f"{name} must hold int token ids, got dtype {x.dtype}")
    if x.dim() != 2 or x.shape[0] == 0 or not 1 <= x.shape[1] <= config.block_size:
        raise ValueError(f"{name} must have shape (batch, length) with batch >= 1 and length in "
                         f"[1, {config.block_size}] (block_size), got {tuple(x.shape)}")
    if x.device != device:
        raise ValueError(f"{name} must be on the model's device {device}, got {x.device}")
    if x.min() < 0 or x.max() >= config.vocab_size:
        raise ValueError(f"{name} must hold token ids in [0, {config.vocab_size - 1}], "
                         f"got min {int(x.min())}, max {int(x.max())}")
    return x.long()


def _check_answers(model: GPT, x: torch.Tensor, y: object, name: str = "y") -> torch.Tensor:
    """``y`` as int64 if it is ``(B, A)`` answer tokens for ``x`` ``(B, T)``, 1 <= A <= T."""
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of answer tokens (batch, digits), got {type(y).__name__}")
    if y.dim() != 2 or y.shape[0] != x.shape[0] or not 1 <= y.shape[1] <= x.shape[1]:
        raise ValueError(f"{name} must have shape ({x.shape[0]}, digits) with 1 <= digits <= {x.shape[1]} "
                         f"(the rows and length of x), got {tuple(y.shape)}")
    return _check_tokens(model, y, name)


def _check_masks(model: GPT, masks: object) -> list[torch.Tensor] | None:
    """``masks`` if it is ``None`` or one floating ``(H_i,)`` tensor per layer on the model's device."""
    if masks is None:
        return None
    heads, device = model.config.heads, model.tok_emb.weight.device
    if not isinstance(masks, Sequence) or isinstance(masks, str) or len(masks) != len(heads):
        raise TypeError(f"masks must be None or a list of one (heads,) tensor per layer ({len(heads)}), "
                        f"got {type(masks).__name__}")
    for i, (mask, n) in enumerate(zip(masks, heads, strict=True)):
        if not isinstance(mask, torch.Tensor) or not mask.is_floating_point() or mask.shape != (n,) \
                or mask.device != device:
            raise ValueError(f"masks[{i}] must be a float tensor of shape ({n},) on {device}, got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
    return list(masks)


def _check_counts(counts: object, limits: list[int], name: str) -> list[int]:
    """``counts`` as a list if it gives one int in ``[0, limits[i]]`` per layer."""
    if not is_sequence(counts):
        raise TypeError(f"{name} must be a list with one count per layer ({len(limits)}), got {type(counts).__name__}")
    if len(counts) != len(limits):
        raise ValueError(f"{name} must give one count per layer ({len(limits)}), got {list(counts)}")
    for i, (count, limit) in enumerate(zip(counts, limits, strict=True)):
        if isinstance(count, bool) or not isinstance(count, numbers.Integral):
            raise TypeError(f"{name}[{i}] must be an int count, got {type(count).__name__} {count!r}")
        if not 0 <= count <= limit:
            raise ValueError(f"{name}[{i}] must be in [0, {limit}] (what layer {i} has), got {count}")
    return [int(c) for c in counts]


def _keep_per_layer(keep: object, counts: list[int], name: str) -> list[list[int]]:
    """``keep`` (layer -> indices; layers not named keep all) as sorted index lists, one per layer."""
    keep = {} if keep is None else keep
    if not isinstance(keep, Mapping):
        raise TypeError(f"{name} must be a dict mapping layer index to the indices to keep, got {type(keep).__name__}")
    for layer in keep:
        if isinstance(layer, bool) or not isinstance(layer, numbers.Integral) or not 0 <= layer < len(counts):
            raise ValueError(f"{name} has layer {layer!r}; expected a layer index in range({len(counts)})")
    return [sorted(_check_indices(keep.get(i, range(n)), n, f"{name}[{i}]", allow_empty=True).tolist())
            for i, n in enumerate(counts)]


# --- removing heads and neurons -------------------------------------------------------------------

def slim_gpt(model: GPT, keep_heads: dict[int, list[int]] | None = None,
             keep_ffn: dict[int, list[int]] | None = None) -> GPT:
    """A new, smaller GPT keeping, in layer ``i``, the heads ``keep_heads[i]`` and the FFN
    neurons ``keep_ffn[i]`` (distinct int indices, in any order, possibly none; layers not named
    keep everything). ``model`` is not modified.

    **The masked model**: ``model`` as its forward runs it, ``torch.nn.utils.prune`` masks
    applied (on any tensor, the output ``head`` included), with a head mask of 0 for every
    removed head (``model(x, head_masks)``) and, for every removed FFN neuron, its ``fc1`` row
    *and* bias entry zeroed (GELU(0) = 0, so it adds nothing). ``slim(x)`` equals that model's
    output up to float rounding: every tensor of the slim model is the masked tensor, sliced.

    The result has ``model``'s dtype, device and training mode, and Parameters sharing no
    storage with ``model``. A subclass of GPT, or a model with forward hooks other than pruning
    masks, is refused: the slim model would not run that code.
    """
    shapes = _require_gpt(model, exact=True)
    _refuse_foreign_hooks(model)
    config = model.config
    heads = _keep_per_layer(keep_heads, config.heads, "keep_heads")
    ffn = _keep_per_layer(keep_ffn, config.ffn, "keep_ffn")
    state = {key: _tensor_at(model, key).clone() for key in shapes}      # masks applied, fresh storage
    E = config.head_dim
    for i in range(config.n_layers):
        rows = torch.tensor([r for h in heads[i] for r in range(h * E, (h + 1) * E)], dtype=torch.long)
        kept = torch.tensor(ffn[i], dtype=torch.long)
        for name, keep_rows, keep_cols in (("attn.q", rows, None), ("attn.k", rows, None), ("attn.v", rows, None),
                                           ("attn.out", None, rows), ("fc1", kept, None), ("fc2", None, kept)):
            _slice_linear(state, f"blocks.{i}.{name}", keep_rows, keep_cols)
    new_config = GPTConfig(**{**config.to_dict(), "heads": [len(h) for h in heads], "ffn": [len(f) for f in ffn]})
    with torch.device("meta"), allow_empty_layers():        # only the structure; the tensors come next
        slim = GPT(new_config)
    slim.load_state_dict(state, assign=True)                # strict: every tensor comes from model
    return slim.train(model.training)


def _slice_linear(state: dict[str, torch.Tensor], prefix: str, rows: torch.Tensor | None,
                  cols: torch.Tensor | None) -> None:
    """Keep only ``rows`` of the output (weight rows and bias) and ``cols`` of the input of the
    Linear layer ``prefix`` in ``state`` (None = all)."""
    weight, bias = state[prefix + ".weight"], state[prefix + ".bias"]
    if rows is not None:
        weight, bias = weight[rows.to(weight.device)], bias[rows.to(bias.device)]
    if cols is not None:
        weight = weight[:, cols.to(weight.device)]
    state[prefix + ".weight"], state[prefix + ".bias"] = weight, bias


# --- scores ---------------------------------------------------------------------------------------

def _answer_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor] | None) -> torch.Tensor:
    logits = model(x, masks)[:, -y.shape[1]:]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def answer_loss_with_masks(model: GPT, x: torch.Tensor, y: torch.Tensor,
                           masks: list[torch.Tensor] | None) -> torch.Tensor:
    """Cross-entropy on the answer tokens ``y`` ``(B, A)`` of the problems ``x`` ``(B, T)``, with
    ``masks`` (one ``(H_i,)`` tensor per layer, 1 = head on; ``None`` for no masks) applied."""
    _require_gpt(model)
    x = _check_tokens(model, x)
    return _answer_loss(model, x, _check_answers(model, x, y), _check_masks(model, masks))


def head_importance_gradient(model: GPT, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Michel et al. (2019), "Are Sixteen Heads Really Better than One?": the absolute gradient
    of the loss with respect to a head mask of ones, one ``(H,)`` score per layer (``(0,)`` for
    a layer without heads). The parameters' ``.grad`` are left as they were."""
    require_gradients("head_importance_gradient")
    _require_gpt(model)
    x = _check_tokens(model, x)
    y = _check_answers(model, x, y)
    like = model.tok_emb.weight
    masks = [torch.ones(h, dtype=like.dtype, device=like.device, requires_grad=True) for h in model.config.heads]
    with torch.enable_grad():
        loss = _answer_loss(model, x, y, masks)
        grads = torch.autograd.grad(loss, masks, allow_unused=True) if loss.requires_grad else [None] * len(masks)
    return [torch.zeros(m.shape, dtype=m.dtype, device=m.device) if g is None else g.abs().detach()
            for m, g in zip(masks, grads, strict=True)]


@torch.no_grad()
def head_importance_ablation(model: GPT, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Ground truth: the loss increase when each head alone is switched off. ``(H,)`` per layer
    (``(0,)`` for a layer without heads)."""
    _require_gpt(model)
    x = _check_tokens(model, x)
    y = _check_answers(model, x, y)
    like = model.tok_emb.weight
    base = _answer_loss(model, x, y, None).item()
    scores = []
    for layer, n in enumerate(model.config.heads):
        layer_scores = []
        for h in range(n):
            masks = [torch.ones(k, dtype=like.dtype, device=like.device) for k in model.config.heads]
            masks[layer][h] = 0
            layer_scores.append(_answer_loss(model, x, y, masks).item() - base)
        scores.append(torch.tensor(layer_scores))
    return scores


def head_importance_norm(model: GPT) -> list[torch.Tensor]:
    """Weight-norm criterion: the norm of each head's slice of ``out`` (what it writes back),
    one ``(H,)`` score per layer (``(0,)`` for a layer without heads)."""
    _require_gpt(model)
    E, scores = model.config.head_dim, []
    for block, n in zip(model.blocks, model.config.heads, strict=True):
        out = _current(block.attn.out, "weight")                # (D, H*E), masked if pruned
        scores.append(torch.stack([out[:, head_slices(h, E)].norm() for h in range(n)]) if n
                      else out.new_zeros(0))
    return scores


@torch.no_grad()
def ffn_importance(model: GPT, x: torch.Tensor) -> list[torch.Tensor]:
    """Per FFN neuron: mean |GELU activation| over the tokens of ``x`` ``(B, T)`` times the norm
    of its ``fc2`` column (what it writes back). One ``(ffn,)`` score per layer (``(0,)`` for a
    layer without FFN neurons)."""
    _require_gpt(model)
    x = _check_tokens(model, x)
    scores, hooks = [], []
    for block in model.blocks:
        def record(module, inputs, output, block=block):        # output: (B, T, ffn)
            activation = nn.functional.gelu(output).abs().flatten(0, -2).mean(dim=0)
            scores.append(activation * _current(block.fc2, "weight").norm(dim=0))
        hooks.append(block.fc1.register_forward_hook(record))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return scores


def top_indices(scores: torch.Tensor, n: int) -> list[int]:
    """The ``n`` highest-scoring indices of ``scores`` ``(units,)``, in increasing order (ties
    towards the lower index; ``scores`` may be empty when ``n`` is 0; NaN is refused)."""
    scores = _check_scores(scores, "scores", allow_empty=True)
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int count, got {type(n).__name__} {n!r}")
    if not 0 <= n <= len(scores):
        raise ValueError(f"n must be in [0, {len(scores)}], got {n}")
    return sorted(torch.sort(-scores, stable=True).indices[:n].tolist())


def prune_to(model: GPT, heads: list[int], ffn: list[int], x: torch.Tensor, y: torch.Tensor,
             calibration: torch.Tensor) -> GPT:
    """One structured pruning step: keep ``heads[i]`` heads (highest ablation loss on ``x, y``)
    and ``ffn[i]`` FFN neurons (highest :func:`ffn_importance` on ``calibration``) in layer ``i``.

    Counts are ints in ``[0, what layer i has]``; every argument is checked before any work."""
    _require_gpt(model, exact=True)
    _refuse_foreign_hooks(model)
    heads = _check_counts(heads, model.config.heads, "heads")
    ffn = _check_counts(ffn, model.config.ffn, "ffn")
    _check_answers(model, _check_tokens(model, x), y)
    _check_tokens(model, calibration, "calibration")
    head_scores = head_importance_ablation(model, x, y)
    ffn_scores = ffn_importance(model, calibration)
    return slim_gpt(model, {i: top_indices(s, heads[i]) for i, s in enumerate(head_scores)},
                    {i: top_indices(s, ffn[i]) for i, s in enumerate(ffn_scores)})
