"""The addition task: encoding, disjoint splits, the one answer loss and exact match, evaluate."""

import pytest
import torch
import torch.nn.functional as F

from lessons_lib.gpt import GPT, GPTConfig
from lessons_lib.tasks import EQUALS, PLUS, addition_task, answer_loss, encode, evaluate, exact_match


def test_encode_writes_the_problem_and_the_answer_digits():
    x, y = encode(torch.tensor([123, 999]), torch.tensor([456, 1]), 3)
    assert x[0].tolist() == [1, 2, 3, PLUS, 4, 5, 6, EQUALS, 0, 5, 7]       # answer 0579 minus its last digit
    assert y.tolist() == [[0, 5, 7, 9], [1, 0, 0, 0]]


def test_splits_are_disjoint_and_seeded():
    task = addition_task(2, n_train=300, n_val=50, n_test=60, seed=3)
    problems = {part: {tuple(r.tolist()) for r in getattr(task, f"x_{part}")[:, :7]}      # a + b = : the problem
                for part in ("train", "val", "test")}
    assert [len(p) for p in problems.values()] == [300, 50, 60]
    assert not (problems["train"] & problems["val"] or problems["train"] & problems["test"]
                or problems["val"] & problems["test"])
    assert torch.equal(addition_task(2, 300, 50, 60, seed=3).x_test, task.x_test)


class Oracle(torch.nn.Module):
    """Predicts the true next token at every position (teacher forcing), with a given confidence."""

    def __init__(self, y, confidence=5.0):
        super().__init__()
        self.y, self.confidence = y, confidence

    def forward(self, x):
        logits = torch.zeros(*x.shape, 12)
        logits[:, -self.y.shape[1]:].scatter_(2, self.y[..., None], self.confidence)
        return logits


def test_answer_loss_is_cross_entropy_on_the_answer_digits_only():
    task = addition_task(3, n_train=10, n_val=10, n_test=40)
    model = GPT(GPTConfig(heads=[2], ffn=[8], block_size=11))
    x, y = task.x_test, task.y_test
    logits = model(x)[:, -4:]
    expected = F.cross_entropy(logits.reshape(-1, 12), y.reshape(-1))
    assert answer_loss(model, x, y).item() == pytest.approx(expected.item(), rel=1e-6)
    oracle = Oracle(y)
    assert exact_match(oracle, x, y) == 1.0
    wrong = y.clone()
    wrong[:10, 2] = (wrong[:10, 2] + 1) % 10                                 # one wrong digit in 10 problems
    assert exact_match(Oracle(wrong), x, y) == 0.75
    em, loss = evaluate(oracle, x, y)
    assert em == 1.0 and loss == pytest.approx(F.cross_entropy(torch.tensor([[5.0] + [0.0] * 11]),
                                                               torch.tensor([0])).item(), rel=1e-5)
