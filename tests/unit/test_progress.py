"""Progress bars: a finished widget bar stays in a saved notebook, with plain text that says what ran."""

from __future__ import annotations

import pytest

from lessons_lib import progress


def test_outside_a_notebook_it_counts_like_range():
    assert list(progress.progress_bar(4, "x", enabled=False)) == [0, 1, 2, 3]
    assert list(progress.progress_bar(3, "x")) == [0, 1, 2]          # tqdm's text bar, on stderr
    assert list(progress.progress_bar(0, None)) == []
    assert not progress._in_notebook()


@pytest.mark.parametrize("total", [-1, 2.5, True, "3"])
def test_total_is_checked(total):
    with pytest.raises((TypeError, ValueError), match="total must be an int"):
        progress.progress_bar(total, "x")


def test_in_a_notebook_the_finished_bar_stays_with_fixed_plain_text(monkeypatch):
    shown = []
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda bundle, raw: shown.append((bundle, raw)))
    bar = progress.progress_bar(30, "fine-tuning", "epoch")
    assert [bundle["text/plain"] for bundle, _ in shown] == ["fine-tuning: 30 epochs"]
    assert shown[0][1] is True and "application/vnd.jupyter.widget-view+json" in shown[0][0]
    assert list(bar) == list(range(30))
    meter = bar.container.children[1]                                  # tqdm's FloatProgress
    assert meter.value == meter.max == 30 and meter.bar_style == "success"     # kept, finished (leave=True)
    progress.progress_bar(1, None, "step")
    assert shown[1][0]["text/plain"] == "progress: 1 step"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"desc": 3}, "desc must be a str or None, got int 3"),
    ({"desc": ["training"]}, "desc must be a str or None, got list"),
    ({"unit": ""}, "unit must be a non-empty str such as 'step' or 'epoch', got ''"),
    ({"unit": None}, "unit must be a non-empty str"),
    ({"enabled": "no"}, "enabled must be True or False, got str 'no'"),
    ({"enabled": None}, "enabled must be True or False, got NoneType None"),
])
def test_label_and_switch_are_checked(kwargs, message):
    args = {"total": 3, "desc": "x", **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        progress.progress_bar(**args)


def test_numpy_total_counts_like_range():
    np = pytest.importorskip("numpy")
    assert list(progress.progress_bar(np.int64(3), "x", enabled=False)) == [0, 1, 2]


def _fake_kernel(monkeypatch, config):
    """An IPython whose shell has ``config``: a kernel has IPKernelApp in it, a terminal IPython not."""
    import sys
    import types

    shell = types.SimpleNamespace(config=config)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))


def test_ipython_in_a_terminal_is_not_a_notebook(monkeypatch):
    _fake_kernel(monkeypatch, {"TerminalInteractiveShell": {}})
    assert not progress._in_notebook()
    _fake_kernel(monkeypatch, {"IPKernelApp": {}})
    assert progress._in_notebook()


def test_a_kernel_without_ipywidgets_gets_the_text_bar(monkeypatch):
    """tqdm's widget bar raises ImportError without ipywidgets; training must not fail on that."""
    import sys

    import tqdm.notebook

    shown = []
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)                 # import ipywidgets fails
    bar = progress.progress_bar(5, "fine-tuning", "epoch")
    assert list(bar) == [0, 1, 2, 3, 4] and not shown
    assert not isinstance(bar, tqdm.notebook.tqdm_notebook)


def test_nested_bars_and_an_error_in_the_loop(monkeypatch):
    shown = []
    monkeypatch.setattr(progress, "_in_notebook", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda bundle, raw: shown.append(bundle["text/plain"]))
    seen = [(i, j) for i in progress.progress_bar(2, "outer") for j in progress.progress_bar(3, "inner", "batch")]
    assert seen == [(i, j) for i in range(2) for j in range(3)]
    assert shown == ["outer: 2 steps", "inner: 3 batches", "inner: 3 batches"]
    bar = progress.progress_bar(4, "failing")
    with pytest.raises(ZeroDivisionError):
        for i in bar:
            1 / (i - 2)
    assert bar.container.children[1].bar_style == "danger" and bar.n == 2     # shows where it stopped


def test_the_training_loops_check_progress_before_they_start():
    """progress="no" must be refused by name, before the model is touched."""
    import torch

    from lessons_lib.data import digits_split
    from lessons_lib.gpt import GPT, GPTConfig
    from lessons_lib.models import MLP
    from lessons_lib.tasks import addition_task, train_on_task
    from lessons_lib.training import train, train_together

    mlp, data = MLP((64, 8, 10)), digits_split(seed=0)
    gpt, task = GPT(GPTConfig()), addition_task(n_digits=3, seed=0)
    for call, model in [(lambda: train(mlp, data, 1, progress="no"), mlp),
                        (lambda: train_together([mlp], data, 1, [0], progress=1), mlp),
                        (lambda: train_on_task(gpt.eval(), task, 1, progress=None), gpt)]:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(TypeError, match="progress must be True or False"):
            call()
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not gpt.training, "train_on_task switched the model to training mode before refusing"
