"""Every exercise checker against a set of plausible wrong solutions (each must be rejected with a
message naming the mistake) and of right solutions in several styles (each must pass).

The wrong solutions are the mistakes a learner makes: rounding sparsity * n the wrong way, a
threshold that prunes every tied magnitude, counting near-zeros, sharing the original layer's
Parameters, forgetting a bias, and so on. The lessons' own solutions are read from the notebooks.
"""

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from lessons_lib.checks import (
    ExerciseFailure,
    check_count_zeros,
    check_cubic_sparsity,
    check_global_threshold,
    check_magnitude_mask,
    check_remove_heads,
    check_slim_conv_bn,
    check_slim_pair,
)
from lessons_lib.gpt import Attention

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _rejects(checker, fn, fragment: str) -> str:
    with pytest.raises(ExerciseFailure, match=re.escape(fragment)) as info:
        checker(fn)
    return str(info.value)


# ---------------------------------------------------------------- count_zeros (lesson 00)

COUNT_ZEROS_WRONG = {
    "non-zeros": (lambda t: int((t != 0).sum()), "the number of NON-zero entries"),
    "tensor": (lambda t: (t == 0).sum(), "got a tensor of shape ()"),
    "python float": (lambda t: float((t == 0).sum()), "got a Python float 2.0. Return a Python int"),
    "numpy float": (lambda t: np.float64((t == 0).sum()), "got numpy float64 2.0"),
    "0-d numpy array": (lambda t: np.array(int((t == 0).sum())), "got a 0-d numpy array"),
    "bool": (lambda t: bool((t == 0).any()), "got a Python bool True"),
    "fraction": (lambda t: (t == 0).float().mean().item(), "that is the FRACTION of zeros"),
    "abs < 0.1": (lambda t: int((t.abs() < 0.1).sum()), "close to zero but not zero (1e-30, 1e-08, 0.05)"),
    "abs < 0.5": (lambda t: int((t.abs() < 0.5).sum()), "close to zero but not zero"),
    "isclose": (lambda t: int(torch.isclose(t, torch.zeros_like(t)).sum()), "close to zero but not zero"),
    "via float32": (lambda t: int((t.float() == 0).sum()), "no conversion to another dtype"),
    "first row only": (lambda t: int((t.reshape(-1, t.shape[-1])[0] == 0).sum()) if t.numel() else 0,
                       "expected 4 zeros, got 2"),
    "zeroes the tensor": (lambda t: int((t.zero_() == 0).sum()), "changed the tensor it was given"),
    "no return": (lambda t: print(int((t == 0).sum())), "expected the int 2, got None (is a `return` missing?)"),
}

COUNT_ZEROS_RIGHT = {
    "int(sum)": lambda t: int((t == 0).sum()),
    "item": lambda t: (t == 0).sum().item(),
    "numel - count_nonzero": lambda t: t.numel() - int(torch.count_nonzero(t)),
    "numpy int64": lambda t: (t.numpy() == 0).sum(),
    "python loop": lambda t: sum(1 for v in t.flatten().tolist() if v == 0),
    "eq": lambda t: len(t[t.eq(0)]),
}


# ---------------------------------------------------------------- magnitude_mask (lesson 01)

def _prune_k(weight, k):
    """Keep mask pruning the k smallest |w| (topk; any tie-break)."""
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    if k:
        keep[torch.topk(weight.abs().flatten(), k, largest=False).indices] = False
    return keep.view_as(weight)


def _with_count(rule):
    return lambda w, a: _prune_k(w, rule(a * w.numel()))


def _kth_threshold(strict):
    def mask(weight, sparsity):
        k = round(sparsity * weight.numel())
        if k == 0:
            return torch.ones_like(weight, dtype=torch.bool)
        t = weight.abs().flatten().kthvalue(k).values
        return weight.abs() > t if strict else weight.abs() >= t
    return mask


def _per_row(weight, sparsity):
    rows = weight.reshape(weight.shape[0], -1) if weight.dim() > 1 else weight.reshape(1, -1)
    keep = torch.ones_like(rows, dtype=torch.bool)
    k = round(sparsity * rows.shape[1])
    if k:
        keep.scatter_(1, rows.abs().topk(k, dim=1, largest=False).indices, False)
    return keep.view_as(weight)


def _no_guard(weight, sparsity):
    k = round(sparsity * weight.numel())
    return weight.abs() > weight.abs().flatten().kthvalue(k).values


def _random(weight, sparsity):
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    order = torch.randperm(weight.numel(), generator=torch.Generator().manual_seed(0))
    keep[order[:round(sparsity * weight.numel())]] = False
    return keep.view_as(weight)


MASK_WRONG = {
    "floor": (_with_count(math.floor), "rounded it with floor (int(x) or math.floor) to 3"),
    "int()": (_with_count(int), "rounded it with floor"),
    "ceil": (_with_count(math.ceil), "rounded it with ceil (math.ceil) or round-half-up (int(x + 0.5)) to 3"),
    "half-up": (_with_count(lambda x: math.floor(x + 0.5)), "round-half-up (int(x + 0.5))"),
    "kthvalue >=": (_kth_threshold(strict=False), "keep |w| > t (not >=)"),
    "kthvalue > (ties)": (_kth_threshold(strict=True), "so a threshold (|w| > t or |w| >= t) prunes all of them"),
    "no k = 0 guard": (_no_guard, "sparsity=0 prunes nothing: handle k = 0 before calling kthvalue"),
    "float k": (lambda w, a: w.abs() > w.abs().flatten().kthvalue(a * w.numel()).values, "k must be an int"),
    "signed": (lambda w, a: _prune_k(w.clamp(min=0) + 1e-6 * (w > 0), round(a * w.numel())),
               "ranked weights by their signed value"),
    "inverted": (lambda w, a: ~_prune_k(w, round(a * w.numel())), "your mask is exactly inverted"),
    "keeps smallest": (lambda w, a: _prune_k(1 / w.abs(), round(a * w.numel())), "kept the SMALLEST-magnitude"),
    "prunes one at 0": (lambda w, a: _prune_k(w, max(1, round(a * w.numel()))), "sparsity=0 must prune nothing"),
    "per row": (_per_row, "every pruned |w| must be <= every kept |w|"),
    "random": (_random, "the right number of zeros, but your mask prunes weight"),
    "in place": (lambda w, a: _prune_k(w.abs_(), round(a * w.numel())), "changed the weight in place"),
    "pruned weights": (lambda w, a: w * _prune_k(w, round(a * w.numel())), "instead of the mask"),
    "flat": (lambda w, a: _prune_k(w, round(a * w.numel())).flatten(), "a mask must match the weight entry for entry"),
    "numpy": (lambda w, a: _prune_k(w, round(a * w.numel())).numpy(), "expected a torch.Tensor mask, got a 2-d numpy"),
    "one parameter": (lambda w: w != 0, "the check calls magnitude_mask with 2 arguments"),
    "sparsity kept": (lambda w, a: _prune_k(w, w.numel() - round(a * w.numel())),
                      "you pruned 1 - sparsity of the weights"),
}


def _sort_solution(weight, sparsity):
    k = round(sparsity * weight.numel())
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    keep[weight.abs().flatten().argsort()[:k]] = False
    return keep.reshape(weight.shape)


def _kthvalue_with_ties(weight, sparsity):
    """A threshold that handles ties: prune everything below t, then just enough of the entries equal to t."""
    scores, k = weight.abs().flatten(), round(sparsity * weight.numel())
    if k == 0:
        return torch.ones_like(weight, dtype=torch.bool)
    t = scores.kthvalue(k).values
    keep = scores > t
    at_t = (scores == t).nonzero().flatten()
    keep[at_t[k - int((scores < t).sum()):]] = True
    return keep.view_as(weight)


def _numpy_solution(weight, sparsity):
    k = int(np.round(sparsity * weight.numel()))          # numpy rounds halves to even, like round()
    order = np.argsort(np.abs(weight.numpy().ravel()), kind="stable")
    keep = np.ones(weight.numel(), dtype=bool)
    keep[order[:k]] = False
    return torch.from_numpy(keep).reshape(weight.shape)


MASK_RIGHT = {
    "topk": lambda w, a: _prune_k(w, round(a * w.numel())),
    "sort": _sort_solution,
    "kthvalue with ties": _kthvalue_with_ties,
    "numpy": _numpy_solution,
    "torch.round": lambda w, a: _prune_k(w, int(torch.round(torch.tensor(a * w.numel())))),
    "float mask": lambda w, a: _prune_k(w, round(a * w.numel())).float(),
    "int mask": lambda w, a: _prune_k(w, round(a * w.numel())).to(torch.int64),
    "float32 scores": lambda w, a: _prune_k(w.float(), round(a * w.numel())),
    "prune.L1Unstructured": lambda w, a: prune.L1Unstructured(a).compute_mask(w, torch.ones_like(w)),
    "library": lambda w, a: __import__("lessons_lib.sparsity", fromlist=["x"]).magnitude_mask(w, a),
}


def test_magnitude_mask_messages_name_case_and_convention():
    message = _rejects(check_magnitude_mask, MASK_WRONG["ceil"][0],
                       "expected round(0.5 x 5) = 2 zeros, your mask has 3")
    assert "halves to the even neighbour (round(2.5) = 2, round(3.5) = 4)" in message
    assert message.startswith("weight [")                          # the case's values are shown
    message = _rejects(check_magnitude_mask, _no_guard, "magnitude_mask raised RuntimeError for weight [-0.8930149, ")
    assert "0.37555096], sparsity=0.0: kthvalue()" in message        # the case, then torch's error ...
    assert "at line" in message and "of _no_guard: return weight.abs() > " in message   # ... and the learner's line


# ---------------------------------------------------------------- global_threshold (lesson 02)

def _scores(ws):
    return torch.cat([w.abs().flatten() for w in ws])


def _kth(ws, k):
    return _scores(ws).sort().values[k - 1].item() if k > 0 else 0.0


def _global_with(rule):
    return lambda ws, a: _kth(ws, rule(a * _scores(ws).numel()))


def _per_layer_mean(ws, a):
    return sum(w.abs().flatten().kthvalue(max(1, round(a * w.numel()))).values.item() for w in ws) / len(ws)


def _signed(ws, a):
    k = round(a * _scores(ws).numel())
    return torch.cat([w.flatten() for w in ws]).kthvalue(k).values.item() if k else 0.0


def _unique(ws, a):
    k = round(a * _scores(ws).numel())
    return _scores(ws).unique()[k - 1].item() if k else 0.0


THRESHOLD_WRONG = {
    "per-layer mean": (_per_layer_mean, "you averaged one threshold per layer"),
    "first layer only": (lambda ws, a: _kth(ws[:1], round(a * ws[0].numel())), "that is one layer's own threshold"),
    "signed": (_signed, "you ranked signed values"),
    "floor": (_global_with(math.floor), "rounded with floor (int(x) or math.floor)"),
    "ceil": (_global_with(math.ceil), "rounded with ceil (math.ceil)"),
    "half-up": (_global_with(lambda x: math.floor(x + 0.5)),
                "rounded with ceil (math.ceil) or round-half-up (int(x + 0.5))"),
    "(k+1)-th": (lambda ws, a: _kth(ws, round(a * _scores(ws).numel()) + 1) if a else 0.0,
                 "off by one: you returned the (k+1)-th"),
    "(k-1)-th": (lambda ws, a: _kth(ws, round(a * _scores(ws).numel()) - 1) if a else 0.0,
                 "off by one: you returned the (k-1)-th"),
    "quantile": (lambda ws, a: torch.quantile(_scores(ws), a).item(), "torch.quantile interpolates"),
    "quantile, nearest": (lambda ws, a: torch.quantile(_scores(ws), a, interpolation="nearest").item() if a else 0.0,
                          "off by one: you returned the (k+1)-th"),
    "unique": (_unique, "distinct magnitudes"),
    "min at sparsity 0": (lambda ws, a: _kth(ws, max(1, round(a * _scores(ws).numel()))), "sparsity=0 prunes nothing"),
    "no k = 0 guard": (lambda ws, a: _scores(ws).kthvalue(round(a * _scores(ws).numel())).values.item(),
                       "sparsity=0 prunes nothing: handle k = 0 before calling kthvalue"),
    "no flatten": (lambda ws, a: torch.cat([w.abs() for w in ws]).kthvalue(1).values.item(),
                   "flatten each tensor before torch.cat"),
    "returns k": (lambda ws, a: round(a * _scores(ws).numel()), "you returned k = 90"),
    "squared": (lambda ws, a: _kth(ws, round(a * _scores(ws).numel())) ** 2, "squared magnitude"),
    "in place": (lambda ws, a: _kth([w.abs_() for w in ws], round(a * _scores(ws).numel())), "changed the weights"),
    "a list": (lambda ws, a: [_kth(ws, round(a * _scores(ws).numel()))], "should return one number"),
    "the mask": (lambda ws, a: _scores(ws) > _kth(ws, round(a * _scores(ws).numel())), "should return one number"),
    "rounded": (lambda ws, a: round(_kth(ws, round(a * _scores(ws).numel())), 3),
                "expected 0.24762912094593048, got 0.248: you rounded the result to 3 decimals"),
}


def _notebook_style(ws, a):
    scores = torch.cat([w.detach().abs().flatten() for w in ws])
    k = round(a * scores.numel())
    return scores.kthvalue(k).values.item() if k > 0 else 0.0


def _topk_style(ws, a):
    k = round(a * _scores(ws).numel())
    return torch.topk(_scores(ws), k, largest=False).values.max() if k else torch.tensor(0.0)


def _numpy_style(ws, a):
    scores = np.concatenate([w.abs().numpy().ravel() for w in ws])
    k = int(np.round(a * scores.size))
    return np.partition(scores, k - 1)[k - 1] if k else np.float32(0)


THRESHOLD_RIGHT = {
    "notebook (float)": _notebook_style,
    "np.float32": lambda ws, a: np.float32(_notebook_style(ws, a)),
    "np.float64": lambda ws, a: np.float64(_notebook_style(ws, a)),
    "0-d tensor": lambda ws, a: torch.tensor(_notebook_style(ws, a)),
    "1-entry tensor": lambda ws, a: torch.tensor([_notebook_style(ws, a)]),
    "topk 0-d tensor": _topk_style,
    "numpy partition": _numpy_style,
    "float32 of float64 weights": lambda ws, a: _notebook_style([w.float() for w in ws], a),
    "sort": lambda ws, a: _scores(ws).sort().values[round(a * _scores(ws).numel()) - 1].item() if a else 0,
    "library": lambda ws, a: __import__("lessons_lib.pruning", fromlist=["x"]).global_threshold(ws, a),
}


# ---------------------------------------------------------------- cubic_sparsity (lesson 03)

def _progress(t, a, b):
    return min(max((t - a) / (b - a), 0.0), 1.0)


def _cubic(p, f):
    return f * (1 - (1 - p) ** 3)


def _float32_cubic(t, f, a, b):
    t, f, a, b = (torch.tensor(float(v), dtype=torch.float32) for v in (t, f, a, b))
    return f * (1 - (1 - ((t - a) / (b - a)).clamp(0, 1)) ** 3)


def _float16_cubic(t, f, a, b):
    t, f, a, b = (torch.tensor(float(v), dtype=torch.float16) for v in (t, f, a, b))
    return (f * (1 - (1 - ((t - a) / (b - a)).clamp(0, 1)) ** 3)).item()


CUBIC_WRONG = {
    "slow cubic": (lambda t, f, a, b: f * _progress(t, a, b) ** 3, "rises slowly at first"),
    "linear": (lambda t, f, a, b: f * _progress(t, a, b), "straight line"),
    "going down": (lambda t, f, a, b: f * (1 - _progress(t, a, b)) ** 3, "goes DOWN"),
    "square": (lambda t, f, a, b: f * (1 - (1 - _progress(t, a, b)) ** 2), "you used a square"),
    "ignores start": (lambda t, f, a, b: _cubic(min(max(t / b, 0.0), 1.0), f), "you measured progress from step 0"),
    "divides by end": (lambda t, f, a, b: _cubic(min(max((t - a) / b, 0.0), 1.0), f), "you divided by end"),
    "floor division": (lambda t, f, a, b: _cubic(min(max((t - a) // (b - a), 0.0), 1.0), f), "you divided with //"),
    "no clamp": (lambda t, f, a, b: _cubic((t - a) / (b - a), f), "clamp progress to [0, 1]"),
    "clamps only below": (lambda t, f, a, b: _cubic(max((t - a) / (b - a), 0.0), f), "clamp progress to [0, 1]"),
    "clamps only above": (lambda t, f, a, b: _cubic(min((t - a) / (b - a), 1.0), f), "clamp progress to [0, 1]"),
    "percent": (lambda t, f, a, b: 100 * _cubic(_progress(t, a, b), f), "you returned a percentage"),
    "rounded": (lambda t, f, a, b: round(_cubic(_progress(t, a, b), f), 4), "rounded the result to 4 decimals"),
    "float16": (_float16_cubic, "within 1e-6 passes"),
    "torch.clamp of a float": (lambda t, f, a, b: _cubic(torch.clamp((t - a) / (b - a), 0, 1), f),
                               "cubic_sparsity gets Python numbers, not tensors"),
    "a string": (lambda t, f, a, b: f"{_cubic(_progress(t, a, b), f):.3f}", "should return one number"),
    "no return": (lambda t, f, a, b: None, "got None (is a `return` missing?)"),
    "no start": (lambda t, f, b: _cubic(_progress(t, 0, b), f), "the check calls cubic_sparsity with 4 arguments"),
}

CUBIC_RIGHT = {
    "notebook (float)": lambda t, f, a, b: _cubic(_progress(t, a, b), f),
    "float32 tensor": _float32_cubic,
    "float32 item": lambda t, f, a, b: _float32_cubic(t, f, a, b).item(),
    "np.float32": lambda t, f, a, b: np.float32(_cubic(_progress(t, a, b), f)),
    "np.float64": lambda t, f, a, b: np.float64(_cubic(_progress(t, a, b), f)),
    "numpy clip": lambda t, f, a, b: f * (1 - (1 - np.clip((t - a) / (b - a), 0, 1)) ** 3),
    "library": lambda t, f, a, b: __import__("lessons_lib.schedules", fromlist=["x"]).cubic_sparsity(t, f, a, b),
}


def test_cubic_message_shows_every_digit():
    """The old message printed 'expected 0.9000, got 0.9000' for a float32 answer."""
    message = _rejects(check_cubic_sparsity, _float16_cubic,
                       "cubic_sparsity(step=10, final_sparsity=0.9, start=0, end=10)")
    assert "expected 0.9, got 0.89990234375" in message


# ---------------------------------------------------------------- slim_pair (lesson 04)

def _slim(layer, next_layer, keep, rows=None, columns=None):
    """A right slim_pair, with optional different row / column orders to build mistakes from."""
    rows = keep if rows is None else rows
    columns = rows if columns is None else columns
    small, following = nn.Linear(layer.in_features, len(keep)), nn.Linear(len(keep), next_layer.out_features)
    with torch.no_grad():
        small.weight.copy_(layer.weight[rows])
        small.bias.copy_(layer.bias[rows])
        following.weight.copy_(next_layer.weight[:, columns])
        following.bias.copy_(next_layer.bias)
    return small, following


def _then(change):
    def fn(layer, next_layer, keep):
        small, following = _slim(layer, next_layer, keep)
        change(small, following, layer, next_layer, keep)
        return small, following
    return fn


def _keep_all_shortcut(share):
    def fn(layer, next_layer, keep):
        if len(keep) == layer.out_features:
            return share(layer), share(next_layer)
        return _slim(layer, next_layer, keep)
    return fn


def _detached_copy(layer):
    new = nn.Linear(layer.in_features, layer.out_features)
    new.weight, new.bias = nn.Parameter(layer.weight.detach()), nn.Parameter(layer.bias.detach())
    return new


def _columns_copy(layer, next_layer, keep):
    small = nn.Linear(layer.in_features, len(keep))
    with torch.no_grad():
        small.weight.copy_(layer.weight[:, keep])
    return small, nn.Linear(len(keep), next_layer.out_features)


def _next_rows(layer, next_layer, keep):
    small, following = _slim(layer, next_layer, keep)
    with torch.no_grad():
        following.weight.copy_(next_layer.weight[keep])
    return small, following


def _no_no_grad(layer, next_layer, keep):
    small = nn.Linear(layer.in_features, len(keep))
    small.weight.copy_(layer.weight[keep])
    return small, nn.Linear(len(keep), next_layer.out_features)


def _assigns_tensor(layer, next_layer, keep):
    small = nn.Linear(layer.in_features, len(keep))
    small.weight = layer.weight[keep].detach()
    return small, nn.Linear(len(keep), next_layer.out_features)


def _without_bias(first: bool):
    def fn(layer, next_layer, keep):
        small, following = _slim(layer, next_layer, keep)
        new = nn.Linear(small.in_features, small.out_features, bias=False) if first else \
            nn.Linear(following.in_features, following.out_features, bias=False)
        with torch.no_grad():
            new.weight.copy_((small if first else following).weight)
        return (new, following) if first else (small, new)
    return fn


def _stale_sizes(layer, next_layer, keep):
    """A deep copy given new, smaller Parameters, but still saying Linear(in, width)."""
    small, following = copy.deepcopy(layer), copy.deepcopy(next_layer)
    right_small, right_following = _slim(layer, next_layer, keep)
    small.weight, small.bias = right_small.weight, right_small.bias
    following.weight, following.bias = right_following.weight, right_following.bias
    return small, following


def _in_place(layer, next_layer, keep):
    with torch.no_grad():
        layer.weight.mul_(2)
    return _slim(layer, next_layer, keep)


def _zeroed_full_size(layer, next_layer, keep):
    small, following = copy.deepcopy(layer), copy.deepcopy(next_layer)
    drop = [i for i in range(layer.out_features) if i not in keep.tolist()]
    with torch.no_grad():
        small.weight[drop] = 0
        small.bias[drop] = 0
    return small, following


def _frozen(small, following, *_):
    small.weight.requires_grad_(False)


SLIM_WRONG = {
    "columns copied": (_columns_copy, "a neuron of `layer` is a ROW of layer.weight"),
    "built from columns": (lambda a, b, k: (nn.Linear(len(k), a.out_features), nn.Linear(len(k), b.out_features)),
                           "You kept columns; a neuron is a ROW of layer.weight"),
    "next layer's rows": (_next_rows, "a neuron of `layer` is a ROW"),
    "next bias sliced": (_then(lambda s, f, a, b, k: f.bias.data.copy_(b.bias[k])), "next_layer.bias stays whole"),
    "forgets bias": (_then(lambda s, f, a, b, k: s.bias.data.zero_()), "the kept neurons' biases must come along"),
    "no first bias": (_without_bias(first=True), "the kept neurons' biases must come along"),
    "no next bias": (_without_bias(first=False), "the next layer keeps its whole bias"),
    "shares next bias": (_then(lambda s, f, a, b, k: setattr(f, "bias", b.bias)),
                         "following.bias is next_layer.bias itself"),
    "shares first weight (view)": (
        _then(lambda s, f, a, b, k: setattr(s, "weight", nn.Parameter(a.weight.detach()[:len(k)]))),
        "small.weight shares its memory with layer.weight"),
    "keep-all: copy.copy": (_keep_all_shortcut(copy.copy), "small.weight is layer.weight itself"),
    "keep-all: detached Parameters": (_keep_all_shortcut(_detached_copy), "shares its memory with layer.weight"),
    "sorted rows, keep's columns": (lambda a, b, k: _slim(a, b, k, rows=k.sort().values, columns=k),
                                    "not in the same order as the first layer's rows"),
    "frozen": (_then(_frozen), "do not require grad"),
    "no torch.no_grad": (_no_no_grad, "inside `with torch.no_grad():`"),
    "assigns a tensor": (_assigns_tensor, "must be an nn.Parameter"),
    "in place": (_in_place, "changed the layers it was given"),
    "zeroed, full size": (_zeroed_full_size, "the first layer's weight should be (3, 6)"),
    "returns the inputs": (lambda a, b, k: (a, b), "returned the layers it was given"),
    "stale in/out_features": (_stale_sizes, "rather than editing a copy of the old layers"),
    "a list": (lambda a, b, k: list(_slim(a, b, k)), "expected a tuple of two nn.Linear, got a Python list"),
    "float64": (lambda a, b, k: tuple(m.double() for m in _slim(a, b, k)), "small.weight is float64, the original is"),
    "bias.data assigned": (_then(lambda s, f, a, b, k: setattr(f.bias, "data", b.bias.data)),
                           "following.bias shares its memory with next_layer.bias"),
}


def _bool_mask_style(layer, next_layer, keep):
    chosen = torch.zeros(layer.out_features, dtype=torch.bool)
    chosen[keep] = True                                 # sorted order, the same for rows and columns
    small, following = nn.Linear(layer.in_features, len(keep)), nn.Linear(len(keep), next_layer.out_features)
    small.weight = nn.Parameter(layer.weight[chosen].detach().clone())
    small.bias = nn.Parameter(layer.bias[chosen].detach().clone())
    following.weight = nn.Parameter(next_layer.weight[:, chosen].detach().clone())
    following.bias = nn.Parameter(next_layer.bias.detach().clone())
    return small, following


SLIM_RIGHT = {
    "copy_": _slim,
    "bool mask (sorted order)": _bool_mask_style,
    "keep-all deepcopy": _keep_all_shortcut(copy.deepcopy),
    "index_select": lambda a, b, k: _slim(a, b, k.tolist()),
    "library": lambda a, b, k: __import__("lessons_lib.structured", fromlist=["x"]).slim_linear_pair(a, b, k),
}


def test_slim_pair_crash_names_the_case():
    message = _rejects(check_slim_pair, _columns_copy, "slim_pair raised RuntimeError for layer Linear(6, 5), "
                                                       "next_layer Linear(5, 3), keep=[0, 2, 4]")
    assert "small.weight.copy_(layer.weight[:, keep])" in message


def test_module_checkers_leave_the_global_generator_alone():
    state = torch.get_rng_state()
    check_slim_pair(_slim)
    check_remove_heads(lambda attn, keep: _heads(attn, keep))
    assert torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------- remove_heads (lesson 09)

def _rows(attn, keep):
    E = attn.head_dim
    return torch.cat([torch.arange(h * E, (h + 1) * E) for h in keep])


def _heads(attn, keep, rows=None, out_columns=None, v_rows=None):
    """A right remove_heads, with optional different row orders to build mistakes from."""
    rows = _rows(attn, keep) if rows is None else rows
    v_rows = rows if v_rows is None else v_rows
    out_columns = rows if out_columns is None else out_columns
    new = Attention(attn.q.in_features, len(keep), attn.head_dim)
    with torch.no_grad():
        for name, r in (("q", rows), ("k", rows), ("v", v_rows)):
            getattr(new, name).weight.copy_(getattr(attn, name).weight[r])
            getattr(new, name).bias.copy_(getattr(attn, name).bias[r])
        new.out.weight.copy_(attn.out.weight[:, out_columns])
        new.out.bias.copy_(attn.out.bias)
    return new


def _heads_then(change):
    def fn(attn, keep):
        new = _heads(attn, keep)
        change(new, attn, keep)
        return new
    return fn


def _head_numbers_as_rows(attn, keep):
    new = Attention(attn.q.in_features, len(keep), attn.head_dim)
    with torch.no_grad():
        new.q.weight.copy_(attn.q.weight[keep])
    return new


def _head_numbers_assigned(attn, keep):
    new = _heads(attn, keep)
    new.q.weight = nn.Parameter(attn.q.weight[keep].detach().clone())
    return new


def _contiguous_range(attn, keep):
    return _heads(attn, keep, rows=torch.arange(keep[0] * attn.head_dim, (keep[-1] + 1) * attn.head_dim))


def _masked_not_removed(attn, keep):
    new = copy.deepcopy(attn)
    with torch.no_grad():
        for h in range(attn.n_heads):
            if h not in keep:
                new.out.weight[:, h * attn.head_dim:(h + 1) * attn.head_dim] = 0
    return new


def _wrong_head_dim(attn, keep):
    E = attn.q.in_features // attn.n_heads                 # right only when d_model = n_heads * head_dim
    new = Attention(attn.q.in_features, len(keep), E)
    rows = torch.cat([torch.arange(h * E, (h + 1) * E) for h in keep])
    with torch.no_grad():
        for name in ("q", "k", "v"):
            getattr(new, name).weight.copy_(getattr(attn, name).weight[rows])
            getattr(new, name).bias.copy_(getattr(attn, name).bias[rows])
        new.out.weight.copy_(attn.out.weight[:, rows])
        new.out.bias.copy_(attn.out.bias)
    return new


def _heads_in_place(attn, keep):
    with torch.no_grad():
        attn.v.bias.zero_()
    return _heads(attn, keep)


def _heads_keep_all(share):
    def fn(attn, keep):
        return share(attn) if len(keep) == attn.n_heads else _heads(attn, keep)
    return fn


def _no_no_grad_heads(attn, keep):
    new = Attention(attn.q.in_features, len(keep), attn.head_dim)
    new.q.weight.copy_(attn.q.weight[_rows(attn, keep)])
    return new


HEADS_WRONG = {
    "head numbers as rows": (_head_numbers_as_rows, "head h owns rows h*head_dim:(h+1)*head_dim"),
    "head numbers assigned": (_head_numbers_assigned, "You took one row per head number"),
    "shares out.bias": (_heads_then(lambda n, a, k: setattr(n.out, "bias", a.out.bias)),
                        "new.out.bias is attn.out.bias itself"),
    "shares q": (_heads_then(lambda n, a, k: setattr(n, "q", a.q) if len(k) == a.n_heads else None),
                 "new.q.weight is attn.q.weight itself"),
    "keep-all: copy.copy": (_heads_keep_all(copy.copy), "is attn.q.weight itself"),
    "zeroed out.bias": (_heads_then(lambda n, a, k: n.out.bias.data.zero_()), "out keeps its whole bias"),
    "forgets q/k/v bias": (_heads_then(lambda n, a, k: n.q.bias.data.zero_()), "biases of q, k and v must come along"),
    "out rows, not columns": (_heads_then(lambda n, a, k: n.out.weight.data.copy_(a.out.weight[_rows(a, k)].T)),
                              "out.weight should hold the kept heads' COLUMNS"),
    "forgets out": (_heads_then(lambda n, a, k: setattr(n, "out", nn.Linear(a.q.out_features, a.out.out_features))),
                    "out.weight should be"),
    "contiguous range": (_contiguous_range, "head h owns rows"),
    "v in sorted order": (lambda a, k: _heads(a, k, v_rows=_rows(a, sorted(k))),
                          "in the same order for all three"),
    "out in sorted order": (lambda a, k: _heads(a, k, out_columns=_rows(a, sorted(k))),
                            "in the same order as the rows of q, k and v"),
    "masked, not removed": (_masked_not_removed, "expected n_heads=2, head_dim=4"),
    "head_dim from d_model": (_wrong_head_dim, "it need not be d_model // n_heads"),
    "in place": (_heads_in_place, "remove_heads changed the module it was given"),
    "returns attn": (lambda a, k: a, "expected a new Attention module, got the module it was given"),
    "no torch.no_grad": (_no_no_grad_heads, "inside `with torch.no_grad():`"),
    "frozen": (_heads_then(lambda n, a, k: n.v.weight.requires_grad_(False)), "do not require grad"),
    "float64": (lambda a, k: _heads(a, k).double(), "new.q.weight is float64, the original is float32"),
    "no return": (lambda a, k: None, "expected a new Attention module, got None (is a `return` missing?)"),
}

def _load_state_dict_style(attn, keep):
    rows = _rows(attn, keep)
    state = {f"{n}.{p}": getattr(getattr(attn, n), p)[rows] for n in ("q", "k", "v") for p in ("weight", "bias")}
    state |= {"out.weight": attn.out.weight[:, rows], "out.bias": attn.out.bias}
    new = Attention(attn.q.in_features, len(keep), attn.head_dim)
    new.load_state_dict(state)                              # copies into new's own Parameters
    return new


HEADS_RIGHT = {
    "copy_": _heads,
    "load_state_dict": _load_state_dict_style,
    "keep-all deepcopy": _heads_keep_all(copy.deepcopy),
    "sorted heads everywhere": lambda a, k: _heads(a, sorted(k)),
    "slices per head": lambda a, k: _heads(a, k, rows=torch.cat([torch.arange(a.q.out_features)[
        h * a.head_dim:(h + 1) * a.head_dim] for h in k])),
}


def test_remove_heads_crash_names_the_case():
    _rejects(check_remove_heads, _head_numbers_as_rows,
             "remove_heads raised RuntimeError for Attention(d_model=16) with 4 heads of size 4, keep=[0, 2]")


# ---------------------------------------------------------------- slim_conv_bn (lesson 06)

def _conv_bn(conv, bn, next_conv, keep, bn_order=None, next_order=None, eps=None, stats=True):
    """A right slim_conv_bn, with optional mistakes to build wrong ones from."""
    keep = keep.tolist() if isinstance(keep, torch.Tensor) else list(keep)
    bn_order = keep if bn_order is None else bn_order
    next_order = keep if next_order is None else next_order

    def like(old, c_in, c_out):
        return nn.Conv2d(c_in, c_out, old.kernel_size, stride=old.stride, padding=old.padding,
                         bias=old.bias is not None)

    small, following = like(conv, conv.in_channels, len(keep)), like(next_conv, len(keep), next_conv.out_channels)
    small_bn = nn.BatchNorm2d(len(keep), eps=bn.eps if eps is None else eps, momentum=bn.momentum)
    with torch.no_grad():
        small.weight.copy_(conv.weight[keep])
        if conv.bias is not None:
            small.bias.copy_(conv.bias[keep])
        for name in ("weight", "bias", *(("running_mean", "running_var") if stats else ())):
            getattr(small_bn, name).copy_(getattr(bn, name)[bn_order])
        following.weight.copy_(next_conv.weight[:, next_order])
        if next_conv.bias is not None:
            following.bias.copy_(next_conv.bias)
    return small, small_bn, following


def _conv_bn_then(change):
    def fn(conv, bn, next_conv, keep):
        new = _conv_bn(conv, bn, next_conv, keep)
        return change(new, (conv, bn, next_conv), keep.tolist())
    return fn


def _conv_bn_in_place(conv, bn, next_conv, keep):
    with torch.no_grad():
        bn.running_mean.zero_()
    return _conv_bn(conv, bn, next_conv, keep)


def _conv_input_dim(conv, bn, next_conv, keep):
    small, small_bn, following = _conv_bn(conv, bn, next_conv, keep)
    small = nn.Conv2d(len(keep), conv.out_channels, 3, padding=1, bias=False)
    with torch.no_grad():
        small.weight.copy_(conv.weight[:, :len(keep)] if conv.in_channels >= len(keep) else small.weight)
    return small, small_bn, following


def _next_output_dim(conv, bn, next_conv, keep):
    small, small_bn, _ = _conv_bn(conv, bn, next_conv, keep)
    return small, small_bn, nn.Conv2d(next_conv.in_channels, len(keep), next_conv.kernel_size, bias=False)


CONV_BN_WRONG = {
    "BatchNorm unsliced": (_conv_bn_then(lambda n, o, k: (n[0], copy.deepcopy(o[1]), n[2])),
                           "the BatchNorm must shrink with its conv to 3 channels"),
    "running statistics dropped": (lambda c, b, n, k: _conv_bn(c, b, n, k, stats=False),
                                   "the running statistics were dropped"),
    "statistics in the wrong order": (lambda c, b, n, k: _conv_bn(c, b, n, k, bn_order=sorted(k.tolist())),
                                      "must be sliced like the conv"),
    "next conv unsliced": (_conv_bn_then(lambda n, o, k: (n[0], n[1], copy.deepcopy(o[2]))),
                           "Its input channels were not sliced: next_conv.weight[:, keep]"),
    "next conv in sorted order": (lambda c, b, n, k: _conv_bn(c, b, n, k, next_order=sorted(k.tolist())),
                                  "next_conv.weight[:, keep] (dim 1)"),
    "conv input dim": (_conv_input_dim, "the new conv's weight should be (3, 3, 3, 3)"),
    "next conv output dim": (_next_output_dim, "it reads the kept channels along dim 1"),
    "default eps": (lambda c, b, n, k: _conv_bn(c, b, n, k, eps=1e-5), "keep it (nn.BatchNorm2d(k, eps=bn.eps))"),
    "forgets the conv bias": (_conv_bn_then(lambda n, o, k: (n[0].bias is not None and n[0].bias.data.zero_(), n)[1]),
                              "conv.bias[keep]"),
    "shares the BatchNorm's weight": (_conv_bn_then(lambda n, o, k: (len(k) == len(o[1].weight) and
                                                                     setattr(n[1], "weight", o[1].weight), n)[1]),
                                      "bn.weight is bn.weight itself"),
    "in place": (_conv_bn_in_place, "slim_conv_bn changed the modules it was given"),
    "returns the given modules": (lambda c, b, n, k: (c, b, n), "returned a module it was given"),
    "two modules": (lambda c, b, n, k: _conv_bn(c, b, n, k)[:2],
                    "expected a tuple (Conv2d, BatchNorm2d, Conv2d), got (Conv2d, BatchNorm2d)"),
    "float64": (lambda c, b, n, k: tuple(m.double() for m in _conv_bn(c, b, n, k)),
                "conv.weight is float64, the original is float32"),
    "frozen": (_conv_bn_then(lambda n, o, k: (n[2].weight.requires_grad_(False), n)[1]), "do not require grad"),
    "no return": (lambda c, b, n, k: None, "got None (is a `return` missing?)"),
    "conv with a default bias": (_conv_bn_then(lambda n, o, k: (_replace_conv(n[0], bias=True), *n[1:])),
                                 "the original conv has no bias"),
    "next conv without its bias": (_conv_bn_then(lambda n, o, k: (*n[:2], _replace_conv(n[2], bias=False))),
                                   "the original next_conv has a bias"),
    "next bias sliced": (_conv_bn_then(lambda n, o, k: (n[2].bias is not None and n[2].bias.data.mul_(0.5), n)[1]),
                         "the next conv keeps its whole bias"),
    "kernel hard-coded": (_conv_bn_then(lambda n, o, k: (_replace_conv(n[0], kernel=3), *n[1:])),
                          "the new conv's weight should be (3, 3, 1, 1)"),
    "stride dropped": (_conv_bn_then(lambda n, o, k: (_replace_conv(n[0], stride=1), *n[1:])),
                       "the new conv has stride=(1, 1), the original (2, 2)"),
    "affine=False": (_conv_bn_then(lambda n, o, k: (n[0], nn.BatchNorm2d(len(k), affine=False), n[2])),
                     "the new BatchNorm has no γ and β (affine=False)"),
    "no running statistics": (_conv_bn_then(lambda n, o, k: (n[0], nn.BatchNorm2d(len(k), track_running_stats=False),
                                                             n[2])), "(track_running_stats=False)"),
    "default momentum": (_conv_bn_then(lambda n, o, k: (setattr(n[1], "momentum", 0.1), n)[1]),
                         "the new BatchNorm has momentum=0.1, the original momentum=0.3"),
    "shares running_mean": (_conv_bn_then(lambda n, o, k: (len(k) == len(o[1].running_mean) and
                                                           setattr(n[1], "running_mean", o[1].running_mean), n)[1]),
                            "bn.running_mean shares its memory with the original's"),
    "sets the given BatchNorm to train": (_conv_bn_then(lambda n, o, k: (o[1].train(), n)[1]),
                                          "changed the modules it was given (their tensors, settings or train/eval"),
    "weight None": (_conv_bn_then(lambda n, o, k: (setattr(n[2], "weight", None), n)[1]),
                    "the new next_conv's weight should be a 4-d nn.Parameter, got None"),
    "lazy conv": (_conv_bn_then(lambda n, o, k: (nn.LazyConv2d(len(k), 3), *n[1:])),
                  "expected a tuple (Conv2d, BatchNorm2d, Conv2d), got (LazyConv2d, BatchNorm2d, Conv2d)"),
}


def _replace_conv(old, bias=None, kernel=None, stride=None):
    """A conv like ``old`` with one setting changed, holding as much of old's weight as fits."""
    kernel = old.kernel_size[0] if kernel is None else kernel
    new = nn.Conv2d(old.in_channels, old.out_channels, kernel, stride=old.stride if stride is None else stride,
                    padding=kernel // 2, bias=(old.bias is not None) if bias is None else bias)
    with torch.no_grad():
        if new.weight.shape == old.weight.shape:
            new.weight.copy_(old.weight)
        if new.bias is not None and old.bias is not None:
            new.bias.copy_(old.bias)
    return new


CONV_BN_RIGHT = {
    "copy_": _conv_bn,
    "load_state_dict": lambda c, b, n, k: _conv_bn_load_state(c, b, n, k),
    "keep-all deepcopy": lambda c, b, n, k: (tuple(copy.deepcopy(m) for m in (c, b, n)) if len(k) == c.out_channels
                                             else _conv_bn(c, b, n, k)),
    "sorted channels everywhere": lambda c, b, n, k: _conv_bn(c, b, n, sorted(k.tolist())),
    "returned in train mode": _conv_bn_then(lambda n, o, k: tuple(m.train() for m in n)),
}


def _conv_bn_load_state(conv, bn, next_conv, keep):
    small, small_bn, following = _conv_bn(conv, bn, next_conv, keep)          # shapes only
    small_bn.load_state_dict({k: (v[keep] if v.dim() else v) for k, v in bn.state_dict().items()})
    return small, small_bn, following


def test_slim_conv_bn_not_done_and_generator():
    state = torch.get_rng_state()
    def stub(conv, bn, next_conv, keep):
        raise NotImplementedError()
    assert repr(check_slim_conv_bn(stub)) == "0"
    check_slim_conv_bn(_conv_bn)
    assert torch.equal(torch.get_rng_state(), state)


# ---------------------------------------------------------------- every checker, wrong and right

EXERCISES = {   # function the learner writes -> (checker, wrong solutions, right ones, checks it runs)
    "count_zeros": (check_count_zeros, COUNT_ZEROS_WRONG, COUNT_ZEROS_RIGHT, 6),
    "magnitude_mask": (check_magnitude_mask, MASK_WRONG, MASK_RIGHT, 13),
    "global_threshold": (check_global_threshold, THRESHOLD_WRONG, THRESHOLD_RIGHT, 12),
    "cubic_sparsity": (check_cubic_sparsity, CUBIC_WRONG, CUBIC_RIGHT, 11),
    "slim_pair": (check_slim_pair, SLIM_WRONG, SLIM_RIGHT, 6),
    "remove_heads": (check_remove_heads, HEADS_WRONG, HEADS_RIGHT, 6),
    "slim_conv_bn": (check_slim_conv_bn, CONV_BN_WRONG, CONV_BN_RIGHT, 6),
}


@pytest.mark.parametrize(("exercise", "name"), [(e, n) for e, (_, wrong, _, _) in EXERCISES.items() for n in wrong])
def test_checker_rejects_the_wrong_solution_naming_its_mistake(exercise, name):
    checker, wrong, _, _ = EXERCISES[exercise]
    fn, fragment = wrong[name]
    _rejects(checker, fn, fragment)


@pytest.mark.parametrize(("exercise", "name"), [(e, n) for e, (_, _, right, _) in EXERCISES.items() for n in right])
def test_checker_accepts_the_right_solution(exercise, name, capsys):
    checker, _, right, checks = EXERCISES[exercise]
    checker(right[name])
    assert f"✓ {exercise} passes all {checks} checks." in capsys.readouterr().out


# ---------------------------------------------------------------- the lessons' own solutions

def _notebook_solution(notebook: str, name: str):
    """Run the code cell holding notebook's ``### BEGIN SOLUTION`` and return the function it defines."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    source = next("".join(c["source"]) for c in cells if c["cell_type"] == "code" and "### BEGIN SOLUTION" in
                  "".join(c["source"]))
    namespace = {"torch": torch, "nn": nn, "Attention": Attention}
    exec(compile(source, notebook, "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize(("notebook", "name", "checker"), [
    ("00_start_here.ipynb", "count_zeros", check_count_zeros),
    ("01_magnitude_masks.ipynb", "magnitude_mask", check_magnitude_mask),
    ("02_pruning_a_trained_mlp.ipynb", "global_threshold", check_global_threshold),
    ("03_fine_tuning_and_schedules.ipynb", "cubic_sparsity", check_cubic_sparsity),
    ("04_structured_neuron_pruning.ipynb", "slim_pair", check_slim_pair),
    ("06_channels_and_whole_blocks.ipynb", "slim_conv_bn", check_slim_conv_bn),
    ("09_pruning_heads_and_neurons.ipynb", "remove_heads", check_remove_heads),
])
def test_lesson_solutions_pass(notebook, name, checker, capsys):
    checker(_notebook_solution(notebook, name))
    assert f"✓ {name} passes all" in capsys.readouterr().out
