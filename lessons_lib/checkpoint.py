"""Shipped checkpoints: read one only after its SHA-256 matches the one recorded beside it.

A checkpoint ``name.pt`` (a dict of config and tensors, written by one of ``scripts/``) ships
with ``name.json``, which records its SHA-256 and the metrics it reached. :func:`load_verified`
checks the hash, then reads the file with ``torch.load(..., weights_only=True)``: tensors and
plain data only, never code.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import zipfile
from pathlib import Path

import torch


def load_verified(path: str | Path, expected_sha256: str | None = None,
                  script: str = "scripts/train_checkpoint.py") -> object:
    """What ``torch.load(path, weights_only=True)`` reads, once the file's SHA-256 equals
    ``expected_sha256`` (64 hex digits, either case; default: the one in ``<name>.json``).
    ``script`` is named in the errors: the one that makes the file."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path must be a str or pathlib.Path, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path={str(path)!r} is a directory: pass the checkpoint file inside it")
    if not path.is_file():
        raise FileNotFoundError(f"path={str(path)!r} is not a file; run {script} to make it")
    expected = _expected_sha256(path) if expected_sha256 is None else expected_sha256
    if not isinstance(expected, str) or len(expected) != 64 or any(c not in "0123456789abcdefABCDEF" for c in expected):
        raise ValueError(f"expected_sha256 must be 64 hexadecimal digits (a SHA-256), got {expected!r}")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected.lower():
        raise ValueError(f"checkpoint {path.name} has SHA-256 {actual}, expected {expected.lower()}: "
                         f"the file is corrupt or from another version; re-run {script}")
    try:
        return torch.load(path, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as error:
        raise ValueError(f"checkpoint {path.name} is truncated or not a checkpoint (torch.load failed: "
                         f"{error}); re-run {script}") from error


def _expected_sha256(path: Path) -> object:
    """The SHA-256 recorded in ``<name>.json`` beside a checkpoint."""
    record = path.with_suffix(".json")
    if not record.is_file():
        raise FileNotFoundError(f"{record.name} is missing beside {path.name}: it records the checkpoint's "
                                "SHA-256 and metrics; copy it along, or pass expected_sha256")
    try:
        return json.loads(record.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise ValueError(f"{record.name} must be a JSON object with a 'sha256' entry, it is not: {error!r}") from error


def write_record(path: Path, **metrics: object) -> dict:
    """Write ``<name>.json`` beside the checkpoint ``path``: its file name, SHA-256, the torch
    version and ``metrics``; return the record."""
    reserved = {"file", "sha256", "torch"} & set(metrics)
    if reserved:
        raise ValueError(f"metrics must not be named {sorted(reserved)}: the record sets those itself")
    record = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), **metrics,
              "torch": torch.__version__.split("+")[0]}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return record
