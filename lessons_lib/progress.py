"""Progress bars for the training loops, readable in a saved notebook too.

In a notebook, :func:`progress_bar` draws tqdm's widget bar and leaves it, finished, in the
output, so a saved lesson opened later shows full bars rather than bars stuck at 0%. Viewers
that draw no widgets (GitHub, an untrusted notebook) show the output's plain text instead, which
says what ran ("fine-tuning: 30 epochs") rather than tqdm's first frame ("0%| | 0/30"). The text
is fixed when the bar is displayed, so it is the same on every run (nbval compares it).
Outside a notebook (tests, scripts) the bar is tqdm's text bar on stderr, erased when done.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable

from tqdm import tqdm

from .validate import require_bool, require_int


def _in_notebook() -> bool:
    """True in a Jupyter kernel (where widgets can be displayed), False in a terminal or a script."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def _have_widgets() -> bool:
    """tqdm's widget bar needs ipywidgets; without it a kernel gets the text bar."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


_PLURALS = {"batch": "batches", "pass": "passes"}          # the units a loop may count; else add "s"


def _plural(unit: str, n: int) -> str:
    """``unit`` counted ``n`` times: 1 step, 2 steps, 30 epochs, 3 batches."""
    return unit if n == 1 else _PLURALS.get(unit, unit + "s")


def progress_bar(total: int, desc: str | None, unit: str = "step", enabled: bool = True) -> Iterable[int]:
    """``range(total)``, with a progress bar labelled ``desc`` counting ``unit``s when ``enabled``.

    In a kernel without ipywidgets (tqdm's widget bar needs it) the bar is tqdm's text bar."""
    total = require_int(total, "total", 0)
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a str or None, got {type(desc).__name__} {desc!r}")
    if not isinstance(unit, str) or not unit.strip():
        raise ValueError(f"unit must be a non-empty str such as 'step' or 'epoch', got {unit!r}")
    require_bool(enabled, "enabled")
    if not enabled:
        return range(total)
    if not (_in_notebook() and _have_widgets()):
        return tqdm(range(total), desc=desc, unit=unit, leave=False)
    from IPython.display import display
    from tqdm.notebook import tqdm as notebook_tqdm

    bar = notebook_tqdm(range(total), desc=desc, unit=unit, display=False)   # leave=True: it stays
    bundle = bar.container._repr_mimebundle_()
    bundle["text/plain"] = f"{desc or 'progress'}: {total} {_plural(unit, total)}"
    display(bundle, raw=True)
    return bar
