"""OBS and SparseGPT: the closed forms they rest on, checked against direct computations."""

import itertools

import pytest
import torch
from torch import nn

from lessons_lib.models import MLP
from lessons_lib.pruning import copy_model, layer_sparsities, prunable_layers
from lessons_lib.reconstruction import (
    _damped_inverse,
    hessian,
    layer_inputs,
    obs_prune,
    obs_saliency,
    prune_reconstruct,
    sparsegpt_prune,
)
from lessons_lib.sparsity import wanda_mask


def _correlated(n_rows=300, n=12, seed=0):
    """Inputs (n_rows, n) with strongly correlated, unevenly scaled features, and their H."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_rows, n, generator=g, dtype=torch.float64) @ torch.randn(n, n, generator=g, dtype=torch.float64)
    return x, hessian(x)


def _error(new, weight, x):
    """||(W' - W) Xᵀ||: lesson 01's reconstruction error, all rows."""
    return ((new - weight) @ x.T).norm().item()


def test_hessian_is_xtx_over_every_row():
    x = torch.randn(3, 5, 4)
    flat = x.reshape(-1, 4).double()
    assert torch.allclose(hessian(x), flat.T @ flat) and hessian(x).dtype == torch.float64
    with pytest.raises(ValueError, match="inputs must be a float tensor"):
        hessian(torch.ones(3, dtype=torch.int64))


def test_obs_saliency_with_a_diagonal_hessian_is_wanda_squared():
    x, h = _correlated()
    w = torch.randn(4, 12, dtype=torch.float64)
    wanda = (w.abs() * x.norm(dim=0)) ** 2
    diagonal = obs_saliency(w, torch.diag(h.diagonal()), damp=0.0)
    assert torch.allclose(diagonal, wanda, rtol=1e-10)
    # and the full H changes the ranking: the off-diagonal terms matter for these inputs
    assert not torch.equal(obs_saliency(w, h).argsort(dim=1), wanda.argsort(dim=1))


def test_obs_removing_one_weight_is_the_best_single_removal_with_the_best_update():
    x, h = _correlated()
    w = torch.randn(1, 12, dtype=torch.float64)
    new, keep = obs_prune(w, h, 1 / 12, damp=0.0)
    j = int((~keep[0]).nonzero())
    assert new[0, j] == 0 and keep.sum() == 11
    # brute force: for each weight, the least-squares best rest of the row; OBS picks the cheapest
    costs = []
    for k in range(12):
        rest = [i for i in range(12) if i != k]
        best, *_ = torch.linalg.lstsq(x[:, rest], x @ w[0])
        costs.append(((x[:, rest] @ best) - x @ w[0]).norm().item())
    assert j == min(range(12), key=costs.__getitem__)
    assert _error(new, w, x) == pytest.approx(min(costs), rel=1e-8)


def test_obs_with_identity_hessian_is_row_wise_magnitude_with_no_update():
    w = torch.randn(6, 16, dtype=torch.float64)
    new, keep = obs_prune(w, torch.eye(16, dtype=torch.float64), 0.5, damp=0.0)
    assert torch.equal(keep, wanda_mask(w, None, 0.5))
    assert torch.equal(new, w * keep)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_reconstruction_beats_masks_alone_on_correlated_inputs(sparsity):
    x, h = _correlated(n=16)
    w = torch.randn(8, 16, dtype=torch.float64)
    magnitude = _error(w * wanda_mask(w, None, sparsity), w, x)
    wanda = _error(w * wanda_mask(w, x.norm(dim=0), sparsity), w, x)
    sparsegpt, keep_s = sparsegpt_prune(w, h, sparsity, block_size=8)
    obs, keep_o = obs_prune(w, h, sparsity)
    assert (keep_o.sum(dim=1) == 16 - round(sparsity * 16)).all()        # OBS: round(sparsity * in) per row
    assert keep_s.sum() == 8 * 16 - round(sparsity * 8 * 16)              # SparseGPT: exact over the layer
    assert _error(obs, w, x) < min(magnitude, wanda)
    # SparseGPT's mask, chosen one block ahead, can be worse than Wanda's (at 75% here it is), but
    # its update always beats zeroing the same mask with no update
    assert _error(sparsegpt, w, x) < _error(w * keep_s, w, x)
    assert (obs[~keep_o] == 0).all() and (sparsegpt[~keep_s] == 0).all()


def test_sparsegpt_is_sequential_obs_in_column_order():
    """Column j set to its target, then the columns right of it updated with the inverse of H
    restricted to columns j.. (those to the left are fixed): the definition, computed naively."""
    x, h = _correlated()
    w = torch.randn(5, 12, dtype=torch.float64)
    for block_size, kwargs in ((12, {"sparsity": 0.5}), (4, {"sparsity": 0.5}), (4, {"n_m": (2, 4)})):
        new, keep = sparsegpt_prune(w, h, block_size=block_size, damp=0.01, **kwargs)
        damped = torch.linalg.inv(_damped_inverse(h, 0.01))
        naive = w.clone()
        for j in range(12):
            inverse = torch.linalg.inv(damped[j:, j:])
            error = naive[:, j] * ~keep[:, j] / inverse[0, 0]
            naive[:, j:] -= error[:, None] * inverse[0][None, :]
        assert torch.allclose(naive, new, atol=1e-10)


def test_sparsegpt_n_m_pattern_holds_in_every_group():
    x, h = _correlated(n=16)
    w = torch.randn(6, 16, dtype=torch.float64)
    new, keep = sparsegpt_prune(w, h, n_m=(2, 4), block_size=8)
    assert (keep.reshape(6, 4, 4).sum(-1) == 2).all() and (new[~keep] == 0).all()


def test_weight_and_hessian_are_not_modified_and_keep_their_dtype():
    x, h = _correlated()
    w = torch.randn(3, 12)
    before, h_before = w.clone(), h.clone()
    for new, _ in (obs_prune(w, h, 0.5), sparsegpt_prune(w, h, 0.5)):
        assert new.dtype == torch.float32
    assert torch.equal(w, before) and torch.equal(h, h_before)


@pytest.mark.parametrize(("call", "message"), [
    (lambda w, h: obs_prune(w, h, 1.5), "sparsity"),
    (lambda w, h: obs_prune(w, h[:3], 0.5), r"hessian must be a float tensor of shape \(12, 12\)"),
    (lambda w, h: obs_prune(w[0], h, 0.5), "weight must be a 2-D float tensor"),
    (lambda w, h: obs_prune(w, h * float("nan"), 0.5), "hessian must be finite"),
    (lambda w, h: sparsegpt_prune(w, h), "exactly one of sparsity and n_m"),
    (lambda w, h: sparsegpt_prune(w, h, 0.5, n_m=(2, 4)), "exactly one of sparsity and n_m"),
    (lambda w, h: sparsegpt_prune(w, h, n_m=(2, 5)), "multiple of m"),
    (lambda w, h: sparsegpt_prune(w, h, n_m=(2, 4), block_size=6), "block_size .* must be a multiple of m"),
    (lambda w, h: sparsegpt_prune(w, h, n_m=(4, 2)), "0 < n < m"),
    (lambda w, h: sparsegpt_prune(w, h, n_m=[2, 4]), r"tuple of two ints \(n, m\)"),
    (lambda w, h: sparsegpt_prune(w, h, n_m=(2, 4, 8)), r"tuple of two ints \(n, m\)"),
    (lambda w, h: obs_prune(w, h + torch.triu(torch.ones_like(h), 1), 0.5), "hessian must be symmetric"),
    (lambda w, h: obs_prune(w, -h, 0.5, damp=0.0), "not positive definite"),
    (lambda w, h: obs_prune(w, h, 0.5, damp=-0.1), "damp"),
    (lambda w, h: sparsegpt_prune(w, h, 0.5, block_size=0), "block_size"),
    (lambda w, h: obs_saliency(w, h, damp=-1), "damp"),
])
def test_bad_arguments_are_named(call, message):
    x, h = _correlated()
    with pytest.raises((ValueError, TypeError), match=message):
        call(torch.randn(4, 12), h.float())


def _mlp_and_batch():
    torch.manual_seed(0)
    return MLP(), torch.randn(64, 64)


@pytest.mark.parametrize("method", ["sparsegpt", "obs"])
def test_prune_reconstruct_attaches_masks_at_the_sparsity_and_beats_magnitude(method):
    model, x = _mlp_and_batch()
    pruned = copy_model(model)
    prune_reconstruct(pruned, x, 0.6, method=method)
    assert all(s == pytest.approx(0.6, abs=0.01) for s in layer_sparsities(pruned).values())
    magnitude = copy_model(model)
    for layer in prunable_layers(magnitude).values():
        torch.nn.utils.prune.custom_from_mask(layer, "weight", wanda_mask(layer.weight, None, 0.6))
    with torch.no_grad():
        dense_out = model(x)
        assert (pruned(x) - dense_out).norm() < (magnitude(x) - dense_out).norm()


def test_prune_reconstruct_uses_inputs_from_the_model_as_pruned_so_far():
    model, x = _mlp_and_batch()
    pruned = copy_model(model)
    prune_reconstruct(pruned, x, 0.5)
    first, second = list(prunable_layers(pruned).values())[:2]
    # the second layer's inputs now come from the pruned first layer, not the dense one
    dense_second = list(prunable_layers(model).values())[1]
    assert not torch.allclose(layer_inputs(pruned, x, second), layer_inputs(model, x, dense_second))
    assert first.weight_mask.shape == first.weight.shape


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"sparsity": 0.5, "method": "magic"}, "method must be one of"),
    ({"n_m": (2, 4), "method": "obs"}, "method='obs' takes a sparsity"),
    ({"sparsity": 2.0}, "sparsity"),
    ({}, "exactly one of sparsity and n_m"),
])
def test_prune_reconstruct_refuses_bad_arguments_and_leaves_the_model_unchanged(kwargs, message):
    model, x = _mlp_and_batch()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        prune_reconstruct(model, x, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_prune_reconstruct_refuses_a_pruned_layer():
    model, x = _mlp_and_batch()
    torch.nn.utils.prune.l1_unstructured(model.layers[0], "weight", 0.1)
    with pytest.raises(ValueError, match="already carries a pruning mask"):
        prune_reconstruct(model, x, 0.5)


def test_layer_inputs_refuses_a_layer_the_model_does_not_run():
    model, x = _mlp_and_batch()
    with pytest.raises(ValueError, match="never ran"):
        layer_inputs(model, x, nn.Linear(64, 3))


def test_obs_rounds_like_every_sparsity():
    for n, s in itertools.product((7, 12), (0.1, 0.5, 0.9)):
        w = torch.randn(2, n, dtype=torch.float64)
        _, keep = obs_prune(w, torch.eye(n, dtype=torch.float64), s)
        assert (keep.sum(1) == n - round(s * n)).all()


def test_sparsegpt_mask_is_one_threshold_over_the_layer_when_one_block_holds_it():
    x, h = _correlated(n=16)
    w = torch.randn(8, 16, dtype=torch.float64)
    _, keep = sparsegpt_prune(w, h, 0.5, block_size=16, damp=0.01)
    u = torch.linalg.cholesky(_damped_inverse(h, 0.01), upper=True)
    saliency = w.pow(2) / u.diagonal().pow(2)                 # before any update: the block's start
    expected = torch.ones(8 * 16, dtype=torch.bool)
    expected[saliency.flatten().topk(64, largest=False).indices] = False
    assert torch.equal(keep, expected.view(8, 16))
    assert len(set(keep.sum(dim=1).tolist())) > 1             # rows lose different numbers


def test_sparsegpt_chooses_each_n_m_group_when_it_reaches_it_whatever_the_block():
    x, h = _correlated(n=16)
    w = torch.randn(6, 16, dtype=torch.float64)
    by_group = sparsegpt_prune(w, h, n_m=(2, 4), block_size=4)
    for block_size in (8, 16, 128):
        new, keep = sparsegpt_prune(w, h, n_m=(2, 4), block_size=block_size)
        assert torch.equal(keep, by_group[1]) and torch.allclose(new, by_group[0], atol=1e-10)
    # and not from the weights before any update: the first group's choice is, the later ones need not be
    u = torch.linalg.cholesky(_damped_inverse(h, 0.01), upper=True)
    upfront = torch.cat([sparsity_n_m(w[:, j:j + 4].pow(2) / u.diagonal()[j:j + 4].pow(2)) for j in range(0, 16, 4)], 1)
    assert torch.equal(upfront[:, :4], by_group[1][:, :4])


def sparsity_n_m(scores):
    from lessons_lib.sparsity import n_m_mask
    return n_m_mask(scores, 2, 4)


def test_obs_with_a_diagonal_hessian_picks_wandas_per_row_mask_and_updates_nothing():
    x, h = _correlated()
    w = torch.randn(5, 12, dtype=torch.float64)
    new, keep = obs_prune(w, torch.diag(h.diagonal()), 0.5, damp=0.0)
    assert torch.equal(keep, wanda_mask(w, x.norm(dim=0), 0.5))
    assert torch.allclose(new, w * keep, atol=1e-12)


def test_obs_saliency_is_float64_whatever_the_weight_dtype():
    x = torch.randn(100000, 12) * 30
    s = obs_saliency(torch.randn(4, 12).half(), hessian(x))
    assert s.dtype == torch.float64 and torch.isfinite(s).all()


class _Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp, self.unused = MLP(), nn.Linear(10, 10)

    def forward(self, x):
        return self.mlp(x)


@pytest.mark.parametrize(("make", "kwargs", "message"), [
    (_Unused, {"sparsity": 0.5}, r"layer 'unused'.*never ran"),
    (MLP, {"sparsity": 0.5, "damp": 0.0}, "not positive definite"),
])
def test_prune_reconstruct_changes_nothing_when_a_later_layer_fails(make, kwargs, message):
    torch.manual_seed(0)
    model, x = make(), torch.randn(40, 64)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        prune_reconstruct(model, x, **kwargs)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(torch.nn.utils.prune.is_pruned(m) for m in model.modules() if m is not model)


def test_prune_reconstruct_calibrates_in_eval_mode_and_keeps_the_mode():
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn, self.b = nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 4)

        def forward(self, x):
            return self.b(self.bn(self.a(x)))

    model = WithNorm().train()
    statistics = model.bn.running_mean.clone(), model.bn.num_batches_tracked.clone()
    prune_reconstruct(model, torch.randn(32, 8) + 3, 0.5)
    assert torch.equal(model.bn.running_mean, statistics[0]) and model.bn.num_batches_tracked == statistics[1]
    assert model.training


def test_layer_inputs_refuses_what_is_not_a_linear_layer():
    model, x = _mlp_and_batch()
    with pytest.raises(TypeError, match="layer must be a torch.nn.Linear"):
        layer_inputs(model, x, "layers.0")
