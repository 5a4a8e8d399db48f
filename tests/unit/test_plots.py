"""Figures: right artists, titles, labels, legends; bad shapes rejected."""

import math

import pytest
import torch

import lessons_lib.sparsity as sp
from lessons_lib.plots import (
    plot_accuracy_vs_sparsity,
    plot_attention,
    plot_error_vs_sparsity,
    plot_latency,
    plot_mask,
    plot_plans,
    plot_pruned_layer,
    plot_weight_histogram,
)


def test_plot_mask_draws_the_mask():
    mask = sp.magnitude_mask(torch.randn(5, 8), 0.25)
    ax = plot_mask(mask)
    assert ax.images[0].get_array().tolist() == mask.tolist()
    assert ax.get_title() == "mask: 75% of weights kept"
    assert ax.get_xlabel() and ax.get_ylabel()


def test_plot_mask_rejects_non_2d():
    with pytest.raises(ValueError, match=r"mask must be 2-D \(out_features, in_features\), got shape \(3, 2, 2\)"):
        plot_mask(torch.ones(3, 2, 2))


def test_histogram_counts_before_and_kept():
    weight = torch.randn(40, 25)
    mask = sp.magnitude_mask(weight, 0.6)
    ax = plot_weight_histogram(weight, mask, bins=30)
    before, kept = ax.patches
    assert before.get_data().values.sum() == 1000 and kept.get_data().values.sum() == 400
    # magnitude pruning empties the bins around zero
    centre = len(kept.get_data().values) // 2
    assert kept.get_data().values[centre] == 0
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["before: 1,000", "kept: 400"]
    assert ax.get_xlabel() == "weight value" and ax.get_ylabel() == "number of weights"


def test_histogram_rejects_mismatched_mask():
    with pytest.raises(ValueError, match=r"mask must have as many entries as weight \(6\), got 4"):
        plot_weight_histogram(torch.randn(2, 3), torch.ones(2, 2))


def test_error_curves_with_band():
    ax = plot_error_vs_sparsity([0.0, 0.5, 1.0], {"a": [0, 0.3, 1], "b": [0, 0.7, 1]}, spreads={"b": [0, 0.1, 0]})
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    assert ax.get_lines()[0].get_xdata().tolist() == [0.0, 50.0, 100.0]
    assert len(ax.collections) == 1                                    # the band
    assert "%" in ax.get_xlabel() and ax.get_legend() is not None


def test_error_curves_errors():
    with pytest.raises(ValueError, match="sparsities and curves must both be non-empty"):
        plot_error_vs_sparsity([], {"a": []})
    with pytest.raises(ValueError, match=r"curve 'a' must have 2 values \(one per sparsity\), got 3"):
        plot_error_vs_sparsity([0.1, 0.2], {"a": [1, 2, 3]})


def test_pruned_layer_two_panels():
    weight = torch.randn(6, 7)
    axes = plot_pruned_layer(weight, sp.magnitude_mask(weight, 0.5))
    assert len(axes) == 2 and axes[0].images and len(axes[1].patches) == 2


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: plot_mask(torch.full((3, 3), 0.3)), ValueError, "mask must hold only 0 and 1.*0.3"),
    (lambda: plot_mask(torch.ones(3, 3), ax="ax"), TypeError, "ax must be a matplotlib Axes or None, got str"),
    (lambda: plot_weight_histogram(torch.tensor([1.0, math.nan])), ValueError, "weight must hold finite float values"),
    (lambda: plot_weight_histogram(torch.randn(5), bins=0), ValueError, "bins must be a positive int"),
    (lambda: plot_weight_histogram(torch.randn(5), torch.full((5,), 0.5)), ValueError, "mask must hold only 0 and 1"),
    (lambda: plot_error_vs_sparsity([0.1], [[1.0]]), TypeError, "curves must be a dict mapping"),
    (lambda: plot_error_vs_sparsity([0.1], {"a": [1.0]}, spreads={"b": [0.1]}), ValueError,
     r"spreads must name curves that exist, got \['b'\]"),
    (lambda: plot_error_vs_sparsity("0.1", {"a": [1.0]}), TypeError, "sparsities must be a list"),
    (lambda: plot_error_vs_sparsity([0.1], {"a": 1.0}), TypeError, "curve 'a' must be a list of numbers"),
    (lambda: plot_accuracy_vs_sparsity([0.1], [[0.5]]), TypeError, "curves must be a dict mapping"),
    (lambda: plot_accuracy_vs_sparsity([0.1], {"a": [0.5]}, chance=5), ValueError, "chance must be a fraction"),
    (lambda: plot_latency([0.1], {"a": [1.0]}, reference=-1), ValueError, "reference must be > 0"),
    (lambda: plot_plans([[(0, 0.5)]], 3), TypeError, "plans must be a dict mapping"),
    (lambda: plot_plans({"a": [(0, 0.5), (0, 0.6)]}, 3), ValueError, "plan prunes twice in epoch 0"),
    (lambda: plot_pruned_layer(torch.randn(3, 3), torch.ones(3, 3), axes=[None]), ValueError, "axes must be two"),
])
def test_plots_refuse_what_they_used_to_draw_wrong_or_crash_on(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_histogram_of_equal_weights_has_one_full_bin():
    ax = plot_weight_histogram(torch.full((3, 4), 0.25), torch.ones(3, 4, dtype=torch.bool), bins=10)
    before, kept = ax.patches
    assert before.get_data().values.sum() == 12 and kept.get_data().values.sum() == 12
    edges = before.get_data().edges
    assert edges[0] < 0.25 < edges[-1]


def test_plot_attention_draws_the_pattern_with_token_labels():
    weights = torch.tril(torch.rand(4, 4) + 0.1)
    weights = weights / weights.sum(-1, keepdim=True)                  # causal softmax-like rows
    ax = plot_attention(weights, labels=list("1+2="), title="one head")
    assert ax.images[0].get_array().tolist() == weights.tolist()
    assert [t.get_text() for t in ax.get_xticklabels()] == list("1+2=")
    assert [t.get_text() for t in ax.get_yticklabels()] == list("1+2=")
    assert ax.get_title() == "one head" and "key" in ax.get_xlabel() and "query" in ax.get_ylabel()
    assert ax.images[0].get_clim() == (0, 1)                            # one colour scale for every head
    colorbar = ax.images[0].colorbar
    assert colorbar is not None and colorbar.ax.get_ylabel() == "attention weight"


def test_plot_attention_takes_a_bool_causal_mask():
    mask = torch.ones(3, 3, dtype=torch.bool).tril()
    ax = plot_attention(mask, title="causal mask", colorbar_label="1 = may look")
    assert ax.images[0].get_array().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2"]


@pytest.mark.parametrize(("weights", "kwargs", "error", "message"), [
    (torch.ones(2, 3), {}, ValueError, r"weights must be a square 2-D tensor \(T, T\), got shape \(2, 3\)"),
    (torch.ones(2, 2, 2), {}, ValueError, r"weights must be a square 2-D tensor \(T, T\), got shape \(2, 2, 2\)"),
    (torch.full((2, 2), 1.5), {}, ValueError, r"weights must hold values in \[0, 1\].*from 1.5 to 1.5"),
    (torch.full((2, 2), -0.5), {}, ValueError, r"weights must hold values in \[0, 1\].*from -0.5 to -0.5"),
    (torch.tensor([[0.5, math.nan], [0.5, 0.5]]), {}, ValueError, "weights must be finite.*got NaN"),
    (torch.ones(2, 2, dtype=torch.complex64), {}, ValueError, "weights must be real numbers"),
    (torch.empty(0, 0), {}, ValueError, "weights must have at least one element"),
    ([[1.0]], {}, TypeError, "weights must be a torch.Tensor, got list"),
    (torch.ones(2, 2), {"labels": ["a"]}, ValueError, r"labels must be 2 strings \(one per position\), got \['a'\]"),
    (torch.ones(2, 2), {"labels": "ab"}, ValueError, "labels must be 2 strings"),
    (torch.ones(2, 2), {"labels": [1, 2]}, ValueError, r"labels must be 2 strings .*got \[1, 2\]"),
    (torch.ones(2, 2), {"title": None}, TypeError, "title must be a str, got NoneType"),
    (torch.ones(2, 2), {"ax": "ax"}, TypeError, "ax must be a matplotlib Axes or None, got str"),
])
def test_plot_attention_refuses_what_it_cannot_draw(weights, kwargs, error, message):
    with pytest.raises(error, match=message):
        plot_attention(weights, **kwargs)
