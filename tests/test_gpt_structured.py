"""Removing heads and FFN neurons from the tiny GPT: equivalence, config, bad inputs."""

import copy

import pytest
import torch

from lessons_lib.gpt import GPT, GPTConfig, load_gpt, save_gpt
from lessons_lib.gpt_structured import (
    ffn_importance,
    head_importance_ablation,
    head_importance_gradient,
    head_importance_norm,
    slim_gpt,
)


def _masked_reference(model, keep_heads, keep_ffn):
    """The same removal done with masks: head masks of 0 and zeroed fc1 rows + biases."""
    masked = copy.deepcopy(model)
    head_masks = []
    for i, n in enumerate(model.config.heads):
        mask = torch.zeros(n)
        mask[keep_heads.get(i, list(range(n)))] = 1
        head_masks.append(mask)
        dropped = [j for j in range(model.config.ffn[i]) if j not in keep_ffn.get(i, range(model.config.ffn[i]))]
        with torch.no_grad():
            masked.blocks[i].fc1.weight[dropped] = 0
            masked.blocks[i].fc1.bias[dropped] = 0
    return masked, head_masks


@pytest.mark.parametrize(("config", "keep_heads", "keep_ffn"), [
    (GPTConfig(block_size=11), {0: [0, 2, 3], 1: [1]}, {0: list(range(0, 256, 2))}),
    (GPTConfig(d_model=32, head_dim=8, heads=[3, 2, 4], ffn=[40, 16, 24], block_size=11),
     {0: [2], 2: [0, 3]}, {1: [0, 5, 15], 2: [1]}),
    (GPTConfig(heads=[2, 2], ffn=[8, 8], block_size=11), {0: []}, {1: []}),        # a layer emptied
])
def test_slim_gpt_equals_masked_model(config, keep_heads, keep_ffn):
    torch.manual_seed(0)
    model = GPT(config).eval()
    slim = slim_gpt(model, keep_heads, keep_ffn).eval()
    masked, head_masks = _masked_reference(model, keep_heads, keep_ffn)
    x = torch.randint(0, 12, (16, 11))
    with torch.no_grad():
        assert (masked(x, head_masks) - slim(x)).abs().max() <= 1e-5
    assert slim.config.heads == [len(keep_heads.get(i, range(n))) for i, n in enumerate(config.heads)]
    assert slim.config.ffn == [len(keep_ffn.get(i, range(n))) for i, n in enumerate(config.ffn)]
    rebuilt = load_gpt(save_gpt(slim)).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), slim(x))


def test_slim_gpt_leaves_model_alone_and_checks_inputs():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=11))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    slim_gpt(model, {0: [1]}, {1: [3, 4]})
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match=r"keep for layer 0 heads must be distinct indices in \[0, 3\], got \[1, 4\]"):
        slim_gpt(model, {0: [1, 4]})
    with pytest.raises(ValueError, match=r"keep for layer 1 FFN must be distinct indices"):
        slim_gpt(model, keep_ffn={1: [2, 2]})
    with pytest.raises(ValueError, match=r"layer index must be in \[0, 1\], got 2"):
        slim_gpt(model, {2: [0]})
    with pytest.raises(TypeError, match="model must be a GPT, got Linear"):
        slim_gpt(torch.nn.Linear(2, 2))


def test_importance_scores_shapes_and_ablation_meaning():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[3, 2], ffn=[16, 8], block_size=11)).eval()
    x, y = torch.randint(0, 12, (32, 11)), torch.randint(0, 10, (32, 4))
    for scores in (head_importance_gradient(model, x, y), head_importance_ablation(model, x, y),
                   head_importance_norm(model)):
        assert [s.shape for s in scores] == [(3,), (2,)]
    assert [s.shape for s in ffn_importance(model, x)] == [(16,), (8,)]
    with torch.no_grad():                                       # a head writing nothing back costs nothing
        model.blocks[0].attn.out.weight[:, 16:32] = 0
    assert head_importance_ablation(model, x, y)[0][1].abs() < 1e-6
    assert head_importance_norm(model)[0][1] == 0
    assert not any(block.fc1._forward_hooks for block in model.blocks)


def test_top_indices_and_prune_to():
    from lessons_lib.gpt_structured import prune_to, top_indices

    assert top_indices(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2) == [1, 3]
    with pytest.raises(ValueError, match=r"n must be in \[0, 3\], got 4"):
        top_indices(torch.ones(3), 4)
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[3, 2], ffn=[16, 8], block_size=11)).eval()
    x, y = torch.randint(0, 12, (20, 11)), torch.randint(0, 10, (20, 4))
    slim = prune_to(model, [2, 1], [8, 4], x, y, x)
    assert slim.config.heads == [2, 1] and slim.config.ffn == [8, 4]
    ablation = head_importance_ablation(model, x, y)
    masked_heads = [torch.zeros(3).index_fill_(0, torch.tensor(top_indices(ablation[0], 2)), 1.0),
                    torch.zeros(2).index_fill_(0, torch.tensor(top_indices(ablation[1], 1)), 1.0)]
    assert masked_heads[0].sum() == 2
    with pytest.raises(ValueError, match=r"heads and ffn must give one count per layer \(2\)"):
        prune_to(model, [2], [8, 4], x, y, x)


def test_head_explorer_reacts_and_leaves_model_alone():
    from lessons_lib.widgets import head_explorer

    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[2, 2], ffn=[16, 16], block_size=11)).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randint(0, 12, (30, 11)), torch.randint(0, 10, (30, 4))
    grid, ffn_slider, readout = head_explorer(model, x, y, ffn_importance(model, x), batch=16).children
    assert "heads [2, 2] · FFN [16, 16]" in readout.value
    grid.children[0].children[1].value = False
    ffn_slider.value = 0.5
    assert "heads [1, 2] · FFN [8, 8]" in readout.value
    slim = slim_gpt(model, {0: [0]}, {i: sorted(ffn_importance(model, x)[i].argsort(descending=True)[:8].tolist())
                                      for i in range(2)})
    assert f"{sum(p.numel() for p in slim.parameters()):,} parameters" in readout.value
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_remove_heads_checker_catches_mistakes():
    from torch import nn

    from lessons_lib.checks import ExerciseFailure, check_remove_heads
    from lessons_lib.gpt import Attention

    def right(attn, keep):
        return slim_gpt_attention(attn, keep)

    def forgets_out(attn, keep):
        new = slim_gpt_attention(attn, keep)
        new.out = nn.Linear(attn.n_heads * attn.head_dim, attn.out.out_features)
        return new

    def keeps_out_rows(attn, keep):
        new = slim_gpt_attention(attn, keep)
        with torch.no_grad():
            new.out.bias.zero_()
        return new

    def slim_gpt_attention(attn, keep):
        E = attn.head_dim
        rows = torch.cat([torch.arange(h * E, (h + 1) * E) for h in keep])
        new = Attention(attn.q.in_features, len(keep), E)
        with torch.no_grad():
            for name in ("q", "k", "v"):
                getattr(new, name).weight.copy_(getattr(attn, name).weight[rows])
                getattr(new, name).bias.copy_(getattr(attn, name).bias[rows])
            new.out.weight.copy_(attn.out.weight[:, rows])
            new.out.bias.copy_(attn.out.bias)
        return new

    check_remove_heads(right)
    for fn, expected in [(forgets_out, "out.weight should be"), (keeps_out_rows, "outputs differ"),
                         (lambda a, k: a, "expected a new Attention module"),
                         (lambda a, k: None, "expected a new Attention module")]:
        with pytest.raises(ExerciseFailure) as info:
            check_remove_heads(fn)
        assert expected in str(info.value)
