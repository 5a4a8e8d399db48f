"""Neuron scores, slimming and its equivalence, on more than one architecture."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune

from lessons_lib.models import MLP
from lessons_lib.slimming import keep_top, max_output_difference, slim_linear, slim_linear_pair
from lessons_lib.structured import neuron_scores_activation, neuron_scores_l2, neuron_scores_taylor, slim_mlp


def _named(keep: dict) -> dict:
    """``{0: indices}`` (hidden-layer index) as slim_mlp's keys, ``{"layers.0": indices}``."""
    return {f"layers.{i}": k for i, k in keep.items()}


def _state(model: nn.Module) -> list:
    """What a call must not change: values, parameter identities, hooks, training mode."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return [(name, id(t), t.detach().clone()) for name, t in tensors] + \
           [(name, sorted(m._forward_pre_hooks), sorted(m._forward_hooks), m.training)
            for name, m in model.named_modules()]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x[:2] == y[:2] and (torch.equal(x[2], y[2]) if isinstance(x[2], torch.Tensor) else x == y)
        for x, y in zip(a, b, strict=True))


def _row_mask(layer: nn.Linear, keep: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros_like(layer.weight)
    mask[keep] = 1
    return mask


def _masked_forward(layers, activations, keep, x):
    """The masked model, written out: rows not in keep[i] zeroed, every bias kept."""
    for i, layer in enumerate(layers):
        weight = layer.weight * _row_mask(layer, keep[i]) if i in keep else layer.weight
        x = F.linear(x, weight, layer.bias)
        if i < len(layers) - 1:
            x = activations[i](x)
    return x


def _slim_chain(layers, activations, keep):
    """A chain with one activation per hidden layer, slimmed pair by pair, last hidden layer first."""
    layers = list(layers)
    for i in sorted(keep, reverse=True):
        layers[i], layers[i + 1] = slim_linear_pair(layers[i], layers[i + 1], keep[i], activations[i])
    return layers


def _chain_forward(layers, activations, x):
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1:
            x = activations[i](x)
    return x


def _random_keep(widths, fractions, seed):
    """``{layer: sorted random indices}`` keeping ``fractions[layer]`` of ``widths[layer]`` (at least one)."""
    g = torch.Generator().manual_seed(seed)
    return {i: torch.randperm(w, generator=g)[:max(1, round(fractions[i] * w))].sort().values
            for i, w in widths.items()}


# --- the fold equals the masked model ------------------------------------------------------------

MLP_CASES = {
    "lessons' MLP, both hidden layers": ((64, 256, 128, 10), {0: 0.5, 1: 0.5}, None),
    "4 hidden layers, consecutive": ((12, 16, 14, 10, 8, 5), {0: 0.5, 1: 0.4, 2: 0.6, 3: 0.5}, None),
    "4 hidden layers, middle two": ((12, 16, 14, 10, 8, 5), {1: 0.3, 2: 0.5}, None),
    "no bias on the pruned layer": ((10, 12, 9, 4), {0: 0.5, 1: 0.5}, 1),
    "no bias on the next layer": ((10, 12, 9, 4), {0: 0.5, 1: 0.5}, 2),
}


def _mlp(sizes, no_bias_layer, dtype):
    torch.manual_seed(0)
    model = MLP(sizes)
    if no_bias_layer is not None:
        old = model.layers[no_bias_layer]
        model.layers[no_bias_layer] = nn.Linear(old.in_features, old.out_features, bias=False)
    with torch.no_grad():
        for layer in model.layers:
            if layer.bias is not None:
                layer.bias.uniform_(-0.5, 0.5)                     # biases that matter: half positive
    return model.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", MLP_CASES)
def test_slim_mlp_equals_masked_model_from_dense_and_from_masked(name, dtype):
    sizes, fractions, no_bias_layer = MLP_CASES[name]
    dense = _mlp(sizes, no_bias_layer, dtype)
    keep = _random_keep({i: sizes[i + 1] for i in fractions}, fractions, seed=1)
    masked = copy.deepcopy(dense)
    for i, k in keep.items():
        prune.custom_from_mask(masked.layers[i], "weight", _row_mask(masked.layers[i], k))
    x = torch.randn(64, sizes[0], dtype=dtype)
    with torch.no_grad():
        expected = _masked_forward(list(dense.layers), [F.relu] * (len(sizes) - 2), keep, x)
        assert (masked(x) - expected).abs().max() <= 1e-6              # the reference is the masked model
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for source in (dense, masked):
        slim = slim_mlp(source, _named(keep), activation=torch.relu)
        assert max_output_difference(masked, slim, x) <= tolerance, (name, source is dense)
        assert [layer.out_features for layer in slim.layers[:-1]] == \
               [len(keep[i]) if i in keep else w for i, w in enumerate(sizes[1:-1])]
        assert all(p.dtype == dtype for p in slim.parameters())
    assert max_output_difference(masked, slim_mlp(dense, _named(keep)), x) > 1e-3       # folding matters


@st.composite
def _mlp_and_keep(draw):
    """A float64 MLP of 1-4 hidden layers (some without bias) and a random selection of neurons."""
    sizes = draw(st.lists(st.integers(1, 9), min_size=3, max_size=6))
    no_bias = draw(st.sets(st.integers(0, len(sizes) - 2)))
    keep = {}
    for i in draw(st.sets(st.integers(0, len(sizes) - 3), min_size=1)):
        keep[i] = draw(st.lists(st.integers(0, sizes[i + 1] - 1), min_size=1, unique=True))
    return sizes, no_bias, keep, draw(st.integers(0, 2**16))


@settings(max_examples=40, deadline=None)
@given(case=_mlp_and_keep())
def test_slim_mlp_equals_masked_model_for_random_architectures(case):
    sizes, no_bias, keep, seed = case
    torch.manual_seed(seed)
    dense = MLP(sizes).double()
    for i in no_bias:
        dense.layers[i] = nn.Linear(sizes[i], sizes[i + 1], bias=False, dtype=torch.float64)
    masked = copy.deepcopy(dense)
    for i, k in keep.items():
        prune.custom_from_mask(masked.layers[i], "weight", _row_mask(masked.layers[i], torch.tensor(k)))
    x = torch.randn(16, sizes[0], dtype=torch.float64)
    for source in (dense, masked):
        slim = slim_mlp(source, _named(keep), activation=torch.relu)
        assert max_output_difference(masked, slim, x) <= 1e-10
        assert [layer.out_features for layer in slim.layers] == \
               [len(keep[i]) if i in keep else n for i, n in enumerate(sizes[1:])]


def test_fold_order_matters_for_consecutive_layers():
    """Layer 1's removed neurons emit relu(original bias); folding layer 0 first used a bias that
    already held layer 0's constants (4.3e-2 off on the lessons' MLP)."""
    dense = _mlp((64, 256, 128, 10), None, torch.float32)
    keep = {0: torch.arange(0, 256, 2), 1: torch.arange(0, 128, 2)}
    masked = copy.deepcopy(dense)
    with torch.no_grad():
        masked.layers[0].weight[1::2] = 0
        masked.layers[1].weight[1::2] = 0
    x = torch.randn(100, 64)
    assert max_output_difference(masked, slim_mlp(dense, _named(keep), activation=torch.relu), x) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("activations", "bias"), [
    ([torch.relu], (True, True)),
    ([F.gelu], (True, True)),
    ([torch.tanh], (True, True)),
    ([torch.sigmoid], (False, True)),             # no bias on the pruned layer: removed neurons emit sigmoid(0)
    ([torch.tanh], (True, False)),                # no bias on the next layer: it gets one
    ([torch.sigmoid], (False, False)),            # neither: the next layer gets W[:, removed] @ 0.5
    ([torch.tanh, F.gelu, torch.sigmoid, torch.relu], (True, False, True, True, False)),   # 4 hidden layers
], ids=["relu", "gelu", "tanh", "nobias-pruned", "nobias-next", "nobias-both", "4-hidden-mixed"])
def test_slim_pair_chain_equals_masked_model(activations, bias, dtype):
    torch.manual_seed(2)
    widths = [7, 10, 9, 8, 6, 3][:len(activations) + 2]
    layers = [nn.Linear(a, b, bias=has, dtype=dtype) for a, b, has in zip(widths[:-1], widths[1:], bias, strict=True)]
    keep = _random_keep({i: widths[i + 1] for i in range(len(activations))}, [0.5] * len(activations), seed=3)
    masked = copy.deepcopy(layers)
    for i, k in keep.items():
        prune.custom_from_mask(masked[i], "weight", _row_mask(masked[i], k))
    x = torch.randn(40, widths[0], dtype=dtype)
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        expected = _masked_forward(layers, activations, keep, x)
        for source in (layers, masked):                               # from dense and from already masked
            slim = _slim_chain(source, activations, keep)
            assert (_chain_forward(slim, activations, x) - expected).abs().max() <= tolerance
            assert all(p.dtype == dtype for layer in slim for p in layer.parameters())
    if not bias[1]:
        assert slim[1].bias is not None                               # it needed one for the constants


def test_slim_equals_ln_structured_masked_model():
    model = _mlp((20, 30, 10, 5, 3), None, torch.float32)
    masked = copy.deepcopy(model)
    keep = {}
    for i, layer in enumerate(masked.layers[:-1]):
        prune.ln_structured(layer, "weight", amount=0.5, n=2, dim=0)
        keep[i] = layer.weight_mask[:, 0].nonzero().flatten()
    x = torch.randn(50, 20)
    for source in (model, masked):
        assert max_output_difference(masked, slim_mlp(source, _named(keep), activation=torch.relu), x) <= 1e-5


def test_masked_weights_are_read_fresh_after_an_optimizer_step():
    """After a step on weight_orig, ``layer.weight`` is stale until the next forward: use orig * mask."""
    masked = _mlp((10, 12, 4), None, torch.float32)
    prune.ln_structured(masked.layers[0], "weight", amount=0.5, n=2, dim=0)
    keep = {0: masked.layers[0].weight_mask[:, 0].nonzero().flatten()}
    x, y = torch.randn(30, 10), torch.randint(0, 4, (30,))
    optimizer = torch.optim.SGD(masked.parameters(), lr=0.5)
    F.cross_entropy(masked(x), y).backward()
    optimizer.step()                                                   # no forward since
    slim = slim_mlp(masked, _named(keep), activation=torch.relu)
    first = masked.layers[0]
    assert torch.equal(slim_linear(first).weight, first.weight_orig * first.weight_mask)
    assert max_output_difference(masked, slim, x) <= 1e-5


def test_slim_mlp_activation_must_be_relu():
    model = _mlp((6, 5, 3), None, torch.float32)
    for good in (torch.relu, F.relu, nn.ReLU(), None):
        slim_mlp(model, _named({0: [0, 1]}), activation=good)
    for bad in (torch.tanh, F.gelu, nn.LeakyReLU(0.1), torch.sigmoid):
        with pytest.raises(ValueError, match="activation must compute ReLU"):
            slim_mlp(model, _named({0: [0, 1]}), activation=bad)


# --- dtype, device, aliasing ---------------------------------------------------------------------

def test_slimming_keeps_dtype_and_device():
    model = MLP((6, 5, 4, 3)).double()
    slim = slim_mlp(model, _named({0: torch.tensor([0, 2]), 1: [1, 3]}), activation=torch.relu)
    assert {p.dtype for p in slim.parameters()} == {torch.float64}
    assert {p.dtype for layer in slim_linear_pair(model.layers[0], model.layers[1], [1]) for p in layer.parameters()} \
        == {torch.float64}
    assert slim_linear(model.layers[0]).weight.dtype == torch.float64
    with torch.device("meta"):
        on_meta = MLP((6, 5, 4, 3))
    slim = slim_mlp(on_meta, _named({0: [0, 2]}), activation=torch.relu)
    assert {p.device.type for p in slim.parameters()} == {"meta"}
    assert not slim_mlp(model.eval(), _named({0: [0]})).training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_slimming_on_cuda_stays_on_cuda():
    model = MLP((6, 5, 4, 3)).cuda()
    slim = slim_mlp(model, _named({0: [0, 2], 1: torch.tensor([1, 3])}), activation=torch.relu)
    assert {p.device.type for p in slim.parameters()} == {"cuda"}
    assert max_output_difference(model, slim_mlp(model, _named({})), torch.randn(4, 6, device="cuda")) == 0


def _storages(module: nn.Module) -> set[int]:
    return {p.untyped_storage().data_ptr() for p in module.parameters()}


@pytest.mark.parametrize("keep", [{0: [0, 2], 1: [1]}, {}, {0: list(range(12)), 1: list(range(10))}],
                         ids=["some", "nothing named", "keep all"])
def test_slim_shares_nothing_and_fine_tuning_leaves_the_original(keep):
    model = _mlp((8, 12, 10, 4), None, torch.float32)
    prune.l1_unstructured(model.layers[2], "weight", amount=0.5)      # one masked layer too
    before = _state(model)
    slim = slim_mlp(model, _named(keep), activation=torch.relu)
    pair = slim_linear_pair(model.layers[0], model.layers[1], keep.get(0, list(range(12))), torch.relu)
    copies = [slim, *pair, slim_linear(model.layers[0]), slim_linear(model.layers[2])]
    own = _storages(model) | {b.untyped_storage().data_ptr() for b in model.buffers()}
    assert all(not (_storages(c) & own) for c in copies)
    assert not {id(p) for c in copies for p in c.parameters()} & {id(p) for p in model.parameters()}
    x, y = torch.randn(40, 8), torch.randint(0, 4, (40,))
    for trained in (slim, nn.Sequential(pair[0], nn.ReLU(), pair[1])):
        optimizer = torch.optim.Adam(trained.parameters(), lr=0.1)
        for _ in range(3):
            optimizer.zero_grad()
            F.cross_entropy(trained(x), y).backward()
            optimizer.step()
    assert _same(_state(model), before)


def test_slim_leaves_inputs_unchanged_and_no_activation_drops_neurons():
    torch.manual_seed(2)
    first, second = nn.Linear(5, 6), nn.Linear(6, 3)
    before = [p.detach().clone() for p in (*first.parameters(), *second.parameters())]
    small, following = slim_linear_pair(first, second, torch.tensor([0, 3, 5]))
    assert all(torch.equal(a, b) for a, b in zip(before, (*first.parameters(), *second.parameters()), strict=True))
    x = torch.randn(10, 5)
    with torch.no_grad():
        hidden = torch.relu(first(x))
        hidden[:, [1, 2, 4]] = 0
        assert torch.allclose(second(hidden), following(torch.relu(small(x))), atol=1e-6)


def test_keep_order_permutes_neurons_without_changing_the_function():
    model = _mlp((6, 5, 3), None, torch.float32)
    x = torch.randn(8, 6)
    assert max_output_difference(model, slim_mlp(model, _named({0: [4, 0, 2, 1, 3]})), x) <= 1e-6


# --- scores --------------------------------------------------------------------------------------

def test_scores_shapes_and_meaning():
    torch.manual_seed(3)
    model = MLP((8, 6, 4, 3))
    with torch.no_grad():
        model.layers[0].weight[2] = 0                       # neuron 2: zero weights
        model.layers[0].bias[2] = -1                        # ... and never active
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    for scores in (neuron_scores_l2(model), neuron_scores_activation(model, x), neuron_scores_taylor(model, x, y)):
        assert {name: s.shape for name, s in scores.items()} == {"layers.0": (6,), "layers.1": (4,)}
        assert scores["layers.0"][2] == 0 and (scores["layers.0"] >= 0).all()
    assert all(p.grad is None for p in model.parameters())   # no gradients left behind


def test_taylor_leaves_existing_gradients_alone_and_works_under_no_grad():
    torch.manual_seed(3)
    model = MLP((8, 6, 4, 3))
    x, y = torch.randn(40, 8), torch.randint(0, 3, (40,))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    expected = neuron_scores_taylor(model, x, y)
    with torch.no_grad():
        assert all(torch.equal(a, expected[name]) for name, a in neuron_scores_taylor(model, x, y).items())
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())


def test_scores_of_a_masked_model_see_the_masks():
    model = MLP((8, 6, 3))
    prune.ln_structured(model.layers[0], "weight", amount=0.5, n=2, dim=0)
    removed = ~model.layers[0].weight_mask[:, 0].bool()
    assert (neuron_scores_l2(model)["layers.0"][removed] == 0).all()


def test_keep_top_order_ties_and_errors():
    assert keep_top(torch.tensor([0.1, 0.9, 0.5, 0.9]), 2).tolist() == [1, 3]
    assert keep_top(torch.tensor([1.0, 2.0, 2.0, 3.0]), 2).tolist() == [1, 3]
    assert keep_top(torch.tensor([3, 1, 2]), 2).tolist() == [0, 2]                     # int scores
    with pytest.raises(ValueError, match=r"n_keep must be <= the number of units \(3\), got 4"):
        keep_top(torch.ones(3), 4)
    assert keep_top(torch.ones(3), 0).tolist() == [] and keep_top(torch.zeros(0), 0).tolist() == []   # a layer emptied
    assert keep_top(torch.ones(5), 3).tolist() == [0, 1, 2]                          # all tied: the lowest indices


def test_copy_linear_is_plain_and_masked():
    layer = nn.Linear(4, 3)
    prune.l1_unstructured(layer, "weight", amount=0.5)
    copied = slim_linear(layer)
    assert isinstance(copied.weight, nn.Parameter) and torch.equal(copied.weight, layer.weight)
    assert not prune.is_pruned(copied)
    assert slim_linear(nn.Linear(4, 3, bias=False)).bias is None


# --- bad input: a clear error naming the argument, nothing changed -------------------------------

def _model():
    torch.manual_seed(0)
    return MLP((8, 6, 4, 3))


X, Y = torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1])
A, B = nn.Linear(4, 6), nn.Linear(6, 2)
HOOKED = _model()
HOOKED.layers[1].register_forward_hook(lambda m, i, o: o * 2)
SUB = type("MyMLP", (MLP,), {})((8, 6, 4, 3))
SWAPPED = _model()
SWAPPED.layers[1] = nn.Sequential(nn.Linear(6, 4))
BROKEN_CHAIN = _model()
BROKEN_CHAIN.layers[1] = nn.Linear(5, 4)

BAD = [
    # slim_linear_pair: keep
    (slim_linear_pair, (A, B, [0.5, 1.7]), TypeError, "keep must hold int indices, got 0.5"),
    (slim_linear_pair, (A, B, torch.tensor([0.5, 1.7])), TypeError, "keep must hold int indices, got dtype"),
    (slim_linear_pair, (A, B, torch.tensor([0, 6])), ValueError, r"keep must hold indices in \[0, 5\], got min 0, max"),
    (slim_linear_pair, (A, B, [-1, 2]), ValueError, r"keep must hold indices in \[0, 5\], got min -1"),
    (slim_linear_pair, (A, B, [1, 1]), ValueError, "keep must not repeat an index"),
    (slim_linear_pair, (A, B, []), ValueError, "keep must keep at least one index"),
    (slim_linear_pair, (A, B, torch.tensor([], dtype=torch.long)), ValueError, "keep must keep at least one index"),
    (slim_linear_pair, (A, B, torch.ones(6, dtype=torch.bool)), TypeError, "keep must hold indices, got a bool tensor"),
    (slim_linear_pair, (A, B, [True, False]), TypeError, "keep must hold int indices, got True"),
    (slim_linear_pair, (A, B, torch.tensor([[0, 1]])), ValueError, r"keep must be 1-D .* got shape \(1, 2\)"),
    (slim_linear_pair, (A, B, torch.tensor(2)), ValueError, r"keep must be 1-D .* got shape \(\)"),
    (slim_linear_pair, (A, B, "0,2"), TypeError, "keep must be a list or 1-D tensor of int indices, got str"),
    (slim_linear_pair, (A, B, None), TypeError, "keep must be a list or 1-D tensor of int indices, got NoneType"),
    (slim_linear_pair, (A, B, 3), TypeError, "keep must be a list or 1-D tensor of int indices, got int"),
    (slim_linear_pair, (A, B, np.array([0.5, 1.5])), TypeError, "keep must be a list or 1-D tensor"),
    (slim_linear_pair, (A, B, [0, "1"]), TypeError, "keep must hold int indices, got '1'"),
    # slim_linear_pair: layers, activation
    (slim_linear_pair, (nn.Conv1d(1, 6, 1), B, [0]), TypeError, "layer must be a torch.nn.Linear, got Conv1d"),
    (slim_linear_pair, (A, "next", [0]), TypeError, "next_layer must be a torch.nn.Linear, got str"),
    (slim_linear_pair, (A, nn.Linear(5, 2), [0]), ValueError,
     r"layer.out_features \(6\) must equal next_layer.in_features \(5\)"),
    (slim_linear_pair, (A, B, [0], "relu"), TypeError, "activation must be None or a callable such as"),
    (slim_linear_pair, (A, B, [0], 3), TypeError, "activation must be None or a callable"),
    (slim_linear_pair, (A, B, [0], nn.ReLU), TypeError, "activation must map a tensor to a tensor"),
    (slim_linear_pair, (A, B, [0], lambda t: 0.0), TypeError, "activation must map a tensor to a tensor"),
    (slim_linear_pair, (A, B, [0], lambda t: t.sum()), TypeError, "activation must map a tensor to a tensor of"),
    # slim_mlp
    (slim_mlp, (nn.Sequential(nn.Linear(2, 2)), {}), TypeError, "model must be a .*MLP.*got Sequential"),
    (slim_mlp, ("model", {}), TypeError, "model must be a lessons_lib.models.MLP.*got str"),
    (slim_mlp, (SUB, {}), TypeError, "model must be a lessons_lib.models.MLP \\(not a subclass\\), got MyMLP"),
    (slim_mlp, (SWAPPED, {}), ValueError, "model.layers must be a ModuleList of nn.Linear layers"),
    (slim_mlp, (BROKEN_CHAIN, {}), ValueError, r"model.layers\[0\] has 6 outputs but layers\[1\] takes 5 inputs"),
    (slim_mlp, (HOOKED, {}), ValueError, "model has a forward hook on 'layers.1'"),
    (slim_mlp, (_model(), [[0, 1]]), TypeError, "keep must be a dict mapping hidden-layer name"),
    (slim_mlp, (_model(), [(0, [0, 1])]), TypeError, "keep must be a dict"),
    (slim_mlp, (_model(), "0:1"), TypeError, "keep must be a dict"),
    (slim_mlp, (_model(), None), TypeError, "keep must be a dict"),
    (slim_mlp, (_model(), {"layers.2": [0]}), ValueError,
     r"keep has key 'layers.2'; expected a hidden-layer name, one of \['layers.0', 'layers.1'\]"),
    (slim_mlp, (_model(), {-1: [0]}), ValueError, "keep has key -1"),
    (slim_mlp, (_model(), {"0": [0]}), ValueError, "keep has key '0'"),
    (slim_mlp, (_model(), {0.0: [0]}), ValueError, "keep has key 0.0"),
    (slim_mlp, (_model(), {True: [0]}), ValueError, "keep has key True"),
    (slim_mlp, (_model(), {"layers.0": [0.5, 1.7]}), TypeError, r"keep\['layers.0'\] must hold int indices, got 0.5"),
    (slim_mlp, (_model(), {"layers.0": [0], "layers.1": [4]}), ValueError,
     r"keep\['layers.1'\] must hold indices in \[0, 3\]"),
    (slim_mlp, (_model(), {"layers.0": []}), ValueError, r"keep\['layers.0'\] must keep at least one index"),
    (slim_mlp, (_model(), {"layers.0": torch.ones(6, dtype=torch.bool)}), TypeError,
     r"keep\['layers.0'\] must hold indices, got a bool"),
    (slim_mlp, (_model(), {"layers.0": [2, 2]}), ValueError, r"keep\['layers.0'\] must not repeat an index"),
    (slim_mlp, (_model(), {"layers.0": "01"}), TypeError, r"keep\['layers.0'\] must be a list or 1-D tensor"),
    (slim_mlp, (_model(), {"layers.0": [0]}, "relu"), TypeError, "activation must be None or a callable"),
    (slim_mlp, (_model(), {"layers.0": [0]}, [torch.relu]), TypeError, "activation must be None or a callable"),
    (slim_mlp, (_model(), {"layers.0": [0]}, torch.tanh), ValueError, "activation must compute ReLU"),
    # scores
    (neuron_scores_l2, ([1, 2],), TypeError, "model must be a lessons_lib.models.MLP"),
    (neuron_scores_l2, (SWAPPED,), ValueError, "model.layers must be a ModuleList of nn.Linear"),
    (neuron_scores_activation, (_model(), X.numpy()), TypeError, r"x must be a torch.Tensor .*got ndarray"),
    (neuron_scores_activation, (_model(), torch.randn(5, 7)), ValueError,
     r"x must have shape \(n, 8\) .* got \(5, 7\)"),
    (neuron_scores_activation, (_model(), torch.randn(8)), ValueError, r"x must have shape \(n, 8\)"),
    (neuron_scores_activation, (_model(), torch.randn(0, 8)), ValueError, r"x must have shape \(n, 8\) with n >= 1"),
    (neuron_scores_activation, (_model(), X.double()), ValueError, "x must be torch.float32 .* got torch.float64"),
    (neuron_scores_activation, (_model(), X.long()), ValueError, "x must be torch.float32 .* got torch.int64"),
    (neuron_scores_activation, (nn.Linear(8, 3), X), TypeError, "model must be a lessons_lib.models.MLP"),
    (neuron_scores_taylor, (_model(), X, Y[:4]), ValueError, r"y must have shape \(5,\)"),
    (neuron_scores_taylor, (_model(), X, Y.float()), TypeError,
     "y must hold int class labels, got dtype torch.float32"),
    (neuron_scores_taylor, (_model(), X, Y.bool()), TypeError, "y must hold int class labels, got dtype torch.bool"),
    (neuron_scores_taylor, (_model(), X, torch.full((5,), 3)), ValueError,
     r"y must hold labels in \[0, 2\], got min 3"),
    (neuron_scores_taylor, (_model(), X, torch.full((5,), -1)), ValueError,
     r"y must hold labels in \[0, 2\], got min -1"),
    (neuron_scores_taylor, (_model(), X, Y[:, None]), ValueError, r"y must have shape \(5,\)"),
    (neuron_scores_taylor, (_model(), X, Y.tolist()), TypeError, "y must be a torch.Tensor of class labels, got list"),
    (neuron_scores_taylor, (_model(), "x", Y), TypeError, "x must be a torch.Tensor"),
    (keep_top, ([0.1, 0.9], 1), TypeError, "scores must be a 1-D torch.Tensor of scores, got list"),
    (keep_top, (torch.ones(2, 2), 1), ValueError, r"scores must be 1-D with one score per unit, got shape \(2, 2\)"),
    (keep_top, (torch.ones(0), 1), ValueError, r"n_keep must be <= the number of units \(0\), got 1"),
    (keep_top, (torch.tensor([1.0, float("nan"), 2.0]), 1), ValueError, r"scores holds NaN \(index 1\)"),
    (keep_top, (torch.tensor([True, False]), 1), TypeError, "scores must hold real scores, got dtype torch.bool"),
    (keep_top, (torch.ones(3), True), TypeError, "n_keep must be an int, got bool True"),
    (keep_top, (torch.ones(3), 1.5), TypeError, "n_keep must be an int, got float 1.5"),
    (keep_top, (torch.ones(3), -2), ValueError, "n_keep must be an int >= 0, got -2"),
    (keep_top, (torch.ones(3), "2"), TypeError, "n_keep must be an int, got str '2'"),
    # slim_linear, max_output_difference
    (slim_linear, (nn.Conv2d(1, 1, 1),), TypeError, "layer must be a torch.nn.Linear, got Conv2d"),
    (slim_linear, (None,), TypeError, "layer must be a torch.nn.Linear, got NoneType"),
    (max_output_difference, ("a", _model(), X), TypeError, "model_a must be a torch.nn.Module, got str"),
    (max_output_difference, (_model(), None, X), TypeError, "model_b must be a torch.nn.Module, got NoneType"),
    (max_output_difference, (_model(), _model(), X.tolist()), TypeError, "x must be a torch.Tensor, got list"),
    (max_output_difference, (_model(), _model(), torch.zeros(0, 8)), ValueError, "x must have at least one element"),
    (max_output_difference, (_model(), _model(), torch.randn(5, 7)), ValueError,
     r"x \(shape \(5, 7\), torch.float32\) does not fit model_a"),
    (max_output_difference, (nn.Linear(8, 3), nn.Linear(8, 3), X.long()), ValueError,
     "x .* does not fit model_a"),
    (max_output_difference, (nn.Linear(8, 3), nn.Linear(8, 4), X), ValueError,
     "model_a and model_b must return tensors of the same shape"),
]


@pytest.mark.parametrize(("fn", "args", "error", "message"), BAD,
                         ids=[f"{i}-{fn.__name__}" for i, (fn, *_) in enumerate(BAD)])
def test_bad_input_gets_a_clear_error_and_changes_nothing(fn, args, error, message):
    models = [a for a in args if isinstance(a, nn.Module)]
    before = [_state(m) for m in models]
    with pytest.raises(error, match=message):
        fn(*args)
    assert all(_same(_state(m), b) for m, b in zip(models, before, strict=True))


def test_slim_pair_checker_catches_mistakes():
    from lessons_lib.checks import ExerciseFailure, check_slim_pair

    def columns_instead_of_rows(layer, next_layer, keep):
        small = nn.Linear(len(keep), layer.out_features)
        following = nn.Linear(len(keep), next_layer.out_features)
        return small, following

    def forgets_bias(layer, next_layer, keep):
        small, following = slim_linear_pair(layer, next_layer, keep)
        with torch.no_grad():
            small.bias.zero_()
        return small, following

    def in_place(layer, next_layer, keep):
        with torch.no_grad():
            layer.weight.mul_(2)
        return slim_linear_pair(layer, next_layer, keep)

    for fn, expected in [(columns_instead_of_rows, "the first layer's weight should be"),
                         (forgets_bias, "the kept neurons' biases must come along"),
                         (in_place, "changed the layers it was given"),
                         (lambda a, b, k: (a, b), "returned the layers it was given"),
                         (lambda a, b, k: None, "expected a tuple of two nn.Linear")]:
        with pytest.raises(ExerciseFailure) as info:
            check_slim_pair(fn)
        assert expected in str(info.value), (fn, str(info.value))


def test_outgoing_norm_scores_read_the_next_layer():
    from lessons_lib.structured import neuron_scores_outgoing

    model = MLP((4, 6, 5, 3))
    scores = neuron_scores_outgoing(model)
    assert torch.allclose(scores["layers.0"], model.layers[1].weight.detach().norm(dim=0))
    assert torch.allclose(scores["layers.1"], model.layers[2].weight.detach().norm(dim=0))
    prune.ln_structured(model.layers[1], "weight", amount=0.5, n=2, dim=1)   # masked columns score 0
    assert (neuron_scores_outgoing(model)["layers.0"] == 0).sum() == 3


def test_slim_mlp_refit_recovers_a_neuron_that_another_one_duplicates():
    """Neuron 1 of layers.0 copies neuron 0: removing it loses nothing a linear refit cannot put back."""
    from lessons_lib.structured import slim_mlp_refit

    torch.manual_seed(0)
    model = MLP((6, 8, 4))
    with torch.no_grad():
        model.layers[0].weight[1] = model.layers[0].weight[0]
        model.layers[0].bias[1] = model.layers[0].bias[0]
        model.layers[1].weight[:, 1] += 1.0                 # so neuron 1 matters
    x = torch.randn(200, 6)
    keep = {"layers.0": [0, 2, 3, 4, 5, 6, 7]}
    refit = slim_mlp_refit(model, keep, x, ridge=0.0)
    plain = slim_mlp(model, keep)
    with torch.no_grad():
        assert (refit(x) - model(x)).abs().max() < 1e-4
        assert (plain(x) - model(x)).abs().max() > 0.1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    slim_mlp_refit(model, {"layers.0": [0, 1]}, x)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())   # model unchanged
    with pytest.raises(ValueError, match=r"keep\['layers.0'\] must hold indices in \[0, 7\]"):
        slim_mlp_refit(model, {"layers.0": [9]}, x)
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0, got -1"):
        slim_mlp_refit(model, keep, x, ridge=-1)
