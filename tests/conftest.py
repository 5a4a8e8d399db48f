"""Shared fixtures. Unit tests run on one thread with fixed seeds, like the lessons."""

import matplotlib
import pytest
import torch

matplotlib.use("Agg")  # no display needed; must happen before pyplot is imported anywhere


@pytest.fixture(autouse=True)
def _seeded() -> None:
    from lessons_lib.repro import seed_everything

    seed_everything(0, threads=1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture
def layer() -> torch.nn.Linear:
    return torch.nn.Linear(100, 50)


@pytest.fixture
def checkpoint_script():
    """``checkpoint_script(name)``: the ``main`` of ``scripts/<name>.py``, loaded as a module (the
    scripts are not a package), for the tests that re-train a shipped checkpoint."""
    import importlib.util
    from pathlib import Path

    def load(name: str):
        path = Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main
    return load


def pytest_collection_modifyitems(items) -> None:
    """nbval's notebook cells are integration tests: mark them slow, like the browser test and the
    builds that run notebooks, so that `make test-fast` (-m "not slow") leaves them out."""
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
