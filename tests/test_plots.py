"""Figures: right artists, titles, labels, legends; bad shapes rejected."""

import math

import pytest
import torch

import lessons_lib.sparsity as sp
from lessons_lib.plots import (
    plot_accuracy_vs_sparsity,
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
    with pytest.raises(ValueError, match="amounts and curves must both be non-empty"):
        plot_error_vs_sparsity([], {"a": []})
    with pytest.raises(ValueError, match=r"curve 'a' must have 2 values \(one per amount\), got 3"):
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
    (lambda: plot_error_vs_sparsity("0.1", {"a": [1.0]}), TypeError, "amounts must be a list"),
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
