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


# --- fine-tuning and distillation ----------------------------------------------------------------

def _tiny(seed=0, heads=(2, 2)):
    torch.manual_seed(seed)
    return GPT(GPTConfig(d_model=16, head_dim=4, heads=list(heads), ffn=[16, 16], block_size=8))


def _small_task():
    return addition_task(2, n_train=400, n_val=20, n_test=50, seed=0)


def test_distillation_with_no_teacher_terms_is_training_on_the_answers():
    from lessons_lib.tasks import distill_on_task, train_on_task
    task = _small_task()
    trained, distilled, teacher = _tiny(), _tiny(), _tiny(seed=1)
    a = train_on_task(trained, task, 5, batch_size=32, seed=3, progress=False)
    b = distill_on_task(distilled, teacher, task, 5, alpha=0.0, batch_size=32, seed=3, progress=False)
    assert a == b
    assert all(torch.equal(p, q) for p, q in zip(trained.parameters(), distilled.parameters(), strict=True))


def test_a_student_equal_to_its_teacher_starts_at_zero_distillation_loss():
    from lessons_lib.tasks import distill_on_task
    task, teacher = _small_task(), _tiny()
    student = _tiny()
    losses = distill_on_task(student, teacher, task, 1, alpha=1.0, hidden_weight=1.0, batch_size=32,
                             progress=False)
    assert losses[0] == pytest.approx(0.0, abs=1e-6)


def test_distillation_pulls_the_student_towards_the_teacher():
    from lessons_lib.tasks import distill_on_task
    task, teacher, student = _small_task(), _tiny(seed=1), _tiny(seed=2)

    def gap():
        with torch.no_grad():
            s, t = student(task.x_val)[:, -3:], teacher(task.x_val)[:, -3:]
        return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean").item()

    before = gap()
    before_params = [p.clone() for p in teacher.parameters()]
    distill_on_task(student, teacher, task, 60, temperature=1.0, alpha=1.0, batch_size=64, progress=False)
    assert gap() < 0.5 * before
    assert all(torch.equal(p, q) for p, q in zip(teacher.parameters(), before_params, strict=True))   # only read


def test_lr_decay_changes_training_and_ends_at_a_learning_rate_of_zero():
    from lessons_lib.tasks import train_on_task
    task = _small_task()
    constant, decayed = _tiny(), _tiny()
    train_on_task(constant, task, 4, batch_size=32, progress=False)
    losses = train_on_task(decayed, task, 4, batch_size=32, progress=False, lr_decay=True)
    assert len(losses) == 4
    assert not all(torch.equal(p, q) for p, q in zip(constant.parameters(), decayed.parameters(), strict=True))
    # the first step is the same (the decay starts after it)
    first_constant, first_decayed = _tiny(), _tiny()
    train_on_task(first_constant, task, 1, batch_size=32, progress=False)
    train_on_task(first_decayed, task, 1, batch_size=32, progress=False, lr_decay=True)
    assert all(torch.equal(p, q) for p, q in zip(first_constant.parameters(), first_decayed.parameters(), strict=True))


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"temperature": 0.0}, ValueError, "temperature"),
    ({"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]"),
    ({"alpha": -0.1}, ValueError, "alpha"),
    ({"hidden_weight": -1.0}, ValueError, "hidden_weight"),
    ({"teacher": "dense"}, TypeError, "teacher must be a torch.nn.Module"),
    ({"teacher": "no blocks", "hidden_weight": 1.0}, ValueError, "same number of .blocks"),
    ({"lr_decay": "yes"}, TypeError, "lr_decay"),
    ({"steps": 0}, ValueError, "steps"),
    ({"temperature": 1e6}, ValueError, r"temperature must be in \[0.1, 20\]"),
    ({"teacher": "student"}, ValueError, "teacher must be another model than student"),
    ({"teacher": GPT(GPTConfig(vocab_size=14, d_model=16, head_dim=4, heads=[2, 2], ffn=[16, 16], block_size=8))},
     ValueError, "logits of the student's shape"),
])
def test_distillation_refuses_bad_arguments_and_changes_nothing(kwargs, error, message):
    from lessons_lib.tasks import distill_on_task
    task, student = _small_task(), _tiny()
    before = [p.clone() for p in student.parameters()]
    arguments = {"teacher": _tiny(seed=1), "steps": 2, **kwargs}
    if arguments["teacher"] == "student":
        arguments["teacher"] = student
    if arguments["teacher"] == "no blocks":                  # the same logits, but no .blocks to compare
        arguments["teacher"] = torch.nn.Sequential(_tiny(seed=1))
    with pytest.raises(error, match=message):
        distill_on_task(student, arguments.pop("teacher"), task, arguments.pop("steps"), progress=False, **arguments)
    assert all(torch.equal(p, q) for p, q in zip(student.parameters(), before, strict=True))


def test_evaluate_is_exact_match_and_answer_loss_in_one_pass_whatever_the_batch():
    torch.manual_seed(0)
    model, task = _tiny(), _small_task()
    for batch_size in (7, 1024):
        em, loss = evaluate(model, task.x_test, task.y_test, batch_size=batch_size)
        with torch.no_grad():
            direct = (model(task.x_test)[:, -3:].argmax(-1) == task.y_test).all(dim=1).float().mean().item()
        assert em == pytest.approx(direct) and exact_match(model, task.x_test, task.y_test, batch_size) == em
        assert loss == pytest.approx(answer_loss(model, task.x_test, task.y_test).item(), rel=1e-5)
    model.train()
    evaluate(model, task.x_test, task.y_test)
    assert model.training
    with pytest.raises(ValueError, match="batch_size"):
        evaluate(model, task.x_test, task.y_test, batch_size=0)
