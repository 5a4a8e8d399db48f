"""The sparsity explorer: it reacts, recomputes from the unpruned weights, changes nothing."""

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import lessons_lib.sparsity as sp
from lessons_lib.measure import output_error
from lessons_lib.widgets import layer_readout, sparsity_explorer


def test_slider_changes_readout_and_picture(layer):
    x = torch.randn(64, 100)
    slider, readout, image = sparsity_explorer(layer, x, sparsity=0.5).children
    first_text, first_png = readout.value, bytes(image.value)
    assert first_text.startswith("sparsity 50% · kept 2,500 of 5,000 weights")
    assert first_png.startswith(b"\x89PNG")
    slider.value = 0.9
    expected = layer_readout(layer.weight, sp.magnitude_mask(layer.weight, 0.9),
                             output_error(layer, x, sp.magnitude_mask(layer.weight, 0.9)))
    assert readout.value == expected and readout.value != first_text
    assert bytes(image.value) != first_png


def test_no_compounding_and_layer_untouched(layer):
    x = torch.randn(64, 100)
    before = layer.weight.detach().clone()
    slider, readout, _ = sparsity_explorer(layer, x, sparsity=0.2).children
    first = readout.value
    for value in [0.5, 0.8, 0.2]:
        slider.value = value
    assert readout.value == first                    # back at 20%: same as the first time
    assert torch.equal(layer.weight, before)
    assert not hasattr(layer, "weight_mask") and not layer._forward_pre_hooks


def test_explorer_on_a_pruned_layer_starts_from_weight_orig(layer):
    x = torch.randn(64, 100)
    plain = sparsity_explorer(layer, x, sparsity=0.3).children[1].value
    prune.l1_unstructured(layer, "weight", amount=0.9)
    pruned = sparsity_explorer(layer, x, sparsity=0.3).children[1].value
    assert pruned == plain


def test_explorer_bad_inputs(layer):
    with pytest.raises(TypeError, match="layer must be a torch.nn.Linear, got Sequential"):
        sparsity_explorer(nn.Sequential(layer), torch.randn(4, 100))
    with pytest.raises(ValueError, match=r"x must have 100 features"):
        sparsity_explorer(layer, torch.randn(4, 10))
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\], got 1.5"):
        sparsity_explorer(layer, torch.randn(4, 100), sparsity=1.5)


def test_layer_readout_text_and_errors():
    weight = torch.randn(4, 5)
    mask = sp.magnitude_mask(weight, 0.4)
    assert layer_readout(weight, mask, 0.25) == "sparsity 40% · kept 12 of 20 weights · relative output error 0.250"
    with pytest.raises(ValueError, match=r"mask must have the weight's shape \(4, 5\), got \(5, 4\)"):
        layer_readout(weight, mask.T, 0.25)
    with pytest.raises(ValueError, match="error must be a number >= 0, got -1"):
        layer_readout(weight, mask, -1)


def test_figure_png():
    import matplotlib.pyplot as plt

    from lessons_lib.widgets import figure_png

    fig, ax = plt.subplots(figsize=(2, 1))
    png = figure_png(fig, dpi=50)
    assert png.startswith(b"\x89PNG") and int.from_bytes(png[16:20], "big") == 100   # width in pixels
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure, got Axes"):
        figure_png(ax)
    with pytest.raises(ValueError, match="dpi must be a positive int, got 0"):
        figure_png(fig, dpi=0)


def test_layer_sparsity_explorer_reacts_and_leaves_model_alone():
    from lessons_lib.models import MLP
    from lessons_lib.pruning import prune_layerwise
    from lessons_lib.training import accuracy
    from lessons_lib.widgets import layer_sparsity_explorer

    model = MLP((8, 16, 12, 4))
    x, y = torch.randn(50, 8), torch.randint(0, 4, (50,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    *sliders, readout, image = layer_sparsity_explorer(model, x, y).children
    assert [s.description for s in sliders] == ["layers.0", "layers.1", "layers.2"]
    assert "overall sparsity 0.0%" in readout.value and "368 of 368 weights left" in readout.value
    first_png = bytes(image.value)
    for slider in sliders:
        slider.value = 0.5
    pruned = MLP((8, 16, 12, 4))
    pruned.load_state_dict(before)
    prune_layerwise(pruned, 0.5)
    assert readout.value == (f"accuracy {accuracy(pruned, x, y):.1%} · overall sparsity 50.0% · "
                             "184 of 368 weights left")
    assert bytes(image.value) != first_png
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_layer_sparsity_explorer_errors():
    from lessons_lib.models import MLP
    from lessons_lib.widgets import layer_sparsity_explorer

    model = MLP((8, 4, 2))
    x, y = torch.randn(5, 8), torch.randint(0, 2, (5,))
    with pytest.raises(ValueError, match="sparsities has a key 'fc'"):
        layer_sparsity_explorer(model, x, y, sparsities={"fc": 0.5})
    with pytest.raises(ValueError, match=r"sparsities\['layers.0'\] must be a fraction"):
        layer_sparsity_explorer(model, x, y, sparsities={"layers.0": 2})
    prune.l1_unstructured(model.layers[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match="model must not carry pruning masks"):
        layer_sparsity_explorer(model, x, y)


def test_schedule_explorer_draws_plans():
    from lessons_lib.schedules import cubic_plan
    from lessons_lib.widgets import schedule_explorer

    final, steps, end, readout, image = schedule_explorer(epochs=30, final_sparsity=0.9, steps=5).children
    first = readout.value
    final.value = 0.98
    last_epoch, last_target = cubic_plan(0.98, 30, 5, end.value)[-1]
    assert readout.value != first and f"{last_target:.1%} at epoch {last_epoch}" in readout.value
    steps.value = 25                                  # end follows so that a plan is possible
    assert end.value == 25
    with pytest.raises(ValueError, match="need epochs >= 2 and steps <= epochs"):
        schedule_explorer(epochs=3, steps=4)


def test_partial_redraw_draws_only_what_changes():
    import io

    import matplotlib.pyplot as plt

    from lessons_lib.widgets import PartialRedraw

    fig, ax = plt.subplots(figsize=(4, 2))
    plt.close(fig)
    ax.set_title("static title")
    (line,) = ax.plot([0, 1], [0, 0])
    ax.set_ylim(-1, 1)
    frames = PartialRedraw(fig, [line], dpi=50)
    flat = frames.png()
    line.set_ydata([0.5, 0.5])
    moved = frames.png()
    assert moved != flat and frames.png() == moved                  # the line moved; same state, same bytes
    line.set_ydata([0, 0])
    assert frames.png() == flat                                     # and back: no trail of the old line
    assert plt.imread(io.BytesIO(flat)).shape[:2] == (100, 200)     # 4 x 2 inches at 50 dpi
    with pytest.raises(TypeError, match="fig must be a matplotlib Figure, got Axes"):
        PartialRedraw(ax, [line])


# --- every explorer returns exactly to its start and never touches the model ---------------------

def _widget_state(box, strip_timings=False):
    """Every control's value, every readout's text and every image's bytes, depth first."""
    import re

    import ipywidgets

    state = []
    for child in box.children:
        if isinstance(child, ipywidgets.Box):
            state += _widget_state(child, strip_timings)
        elif isinstance(child, ipywidgets.Image):
            state.append(("image", bytes(child.value)))
        else:
            value = child.value
            if strip_timings and isinstance(value, str):
                value = re.sub(r"[\d.]+ ms", "? ms", value)         # measured live: not repeatable
            state.append((type(child).__name__, child.description, value))
    return state


def _model_state(model):
    return ([(k, v.clone()) for k, v in model.state_dict().items()], [id(p) for p in model.parameters()],
            [(sorted(m._forward_pre_hooks), sorted(m._forward_hooks), m.training) for m in model.modules()])


def _same_model(a, b):
    return (all(k == j and torch.equal(v, w) for (k, v), (j, w) in zip(a[0], b[0], strict=True))
            and len(a[0]) == len(b[0]) and a[1:] == b[1:])


def _drive(controls_and_values, box, strip_timings=False):
    """Set each control to each of its values in turn, then back to where it was; the explorer's
    state must be the start's again."""
    start = _widget_state(box, strip_timings)
    for control, values in controls_and_values:
        first = control.value
        for value in values:
            control.value = value
        control.value = first
    assert _widget_state(box, strip_timings) == start


def test_schedule_explorer_returns_to_its_start():
    from lessons_lib.widgets import schedule_explorer

    box = schedule_explorer(epochs=30, final_sparsity=0.9, steps=5)
    final, steps, end, readout, image = box.children
    start = _widget_state(box)
    steps.value = 25
    assert end.value == 25                                    # raised: a plan needs end >= steps
    steps.value = 5
    assert end.value == 20 and _widget_state(box) == start    # and back (it used to stay at 25)
    end.value = 3                                             # below steps: shown at steps
    assert end.value == 5
    end.value = 20
    assert _widget_state(box) == start
    _drive([(final, [0.0, 0.99, 0.5]), (steps, [1, 30, 12]), (end, [30, 1, 7])], box)
    steps.value, end.value = 12, 12
    steps.value = 5
    assert end.value == 12                                    # the end chosen last is kept
    with pytest.raises(ValueError, match=r"final_sparsity must be in \[0, 0.99\] \(the slider's range\), got 1.0"):
        schedule_explorer(final_sparsity=1.0)


def test_mlp_explorers_return_to_their_start_and_leave_the_model_alone(layer):
    from lessons_lib.models import MLP
    from lessons_lib.widgets import latency_explorer, layer_sparsity_explorer, neuron_explorer

    box = sparsity_explorer(layer, torch.randn(16, 100), sparsity=0.3)
    before = _model_state(layer)
    _drive([(box.children[0], [0.0, 1.0, 0.77])], box)
    assert _same_model(_model_state(layer), before)

    torch.manual_seed(0)
    model = MLP((8, 16, 12, 4))
    x, y = torch.randn(40, 8), torch.randint(0, 4, (40,))
    before = _model_state(model)
    box = layer_sparsity_explorer(model, x, y, sparsities={"layers.1": 0.4})
    _drive([(s, [1.0, 0.0, 0.55]) for s in box.children[:3]], box)
    box = neuron_explorer(model, x, y, batch=16)
    _drive([(s, [1, s.max, 3]) for s in box.children[:2]], box, strip_timings=True)
    assert _same_model(_model_state(model), before)

    box = latency_explorer([0.5, 0.8, 0.9], {"CSR": [3.0, 2.0, 1.0]}, 2.0)
    _drive([(box.children[0], [2, 0, 1])], box)


def test_gpt_explorers_return_to_their_start_and_leave_the_model_alone():
    from lessons_lib.gpt import GPT, GPTConfig
    from lessons_lib.pruning import input_norms, prunable_layers
    from lessons_lib.tasks import addition_task
    from lessons_lib.widgets import head_explorer, transformer_sparsity_explorer

    torch.manual_seed(0)
    model = GPT(GPTConfig(d_model=16, head_dim=4, heads=[2, 3], ffn=[8, 6], block_size=11)).eval()
    task = addition_task(3, n_train=20, n_val=10, n_test=30)
    layers = prunable_layers(model)
    before = _model_state(model)
    norms = input_norms(model, task.x_train, layers)
    box = transformer_sparsity_explorer(model, layers, task.x_test, task.y_test, norms)
    method, slider = box.children[:2]
    _drive([(slider, [0.0, 0.95, 0.3]), (method, list(method.options)[::-1]), (slider, [0.1])], box)
    scores = {"blocks.0.fc1": torch.rand(8), "blocks.1.fc1": torch.rand(6)}
    box = head_explorer(model, task.x_test, task.y_test, scores, batch=8)
    grid, ffn = box.children[:2]
    boxes = [b for row in grid.children for b in row.children]
    _drive([*((b, [False]) for b in boxes), (ffn, [0.05, 0.5])], box, strip_timings=True)
    assert _same_model(_model_state(model), before)
    for bad, message in [({"blocks.0.fc1": torch.rand(8)}, r"ffn_scores must be a dict with one score tensor"),
                         ({**scores, "blocks.1.fc1": torch.rand(7)},
                          r"ffn_scores\['blocks.1.fc1'\] must be a float tensor of shape \(6,\)"),
                         ([torch.rand(8), torch.rand(6)], "ffn_scores must be a dict"),
                         ({0: torch.rand(8), 1: torch.rand(6)}, r"keys \['blocks.0.fc1', 'blocks.1.fc1'\]"),
                         ({**scores, "blocks.1.fc1": torch.arange(6)}, r"ffn_scores\['blocks.1.fc1'\] must be a float"),
                         ({**scores, "blocks.1.fc1": torch.full((6,), float("nan"))}, "must be finite")]:
        with pytest.raises(ValueError, match=message):
            head_explorer(model, task.x_test, task.y_test, bad)
    assert _same_model(_model_state(model), before)


def test_cnn_explorer_returns_to_its_start_leaves_the_model_alone_and_checks_its_input():
    from lessons_lib.cnn import CNNConfig, DigitsCNN, channel_scores, drop_blocks, slim_cnn
    from lessons_lib.slimming import keep_top
    from lessons_lib.widgets import cnn_explorer

    torch.manual_seed(0)
    model = DigitsCNN(CNNConfig(width=6, inner=[5, 4, 3]))             # left in train mode on purpose
    x, y = torch.randn(12, 64), torch.randint(0, 10, (12,))
    before = _model_state(model)
    box = cnn_explorer(model, x, y, batch=20)                         # batch larger than x: repeated
    *sliders, blocks, readout = box.children
    assert [s.max for s in sliders] == [6, 5, 4, 3] and len(blocks.children) == 3
    _drive([(sliders[0], [1, 3]), (sliders[2], [1]), *((b, [False]) for b in blocks.children)], box,
           strip_timings=True)
    assert _same_model(_model_state(model), before)
    sliders[0].value, sliders[1].value = 2, 1
    blocks.children[2].value = False
    assert "width 2, inner [1, 4]" in readout.value                   # block 2 dropped, block 0 narrowed
    scores = channel_scores(model, "bn")
    expected = drop_blocks(slim_cnn(model, keep_top(scores["residual"], 2), {"blocks.0.inner": keep_top(
        scores["blocks.0.inner"], 1)}), [0, 1])
    assert f"· {sum(p.numel() for p in expected.parameters()):,} parameters" in readout.value
    for bad_x, bad_y, message in [(torch.randn(12, 63), y, r"x must be float images of shape \(B, 64\)"),
                                  (x.double(), y, "x must have the model's dtype"),
                                  (x, torch.full((12,), 10), r"y must hold class indices in \[0, 10\)"),
                                  (x, y[:5], r"y must be an int64 tensor of shape \(12,\)")]:
        with pytest.raises(ValueError, match=message):
            cnn_explorer(model, bad_x, bad_y)
    with pytest.raises(TypeError, match="model must be a lessons_lib.cnn.DigitsCNN"):
        cnn_explorer(torch.nn.Linear(64, 10), x, y)
    assert _same_model(_model_state(model), before)


def test_explorers_check_their_data_once_up_front():
    from lessons_lib.models import MLP
    from lessons_lib.widgets import layer_sparsity_explorer, neuron_explorer

    model = MLP((8, 6, 4))
    x, y = torch.randn(20, 8), torch.randint(0, 4, (20,))
    for explorer in (layer_sparsity_explorer, neuron_explorer):
        with pytest.raises(ValueError, match=r"y must hold class indices in \[0, 4\)"):
            explorer(model, x, torch.full((20,), 4))
        with pytest.raises(ValueError, match=r"model could not run on x of shape \(20, 5\)"):
            explorer(model, torch.randn(20, 5), y)
        with pytest.raises(ValueError, match="x is torch.float64 on cpu but model's parameters are torch.float32"):
            explorer(model, x.double(), y)
    with pytest.raises(TypeError, match="sparsities must be a dict mapping"):
        layer_sparsity_explorer(model, x, y, sparsities=[0.5])


def test_every_explorer_says_what_it_is_where_widgets_are_not_drawn(layer):
    """GitHub and untrusted notebooks show a widget output's plain text: it must not read like an error."""
    from lessons_lib import widgets as lw

    explorers = [name for name in dir(lw) if name.endswith("_explorer")]
    assert len(explorers) == 8
    for name in explorers:
        assert getattr(lw, name).__annotations__["return"] in ("Explorer", lw.Explorer), name
    explorer = sparsity_explorer(layer, torch.randn(8, layer.in_features))
    bundle = explorer._repr_mimebundle_()
    assert bundle["text/plain"] == "[sparsity explorer: interactive, drawn when the notebook runs]"
    assert "VBox(" not in bundle["text/plain"]
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.model_id
    assert explorer._view_name == "VBoxView"                     # front ends draw it as any VBox


def test_every_explorer_is_an_explorer_whose_plain_text_is_whole(layer):
    """Built for real (not only annotated): an Explorer, its children as given, plain text under ipywidgets' cut."""
    from lessons_lib import widgets as lw
    from lessons_lib.gpt import GPT, GPTConfig
    from lessons_lib.models import MLP
    from lessons_lib.pruning import input_norms, prunable_layers
    from lessons_lib.tasks import addition_task

    torch.manual_seed(0)
    mlp, x, y = MLP((8, 16, 4)), torch.randn(20, 8), torch.randint(0, 4, (20,))
    gpt = GPT(GPTConfig(d_model=16, head_dim=4, heads=[2, 3], ffn=[8, 6], block_size=11)).eval()
    task, layers = addition_task(3, n_train=20, n_val=10, n_test=12), prunable_layers(gpt)
    from lessons_lib.cnn import CNNConfig, DigitsCNN

    cnn = DigitsCNN(CNNConfig(width=4, inner=[3, 2])).eval()
    built = {
        "cnn_explorer": lw.cnn_explorer(cnn, torch.randn(6, 64), torch.randint(0, 10, (6,)), batch=4),
        "sparsity_explorer": lw.sparsity_explorer(layer, torch.randn(8, layer.in_features)),
        "layer_sparsity_explorer": lw.layer_sparsity_explorer(mlp, x, y),
        "schedule_explorer": lw.schedule_explorer(),
        "neuron_explorer": lw.neuron_explorer(mlp, x, y, batch=8),
        "latency_explorer": lw.latency_explorer([0.5, 0.9], {"CSR": [2.0, 1.0]}, 1.5),
        "transformer_sparsity_explorer": lw.transformer_sparsity_explorer(
            gpt, layers, task.x_test, task.y_test, input_norms(gpt, task.x_train, layers)),
        "head_explorer": lw.head_explorer(gpt, task.x_test, task.y_test,
                                          {"blocks.0.fc1": torch.rand(8), "blocks.1.fc1": torch.rand(6)}, batch=8),
    }
    assert sorted(built) == sorted(name for name in dir(lw) if name.endswith("_explorer"))
    for name, explorer in built.items():
        text = explorer._repr_mimebundle_()["text/plain"]
        assert type(explorer) is lw.Explorer and text == repr(explorer), name
        assert len(text) <= 110 and "…" not in text and explorer.name in text, name
        assert explorer.name.replace(" ", "_") == name                   # says which explorer it is
        assert all(isinstance(child, lw.widgets.Widget) for child in explorer.children)


def test_explorer_name_is_checked_and_children_kept():
    from lessons_lib.widgets import Explorer, widgets

    slider, label = widgets.IntSlider(), widgets.HTML()
    box = Explorer([slider, label], "x" * 60)
    assert box.children == (slider, label) and len(box._repr_mimebundle_()["text/plain"]) <= 110
    for bad in ["x" * 61, "", "  ", None, 3]:
        with pytest.raises(ValueError, match="name must be a short str"):
            Explorer([slider], bad)
