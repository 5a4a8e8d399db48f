"""The tiny GPT, its task, its checkpoint, and activation-aware masks."""

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from lessons_lib.gpt import CHECKPOINT, GPT, GPTConfig, load_checkpoint, load_gpt, save_gpt
from lessons_lib.pruning import input_norms, prunable_layers
from lessons_lib.sparsity import wanda_mask
from lessons_lib.tasks import addition_task, answer_loss, encode, exact_match, train_on_task

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("config", [GPTConfig(block_size=11), GPTConfig(d_model=32, head_dim=8, heads=[2, 3, 1],
                                                                          ffn=[64, 32, 16], block_size=11)])
def test_gpt_shapes_and_causality(config):
    torch.manual_seed(0)
    model = GPT(config).eval()
    x = torch.randint(0, 12, (3, 11))
    logits = model(x)
    assert logits.shape == (3, 11, 12)
    changed = x.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 12
    assert torch.allclose(model(changed)[:, :5], logits[:, :5], atol=1e-6)     # no peeking at the future
    assert len(prunable_layers(model)) == 6 * config.n_layers


def test_head_mask_of_ones_changes_nothing_and_zero_head_layer_works():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=11)).eval()
    x = torch.randint(0, 12, (2, 11))
    ones = [torch.ones(h) for h in model.config.heads]
    assert torch.allclose(model(x, ones), model(x))
    empty = GPT(GPTConfig(heads=[0, 2], ffn=[8, 8], block_size=11))
    assert empty(x).shape == (2, 11, 12)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"heads": [4], "ffn": [8, 8]}, "heads and ffn must list one entry per layer"),
    ({"heads": [-1], "ffn": [8]}, "heads and ffn must be >= 0 per layer"),
    ({"d_model": 0}, "d_model must be a positive int, got 0"),
])
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(**kwargs)


def test_save_load_round_trip_with_a_pruned_config():
    torch.manual_seed(0)
    model = GPT(GPTConfig(heads=[3, 1], ffn=[20, 7], block_size=11)).eval()
    rebuilt = load_gpt(save_gpt(model)).eval()
    x = torch.randint(0, 12, (4, 11))
    assert rebuilt.config == model.config and torch.equal(rebuilt(x), model(x))
    with pytest.raises(ValueError, match="saved must be a dict with keys 'config' and 'state_dict'"):
        load_gpt({"state_dict": {}})
    with pytest.raises(ValueError, match="sequence length must be <= block_size"):
        model(torch.zeros(1, 12, dtype=torch.long))


def test_task_encoding_and_disjoint_splits():
    x, y = encode(torch.tensor([123, 999]), torch.tensor([456, 1]), 3)
    assert x[0].tolist() == [1, 2, 3, 10, 4, 5, 6, 11, 0, 5, 7] and y[0].tolist() == [0, 5, 7, 9]
    assert y[1].tolist() == [1, 0, 0, 0]
    task = addition_task(3, n_train=500, n_val=100, n_test=100, seed=1)
    problems = [set(map(tuple, t[:, :7].tolist())) for t in (task.x_train, task.x_val, task.x_test)]
    assert len(problems[0]) == 500 and not (problems[0] & problems[1]) and not (problems[0] & problems[2])
    with pytest.raises(ValueError, match=r"n_digits must be in \[1, 4\], got 5"):
        addition_task(5)
    with pytest.raises(ValueError, match="n_train \\+ n_val \\+ n_test must be <= 100 distinct problems"):
        addition_task(1, n_train=100, n_val=1, n_test=1)


def test_training_lowers_loss_deterministically():
    task = addition_task(2, n_train=2000, n_val=100, n_test=100)
    torch.manual_seed(0)
    a = GPT(GPTConfig(d_model=32, head_dim=8, heads=[2, 2], ffn=[64, 64], block_size=task.x_train.shape[1]))
    b = copy.deepcopy(a)
    losses = train_on_task(a, task, steps=60, batch_size=64, seed=3, progress=False)
    train_on_task(b, task, steps=60, batch_size=64, seed=3, progress=False)
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        train_on_task(a, task, steps=0)


def test_committed_checkpoint_loads_after_hash_check(tmp_path):
    model = load_checkpoint(CHECKPOINT)
    record = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    task = addition_task(3)
    assert exact_match(model, task.x_test, task.y_test) == pytest.approx(record["test_exact_match"])
    assert CHECKPOINT.stat().st_size < 2_000_000
    broken = tmp_path / "gpt_addition.pt"
    shutil.copy(CHECKPOINT, broken)
    with broken.open("r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(ValueError, match="checkpoint gpt_addition.pt has SHA-256 .* expected"):
        load_checkpoint(broken, expected_sha256=record["sha256"])
    with pytest.raises(FileNotFoundError, match="run scripts/train_checkpoint.py"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.slow
def test_checkpoint_script_reproduces_the_committed_metrics(tmp_path, checkpoint_script):
    """Re-trains from scratch (about 1.5 minutes on one thread) and compares with the record."""
    record = checkpoint_script("train_checkpoint")(tmp_path)
    committed = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    # With the PyTorch release that wrote the record, training repeats to within half a point. Another
    # release sums floats in another order and lands elsewhere: torch 2.4 reached 98.9% / 99.5% where
    # 2.13 has 100% / 100%, so there the script must still train a model within 2 points of the record.
    same_release = torch.__version__.split("+")[0].rsplit(".", 1)[0] == committed["torch"].rsplit(".", 1)[0]
    tolerance = 0.005 if same_release else 0.02
    for key in ("val_exact_match", "test_exact_match"):
        assert record[key] == pytest.approx(committed[key], abs=tolerance)
    assert record["test_loss"] == pytest.approx(committed["test_loss"], abs=0.005 if same_release else 0.05)
    assert record["parameters"] == committed["parameters"]


def test_input_norms_and_wanda_mask():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=11)).eval()
    layers = prunable_layers(model)
    x = torch.randint(0, 12, (5, 11))
    norms = input_norms(model, x, layers)
    assert set(norms) == set(layers) and norms["blocks.0.fc2"].shape == (256,)
    hidden = {}

    def keep_input(module, inputs, output):
        hidden["x"] = inputs[0]

    handle = layers["blocks.0.fc2"].register_forward_hook(keep_input)
    model(x)
    handle.remove()
    assert torch.allclose(norms["blocks.0.fc2"], hidden["x"].reshape(-1, 256).norm(dim=0), rtol=1e-5)
    assert not any(layer._forward_hooks for layer in layers.values())

    weight = torch.tensor([[1.0, 0.1, 0.5, 2.0]])
    assert wanda_mask(weight, None, 0.5).tolist() == [[True, False, False, True]]
    big_input = torch.tensor([1.0, 100.0, 1.0, 1.0])                 # feature 1 is loud
    assert wanda_mask(weight, big_input, 0.5).tolist() == [[False, True, False, True]]
    mask = wanda_mask(torch.randn(6, 10), torch.rand(10), 0.3)
    assert (mask.sum(dim=1) == 7).all()                                # exactly 3 pruned in every row
    with pytest.raises(ValueError, match=r"norms must have shape \(4,\)"):
        wanda_mask(weight, torch.ones(3), 0.5)
    with pytest.raises(ValueError, match=r"sparsity must be a fraction in \[0, 1\], got 2"):
        wanda_mask(weight, None, 2)


def test_exact_match_and_loss_on_a_perfect_model():
    task = addition_task(1, n_train=50, n_val=10, n_test=10)

    class Oracle(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(*x.shape, 12)
            answers = encode(x[:, 0], x[:, 2], 1)[1]                   # (n, 2) from the operands
            logits[:, -2:] = torch.nn.functional.one_hot(answers, 12).float() * 50
            return logits

    assert exact_match(Oracle(), task.x_test, task.y_test) == 1.0
    assert answer_loss(Oracle(), task.x_test, task.y_test).item() < 1e-6


def test_transformer_explorer():
    from lessons_lib.widgets import transformer_sparsity_explorer

    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=11)).eval()
    layers = prunable_layers(model)
    task = addition_task(3, n_train=10, n_val=10, n_test=50)
    norms = input_norms(model, task.x_train, layers)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    method, slider, readout, _ = transformer_sparsity_explorer(model, layers, task.x_test, task.y_test, norms).children
    assert readout.value.endswith("50.0% of block weights pruned")
    method.value = "global magnitude"
    slider.value = 0.25
    assert readout.value.endswith("25.0% of block weights pruned")
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="norms must give one input-norm vector per layer"):
        transformer_sparsity_explorer(model, layers, task.x_test, task.y_test, {})


# --- bad configs, tokens and operands ------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"heads": [2.5, 4]}, ValueError, r"heads must hold ints \(one per layer\), got \[2.5, 4\]"),
    ({"ffn": [True, 8]}, ValueError, "ffn must hold ints"),
    ({"heads": "44", "ffn": "88"}, TypeError, "heads must be a list of ints"),
    ({"heads": None}, TypeError, "heads must be a list of ints"),
    ({"heads": [], "ffn": []}, ValueError, "heads and ffn must list one entry per layer"),
    ({"ffn": [-1, 8]}, ValueError, "heads and ffn must be >= 0 per layer"),
    ({"d_model": 16.0}, ValueError, "d_model must be a positive int, got 16.0"),
    ({"head_dim": True}, ValueError, "head_dim must be a positive int, got True"),
    ({"vocab_size": 0}, ValueError, "vocab_size must be a positive int, got 0"),
    ({"block_size": -1}, ValueError, "block_size must be a positive int, got -1"),
])
def test_config_refuses_what_used_to_build_wrong_models(kwargs, error, message):
    with pytest.raises(error, match=message):
        GPTConfig(**kwargs)


def test_config_stores_plain_int_lists():
    import numpy as np

    config = GPTConfig(heads=(np.int64(2), 1), ffn=(8, np.int32(4)))
    assert config.heads == [2, 1] and config.ffn == [8, 4] and type(config.heads[0]) is int
    assert json.dumps(config.to_dict())                                 # saves as plain JSON


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: encode(torch.tensor([1234]), torch.tensor([1]), 3), ValueError, r"a must hold numbers in \[0, 1000\)"),
    (lambda: encode(torch.tensor([12]), torch.tensor([-1]), 3), ValueError, r"b must hold numbers in \[0, 1000\)"),
    (lambda: encode(torch.tensor([1.5]), torch.tensor([1]), 3), ValueError, "a must be a 1-D int tensor"),
    (lambda: encode([1], [2], 3), TypeError, "a must be a torch.Tensor"),
    (lambda: encode(torch.tensor([1, 2]), torch.tensor([1]), 3), ValueError, "a and b must have the same length"),
    (lambda: encode(torch.tensor([1]), torch.tensor([1]), 0), ValueError, "n_digits must be a positive int"),
    (lambda: addition_task(1, n_train=-5, n_val=10, n_test=10), ValueError, "n_train must be a positive int, got -5"),
    (lambda: addition_task(1, n_train=5, n_val=0, n_test=10), ValueError, "n_val must be a positive int, got 0"),
    (lambda: addition_task(1, n_train=5, n_val=5, n_test=2.5), ValueError, "n_test must be a positive int, got 2.5"),
    (lambda: addition_task(True), ValueError, r"n_digits must be in \[1, 4\], got True"),
    (lambda: addition_task(1, n_train=5, n_val=5, n_test=5, seed=-1), ValueError, "seed must be an int >= 0"),
])
def test_task_inputs_that_used_to_pass_silently(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_encode_keeps_small_int_types_exact():
    x, y = encode(torch.tensor([200], dtype=torch.uint8), torch.tensor([100], dtype=torch.uint8), 3)
    assert y.tolist() == [[0, 3, 0, 0]] and x.dtype == torch.int64   # 200 + 100 wrapped to 44 in uint8


def test_scoring_checks_tokens_and_answers():
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=11)).eval()
    task = addition_task(3, n_train=20, n_val=10, n_test=10)
    x, y = task.x_test, task.y_test
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for call, error, message in [
        (lambda: exact_match(model, x.float(), y), ValueError, "x must be a non-empty 2-D int64 tensor"),
        (lambda: exact_match(model, torch.full_like(x, 12), y), ValueError, r"x must hold token ids in \[0, 12\)"),
        (lambda: exact_match(model, x, torch.full_like(y, -1)), ValueError, r"y must hold token ids in \[0, 12\)"),
        (lambda: exact_match(model, x, torch.zeros(10, 11, dtype=torch.long)), ValueError, "shorter than the problem"),
        (lambda: exact_match(model, x[:, :0], y), ValueError, "x must be a non-empty"),
        (lambda: exact_match(model, torch.zeros(2, 12, dtype=torch.long), y[:2]), ValueError, "at most block_size=11"),
        (lambda: exact_match(model, x, y, batch_size=0), ValueError, "batch_size must be a positive int"),
        (lambda: answer_loss(model, x, y[:3]), ValueError, "y must hold one answer per problem"),
        (lambda: train_on_task(model, task, 1, lr=math.inf), ValueError, "lr must be a finite number"),
        (lambda: train_on_task(model, task, 1, weight_decay=-1), ValueError, "weight_decay must be >= 0"),
        (lambda: train_on_task(model, (task.x_train, task.y_train), 1), TypeError, "task must be a tasks.Addition"),
        (lambda: model(torch.zeros(2, 5)), ValueError, "idx must be a 2-D int64 tensor"),
        (lambda: model(x, [torch.ones(4)]), ValueError, r"head_masks must be a list of one \(H,\) or \(B, H\)"),
    ]:
        with pytest.raises(error, match=message):
            call()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_save_gpt_refuses_masks_it_could_not_load():
    from lessons_lib.pruning import prune_layerwise, remove_masks

    model = GPT(GPTConfig(block_size=11))
    with pytest.raises(TypeError, match="model must be a GPT, got Linear"):
        save_gpt(torch.nn.Linear(2, 2))
    prune_layerwise(model, 0.3)
    with pytest.raises(ValueError, match=r"call pruning.remove_masks\(model\) before saving"):
        save_gpt(model)
    remove_masks(model)
    assert load_gpt(save_gpt(model)).config == model.config
    with pytest.raises(ValueError, match=r"saved\['state_dict'\] does not fit saved\['config'\]"):
        load_gpt({"config": GPTConfig(heads=[1, 1]).to_dict(), "state_dict": model.state_dict()})
    with pytest.raises(ValueError, match=r"saved\['config'\] must be a dict of GPTConfig fields"):
        load_gpt({"config": {"layers": 2}, "state_dict": {}})


# --- checkpoint files ----------------------------------------------------------------------------

def test_checkpoint_problems_get_clear_errors(tmp_path):
    import hashlib

    record = json.loads(CHECKPOINT.with_suffix(".json").read_text())
    assert isinstance(load_checkpoint(CHECKPOINT, record["sha256"].upper()), GPT)      # hashes in either case
    truncated = tmp_path / "gpt.pt"
    truncated.write_bytes(CHECKPOINT.read_bytes()[:5000])
    with pytest.raises(ValueError, match="checkpoint gpt.pt is truncated or not a checkpoint"):
        load_checkpoint(truncated, hashlib.sha256(truncated.read_bytes()).hexdigest())
    alone = tmp_path / "copied.pt"
    shutil.copy(CHECKPOINT, alone)
    with pytest.raises(FileNotFoundError, match=r"copied.json is missing beside copied.pt: it records the "
                                                r"checkpoint's SHA-256"):
        load_checkpoint(alone)
    alone.with_suffix(".json").write_text("{not json")
    with pytest.raises(ValueError, match="copied.json must be a JSON object with a 'sha256' entry"):
        load_checkpoint(alone)
    for bad in ("abc", "g" * 64, record["sha256"] + "0", 3):
        with pytest.raises(ValueError, match="expected_sha256 must be 64 hexadecimal digits"):
            load_checkpoint(CHECKPOINT, bad)
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path, got int"):
        load_checkpoint(3)
