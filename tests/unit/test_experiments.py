"""Experiment drivers: curves on copies (the model never changes), rank correlation, multiply-adds."""

import pytest
import torch

from lessons_lib.experiments import accuracy_vs_sparsity, metric_vs_sparsity, rank_correlation
from lessons_lib.measure import multiply_adds
from lessons_lib.models import MLP
from lessons_lib.pruning import model_sparsity, prune_global
from lessons_lib.structured import slim_mlp


def test_metric_vs_sparsity_measures_a_fresh_copy_at_each_sparsity():
    torch.manual_seed(0)
    model = MLP((8, 16, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measured = metric_vs_sparsity(model, [0.0, 0.5, 0.9], prune_global, model_sparsity)
    assert measured == pytest.approx([0.0, 0.5, 0.9], abs=1 / 192)          # each from dense: nothing compounds
    assert model.state_dict().keys() == before.keys()                       # no masks attached
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    x, y = torch.randn(30, 8), torch.randint(0, 4, (30,))
    curve = accuracy_vs_sparsity(model, x, y, [0.0], prune_global)
    assert curve[0] == pytest.approx((model(x).argmax(1) == y).float().mean().item())
    with pytest.raises(TypeError, match="metric must be"):
        metric_vs_sparsity(model, [0.5], prune_global, "accuracy")


def test_accuracy_of_an_all_zero_model_is_its_bias_vote():
    model = MLP((8, 16, 4))
    with torch.no_grad():
        for layer in model.layers:
            layer.bias.zero_()
        model.layers[-1].bias[2] = 1.0                                         # pruned to 100%: always class 2
    x, y = torch.randn(20, 8), torch.tensor([2] * 5 + [1] * 15)
    assert accuracy_vs_sparsity(model, x, y, [1.0], prune_global) == [0.25]


def test_rank_correlation_on_known_rankings():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert rank_correlation(a, a * 10 + 3) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    # ties get their mean rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4) -> 0.9487 (hand computed)
    assert rank_correlation(torch.tensor([0.0, 5.0, 5.0, 9.0]), a) == pytest.approx(0.9 ** 0.5)
    assert rank_correlation(torch.tensor([2, 1, 4, 3]), a) == pytest.approx(0.6)   # 1 - 6*4/(4*15)
    with pytest.raises(ValueError, match="constant has no ranking"):
        rank_correlation(torch.ones(4), a)
    with pytest.raises(ValueError, match="same length"):
        rank_correlation(a, a[:3])
    with pytest.raises(ValueError, match="NaN"):
        rank_correlation(torch.tensor([1.0, float("nan")]), a[:2])


def test_multiply_adds_of_the_lessons_mlp_and_its_slim_version():
    """50,432 weights, each used once per example: 50,432 multiply-adds; half the hidden neurons
    of both layers: 64*128 + 128*64 + 64*10 = 17,024 (layers.1 shrinks in both directions)."""
    model = MLP((64, 256, 128, 10))
    x = torch.randn(3, 64)
    assert multiply_adds(model, x) == 3 * 50_432
    keep = {"layers.0": torch.arange(128), "layers.1": torch.arange(64)}
    assert multiply_adds(slim_mlp(model, keep, activation=torch.relu), x) == 3 * 17_024
    prune_global(model, 0.9)
    assert multiply_adds(model, x) == 3 * 50_432                               # a mask multiplies zeros too


def test_multiply_adds_of_the_gpt_count_its_linear_layers_and_attention():
    """Per token every Linear weight once; per head two (T, T) products of size head_dim."""
    from lessons_lib.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(d_model=16, head_dim=4, heads=[2, 3], ffn=[8, 6], block_size=11))
    x = torch.zeros(5, 11, dtype=torch.long)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = sum(2 * 5 * h * 11 * 11 * 4 for h in (2, 3))
    assert multiply_adds(model, x) == 5 * 11 * linear + attention


def test_review_findings_stay_fixed():
    """Found by an adversarial review: each used to give a wrong answer or an unclear error."""
    from lessons_lib.gpt import GPT, GPTConfig
    from lessons_lib.pruning import copy_model, layer_sparsities, prune_layerwise
    from lessons_lib.slimming import keep_top

    no_heads = GPT(GPTConfig(d_model=16, head_dim=4, heads=[0, 3], ffn=[8, 6], block_size=11))
    linear = sum(m.weight.numel() for m in no_heads.modules() if isinstance(m, torch.nn.Linear))
    assert multiply_adds(no_heads, torch.zeros(2, 11, dtype=torch.long)) == 2 * 11 * linear + 2 * 3 * 11 * 11 * 4 * 2
    assert keep_top(torch.tensor([0, 1, 2], dtype=torch.uint8), 1).tolist() == [2]           # no wrap-around
    assert keep_top(torch.tensor([-(2 ** 63), 5, 3]), 1).tolist() == [1]
    a = torch.randn(100, dtype=torch.float64)
    assert rank_correlation(a, 2 * a + 1) == 1.0 and rank_correlation(a, -a) == -1.0          # exact
    with pytest.raises(TypeError, match="got ndarray"):
        rank_correlation(a.numpy(), a)
    model = MLP((8, 16, 4))
    prune_layerwise(model, 0.5)
    with torch.no_grad():
        model.layers[0].weight_mask.zero_()                  # `weight` is stale until the next forward
    assert layer_sparsities(model)["layers.0"] == 1.0
    with pytest.raises(ValueError, match="at least one Linear layer"):
        prune_layerwise(model, 0.9, layers={})
    with pytest.raises(TypeError, match="must prune the model it is given in place"):
        metric_vs_sparsity(model, [0.5], lambda m, s: copy_model(m), model_sparsity)
    with pytest.raises(ValueError, match=r"model could not run on x of shape \(3, 7\)"):
        multiply_adds(model, torch.randn(3, 7))
