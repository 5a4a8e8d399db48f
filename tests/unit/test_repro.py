"""seed_everything: same seed, same numbers; threads set; bad input named."""

import random

import numpy as np
import pytest
import torch

from lessons_lib.repro import seed_everything


def test_same_seed_same_numbers():
    seed_everything(7, threads=1)
    first = (random.random(), np.random.rand(), torch.randn(3))
    seed_everything(7, threads=1)
    second = (random.random(), np.random.rand(), torch.randn(3))
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    seed_everything(8, threads=1)
    assert not torch.equal(torch.randn(3), first[2])


def test_threads_are_set():
    seed_everything(0, threads=2)
    assert torch.get_num_threads() == 2
    seed_everything(0, threads=1)
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"seed": -1}, "seed must be an int in [0, 2**32) (numpy's limit), got -1"),
    ({"seed": 1.5}, "seed must be an int in [0, 2**32) (numpy's limit), got 1.5"),
    ({"seed": 2**32}, "seed must be an int in [0, 2**32) (numpy's limit), got 4294967296"),
    ({"threads": 0}, "threads must be a positive int, got 0"),
    ({"threads": "2"}, "threads must be a positive int, got '2'"),
])
def test_bad_arguments(kwargs, message):
    threads = torch.get_num_threads()
    with pytest.raises(ValueError) as info:
        seed_everything(**kwargs)
    assert str(info.value) == message
    assert torch.get_num_threads() == threads
