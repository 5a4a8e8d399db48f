"""Pruning with reconstruction: choose the weights to remove *and* change the ones that stay, so
that each layer's output on calibration inputs changes as little as possible.

Lesson 01 measured what a mask costs a layer as ``||ΔW·X||``: the change in its outputs on real
inputs. For one output row ``w`` (in_features,) and inputs ``X`` (n, in_features) that cost is
the quadratic ``Δw H Δwᵀ`` with the layer's **Hessian** ``H = XᵀX`` (in_features, in_features).
Optimal Brain Surgeon (Hassibi & Stork, 1993) minimises it exactly for one weight at a time:

- removing weight ``j`` costs at least ``w_j² / [H⁻¹]_jj`` (its **saliency**), and
- the best change to the rest of the row is ``Δw = -(w_j / [H⁻¹]_jj) · H⁻¹[j, :]``.

With a *diagonal* H (``H_jj = ||X_j||²``, no damping) the saliency is ``(|w_j| · ||X_j||)²``:
Wanda's score squared (Sun et al., 2023), and the update leaves the rest of the row alone, so
greedy OBS row by row then picks exactly Wanda's per-row mask. Two ways to prune a whole layer with the full H are here:

- :func:`obs_prune`: OBS greedily, one weight at a time in every row, ``H⁻¹`` updated after
  each removal (the row-wise solver of Frantar & Alistarh, "Optimal Brain Compression", 2022).
  Each step is exact; the sequence is greedy. One ``(in, in)`` inverse per row and one update of
  it per removed weight: ``out · k · in²`` work for ``k`` removals per row.
- :func:`sparsegpt_prune`: the SparseGPT way (Frantar & Alistarh, 2023): walk the columns left
  to right, choose the mask of a block of columns from the saliencies when the sweep reaches the
  block, and push each column's error onto the columns to its right only (with the Cholesky
  factor of ``H⁻¹``). Every row uses the same column order, so one inverse serves all rows: one
  pass, ``out · in²`` work whatever the sparsity.

:func:`prune_reconstruct` prunes a model's layers in order, each on inputs that come from the
model as pruned so far, and attaches the masks like every ``prune_*`` function.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune

from .pruning import copy_model, prunable_layers
from .sparsity import n_m_mask
from .validate import require_fraction, require_module, require_number, require_positive_int, require_tensor

METHODS = ("sparsegpt", "obs")


def _check_weight_hessian(weight: object, hessian: object) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` (out, in) float and ``hessian`` (in, in) float, finite, symmetric, on one device."""
    weight, hessian = require_tensor(weight, "weight"), require_tensor(hessian, "hessian")
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"weight must be a 2-D float tensor (out_features, in_features), "
                         f"got shape {tuple(weight.shape)} of {weight.dtype}")
    n = weight.shape[1]
    if hessian.shape != (n, n) or not hessian.is_floating_point():
        raise ValueError(f"hessian must be a float tensor of shape ({n}, {n}) (in_features squared), "
                         f"got shape {tuple(hessian.shape)} of {hessian.dtype}")
    if hessian.device != weight.device:
        raise ValueError(f"hessian must be on the weight's device {weight.device}, got {hessian.device}")
    for name, t in (("weight", weight), ("hessian", hessian)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    h = hessian.double()
    if not torch.allclose(h, h.T, rtol=1e-5, atol=1e-8 * float(h.abs().max())):
        raise ValueError("hessian must be symmetric (XᵀX is): got one that differs from its transpose")
    return weight, hessian


def _check_n_m(n_m: object, width: int) -> tuple[int, int]:
    """``n_m`` as ``(n, m)``: keep ``n`` of every ``m`` consecutive weights, ``0 < n < m``, ``m | width``."""
    if not (isinstance(n_m, tuple) and len(n_m) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in n_m)):
        raise ValueError(f"n_m must be a tuple of two ints (n, m), keep n of every m, such as (2, 4); got {n_m!r}")
    n, m = int(n_m[0]), int(n_m[1])
    if not 0 < n < m:
        raise ValueError(f"n_m=(n, m) needs 0 < n < m (n kept of every m), got n={n}, m={m}")
    if width % m:
        raise ValueError(f"n_m={n_m}: in_features ({width}) must be a multiple of m")
    return n, m


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """``H = XᵀX`` in float64 from a layer's inputs ``X`` ``(..., in_features)`` (every leading
    dimension counts as rows: tokens of every problem): ``(in_features, in_features)``."""
    inputs = require_tensor(inputs, "inputs")
    if inputs.dim() < 2 or inputs.shape[-1] == 0 or not inputs.is_floating_point():
        raise ValueError(f"inputs must be a float tensor (rows, in_features), got shape {tuple(inputs.shape)} "
                         f"of {inputs.dtype}")
    rows = inputs.detach().reshape(-1, inputs.shape[-1]).double()        # (n, in)
    return rows.T @ rows


def _damped_inverse(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """``(H + damp · mean(diag H) · I)⁻¹`` in float64. The damping (SparseGPT uses 1% of the mean
    diagonal) makes H invertible when an input feature is always 0 and keeps H⁻¹ well scaled."""
    h = hessian.double()
    mean_diag = h.diagonal().mean()
    h = h + (damp * mean_diag if mean_diag > 0 else 1.0) * torch.eye(len(h), dtype=h.dtype, device=h.device)
    try:
        return torch.cholesky_inverse(torch.linalg.cholesky(h))
    except torch.linalg.LinAlgError as error:
        raise ValueError(f"hessian is not positive definite with damp={damp} (an input feature that is always 0, "
                         "or fewer calibration rows than inputs): use damp > 0, e.g. 0.01") from error


def obs_saliency(weight: torch.Tensor, hessian: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """OBS saliency ``w_ij² / [H⁻¹]_jj`` ``(out, in)``, float64: the least that removing weight
    ``ij`` alone can cost row i, ``Δw H Δwᵀ``, once the rest of the row is updated to compensate.
    ``weight`` (out, in); ``hessian`` (in, in), e.g. from :func:`hessian`. With
    ``torch.diag(hessian.diagonal())`` and ``damp=0`` it is Wanda's ``(|w| · ||X_j||)²``."""
    weight, hessian = _check_weight_hessian(weight, hessian)
    damp = require_number(damp, "damp", minimum=0)
    inverse_diag = _damped_inverse(hessian, damp).diagonal()               # (in,)
    return weight.detach().double().pow(2) / inverse_diag


def obs_prune(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float,
              damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimal Brain Surgeon on every row of ``weight`` (out, in) at once: remove the weight of
    lowest saliency, update the rest of its row, update that row's ``H⁻¹``, repeat until
    ``round(sparsity * in)`` weights of each row are gone (each step exact, the sequence greedy).
    Returns ``(new weight, mask)``: the reconstructed weight (pruned entries exactly 0,
    ``weight``'s dtype) and the bool mask (True = keep), both ``(out, in)``. ``weight`` is not
    modified. Memory: one ``(in, in)`` float64 matrix per row."""
    weight, hessian = _check_weight_hessian(weight, hessian)
    sparsity, damp = require_fraction(sparsity, "sparsity"), require_number(damp, "damp", minimum=0)
    rows, n = weight.shape
    w = weight.detach().double().clone()                                  # (out, in)
    inverse = _damped_inverse(hessian, damp).expand(rows, n, n).clone()   # (out, in, in): one H⁻¹ per row
    keep = torch.ones(rows, n, dtype=torch.bool, device=weight.device)
    every_row = torch.arange(rows, device=weight.device)
    for _ in range(round(sparsity * n)):
        diag = inverse.diagonal(dim1=1, dim2=2)                            # (out, in)
        saliency = torch.where(keep, w.pow(2) / diag.clamp_min(1e-300), torch.inf)
        j = saliency.argmin(dim=1)                                         # (out,): one weight per row
        pivot = diag[every_row, j]                                         # [H⁻¹]_jj per row
        inverse_row = inverse[every_row, j]                                # (out, in): H⁻¹[j, :]
        w -= (w[every_row, j] / pivot)[:, None] * inverse_row              # the OBS update; w_j becomes 0
        w[every_row, j] = 0.0
        keep[every_row, j] = False
        # H⁻¹ of the remaining weights: remove j by one step of Gaussian elimination
        inverse.baddbmm_(inverse_row[:, :, None], (inverse_row / pivot[:, None])[:, None, :], alpha=-1)
    w[~keep] = 0.0                                                         # exactly, not 1e-17
    return w.to(weight.dtype), keep


def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float | None = None,
                    n_m: tuple[int, int] | None = None, block_size: int = 128,
                    damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT (Frantar & Alistarh, 2023) on ``weight`` (out, in) with ``hessian`` (in, in): the
    columns in order, the errors of a block of ``block_size`` columns passed on to the columns to
    its right once the block is done. Saliency ``w² / U_jj²``, ``U`` the upper Cholesky factor of
    ``H⁻¹`` (``U_jj²`` is ``[H⁻¹]_jj`` with the columns to the left already fixed), from the
    weights as updated so far:

    - ``sparsity``: when the sweep reaches a block, its mask drops the block's share of the
      layer's ``round(sparsity * out * in)`` weights with the lowest saliency, over *all rows* at
      once (one threshold per block, as SparseGPT does: rows may lose different numbers);
    - ``n_m=(n, m)``: when the sweep reaches a group of ``m`` consecutive columns, each row keeps
      the ``n`` of highest saliency (2:4 keeps 2 of every 4, 50% sparsity).

    Then column by column, the error of zeroing (or keeping) it is spread over the columns to its
    right. Give exactly one of ``sparsity`` and ``n_m``. Returns ``(new weight, mask)`` like
    :func:`obs_prune`; ``weight`` is not modified."""
    weight, hessian = _check_weight_hessian(weight, hessian)
    if (sparsity is None) == (n_m is None):
        raise ValueError(f"give exactly one of sparsity and n_m, got sparsity={sparsity!r}, n_m={n_m!r}")
    sparsity = None if sparsity is None else require_fraction(sparsity, "sparsity")
    block_size, damp = require_positive_int(block_size, "block_size"), require_number(damp, "damp", minimum=0)
    rows, n = weight.shape
    if n_m is not None:
        keep_n, m = _check_n_m(n_m, n)
        if min(block_size, n) % m:
            raise ValueError(f"n_m={n_m}: block_size ({block_size}) must be a multiple of m, or at least in_features")
    w = weight.detach().double().clone()
    u = torch.linalg.cholesky(_damped_inverse(hessian, damp), upper=True)     # (in, in), H⁻¹ = UᵀU
    keep = torch.ones(rows, n, dtype=torch.bool, device=weight.device)
    for start in range(0, n, block_size):
        end = min(start + block_size, n)
        if sparsity is not None:                         # this block's share, so that the layer total is exact
            drop = round(sparsity * rows * end) - round(sparsity * rows * start)
            saliency = (w[:, start:end].pow(2) / u.diagonal()[start:end].pow(2)).flatten()      # (out * block,)
            block_keep = torch.ones_like(saliency, dtype=torch.bool)
            block_keep[saliency.topk(drop, largest=False).indices] = False
            keep[:, start:end] = block_keep.view(rows, end - start)
        errors = torch.zeros(rows, end - start, dtype=w.dtype, device=w.device)
        for j in range(start, end):
            if n_m is not None and (j - start) % m == 0:  # the group's mask, from the weights as they are now
                saliency = w[:, j:j + m].pow(2) / u.diagonal()[j:j + m].pow(2)
                keep[:, j:j + m] = n_m_mask(saliency, keep_n, m)
            error = w[:, j] * ~keep[:, j] / u[j, j]                         # (out,): zero what is dropped
            w[:, j:end] -= error[:, None] * u[j, j:end][None, :]
            errors[:, j - start] = error
        w[:, end:] -= errors @ u[start:end, end:]                           # the block's error, to the right
    w[~keep] = 0.0
    return w.to(weight.dtype), keep


@torch.no_grad()
def layer_inputs(model: nn.Module, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """What ``layer`` (an ``nn.Linear`` of ``model``) reads when ``model(x)`` runs in eval mode:
    ``(rows, in_features)``, every token of every example a row. The model's mode is restored."""
    require_module(model, "model")
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"layer must be a torch.nn.Linear of model, got {type(layer).__name__}")
    seen = []
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach()))
    was_training = model.training
    model.eval()                                        # no dropout, no BatchNorm statistics updated
    try:
        model(x)
    finally:
        handle.remove()
        model.train(was_training)
    if not seen:
        raise ValueError("layer never ran during model(x): pass a layer that model's forward uses")
    return torch.cat([t.reshape(-1, t.shape[-1]) for t in seen])


def prune_reconstruct(model: nn.Module, x: torch.Tensor, sparsity: float | None = None,
                      n_m: tuple[int, int] | None = None, method: str = "sparsegpt",
                      layers: Mapping[str, nn.Linear] | None = None, damp: float = 0.01,
                      block_size: int = 128) -> None:
    """Prune ``model``'s layers in place with reconstruction, in the order of ``layers`` (default
    :func:`pruning.prunable_layers`: module order, which is the forward order of the course's
    models). For each layer, its inputs on the calibration batch ``x`` come from the model *as
    pruned so far* (in eval mode), its Hessian is built, and its weight is replaced by
    :func:`sparsegpt_prune`'s (``method="sparsegpt"``, with ``block_size``) or :func:`obs_prune`'s
    (``"obs"``, sparsity only) reconstruction, with the mask attached (``prune.custom_from_mask``).

    The layers must not carry masks yet. The work is done on a copy, and written into ``model``
    only once every layer has succeeded: on any error ``model`` is unchanged."""
    require_module(model, "model")
    layers = prunable_layers(model, layers)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "obs" and n_m is not None:
        raise ValueError("method='obs' takes a sparsity, not n_m: use method='sparsegpt' for an N:M pattern")
    if (sparsity is None) == (n_m is None) and method == "sparsegpt":
        raise ValueError(f"give exactly one of sparsity and n_m, got sparsity={sparsity!r}, n_m={n_m!r}")
    if method == "obs" or sparsity is not None:
        require_fraction(sparsity, "sparsity")
    require_number(damp, "damp", minimum=0)
    require_positive_int(block_size, "block_size")
    for name, layer in layers.items():
        if prune.is_pruned(layer):
            raise ValueError(f"layer {name!r} already carries a pruning mask: prune_reconstruct starts from "
                             "unpruned weights (call it on a fresh copy)")
        if n_m is not None:
            _check_n_m(n_m, layer.in_features)
    path = {id(module): name for name, module in model.named_modules()}
    work = copy_model(model)
    results = {}
    for name, layer in layers.items():
        copy_layer = work.get_submodule(path[id(layer)])
        try:
            h = hessian(layer_inputs(work, x, copy_layer)).to(layer.weight.device)
            if method == "sparsegpt":
                new, keep = sparsegpt_prune(copy_layer.weight, h, sparsity, n_m, block_size, damp)
            else:
                new, keep = obs_prune(copy_layer.weight, h, sparsity, damp)
        except ValueError as error:
            raise ValueError(f"layer {name!r}: {error} (model left unchanged)") from error
        with torch.no_grad():
            copy_layer.weight.copy_(new)
        prune.custom_from_mask(copy_layer, "weight", keep)
        results[name] = (new, keep)
    for name, layer in layers.items():                  # every layer succeeded: write into model
        new, keep = results[name]
        with torch.no_grad():
            layer.weight.copy_(new)
        prune.custom_from_mask(layer, "weight", keep)
