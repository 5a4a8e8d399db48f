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
