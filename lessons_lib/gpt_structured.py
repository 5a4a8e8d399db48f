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

from .gpt import GPT, GPTConfig, allow_empty_layers, head_slice
from .pruning import masked_weight
from .slimming import keep_top, refuse_foreign_hooks, slim_linear
from .tasks import answer_loss
from .validate import require_bool, require_gradients, require_indices

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
        return masked_weight(model.get_submodule(path), name)
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


def head_names(model: GPT) -> list[str]:
    """The keys of per-layer head scores and kept heads: ``["blocks.0.attn", "blocks.1.attn", ...]``."""
    return [f"blocks.{i}.attn" for i in range(model.config.n_layers)]


def ffn_names(model: GPT) -> list[str]:
    """The keys of per-layer FFN-neuron scores and kept neurons: ``["blocks.0.fc1", ...]`` (the
    Linear layer whose outputs the neurons are)."""
    return [f"blocks.{i}.fc1" for i in range(model.config.n_layers)]


def _check_counts(counts: object, names: list[str], limits: list[int], arg: str) -> list[int]:
    """``counts`` (an int for every layer, or a dict layer name -> int) as one count per layer,
    each in ``[0, limits[i]]``; layers a dict leaves out keep everything."""
    if isinstance(counts, numbers.Integral) and not isinstance(counts, bool):
        counts = dict.fromkeys(names, counts)
    if not isinstance(counts, Mapping):
        raise TypeError(f"{arg} must be an int (every layer) or a dict mapping layer name to a count, "
                        f"got {type(counts).__name__} {counts!r:.60}")
    for name, count in counts.items():
        if name not in names:
            raise ValueError(f"{arg} has key {name!r}; expected one of {names}")
        if isinstance(count, bool) or not isinstance(count, numbers.Integral):
            raise TypeError(f"{arg}[{name!r}] must be an int count, got {type(count).__name__} {count!r}")
        limit = limits[names.index(name)]
        if not 0 <= count <= limit:
            raise ValueError(f"{arg}[{name!r}] must be in [0, {limit}] (what that layer has), got {count}")
    return [int(counts.get(name, limit)) for name, limit in zip(names, limits, strict=True)]


def _keep_per_layer(keep: object, names: list[str], counts: list[int], arg: str) -> list[list[int]]:
    """``keep`` (layer name -> indices; layers not named keep all) as sorted index lists, one per layer."""
    keep = {} if keep is None else keep
    if not isinstance(keep, Mapping):
        raise TypeError(f"{arg} must be a dict mapping layer name to the indices to keep, got {type(keep).__name__}")
    for name in keep:
        if name not in names:
            raise ValueError(f"{arg} has key {name!r}; expected one of {names}")
    return [sorted(require_indices(keep.get(name, range(n)), n, f"{arg}[{name!r}]", allow_empty=True).tolist())
            for name, n in zip(names, counts, strict=True)]


# --- removing heads and neurons -------------------------------------------------------------------

def slim_gpt(model: GPT, keep_heads: Mapping[str, Sequence[int]] | None = None,
             keep_ffn: Mapping[str, Sequence[int]] | None = None) -> GPT:
    """A new, smaller GPT keeping the heads ``keep_heads["blocks.i.attn"]`` and the FFN neurons
    ``keep_ffn["blocks.i.fc1"]`` of each layer named (distinct int indices, in any order,
    possibly none; layers not named keep everything). ``model`` is not modified.

    **The masked model**: ``model`` as its forward runs it, ``torch.nn.utils.prune`` masks
    applied (on any tensor, the output ``head`` included), with a head mask of 0 for every
    removed head (``model(x, head_masks)``) and, for every removed FFN neuron, its ``fc1`` row
    *and* bias entry zeroed (GELU(0) = 0, so it adds nothing). ``slim(x)`` equals that model's
    output up to float rounding: every tensor of the slim model is the masked tensor, sliced
    (:func:`slimming.slim_linear`).

    The result has ``model``'s dtype, device and training mode, and Parameters sharing no
    storage with ``model``. A subclass of GPT, or a model with forward hooks other than pruning
    masks, is refused: the slim model would not run that code.
    """
    shapes = _require_gpt(model, exact=True)
    refuse_foreign_hooks(model)
    config = model.config
    heads = _keep_per_layer(keep_heads, head_names(model), config.heads, "keep_heads")
    ffn = _keep_per_layer(keep_ffn, ffn_names(model), config.ffn, "keep_ffn")
    state = {key: _tensor_at(model, key).clone() for key in shapes}      # masks applied, fresh storage
    for i, block in enumerate(model.blocks):
        stacked = torch.arange(config.heads[i] * config.head_dim)            # (H*E,): rows of q, k, v
        rows = torch.cat([stacked[head_slice(h, config.head_dim)] for h in heads[i]] or [stacked[:0]])
        kept = torch.tensor(ffn[i], dtype=torch.long)
        for name, keep_rows, keep_cols in (("attn.q", rows, None), ("attn.k", rows, None), ("attn.v", rows, None),
                                           ("attn.out", None, rows), ("fc1", kept, None), ("fc2", None, kept)):
            slim = slim_linear(block.get_submodule(name), keep_rows, keep_cols)
            state[f"blocks.{i}.{name}.weight"], state[f"blocks.{i}.{name}.bias"] = slim.weight, slim.bias
    new_config = GPTConfig(**{**config.to_dict(), "heads": [len(h) for h in heads], "ffn": [len(f) for f in ffn]})
    with torch.device("meta"), allow_empty_layers():        # only the structure; the tensors come next
        slim = GPT(new_config)
    slim.load_state_dict({k: v.detach() for k, v in state.items()}, assign=True)   # strict: all from model
    return slim.train(model.training)


# --- scores ---------------------------------------------------------------------------------------

def head_scores_gradient(model: GPT, x: torch.Tensor, y: torch.Tensor,
                         per_example: bool = True) -> dict[str, torch.Tensor]:
    """Head importance of Michel et al. (2019), "Are Sixteen Heads Really Better than One?":
    ``I_h = E_x |∂L(x)/∂ξ_h|``, the mean over the problems of ``x`` ``(B, T)``, ``y`` ``(B, A)`` of
    the *absolute per-problem* gradient of the answer loss with respect to a head mask ``ξ`` of
    ones, then divided by its L2 norm within each layer, as the paper does. One backward pass:
    each problem gets its own ``(B, H)`` mask, so ``∂(sum of losses)/∂ξ[b]`` is problem b's.

    ``per_example=False`` takes ``|∂(mean loss)/∂ξ_h|`` instead (the gradient of the batch loss),
    where per-problem gradients of opposite sign cancel: lesson 09 shows what that does.
    ``"blocks.i.attn"`` -> ``(H_i,)`` (``(0,)`` for a layer without heads; all zeros stay zeros).
    The parameters' ``.grad`` are left as they were."""
    require_gradients("head_scores_gradient")
    _require_gpt(model)
    x = _check_tokens(model, x)
    y = _check_answers(model, x, y)
    per_example = require_bool(per_example, "per_example")
    like = model.tok_emb.weight
    masks = [torch.ones((len(x), h) if per_example else (h,), dtype=like.dtype, device=like.device,
                        requires_grad=True) for h in model.config.heads]
    with torch.enable_grad():
        logits = model(x, masks)[:, -y.shape[1]:]                                   # (B, A, vocab)
        losses = nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(1)   # (B,)
        loss = losses.sum() if per_example else losses.mean()
        grads = torch.autograd.grad(loss, masks, allow_unused=True) if loss.requires_grad else [None] * len(masks)
    scores = []
    for h, grad in zip(model.config.heads, grads, strict=True):
        if grad is None:
            scores.append(torch.zeros(h, dtype=like.dtype, device=like.device))
            continue
        score = grad.abs().mean(0) if per_example else grad.abs()                    # (H,)
        norm = score.norm()
        scores.append((score / norm if norm > 0 else score).detach())
    return dict(zip(head_names(model), scores, strict=True))


@torch.no_grad()
def head_scores_ablation(model: GPT, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Ground truth: the answer-loss increase on ``x``, ``y`` when each head alone is switched
    off. ``"blocks.i.attn"`` -> ``(H_i,)`` (``(0,)`` for a layer without heads)."""
    _require_gpt(model)
    x = _check_tokens(model, x)
    y = _check_answers(model, x, y)
    like = model.tok_emb.weight
    base = answer_loss(model, x, y).item()
    scores = []
    for layer, n in enumerate(model.config.heads):
        layer_scores = []
        for h in range(n):
            masks = [torch.ones(k, dtype=like.dtype, device=like.device) for k in model.config.heads]
            masks[layer][h] = 0
            layer_scores.append(answer_loss(model, x, y, masks).item() - base)
        scores.append(torch.tensor(layer_scores))
    return dict(zip(head_names(model), scores, strict=True))


def head_scores_norm(model: GPT) -> dict[str, torch.Tensor]:
    """Weight-norm criterion: the norm of each head's slice of ``out`` (what it writes back).
    ``"blocks.i.attn"`` -> ``(H_i,)`` (``(0,)`` for a layer without heads)."""
    _require_gpt(model)
    E, scores = model.config.head_dim, []
    for block, n in zip(model.blocks, model.config.heads, strict=True):
        out = masked_weight(block.attn.out, "weight")                # (D, H*E), masked if pruned
        scores.append(torch.stack([out[:, head_slice(h, E)].norm() for h in range(n)]) if n
                      else out.new_zeros(0))
    return dict(zip(head_names(model), scores, strict=True))


@torch.no_grad()
def ffn_neuron_scores(model: GPT, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per FFN neuron: mean |GELU activation| over the tokens of ``x`` ``(B, T)`` times the norm
    of its ``fc2`` column (what it writes back). ``"blocks.i.fc1"`` -> ``(ffn_i,)`` (``(0,)`` for
    a layer without FFN neurons)."""
    _require_gpt(model)
    x = _check_tokens(model, x)
    scores, hooks = [], []
    for block in model.blocks:
        def record(module, inputs, output, block=block):        # output: (B, T, ffn)
            activation = nn.functional.gelu(output).abs().flatten(0, -2).mean(dim=0)
            scores.append(activation * masked_weight(block.fc2, "weight").norm(dim=0))
        hooks.append(block.fc1.register_forward_hook(record))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return dict(zip(ffn_names(model), scores, strict=True))


def slim_gpt_to(model: GPT, n_keep_heads: int | Mapping[str, int], n_keep_ffn: int | Mapping[str, int],
                x: torch.Tensor, y: torch.Tensor, calibration: torch.Tensor) -> GPT:
    """A new GPT with, in each layer, the ``n_keep_heads`` heads that matter most (highest
    :func:`head_scores_ablation` on ``x`` ``(B, T)``, ``y`` ``(B, A)``) and the ``n_keep_ffn``
    FFN neurons that matter most (highest :func:`ffn_neuron_scores` on ``calibration`` ``(B', T)``).

    A count is an int (the same for every layer) or a dict layer name -> int (``"blocks.i.attn"``
    for heads, ``"blocks.i.fc1"`` for FFN neurons; layers left out keep everything), each in
    ``[0, what the layer has]``. Every argument is checked before any work; ``model`` is not
    modified (``slim_*`` functions return a new model, see :func:`slim_gpt`)."""
    _require_gpt(model, exact=True)
    refuse_foreign_hooks(model)
    heads = _check_counts(n_keep_heads, head_names(model), model.config.heads, "n_keep_heads")
    ffn = _check_counts(n_keep_ffn, ffn_names(model), model.config.ffn, "n_keep_ffn")
    _check_answers(model, _check_tokens(model, x), y)
    _check_tokens(model, calibration, "calibration")
    head_scores, neuron_scores = head_scores_ablation(model, x, y), ffn_neuron_scores(model, calibration)
    keep_heads = {name: keep_top(head_scores[name], n) for name, n in zip(head_names(model), heads, strict=True)}
    keep_ffn = {name: keep_top(neuron_scores[name], n) for name, n in zip(ffn_names(model), ffn, strict=True)}
    return slim_gpt(model, keep_heads, keep_ffn)
