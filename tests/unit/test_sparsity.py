"""Masks and sparsity reporting, checked against torch.nn.utils.prune."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

import lessons_lib.pruning as pr
import lessons_lib.sparsity as sp


def _module_with(weight: torch.Tensor) -> nn.Module:
    module = nn.Module()
    module.weight = nn.Parameter(weight.clone())
    return module


shapes = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)


@settings(max_examples=60, deadline=None)
@given(shape=shapes, fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1))
def test_magnitude_mask_equals_prune_for_fractions(shape, fraction, seed):
    # Continuous random weights have distinct magnitudes (almost surely), so the mask is unique.
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    module = _module_with(weight)
    prune.l1_unstructured(module, "weight", amount=fraction)
    ours = sp.magnitude_mask(weight, fraction)
    assert torch.equal(ours, module.weight_mask.bool())
    assert int((~ours).sum()) == round(fraction * weight.numel())


def test_ties_prune_exact_count_earliest_first():
    tied = torch.tensor([0.1, 0.2, -0.2, 0.2, 0.5, 0.9])
    mask = sp.magnitude_mask(tied, 0.5)
    assert mask.tolist() == [False, False, False, True, True, True]
    all_equal = torch.full((4, 5), 0.3)
    mask = sp.magnitude_mask(all_equal, 0.35)
    assert int((~mask).sum()) == 7
    assert not mask.flatten()[:7].any() and mask.flatten()[7:].all()


def test_magnitude_mask_leaves_weight_unchanged_and_keeps_shape():
    weight = torch.randn(3, 4, 5)
    before = weight.clone()
    mask = sp.magnitude_mask(weight, 0.4)
    assert mask.shape == weight.shape and mask.dtype == torch.bool
    assert torch.equal(weight, before)


def test_random_mask_exact_count_and_repeatable():
    weight = torch.randn(50, 100)
    a = sp.random_mask(weight, 0.3, torch.Generator().manual_seed(1))
    b = sp.random_mask(weight, 0.3, torch.Generator().manual_seed(1))
    c = sp.random_mask(weight, 0.3, torch.Generator().manual_seed(2))
    assert int((~a).sum()) == 1500 and a.shape == weight.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, sp.magnitude_mask(weight, 0.3))


@pytest.mark.parametrize("fn", [sp.magnitude_mask, sp.random_mask])
@pytest.mark.parametrize(
    ("sparsity", "error", "message"),
    [
        (1.3, ValueError, "sparsity must be a fraction in [0, 1], got 1.3"),
        (-0.1, ValueError, "sparsity must be a fraction in [0, 1], got -0.1"),
        (-1, ValueError, "sparsity must be a fraction in [0, 1], got -1"),
        (7, ValueError, "sparsity must be a fraction in [0, 1], got 7"),          # no counts any more
        (True, TypeError, "sparsity must be a fraction in [0, 1] (a float), got bool True"),
        ("half", TypeError, "sparsity must be a fraction in [0, 1] (a float), got str 'half'"),
    ],
)
def test_bad_sparsity_is_named(fn, sparsity, error, message):
    with pytest.raises(error) as info:
        fn(torch.randn(4, 5), sparsity)
    assert str(info.value) == message


@pytest.mark.parametrize("fn", [sp.magnitude_mask, sp.random_mask, sp.tensor_sparsity])
def test_bad_tensor_is_named(fn):
    args = (0.5,) if fn is not sp.tensor_sparsity else ()
    with pytest.raises(TypeError, match=r"must be a torch.Tensor, got list"):
        fn([1.0, 2.0], *args)
    with pytest.raises(ValueError, match=r"must have at least one element, got shape \(0,\)"):
        fn(torch.empty(0), *args)


def test_sparsity_counts_exact_zeros():
    assert sp.tensor_sparsity(torch.tensor([0.0, 1.0, 0.0, -0.0])) == 0.75
    assert sp.tensor_sparsity(torch.ones(3, 3)) == 0.0


def test_unpruned_weight_before_during_after(layer):
    original = layer.weight.detach().clone()
    assert torch.equal(sp.unpruned_weight(layer), original)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    assert torch.equal(sp.unpruned_weight(layer), original)      # weight_orig, not the masked one
    prune.remove(layer, "weight")
    assert sp.tensor_sparsity(sp.unpruned_weight(layer)) == 0.5


def test_unpruned_weight_bad_name_and_no_weight(layer):
    expected = r"name='weights' is not a parameter of Linear; expected one of \['bias', 'weight'\]"
    with pytest.raises(ValueError, match=expected):
        sp.unpruned_weight(layer, "weights")
    with pytest.raises(ValueError, match=r"name='weight' is not a parameter of ReLU; expected one of \[\]"):
        sp.unpruned_weight(nn.ReLU())
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got Tensor"):
        sp.unpruned_weight(torch.ones(2))


def _mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 2)))


def test_report_before_during_after_pruning():
    model = _mlp()
    rows = pr.sparsity_report(model)
    assert [r.layer for r in rows] == ["0", "2.0", "2.1"]
    assert [r.shape for r in rows] == [(6, 8), (4, 6), (2, 4)]
    assert all(r.zeros == 0 for r in rows) and pr.model_sparsity(model) == 0.0

    prune.l1_unstructured(model[0], "weight", amount=0.5)
    prune.l1_unstructured(model[2][1], "weight", amount=1.0)
    rows = pr.sparsity_report(model)
    assert [r.zeros for r in rows] == [24, 0, 8]
    assert rows[0].sparsity == 0.5 and rows[2].sparsity == 1.0
    assert pr.model_sparsity(model) == pytest.approx(32 / 80)

    prune.remove(model[0], "weight")
    assert [r.zeros for r in pr.sparsity_report(model)] == [24, 0, 8]


def test_report_on_a_bare_layer_and_formatting(layer):
    prune.l1_unstructured(layer, "weight", amount=0.3)
    rows = pr.sparsity_report(layer)
    assert rows == [pr.LayerSparsity("Linear", (50, 100), 5000, 1500)]
    text = pr.format_sparsity_report(rows)
    assert text.splitlines()[1].split() == ["Linear", "50x100", "5,000", "1,500", "30.0%"]
    assert text.splitlines()[-1].split() == ["total", "5,000", "1,500", "30.0%"]


def test_report_errors():
    with pytest.raises(ValueError, match="model must contain at least one nn.Linear, found none in Sequential"):
        pr.sparsity_report(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        pr.model_sparsity({})
    with pytest.raises(ValueError, match="rows must hold at least one LayerSparsity"):
        pr.format_sparsity_report([])


def test_layers_with_no_weights_are_left_out_of_the_report():
    from lessons_lib.gpt import GPT, GPTConfig, allow_empty_layers

    model = GPT(GPTConfig(d_model=16, head_dim=4, heads=[0, 2], ffn=[8, 0]))
    rows = pr.sparsity_report(model)
    assert all(r.total > 0 for r in rows) and "blocks.0.attn.q" not in {r.layer for r in rows}
    assert "total" in pr.format_sparsity_report(rows)
    assert pr.LayerSparsity("empty", (0, 4), 0, 0).sparsity == 0.0           # was ZeroDivisionError
    with allow_empty_layers():
        empty = nn.Linear(4, 0)
    with pytest.raises(ValueError, match=r"model has no Linear layer with weights to report on \(Linear\)"):
        pr.sparsity_report(empty)


def test_model_sparsity_counts_what_pruning_considers():
    """One definition of which weights count: on the GPT, its blocks' Linear layers only (not the
    embeddings, LayerNorms or output head), for pruning and for reading the sparsity back."""
    from lessons_lib.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(d_model=16, head_dim=4, heads=[2, 2], ffn=[8, 8]))
    block_weights = sum(m.weight.numel() for m in model.prunable_layers().values())
    assert block_weights == 2 * (4 * 16 * 8 + 2 * 16 * 8)         # q, k, v, out and fc1, fc2 per block
    pr.prune_global(model, 0.5)
    zeros = sum(int((m.weight == 0).sum()) for m in model.prunable_layers().values())
    assert zeros == block_weights // 2 and pr.model_sparsity(model) == 0.5
    assert int((model.head.weight == 0).sum()) == 0 and int((model.tok_emb.weight == 0).sum()) == 0
    assert [r.layer for r in pr.sparsity_report(model)] == list(model.prunable_layers())


def test_report_arguments_are_checked():
    with pytest.raises(TypeError, match="layers must"):
        pr.sparsity_report(nn.Linear(2, 2), 3)
    with pytest.raises(TypeError, match=r"rows must hold LayerSparsity rows \(from sparsity_report\), got \['str'\]"):
        pr.format_sparsity_report(["a", "b"])
    with pytest.raises(TypeError, match="rows must be a list of LayerSparsity"):
        pr.format_sparsity_report({"a": 1})
    with pytest.raises(ValueError, match="n and m must be ints with 0 < n < m, got n=True"):
        sp.n_m_mask(torch.randn(2, 4), True, 4)
    with pytest.raises(TypeError, match="generator must be a CPU torch.Generator or None"):
        sp.random_mask(torch.randn(4), 0.5, generator=3)


def test_lamp_scores_by_hand_and_their_invariants():
    from lessons_lib.sparsity import lamp_scores

    w = torch.tensor([[0.1, -0.3], [0.2, 0.0]])
    # squares sorted: 0, .01, .04, .09; sums of each and all larger: .14, .14, .13, .09
    expected = torch.tensor([[0.01 / 0.14, 1.0], [0.04 / 0.13, 0.0]])
    assert torch.allclose(lamp_scores(w), expected)
    torch.manual_seed(0)
    big, small = torch.randn(40, 30), 0.01 * torch.randn(20, 10)
    for t in (big, small):
        s = lamp_scores(t)
        assert s.shape == t.shape and s.max() == 1.0 and (s >= 0).all()
        assert torch.equal(s.flatten().argsort(stable=True), t.abs().flatten().argsort(stable=True))  # same order
    assert torch.allclose(lamp_scores(small), lamp_scores(100 * small))                              # scale-free
    assert torch.equal(lamp_scores(torch.zeros(3)), torch.zeros(3))
    with pytest.raises(TypeError, match="weight must be a float tensor"):
        lamp_scores(torch.tensor([1, 2]))
