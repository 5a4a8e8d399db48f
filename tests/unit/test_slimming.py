"""The one slicing primitive (slim_linear) and the one top-k (keep_top) every structured method uses."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lessons_lib.slimming import keep_top, max_output_difference, slim_linear, slim_linear_pair


def test_keep_top_keeps_the_highest_in_index_order_and_breaks_ties_low():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.9, 0.5])
    kept = keep_top(scores, 3)
    assert kept.tolist() == [1, 2, 3] and kept.dtype == torch.int64          # the two 0.9s, then the first 0.5
    assert keep_top(scores, 0).tolist() == [] and keep_top(scores, 5).tolist() == [0, 1, 2, 3, 4]
    assert keep_top(torch.ones(6), 2).tolist() == [0, 1]                      # all tied: the lowest indices
    assert keep_top(torch.zeros(0), 0).tolist() == []
    assert keep_top(torch.tensor([3, 1, 2]), 1).tolist() == [0]               # int scores rank too


def test_keep_top_is_stable_across_calls_and_devices_of_the_input():
    scores = torch.randint(0, 3, (200,)).float()                              # many ties
    first = keep_top(scores, 77)
    assert all(torch.equal(keep_top(scores.clone(), 77), first) for _ in range(5))
    kept = set(first.tolist())
    dropped = [i for i in range(200) if i not in kept]
    # everything kept scores at least as high as everything dropped; at the cut, lower indices win
    assert min(scores[first]) >= max(scores[dropped])
    cut = min(scores[first])
    assert max(i for i in kept if scores[i] == cut) < min(i for i in dropped if scores[i] == cut)


def test_slim_linear_is_the_masked_layer_sliced():
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    rows, cols = torch.tensor([0, 3, 4]), torch.tensor([1, 2, 5])
    slim = slim_linear(layer, rows, cols)
    assert slim.weight.shape == (3, 3) and slim.bias.shape == (3,)
    x = torch.randn(8, 6)
    zeroed = x.clone()
    zeroed[:, [0, 3, 4]] = 0                                                   # the inputs the slim layer drops
    with torch.no_grad():
        assert torch.allclose(slim(x[:, cols]), layer(zeroed)[:, rows], atol=1e-6)
    assert slim_linear(layer).weight.shape == (5, 6)                          # None keeps everything
    assert slim_linear(layer, rows=rows).weight.shape == (3, 6)
    assert slim_linear(layer, cols=cols).weight.shape == (5, 3)
    assert slim_linear(layer, torch.tensor([], dtype=torch.long)).weight.shape == (0, 6)
    assert slim.weight.data_ptr() != layer.weight.data_ptr()                 # copies, not views


def test_slim_linear_reads_the_masked_weight_of_a_pruned_layer():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3, bias=False)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    slim = slim_linear(layer, cols=torch.tensor([0, 2]))
    assert slim.bias is None and not prune.is_pruned(slim)
    assert torch.equal(slim.weight, (layer.weight_orig * layer.weight_mask)[:, [0, 2]])


def test_slim_linear_pair_folds_the_constant_of_removed_neurons():
    torch.manual_seed(0)
    first, second = nn.Linear(5, 6), nn.Linear(6, 2)
    keep = torch.tensor([1, 4])
    small, following = slim_linear_pair(first, second, keep, activation=torch.relu)
    removed = [i for i in range(6) if i not in keep.tolist()]
    with torch.no_grad():
        first.weight[removed] = 0                                              # removed neurons output relu(bias)
        x = torch.randn(10, 5)
        assert torch.allclose(following(torch.relu(small(x))), second(torch.relu(first(x))), atol=1e-6)


def test_max_output_difference_sees_a_change():
    torch.manual_seed(0)
    a = nn.Linear(3, 2)
    b = nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 3)
    assert max_output_difference(a, b, x) == 0.0
    with torch.no_grad():
        b.bias += 0.25
    assert max_output_difference(a, b, x) == pytest.approx(0.25)
