"""The digits split: sizes, stratification, no overlap, no leaked statistics, determinism."""

import pytest
import torch

from lessons_lib.data import digits_split


def test_split_sizes_classes_and_standardisation():
    data = digits_split(seed=0)
    assert [len(t) for t in data] == [1167, 1167, 270, 270, 360, 360]
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)):
        assert x.shape[1] == 64 and x.dtype == torch.float32 and y.dtype == torch.int64
        counts = y.bincount(minlength=10)
        assert counts.max() - counts.min() <= 0.05 * len(y) + 2          # stratified: every class present, even
    varying = data.x_train.std(dim=0) > 0                                  # training statistics only
    assert data.x_train.mean(dim=0).abs().max() < 1e-5
    assert (data.x_train.std(dim=0, unbiased=False)[varying] - 1).abs().max() < 1e-4
    assert data.x_test.mean(dim=0).abs().max() > 1e-3                      # test was not standardised on itself


def test_no_image_is_in_two_parts_and_the_seed_decides_the_split():
    data = digits_split(seed=0)
    rows = {part: {tuple(row.tolist()) for row in getattr(data, f"x_{part}")} for part in ("train", "val", "test")}
    # digits has a few duplicate images; the parts share at most those
    assert len(rows["train"] & rows["test"]) <= 2 and len(rows["val"] & rows["test"]) <= 2
    again = digits_split(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(data, again, strict=True))
    other = digits_split(seed=1)
    assert not torch.equal(data.y_test, other.y_test)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"val_fraction": 0.0}, r"val_fraction must be in \[0.05, 0.5\], got 0.0"),
    ({"test_fraction": True}, "test_fraction must be in"),
    ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32\)"),
    ({"seed": 1.5}, "seed must be an int"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits_split(**kwargs)
