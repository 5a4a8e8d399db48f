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
