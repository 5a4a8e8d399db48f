"""Removing heads and FFN neurons from the tiny GPT: equivalence, config, bad inputs."""

import copy

import pytest
import torch
from torch.nn.utils import prune

from lessons_lib.gpt import GPT, GPTConfig, head_slice, load_gpt, save_gpt
from lessons_lib.gpt_structured import (
    ffn_neuron_scores,
    head_scores_ablation,
    head_scores_gradient,
    head_scores_norm,
    slim_gpt,
    slim_gpt_to,
)
from lessons_lib.slimming import keep_top
from lessons_lib.tasks import answer_loss


def _heads(keep):
    """Layer index -> heads, as slim_gpt's keys: {"blocks.i.attn": heads}."""
    return {f"blocks.{i}.attn": v for i, v in keep.items()}


def _ffn(keep):
    """Layer index -> FFN neurons, as slim_gpt's keys: {"blocks.i.fc1": neurons}."""
    return {f"blocks.{i}.fc1": v for i, v in keep.items()}


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
    slim = slim_gpt(model, _heads(keep_heads), _ffn(keep_ffn)).eval()
    masked, head_masks = _masked_reference(model, keep_heads, keep_ffn)
    x = torch.randint(0, 12, (16, 11))
    with torch.no_grad():
        assert (masked(x, head_masks) - slim(x)).abs().max() <= 1e-5
    assert slim.config.heads == [len(keep_heads.get(i, range(n))) for i, n in enumerate(config.heads)]
    assert slim.config.ffn == [len(keep_ffn.get(i, range(n))) for i, n in enumerate(config.ffn)]
    rebuilt = load_gpt(save_gpt(slim)).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(x), slim(x))


def test_slim_gpt_leaves_model_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=11))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    slim_gpt(model, {"blocks.0.attn": [1]}, {"blocks.1.fc1": [3, 4]})
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_importance_scores_shapes_and_ablation_meaning():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[3, 2], ffn=[16, 8], block_size=11)).eval()
    x, y = torch.randint(0, 12, (32, 11)), torch.randint(0, 10, (32, 4))
    for scores in (head_scores_gradient(model, x, y), head_scores_ablation(model, x, y),
                   head_scores_norm(model)):
        assert {k: s.shape for k, s in scores.items()} == {"blocks.0.attn": (3,), "blocks.1.attn": (2,)}
    assert {k: s.shape for k, s in ffn_neuron_scores(model, x).items()} == {"blocks.0.fc1": (16,), "blocks.1.fc1": (8,)}
    with torch.no_grad():                                       # a head writing nothing back costs nothing
        model.blocks[0].attn.out.weight[:, 16:32] = 0
    assert head_scores_ablation(model, x, y)["blocks.0.attn"][1].abs() < 1e-6
    assert head_scores_norm(model)["blocks.0.attn"][1] == 0
    assert not any(block.fc1._forward_hooks for block in model.blocks)


def test_slim_gpt_to_keeps_the_top_scored_units():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[3, 2], ffn=[16, 8], block_size=11)).eval()
    x, y = torch.randint(0, 12, (20, 11)), torch.randint(0, 10, (20, 4))
    slim = slim_gpt_to(model, {"blocks.0.attn": 2, "blocks.1.attn": 1}, {"blocks.0.fc1": 8, "blocks.1.fc1": 4},
                       x, y, x)
    assert slim.config.heads == [2, 1] and slim.config.ffn == [8, 4]
    ablation, ffn_scores = head_scores_ablation(model, x, y), ffn_neuron_scores(model, x)
    same = slim_gpt(model, _heads({0: keep_top(ablation["blocks.0.attn"], 2),
                                   1: keep_top(ablation["blocks.1.attn"], 1)}),
                    _ffn({0: keep_top(ffn_scores["blocks.0.fc1"], 8), 1: keep_top(ffn_scores["blocks.1.fc1"], 4)}))
    with torch.no_grad():
        assert torch.equal(slim.eval()(x), same.eval()(x))
    one_count = slim_gpt_to(model, 1, 4, x, y, x)                   # an int: the same count in every layer
    assert one_count.config.heads == [1, 1] and one_count.config.ffn == [4, 4]
    partial = slim_gpt_to(model, {"blocks.0.attn": 1}, {}, x, y, x)   # layers left out keep everything
    assert partial.config.heads == [1, 2] and partial.config.ffn == [16, 8]


def test_head_explorer_reacts_and_leaves_model_alone():
    from lessons_lib.widgets import head_explorer

    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[2, 2], ffn=[16, 16], block_size=11)).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randint(0, 12, (30, 11)), torch.randint(0, 10, (30, 4))
    grid, ffn_slider, readout = head_explorer(model, x, y, ffn_neuron_scores(model, x), batch=16).children
    assert "heads [2, 2] · FFN [16, 16]" in readout.value
    grid.children[0].children[1].value = False
    ffn_slider.value = 0.5
    assert "heads [1, 2] · FFN [8, 8]" in readout.value
    scores = ffn_neuron_scores(model, x)
    slim = slim_gpt(model, {"blocks.0.attn": [0]}, {name: keep_top(s, 8) for name, s in scores.items()})
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


# --- masks from torch.nn.utils.prune, dtype, device, aliasing --------------------------------------

def _pruned_everywhere(model):
    """Masks on every Linear (the output head included, as prune_layerwise does without layers=),
    rows of fc1 (ln_structured), the token embedding and a LayerNorm."""
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            prune.l1_unstructured(module, "weight", amount=0.3)
    prune.ln_structured(model.blocks[0].fc1, "weight", amount=0.25, n=2, dim=0)
    prune.l1_unstructured(model.tok_emb, "weight", amount=0.2)
    prune.l1_unstructured(model.ln_f, "weight", amount=0.5)
    return model


def test_slim_gpt_of_a_pruned_model_computes_the_masked_model():
    """It used to load with strict=False, skipping head.weight_orig: a random output head."""
    torch.manual_seed(0)
    model = _pruned_everywhere(GPT(GPTConfig(block_size=11)).eval())
    x = torch.randint(0, 12, (16, 11))
    with torch.no_grad():
        assert torch.equal(slim_gpt(model).eval()(x), model(x))
        keep_heads, keep_ffn = {0: [0, 3], 1: [2]}, {1: list(range(0, 256, 3))}
        reference = copy.deepcopy(model)                      # remove by masking, on weight_orig
        dropped = [j for j in range(256) if j not in keep_ffn[1]]
        reference.blocks[1].fc1.weight_orig[dropped] = 0
        reference.blocks[1].fc1.bias[dropped] = 0
        head_masks = [torch.zeros(4).index_fill_(0, torch.tensor(keep_heads[i]), 1.0) for i in range(2)]
        slim = slim_gpt(model, _heads(keep_heads), _ffn(keep_ffn)).eval()
        assert (slim(x) - reference(x, head_masks)).abs().max() <= 1e-5
    assert not any(prune.is_pruned(m) for m in slim.modules() if m is not slim) and not prune.is_pruned(slim)


def test_slim_gpt_reads_masked_weights_fresh_after_an_optimizer_step():
    torch.manual_seed(0)
    model = _pruned_everywhere(GPT(GPTConfig(heads=[2, 2], ffn=[16, 16], block_size=11)))
    x, y = torch.randint(0, 12, (8, 11)), torch.randint(0, 10, (8, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    answer_loss(model, x, y, None).backward()
    optimizer.step()                                          # the `weight` attributes are now stale
    with torch.no_grad():
        assert torch.equal(slim_gpt(model)(x), model(x))


def test_slim_gpt_keeps_dtype_device_and_mode():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[2, 2], ffn=[8, 8], block_size=11)).double().eval()
    slim = slim_gpt(model, {"blocks.0.attn": [1]}, {"blocks.1.fc1": [0, 5]})
    assert {p.dtype for p in slim.parameters()} == {torch.float64} and not slim.training
    x = torch.randint(0, 12, (4, 11))
    masked, head_masks = _masked_reference(model, {0: [1]}, {1: [0, 5]})
    with torch.no_grad():
        assert (slim(x) - masked(x, [m.double() for m in head_masks])).abs().max() <= 1e-12
    with torch.device("meta"):
        on_meta = GPT(GPTConfig(heads=[2, 2], ffn=[8, 8]))
    on_meta_slim = slim_gpt(on_meta, {"blocks.0.attn": [0]}, {"blocks.1.fc1": [1, 2]})
    assert {p.device.type for p in on_meta_slim.parameters()} == {"meta"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_slim_gpt_on_cuda_stays_on_cuda():
    model = GPT(GPTConfig(heads=[2, 2], ffn=[8, 8], block_size=11)).cuda().eval()
    slim = slim_gpt(model, {"blocks.0.attn": [1]}, {"blocks.1.fc1": [0, 5]})
    assert {p.device.type for p in slim.parameters()} == {"cuda"}
    x = torch.randint(0, 12, (4, 11), device="cuda")
    assert [s.device.type for s in head_scores_gradient(model, x, x[:, -4:]).values()] == ["cuda", "cuda"]


@pytest.mark.parametrize(("keep_heads", "keep_ffn"),
                         [({0: [1]}, {1: [2, 3]}), ({}, {}), ({0: [0, 1]}, {1: list(range(8))})],
                         ids=["some", "nothing named", "keep all"])
def test_slim_gpt_shares_nothing_and_fine_tuning_leaves_the_original(keep_heads, keep_ffn):
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[2, 2], ffn=[8, 8], block_size=11))
    prune.l1_unstructured(model.head, "weight", amount=0.5)
    before = {k: (v.clone(), v.untyped_storage().data_ptr()) for k, v in model.state_dict().items()}
    ids = {id(p) for p in model.parameters()}
    slim = slim_gpt(model, _heads(keep_heads), _ffn(keep_ffn))
    assert not {id(p) for p in slim.parameters()} & ids
    assert not {p.untyped_storage().data_ptr() for p in slim.parameters()} & {ptr for _, ptr in before.values()}
    x, y = torch.randint(0, 12, (8, 11)), torch.randint(0, 10, (8, 4))
    optimizer = torch.optim.Adam(slim.parameters(), lr=0.1)
    for _ in range(3):
        optimizer.zero_grad()
        answer_loss(slim, x, y, None).backward()
        optimizer.step()
    assert all(torch.equal(v, before[k][0]) for k, v in model.state_dict().items())


# --- layers without heads or FFN neurons ---------------------------------------------------------

def test_scores_and_slim_gpt_to_on_layers_without_heads_or_ffn():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[0, 2], ffn=[6, 0], block_size=11)).eval()
    x, y = torch.randint(0, 12, (10, 11)), torch.randint(0, 10, (10, 4))
    for scores in (head_scores_gradient(model, x, y), head_scores_ablation(model, x, y),
                   head_scores_norm(model)):
        assert [tuple(s.shape) for s in scores.values()] == [(0,), (2,)]
    assert [tuple(s.shape) for s in ffn_neuron_scores(model, x).values()] == [(6,), (0,)]
    slim = slim_gpt_to(model, {"blocks.1.attn": 1}, {"blocks.0.fc1": 3}, x, y, x)
    assert slim.config.heads == [0, 1] and slim.config.ffn == [3, 0]
    nothing = slim_gpt(model, {"blocks.1.attn": []}, {"blocks.0.fc1": []})
    assert nothing.config.heads == [0, 0] and nothing.config.ffn == [0, 0]
    for scores in (head_scores_gradient(nothing, x, y), head_scores_ablation(nothing, x, y),
                   head_scores_norm(nothing), ffn_neuron_scores(nothing, x)):
        assert [tuple(s.shape) for s in scores.values()] == [(0,), (0,)]
    for p in nothing.parameters():
        p.requires_grad_(False)                                # no heads and nothing to train: zeros
    assert [s.tolist() for s in head_scores_gradient(nothing, x, y).values()] == [[], []]
    assert slim_gpt_to(nothing, 0, 0, x, y, x).config.heads == [0, 0]
    with pytest.raises(ValueError,
                       match=r"n_keep_heads\['blocks.1.attn'\] must be in \[0, 0\] \(what that layer has\), got 1"):
        slim_gpt_to(nothing, {"blocks.1.attn": 1}, 0, x, y, x)


def test_head_gradient_leaves_parameter_gradients_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[2, 2], ffn=[8, 8], block_size=11))
    x, y = torch.randint(0, 12, (6, 11)), torch.randint(0, 10, (6, 4))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    with torch.no_grad():
        scores = head_scores_gradient(model, x, y)
    assert all(s.shape == (2,) and (s > 0).all() for s in scores.values())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


# --- bad input: a clear error naming the argument, nothing changed -------------------------------

def _gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(d_model=16, head_dim=4, heads=[2, 3], ffn=[8, 6], block_size=11)).eval()


def _with(change):
    model = _gpt()
    change(model)
    return model


XG, YG = torch.randint(0, 12, (4, 11)), torch.randint(0, 10, (4, 4))
SUB_GPT = type("MyGPT", (GPT,), {})(GPTConfig(d_model=16, head_dim=4, heads=[2, 3], ffn=[8, 6]))
HOOKED_GPT = _with(lambda m: m.blocks[0].fc1.register_forward_pre_hook(lambda mod, inputs: None))
LIED_CONFIG = _with(lambda m: setattr(m.config, "heads", [3, 3]))
BAD_CONFIG = _with(lambda m: setattr(m.config, "heads", [2.5, 3]))
SWAPPED_GPT = _with(lambda m: setattr(m.blocks[1], "fc1", torch.nn.Linear(16, 7)))


BAD_GPT = [
    # slim_gpt: model
    (slim_gpt, (torch.nn.Linear(2, 2),), TypeError, "model must be a lessons_lib.gpt.GPT.*got Linear"),
    (slim_gpt, ("gpt",), TypeError, "model must be a lessons_lib.gpt.GPT.*got str"),
    (slim_gpt, (SUB_GPT,), TypeError, r"model must be a lessons_lib.gpt.GPT \(not a subclass.*got MyGPT"),
    (slim_gpt, (HOOKED_GPT,), ValueError, "model has a forward hook on 'blocks.0.fc1'"),
    (slim_gpt, (LIED_CONFIG,), ValueError, r"model does not match model.config: blocks.0.attn.q.weight should"),
    (slim_gpt, (BAD_CONFIG,), ValueError, "model.config does not describe a GPT"),
    (slim_gpt, (SWAPPED_GPT,), ValueError, r"blocks.1.fc1.weight should have shape \(6, 16\), got \(7, 16\)"),
    # slim_gpt: keep_heads / keep_ffn (layer name -> indices)
    (slim_gpt, (_gpt(), [[0], [1]]), TypeError, "keep_heads must be a dict mapping layer name to the indices"),
    (slim_gpt, (_gpt(), [(0, [1])]), TypeError, "keep_heads must be a dict"),
    (slim_gpt, (_gpt(), "0:1"), TypeError, "keep_heads must be a dict"),
    (slim_gpt, (_gpt(), 3), TypeError, "keep_heads must be a dict"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": [0.5, 1.7]}), TypeError,
     r"keep_heads\['blocks.0.attn'\] must hold int indices, got 0.5"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": torch.tensor([0.0, 1.0])}), TypeError,
     r"keep_heads\['blocks.0.attn'\] must hold int"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": [2]}), ValueError,
     r"keep_heads\['blocks.0.attn'\] must hold indices in \[0, 1\], got min 2"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": [1, 1]}), ValueError,
     r"keep_heads\['blocks.0.attn'\] must not repeat an index"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": [-1]}), ValueError,
     r"keep_heads\['blocks.0.attn'\] must hold indices in \[0, 1\]"),
    (slim_gpt, (_gpt(), {"blocks.5.attn": [0]}), ValueError,
     r"keep_heads has key 'blocks.5.attn'; expected one of \['blocks.0.attn', 'blocks.1.attn'\]"),
    (slim_gpt, (_gpt(), {0: [0]}), ValueError, "keep_heads has key 0; expected one of"),
    (slim_gpt, (_gpt(), {"blocks.0.fc1": [0]}), ValueError, "keep_heads has key 'blocks.0.fc1'"),
    (slim_gpt, (_gpt(), {True: [0]}), ValueError, "keep_heads has key True"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": "01"}), TypeError,
     r"keep_heads\['blocks.0.attn'\] must be a list or 1-D tensor"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": 1}), TypeError, r"keep_heads\['blocks.0.attn'\] must be a list .*got int"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": torch.tensor([True, False])}), TypeError, r"must hold indices, got a bool"),
    (slim_gpt, (_gpt(), {"blocks.0.attn": [True]}), TypeError,
     r"keep_heads\['blocks.0.attn'\] must hold int indices, got True"),
    (slim_gpt, (_gpt(), None, {"blocks.0.fc1": [0.5]}), TypeError, r"keep_ffn\['blocks.0.fc1'\] must hold int indices"),
    (slim_gpt, (_gpt(), None, {"blocks.0.fc1": [8]}), ValueError,
     r"keep_ffn\['blocks.0.fc1'\] must hold indices in \[0, 7\]"),
    (slim_gpt, (_gpt(), None, {"blocks.1.fc1": [0, 0]}), ValueError, r"keep_ffn\['blocks.1.fc1'\] must not repeat"),
    (slim_gpt, (_gpt(), None, {"blocks.2.fc1": [0]}), ValueError, "keep_ffn has key 'blocks.2.fc1'"),
    (slim_gpt, (_gpt(), None, {"blocks.0.attn": [0]}), ValueError, "keep_ffn has key 'blocks.0.attn'"),
    (slim_gpt, (_gpt(), None, {"blocks.0.fc1": [[0, 1]]}), TypeError,
     r"keep_ffn\['blocks.0.fc1'\] must hold int indices"),
    (slim_gpt, (_gpt(), None, {"blocks.0.fc1": torch.tensor([[0, 1]])}), ValueError,
     r"keep_ffn\['blocks.0.fc1'\] must be 1-D"),
    (slim_gpt, (_gpt(), None, [0, 1]), TypeError, "keep_ffn must be a dict"),
    # scores: model, x, y
    (head_scores_gradient, (torch.nn.Linear(2, 2), XG, YG), TypeError, "model must be a lessons_lib.gpt.GPT"),
    (head_scores_gradient, (_gpt(), XG.float(), YG), TypeError, "x must hold int token ids, got dtype"),
    (head_scores_gradient, (_gpt(), XG.numpy(), YG), TypeError, "x must be a torch.Tensor of token ids"),
    (head_scores_gradient, (_gpt(), XG.tolist(), YG), TypeError, "x must be a torch.Tensor of token ids"),
    (head_scores_gradient, (_gpt(), torch.full((4, 11), 12), YG), ValueError, r"x must hold token ids in \["),
    (head_scores_gradient, (_gpt(), torch.full((4, 11), -1), YG), ValueError, r"x must hold token ids in \["),
    (head_scores_gradient, (_gpt(), torch.zeros(4, 12, dtype=torch.long), YG), ValueError,
     r"x must have shape \(batch, length\) .*\[1, 11\] \(block_size\), got \(4, 12\)"),
    (head_scores_gradient, (_gpt(), XG[0], YG), ValueError, r"x must have shape \(batch, length\)"),
    (head_scores_gradient, (_gpt(), XG[:0], YG[:0]), ValueError, "x must have shape .* batch >= 1"),
    (head_scores_gradient, (_gpt(), XG[..., None], YG), ValueError, r"x must have shape \(batch, length\)"),
    (head_scores_gradient, (_gpt(), XG, YG[:3]), ValueError, r"y must have shape \(4, digits\)"),
    (head_scores_gradient, (_gpt(), XG, YG.float()), TypeError, "y must hold int token ids"),
    (head_scores_gradient, (_gpt(), XG, torch.full((4, 4), 12)), ValueError, r"y must hold token ids in \[0, 11\]"),
    (head_scores_gradient, (_gpt(), XG, torch.zeros(4, 12, dtype=torch.long)), ValueError,
     r"y must have shape \(4, digits\) with 1 <= digits <= 11"),
    (head_scores_gradient, (_gpt(), XG, YG[:, 0]), ValueError, r"y must have shape \(4, digits\)"),
    (head_scores_gradient, (_gpt(), XG, "0579"), TypeError, "y must be a torch.Tensor of answer tokens"),
    (head_scores_ablation, (object(), XG, YG), TypeError, "model must be a lessons_lib.gpt.GPT"),
    (head_scores_ablation, (_gpt(), XG.bool(), YG), TypeError, "x must hold int token ids, got dtype torch.bool"),
    (head_scores_ablation, (_gpt(), XG, YG[:, :0]), ValueError, r"y must have shape \(4, digits\)"),
    (head_scores_ablation, (LIED_CONFIG, XG, YG), ValueError, "model does not match model.config"),
    (head_scores_norm, (None,), TypeError, "model must be a lessons_lib.gpt.GPT, got NoneType"),
    (head_scores_norm, (SWAPPED_GPT,), ValueError, "model does not match model.config"),
    (ffn_neuron_scores, ([_gpt()], XG), TypeError, "model must be a lessons_lib.gpt.GPT, got list"),
    (ffn_neuron_scores, (_gpt(), XG.double()), TypeError, "x must hold int token ids"),
    (ffn_neuron_scores, (_gpt(), torch.zeros(2, 17, dtype=torch.long)), ValueError, r"x must have shape \(batch,"),
    (ffn_neuron_scores, (_gpt(), None), TypeError, "x must be a torch.Tensor of token ids"),
    (answer_loss, (_gpt(), XG, YG, [torch.ones(2)]), ValueError, r"list of one \(H,\) or \(B, H\) tensor"),
    (answer_loss, (_gpt(), XG, YG, "ones"), ValueError, r"head_masks must be a list"),
    (answer_loss, (_gpt(), XG, YG, [torch.ones(2), torch.ones(2)]), ValueError, r"H = \[2, 3\]"),
    # keep_top, head_slice
    (keep_top, ([0.1, 0.2], 1), TypeError, "scores must be a 1-D torch.Tensor of scores, got list"),
    (keep_top, (torch.ones(3), 4), ValueError, r"n_keep must be <= the number of units \(3\), got 4"),
    (keep_top, (torch.ones(3), -1), ValueError, r"n_keep must be an int >= 0, got -1"),
    (keep_top, (torch.ones(3), True), TypeError, "n_keep must be an int, got bool True"),
    (keep_top, (torch.ones(3), 1.5), TypeError, "n_keep must be an int, got float 1.5"),
    (keep_top, (torch.ones(3), "2"), TypeError, "n_keep must be an int, got str '2'"),
    (keep_top, (torch.tensor([0.5, float("nan")]), 1), ValueError, r"scores holds NaN \(index 1\)"),
    (keep_top, (torch.ones(2, 2), 1), ValueError, r"scores must be 1-D"),
    (head_slice, (1.5, 4), ValueError, "head must be an int >= 0, got 1.5"),
    (head_slice, (-1, 4), ValueError, "head must be an int >= 0, got -1"),
    (head_slice, (1, 0), ValueError, "head_dim must be an int >= 1, got 0"),
    (head_slice, (True, 4), ValueError, "head must be an int >= 0, got True"),
    # slim_gpt_to: counts are an int (every layer) or a dict layer name -> int
    (slim_gpt_to, (SUB_GPT, 1, 3, XG, YG, XG), TypeError, r"model must be a .*GPT \(not a subclass"),
    (slim_gpt_to, (_gpt(), [1, 1], 3, XG, YG, XG), TypeError, r"n_keep_heads must be an int \(every layer\) or a dict"),
    (slim_gpt_to, (_gpt(), "12", 3, XG, YG, XG), TypeError, "n_keep_heads must be an int"),
    (slim_gpt_to, (_gpt(), None, 3, XG, YG, XG), TypeError, "n_keep_heads must be an int"),
    (slim_gpt_to, (_gpt(), 1.5, 3, XG, YG, XG), TypeError, "n_keep_heads must be an int"),
    (slim_gpt_to, (_gpt(), True, 3, XG, YG, XG), TypeError, "n_keep_heads must be an int"),
    (slim_gpt_to, (_gpt(), 3, 3, XG, YG, XG), ValueError,
     r"n_keep_heads\['blocks.0.attn'\] must be in \[0, 2\] \(what that layer has\), got 3"),
    (slim_gpt_to, (_gpt(), {"blocks.0.attn": -1}, 3, XG, YG, XG), ValueError,
     r"n_keep_heads\['blocks.0.attn'\] must be in \[0, 2\]"),
    (slim_gpt_to, (_gpt(), {"blocks.0.attn": 1.5}, 3, XG, YG, XG), TypeError,
     r"n_keep_heads\['blocks.0.attn'\] must be an int count, got float 1.5"),
    (slim_gpt_to, (_gpt(), {"blocks.0.attn": True}, 3, XG, YG, XG), TypeError, r"must be an int count, got bool True"),
    (slim_gpt_to, (_gpt(), {0: 1}, 3, XG, YG, XG), ValueError,
     r"n_keep_heads has key 0; expected one of \['blocks.0.attn'"),
    (slim_gpt_to, (_gpt(), 1, {"blocks.0.fc1": 9}, XG, YG, XG), ValueError,
     r"n_keep_ffn\['blocks.0.fc1'\] must be in \[0, 8\]"),
    (slim_gpt_to, (_gpt(), 1, 7, XG, YG, XG), ValueError, r"n_keep_ffn\['blocks.1.fc1'\] must be in \[0, 6\]"),
    (slim_gpt_to, (_gpt(), 1, {"blocks.0.fc1": 2.5}, XG, YG, XG), TypeError,
     r"n_keep_ffn\['blocks.0.fc1'\] must be an int count"),
    (slim_gpt_to, (_gpt(), 1, {"blocks.0.attn": 2}, XG, YG, XG), ValueError, r"n_keep_ffn has key 'blocks.0.attn'"),
    (slim_gpt_to, (_gpt(), 1, 3, XG, YG, XG.float()), TypeError, "calibration must hold int token ids"),
    (slim_gpt_to, (_gpt(), 1, 3, XG, YG, torch.zeros(2, 17, dtype=torch.long)), ValueError,
     r"calibration must have shape \(batch, length\)"),
    (slim_gpt_to, (_gpt(), 1, 3, XG, YG[:2], XG), ValueError, r"y must have shape \(4, digits\)"),
    (slim_gpt_to, (_gpt(), 1, 3, XG + 12, YG, XG), ValueError, r"x must hold token ids in \[0, 11\]"),
    (slim_gpt_to, (HOOKED_GPT, 1, 3, XG, YG, XG), ValueError, "model has a forward hook"),
]


@pytest.mark.parametrize(("fn", "args", "error", "message"), BAD_GPT,
                         ids=[f"{i}-{fn.__name__}" for i, (fn, *_) in enumerate(BAD_GPT)])
def test_bad_input_gets_a_clear_error_and_changes_nothing(fn, args, error, message):
    models = [a for a in args if isinstance(a, torch.nn.Module)]
    before = [_fingerprint(m) for m in models]
    with pytest.raises(error, match=message):
        fn(*args)
    assert [_fingerprint(m) for m in models] == before


def _fingerprint(model):
    """Values, parameter identities, hooks and modes, as comparable plain data."""
    tensors = [(k, id(v), v.detach().tolist()) for k, v in [*model.named_parameters(), *model.named_buffers()]]
    modules = [(k, sorted(m._forward_pre_hooks), sorted(m._forward_hooks), m.training)
               for k, m in model.named_modules()]
    return tensors, modules


def test_slim_gpt_to_drops_the_heads_and_neurons_that_do_nothing():
    """Which heads and neurons slim_gpt_to keeps, checked against a model where the answer is known:
    on the trained GPT, head 1 of layer 0 and FFN neurons 0-9 of layer 1 are silenced (their
    output weights zeroed), so they are the ones to go; every other head raises the loss when removed."""
    from lessons_lib.gpt import load_checkpoint
    from lessons_lib.tasks import addition_task

    dense, task = load_checkpoint(), addition_task(n_digits=3, seed=0)
    E = dense.blocks[0].attn.head_dim
    with torch.no_grad():
        dense.blocks[0].attn.out.weight[:, E:2 * E] = 0              # head 1 of layer 0 writes nothing
        dense.blocks[1].fc2.weight[:, :10] = 0                       # neurons 0-9 of layer 1 write nothing
    x, y = task.x_val[:200], task.y_val[:200]
    slim = slim_gpt_to(dense, {"blocks.0.attn": 3}, {"blocks.1.fc1": 246}, x, y, task.x_train[:128])
    kept_rows = torch.cat([torch.arange(h * E, (h + 1) * E) for h in (0, 2, 3)])
    assert torch.equal(slim.blocks[0].attn.q.weight, dense.blocks[0].attn.q.weight[kept_rows])
    assert torch.equal(slim.blocks[1].fc1.weight, dense.blocks[1].fc1.weight[10:])
    assert torch.equal(slim.blocks[1].attn.q.weight, dense.blocks[1].attn.q.weight)   # layer 1 keeps all 4
    with torch.no_grad():                                            # and removing them changed nothing
        assert torch.allclose(slim(x), dense(x), atol=1e-5)


# --- Michel et al.'s score: per-problem absolute gradients, normalised per layer ------------------

def _loss_of_one(model, x, y, masks):
    logits = model(x, masks)[:, -y.shape[1]:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def test_head_gradient_is_the_mean_absolute_per_problem_gradient_normalised_per_layer():
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=16, head_dim=4, heads=[3, 2], ffn=[8, 8], block_size=11)).double()
    x, y = torch.randint(0, 12, (7, 11)), torch.randint(0, 10, (7, 4))
    per_problem = []                                      # the definition, one backward pass per problem
    for b in range(len(x)):
        masks = [torch.ones(h, dtype=torch.float64, requires_grad=True) for h in (3, 2)]
        per_problem.append(torch.autograd.grad(_loss_of_one(model, x[b:b + 1], y[b:b + 1], masks), masks))
    expected = [torch.stack([g[i] for g in per_problem]).abs().mean(0) for i in range(2)]
    expected = [e / e.norm() for e in expected]
    scores = head_scores_gradient(model, x, y)
    assert all(torch.allclose(s, e, atol=1e-12) for s, e in zip(scores.values(), expected, strict=True))
    assert all(s.norm().item() == pytest.approx(1.0) for s in scores.values())
    # the batch-gradient variant: |mean of the per-problem gradients|, where signs cancel
    batch = [torch.stack([g[i] for g in per_problem]).mean(0).abs() for i in range(2)]
    batch = [b / b.norm() for b in batch]
    cancelled = head_scores_gradient(model, x, y, per_example=False)
    assert all(torch.allclose(s, e, atol=1e-12) for s, e in zip(cancelled.values(), batch, strict=True))


def test_a_per_problem_head_mask_equals_the_shared_mask_when_rows_agree():
    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=16, head_dim=4, heads=[3, 2], ffn=[8, 8], block_size=11))
    x = torch.randint(0, 12, (5, 11))
    shared = [torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0.0, 1.0])]
    per_row = [m.expand(5, -1).clone() for m in shared]
    per_row[0][2] = torch.tensor([0.0, 1.0, 1.0])                 # problem 2 gets its own mask
    with torch.no_grad():
        out_shared, out_rows = model(x, shared), model(x, per_row)
        alone = model(x[2:3], [per_row[0][2], shared[1]])
    assert torch.equal(out_shared[[0, 1, 3, 4]], out_rows[[0, 1, 3, 4]])
    assert torch.allclose(out_rows[2], alone[0], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(H,\) or \(B, H\)"):
        model(x, [torch.ones(4, 3), torch.ones(2)])              # B = 5, not 4
