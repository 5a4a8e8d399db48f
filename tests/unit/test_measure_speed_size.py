"""Counting, storage, latency helpers; N:M masks; the latency explorer."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import lessons_lib.sparsity as sp
from lessons_lib.measure import (
    count_nonzero,
    count_parameters,
    csr_bytes,
    interleaved_latency_ms,
    latency_ms,
    state_dict_bytes,
)


def test_counts_with_and_without_masks():
    layer = nn.Linear(10, 4)
    assert count_parameters(layer) == count_nonzero(layer) == 44
    prune.l1_unstructured(layer, "weight", amount=0.5)
    assert count_parameters(layer) == 44 and count_nonzero(layer) == 24
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got int"):
        count_parameters(3)


def test_csr_bytes_formula_matches_torch():
    weight = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 3.0]])
    csr = weight.to_sparse_csr()
    real = sum(t.numel() * t.element_size() for t in (csr.values(), csr.col_indices(), csr.crow_indices()))
    assert csr_bytes(weight) == real == 3 * 4 + 3 * 8 + 3 * 8
    assert csr_bytes(weight, torch.int32) == 3 * 4 + 3 * 4 + 3 * 4
    with pytest.raises(ValueError, match=r"weight must be 2-D, got shape \(3,\)"):
        csr_bytes(torch.ones(3))


def test_state_dict_bytes_masked_doubles_and_zeros_compress():
    torch.manual_seed(0)
    dense = nn.Linear(200, 100)
    masked = nn.Linear(200, 100)
    masked.load_state_dict(dense.state_dict())
    prune.l1_unstructured(masked, "weight", amount=0.9)
    assert state_dict_bytes(masked) > 1.8 * state_dict_bytes(dense)
    prune.remove(masked, "weight")
    assert state_dict_bytes(masked, compress=True) < state_dict_bytes(dense, compress=True) / 2


def test_latency_ms_is_positive_and_checks_input():
    assert latency_ms(lambda: torch.ones(10).sum(), min_run_time=0.01) > 0
    with pytest.raises(TypeError, match="fn must be callable, got int"):
        latency_ms(3)
    with pytest.raises(ValueError, match="min_run_time must be a finite number of seconds > 0, got 0"):
        latency_ms(lambda: None, min_run_time=0)


def test_n_m_mask_pattern():
    weight = torch.tensor([[0.1, -0.9, 0.5, 0.2, 3.0, 1.0, -2.0, 0.0]])
    mask = sp.n_m_mask(weight, 2, 4)
    assert mask.tolist() == [[False, True, True, False, True, False, True, False]]
    big = sp.n_m_mask(torch.randn(16, 32), 2, 4)
    assert (big.reshape(16, 8, 4).sum(-1) == 2).all() and sp.tensor_sparsity(big.float()) == 0.5


@pytest.mark.parametrize(("shape", "n", "m", "message"), [
    ((4, 6), 2, 4, "weight.shape\\[1\\] must be divisible by m=4, got 6"),
    ((8,), 2, 4, "weight must be 2-D"),
    ((4, 8), 4, 4, "n and m must be ints with 0 < n < m, got n=4, m=4"),
])
def test_n_m_mask_errors(shape, n, m, message):
    with pytest.raises(ValueError, match=message):
        sp.n_m_mask(torch.randn(shape), n, m)


def test_interleaved_latency_takes_turns_and_the_median(monkeypatch):
    import lessons_lib.measure as measure

    # a warm-up round (thrown away), then A B, A B, A B with one slow burst for A
    calls, fake = [], iter([50.0, 9.0, 5.0, 1.0, 100.0, 1.0, 6.0, 1.0])
    monkeypatch.setattr(measure, "latency_ms", lambda fn, min_run_time: calls.append(fn()) or next(fake))
    result = measure.interleaved_latency_ms({"A": lambda: "A", "B": lambda: "B"}, rounds=3)
    assert calls == ["A", "B"] * 4
    assert result == {"A": 6.0, "B": 1.0}                            # the burst does not move the median


def test_interleaved_latency_really_times_and_checks_input():
    times = interleaved_latency_ms({"small": lambda: torch.ones(10).sum()}, rounds=2, min_run_time=0.01)
    assert set(times) == {"small"} and times["small"] > 0
    with pytest.raises(TypeError, match="fns must map names to callables"):
        interleaved_latency_ms({"x": 3})
    with pytest.raises(TypeError, match="fns must map names to callables"):
        interleaved_latency_ms({})
    with pytest.raises(TypeError, match="fns must map names to callables, got \\[<function"):
        interleaved_latency_ms([lambda: None])
    with pytest.raises(ValueError, match="rounds must be a positive int, got 0"):
        interleaved_latency_ms({"x": lambda: None}, rounds=0)
    with pytest.raises(ValueError, match="min_run_time must be a finite number of seconds > 0, got inf"):
        interleaved_latency_ms({"x": lambda: None}, min_run_time=float("inf"))


def test_latency_explorer_reads_measured_curves():
    from lessons_lib.widgets import latency_explorer

    slider, readout, image = latency_explorer([0.5, 0.9], {"CSR": [2.0, 0.5], "slim": [0.5, 0.1]}, 1.0).children
    assert readout.value == "at 50%: CSR 2.000 ms (0.5x) · slim 0.500 ms (2.0x)"
    slider.value = 1
    assert readout.value == "at 90%: CSR 0.500 ms (2.0x) · slim 0.100 ms (10.0x)"
    with pytest.raises(ValueError, match="curves must give one time per entry of sparsities"):
        latency_explorer([0.5], {"CSR": [1.0, 2.0]}, 1.0)


def test_neuron_explorer_readout_and_untouched_model():
    from lessons_lib.models import MLP
    from lessons_lib.widgets import neuron_explorer

    torch.manual_seed(0)
    model = MLP((8, 6, 4, 3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(20, 8), torch.randint(0, 3, (20,))
    *sliders, readout = neuron_explorer(model, x, y, batch=32).children
    assert " · 97 parameters (100% of dense) · " in readout.value          # 8*6+6 + 6*4+4 + 4*3+3
    sliders[0].value = 3
    assert " · 58 parameters (60% of dense) · " in readout.value           # 8*3+3 + 3*4+4 + 4*3+3
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_benchmark_import_drops_only_the_no_cuda_message(monkeypatch, capsys):
    """A CUDA build without a GPU prints 'No CUDA runtime is found' when torch.utils.benchmark is
    imported (older releases print it, newer ones log it): only that message is dropped."""
    import importlib.abc
    import importlib.util
    import logging
    import sys
    import types

    import lessons_lib.measure as measure

    class NoisyBenchmark(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            return importlib.util.spec_from_loader(name, self) if name == "torch.utils.benchmark" else None

        def create_module(self, spec):
            return types.ModuleType(spec.name)

        def exec_module(self, module):
            print("No CUDA runtime is found, using CUDA_HOME='/usr/local'", file=sys.stderr)
            logging.getLogger("torch.utils.cpp_extension").warning("No CUDA runtime is found (logged)")
            print("a real warning", file=sys.stderr)
            module.Timer = "fake"

    real = measure.benchmark_module()            # imported for real first, so both are restored after
    monkeypatch.delitem(sys.modules, "torch.utils.benchmark")
    monkeypatch.setattr(torch.utils, "benchmark", real)
    monkeypatch.setattr(sys, "meta_path", [NoisyBenchmark(), *sys.meta_path])
    assert measure.benchmark_module().Timer == "fake"
    err = capsys.readouterr().err
    assert "a real warning" in err and "No CUDA runtime" not in err
    assert logging.getLogger("torch.utils.cpp_extension").level == logging.NOTSET   # restored


def test_latency_still_times_after_the_fake_import():
    assert latency_ms(lambda: torch.ones(10).sum(), min_run_time=0.01) > 0


def test_csr_bytes_only_for_integer_indices_and_empty_weights():
    for dtype in (torch.float32, torch.int8, torch.bool, "int64"):
        with pytest.raises(ValueError, match="index_dtype must be torch.int32 or torch.int64"):
            csr_bytes(torch.ones(2, 2), dtype)
    assert csr_bytes(torch.zeros(0, 5)) == 8                           # a layer with no rows: one row pointer
    with pytest.raises(TypeError, match="weight must be a torch.Tensor, got list"):
        csr_bytes([[1.0]])


@pytest.mark.parametrize(("args", "error", "message"), [
    (([0.5, 0.9], {"CSR": [1.0]}, 1.0), ValueError, r"one time per entry of sparsities \(2\): curves\['CSR'\]"),
    (([0.5], [[1.0]], 1.0), TypeError, "curves must be a dict mapping"),
    (([0.5], {}, 1.0), ValueError, "curves must hold at least one"),
    (([0.5], {"CSR": [0.0]}, 1.0), ValueError, r"curves\['CSR'\]\[0\] must be > 0"),
    (([0.5], {"CSR": [math.nan]}, 1.0), ValueError, r"curves\['CSR'\]\[0\] must be a finite number"),
    (([0.5], {"CSR": [1.0]}, 0), ValueError, "dense_ms must be > 0"),
    (("0.5", {"CSR": [1.0]}, 1.0), ValueError, "sparsities must be a non-empty list of fractions"),
    (([1.5], {"CSR": [1.0]}, 1.0), ValueError, r"sparsities\[0\] must be a fraction"),
])
def test_latency_explorer_refuses_curves_it_cannot_show(args, error, message):
    from lessons_lib.widgets import latency_explorer

    with pytest.raises(error, match=message):
        latency_explorer(*args)
