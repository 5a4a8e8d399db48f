"""Structured pruning of the tiny GPT: scoring and removing attention heads and FFN neurons.

Head ``h`` of a layer owns rows ``h*E:(h+1)*E`` of ``q``, ``k`` and ``v`` (E = head_dim) and the
same columns of ``out``; FFN neuron ``i`` owns row ``i`` of ``fc1`` (and its bias) and column
``i`` of ``fc2``. Removing them gives a smaller GPT whose config lists the new head counts and
FFN widths, so it can be saved and rebuilt from config + state_dict.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .gpt import GPT, GPTConfig, allow_empty_layers
from .tasks import answer_loss


def head_slices(head: int, head_dim: int) -> slice:
    """The rows of q/k/v (and columns of out) that belong to ``head``."""
    return slice(head * head_dim, (head + 1) * head_dim)


def _check_keep(keep: list[int], n: int, what: str) -> list[int]:
    keep = sorted(int(i) for i in keep)
    if len(set(keep)) != len(keep) or any(not 0 <= i < n for i in keep):
        raise ValueError(f"keep for {what} must be distinct indices in [0, {n - 1}], got {keep}")
    return keep


@torch.no_grad()
def _sliced_linear(layer: nn.Linear, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear with only ``rows`` of the output and ``cols`` of the input (None = all)."""
    weight = layer.weight
    weight = weight if rows is None else weight[rows]
    weight = weight if cols is None else weight[:, cols]
    with allow_empty_layers():
        new = nn.Linear(weight.shape[1], weight.shape[0])
    new.weight.copy_(weight)
    new.bias.copy_(layer.bias if rows is None else layer.bias[rows])
    return new


def slim_gpt(model: GPT, keep_heads: dict[int, list[int]] | None = None,
             keep_ffn: dict[int, list[int]] | None = None) -> GPT:
    """A new, smaller GPT keeping, in layer ``i``, the heads ``keep_heads[i]`` and the FFN
    neurons ``keep_ffn[i]`` (layers not named keep everything). ``model`` is not modified.

    The removed parts are removed completely (as if their output were zero), which is exactly
    what a head mask of 0 does, and what zeroing an FFN neuron's fc1 row *and bias* does.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"model must be a GPT, got {type(model).__name__}")
    keep_heads, keep_ffn = dict(keep_heads or {}), dict(keep_ffn or {})
    config = model.config
    for layer in (*keep_heads, *keep_ffn):
        if not isinstance(layer, int) or not 0 <= layer < config.n_layers:
            raise ValueError(f"layer index must be in [0, {config.n_layers - 1}], got {layer!r}")
    heads, ffn = {}, {}
    for i in range(config.n_layers):
        heads[i] = _check_keep(keep_heads.get(i, range(config.heads[i])), config.heads[i], f"layer {i} heads")
        ffn[i] = _check_keep(keep_ffn.get(i, range(config.ffn[i])), config.ffn[i], f"layer {i} FFN")
    new_config = GPTConfig(**{**config.to_dict(), "heads": [len(heads[layer]) for layer in heads],
                              "ffn": [len(ffn[layer]) for layer in ffn]})
    slim = GPT(new_config)
    slim.load_state_dict({k: v for k, v in copy.deepcopy(model.state_dict()).items()
                          if not k.startswith("blocks.")}, strict=False)
    for layer, (old, new) in enumerate(zip(model.blocks, slim.blocks, strict=True)):
        rows = torch.tensor([r for h in heads[layer] for r in range(h * config.head_dim, (h + 1) * config.head_dim)],
                            dtype=torch.long)
        new.ln1.load_state_dict(old.ln1.state_dict())
        new.ln2.load_state_dict(old.ln2.state_dict())
        new.attn.q, new.attn.k, new.attn.v = (_sliced_linear(projection, rows=rows)
                                              for projection in (old.attn.q, old.attn.k, old.attn.v))
        new.attn.out = _sliced_linear(old.attn.out, cols=rows)
        kept = torch.tensor(ffn[layer], dtype=torch.long)
        new.fc1, new.fc2 = _sliced_linear(old.fc1, rows=kept), _sliced_linear(old.fc2, cols=kept)
    return slim


def head_importance_gradient(model: GPT, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Michel et al. (2019), "Are Sixteen Heads Really Better than One?": the absolute gradient
    of the loss with respect to a head mask of ones, one ``(H,)`` score per layer."""
    masks = [torch.ones(h, requires_grad=True) for h in model.config.heads]
    loss = answer_loss_with_masks(model, x, y, masks)
    grads = torch.autograd.grad(loss, masks)
    return [g.abs().detach() for g in grads]


def answer_loss_with_masks(model: GPT, x: torch.Tensor, y: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on the answer digits with the given head masks applied."""
    logits = model(x, masks)[:, -y.shape[1]:]
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@torch.no_grad()
def head_importance_ablation(model: GPT, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Ground truth: the loss increase when each head alone is switched off. ``(H,)`` per layer."""
    base = answer_loss(model, x, y).item()
    scores = []
    for layer, n in enumerate(model.config.heads):
        layer_scores = []
        for h in range(n):
            masks = [torch.ones(k) for k in model.config.heads]
            masks[layer][h] = 0
            layer_scores.append(answer_loss_with_masks(model, x, y, masks).item() - base)
        scores.append(torch.tensor(layer_scores))
    return scores


def head_importance_norm(model: GPT) -> list[torch.Tensor]:
    """Weight-norm criterion: the norm of each head's slice of ``out`` (what it writes back)."""
    E = model.config.head_dim
    return [torch.stack([block.attn.out.weight[:, head_slices(h, E)].detach().norm() for h in range(n)])
            if n else torch.zeros(0) for block, n in zip(model.blocks, model.config.heads, strict=True)]


@torch.no_grad()
def ffn_importance(model: GPT, x: torch.Tensor) -> list[torch.Tensor]:
    """Per FFN neuron: mean |GELU activation| over the tokens of ``x`` times the norm of its
    ``fc2`` column (what it writes back). One ``(ffn,)`` score per layer."""
    scores, hooks = [], []
    for block in model.blocks:
        def record(module, inputs, output, block=block):
            activation = nn.functional.gelu(output).abs().reshape(-1, output.shape[-1]).mean(dim=0)
            scores.append(activation * block.fc2.weight.detach().norm(dim=0))
        hooks.append(block.fc1.register_forward_hook(record))
    try:
        model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return scores


def top_indices(scores: torch.Tensor, n: int) -> list[int]:
    """The ``n`` highest-scoring indices of ``scores``, in increasing order."""
    if not 0 <= n <= len(scores):
        raise ValueError(f"n must be in [0, {len(scores)}], got {n}")
    return sorted(torch.sort(-scores, stable=True).indices[:n].tolist())


def prune_to(model: GPT, heads: list[int], ffn: list[int], x: torch.Tensor, y: torch.Tensor,
             calibration: torch.Tensor) -> GPT:
    """One structured pruning step: keep ``heads[i]`` heads (highest ablation loss on ``x, y``)
    and ``ffn[i]`` FFN neurons (highest :func:`ffn_importance` on ``calibration``) in layer ``i``."""
    if len(heads) != model.config.n_layers or len(ffn) != model.config.n_layers:
        raise ValueError(f"heads and ffn must give one count per layer ({model.config.n_layers}), got {heads}, {ffn}")
    head_scores = head_importance_ablation(model, x, y)
    ffn_scores = ffn_importance(model, calibration)
    return slim_gpt(model, {i: top_indices(s, heads[i]) for i, s in enumerate(head_scores)},
                    {i: top_indices(s, ffn[i]) for i, s in enumerate(ffn_scores)})
