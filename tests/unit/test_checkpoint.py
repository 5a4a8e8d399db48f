"""Reading a checkpoint only after its SHA-256 matches the record beside it."""

import json

import pytest
import torch

from lessons_lib.checkpoint import load_verified, write_record


def test_a_recorded_checkpoint_round_trips_and_a_changed_byte_is_refused(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save({"config": {"width": 2}, "state_dict": {"w": torch.arange(3.0)}}, path)
    record = write_record(path, accuracy=0.5)
    assert json.loads(path.with_suffix(".json").read_text()) == record and record["accuracy"] == 0.5
    assert torch.equal(load_verified(path)["state_dict"]["w"], torch.arange(3.0))
    path.write_bytes(path.read_bytes()[:-1] + b"!")
    with pytest.raises(ValueError, match="has SHA-256 .* re-run scripts/make_it.py"):
        load_verified(path, script="scripts/make_it.py")


@pytest.mark.parametrize(("setup", "error", "message"), [
    (lambda p: None, FileNotFoundError, "tiny.json is missing"),
    (lambda p: p.with_suffix(".json").write_text("[]"), ValueError, "must be a JSON object with a 'sha256'"),
])
def test_a_missing_or_broken_record_is_named(tmp_path, setup, error, message):
    path = tmp_path / "tiny.pt"
    torch.save({"w": torch.zeros(1)}, path)
    setup(path)
    with pytest.raises(error, match=message):
        load_verified(path)


def test_bad_paths_and_hashes_are_named(tmp_path):
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path"):
        load_verified(3)
    with pytest.raises(FileNotFoundError, match="is not a file; run scripts/x.py"):
        load_verified(tmp_path / "none.pt", script="scripts/x.py")
    path = tmp_path / "tiny.pt"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="expected_sha256 must be 64 hexadecimal digits"):
        load_verified(path, expected_sha256="abc")
