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
