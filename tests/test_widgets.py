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
    slider, readout, image = sparsity_explorer(layer, x, amount=0.5).children
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
    slider, readout, _ = sparsity_explorer(layer, x, amount=0.2).children
    first = readout.value
    for value in [0.5, 0.8, 0.2]:
        slider.value = value
    assert readout.value == first                    # back at 20%: same as the first time
    assert torch.equal(layer.weight, before)
    assert not hasattr(layer, "weight_mask") and not layer._forward_pre_hooks


def test_explorer_on_a_pruned_layer_starts_from_weight_orig(layer):
    x = torch.randn(64, 100)
    plain = sparsity_explorer(layer, x, amount=0.3).children[1].value
    prune.l1_unstructured(layer, "weight", amount=0.9)
    pruned = sparsity_explorer(layer, x, amount=0.3).children[1].value
    assert pruned == plain


def test_explorer_bad_inputs(layer):
    with pytest.raises(TypeError, match="layer must be a torch.nn.Linear, got Sequential"):
        sparsity_explorer(nn.Sequential(layer), torch.randn(4, 100))
    with pytest.raises(ValueError, match=r"x must have 100 features"):
        sparsity_explorer(layer, torch.randn(4, 10))
    with pytest.raises(ValueError, match=r"amount must be a fraction in \[0, 1\], got 1.5"):
        sparsity_explorer(layer, torch.randn(4, 100), amount=1.5)


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
    with pytest.raises(ValueError, match="amounts has a key 'fc'"):
        layer_sparsity_explorer(model, x, y, amounts={"fc": 0.5})
    with pytest.raises(ValueError, match=r"amounts\['layers.0'\] must be a fraction"):
        layer_sparsity_explorer(model, x, y, amounts={"layers.0": 2})
    prune.l1_unstructured(model.layers[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match="model must not carry pruning masks"):
        layer_sparsity_explorer(model, x, y)


def test_schedule_explorer_draws_plans():
    from lessons_lib.schedules import cubic_plan
    from lessons_lib.widgets import schedule_explorer

    final, steps, end, readout, image = schedule_explorer(epochs=30, final=0.9, steps=5).children
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
