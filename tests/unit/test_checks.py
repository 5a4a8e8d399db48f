"""Exercise checkers: a right answer passes, each usual mistake gets its own plain message."""

import pytest
import torch

from lessons_lib.checks import ExerciseFailure, check_count_zeros, check_magnitude_mask


def _topk_solution(weight, sparsity):
    k = round(sparsity * weight.numel())
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    if k:
        keep[torch.topk(weight.abs().flatten(), k, largest=False).indices] = False
    return keep.view_as(weight)


def _failure(checker, fn) -> str:
    with pytest.raises(ExerciseFailure) as info:
        checker(fn)
    return str(info.value)


def test_right_answers_pass(capsys):
    check_magnitude_mask(_topk_solution)
    check_magnitude_mask(lambda w, a: _topk_solution(w, a).float())      # 0/1 floats are fine too
    check_count_zeros(lambda t: int((t == 0).sum()))
    out = capsys.readouterr().out
    assert "✓ magnitude_mask passes all 13 checks." in out and "✓ count_zeros passes all 6 checks." in out


def _not_implemented(*args):
    raise NotImplementedError()


def _every_exercise_checker():
    from lessons_lib import checks
    return [getattr(checks, name) for name in sorted(dir(checks))
            if name.startswith("check_") and name != "check_assignment"]


@pytest.mark.parametrize("checker", _every_exercise_checker(), ids=lambda f: f.__name__)
def test_stub_says_not_implemented_and_scores_zero_without_raising(checker, capsys):
    """An untouched exercise must not stop Run All, yet nbgrader must read 0 points from it."""
    from lessons_lib.checks import NotDone

    result = checker(_not_implemented)
    out = capsys.readouterr().out
    assert isinstance(result, NotDone) and result.points == 0
    assert repr(result) == "0" and float(repr(result)) == 0.0        # nbgrader's partial credit: 0
    assert "is not implemented yet" in out and "raise NotImplementedError()" in out
    assert "✓" not in out and "0 points" in result._repr_html_()


@pytest.mark.parametrize("checker", _every_exercise_checker(), ids=lambda f: f.__name__)
def test_a_wrong_answer_still_raises(checker):
    """Only "not implemented" is let through; anything else the function raises fails the check."""
    def crashes(*args):
        raise ValueError("my bug")

    assert "my bug" in _failure(checker, crashes)


def test_crash_names_error_and_line():
    def broken(weight, sparsity):
        k = round(sparsity * weight.numel())
        threshold = weight.abs().flatten().kthvalue(k).values   # fails for k = 0
        return weight.abs() > threshold
    message = _failure(check_magnitude_mask, broken)
    assert message.startswith("magnitude_mask raised RuntimeError")
    assert "threshold = weight.abs().flatten().kthvalue(k).values" in message


@pytest.mark.parametrize(("fn", "expected"), [
    (lambda w, a: _topk_solution(w, a) if a == 0.5 else ~_topk_solution(w, a), "your mask is exactly inverted"),
    (lambda w, a: _topk_solution(1 / w.abs(), a),
     "kept the SMALLEST-magnitude weights"),
    (lambda w, a: _topk_solution(w.clamp(min=0) + 1e-6 * (w > 0), a) if 0 < a < 1 else _topk_solution(w, a),
     "ranked weights by their signed value"),
    (lambda w, a: _topk_solution(w, a).reshape(-1), "a mask must match the weight entry for entry"),
    (lambda w, a: w * _topk_solution(w, a), "Did you return the pruned weights instead of the mask?"),
    (lambda w, a: w.mul_(0) == 0, "changed the weight in place"),
    (lambda w, a: [1, 0], "expected a torch.Tensor mask, got a Python list [1, 0]"),
])
def test_named_mistakes(fn, expected):
    assert expected in _failure(check_magnitude_mask, fn)


def test_threshold_off_by_one_gets_a_hint():
    def with_ge(weight, sparsity):
        k = round(sparsity * weight.numel())
        if k == 0:
            return torch.ones_like(weight, dtype=torch.bool)
        return weight.abs() >= weight.abs().flatten().kthvalue(k).values
    message = _failure(check_magnitude_mask, with_ge)
    assert "expected round(0.5 x 8) = 4 zeros, your mask has 3" in message
    assert "keep |w| > t (not >=)" in message


def test_amount_zero_gets_a_hint():
    def prunes_one_at_zero(weight, sparsity):
        return _topk_solution(weight, max(sparsity, 1 / weight.numel()))
    message = _failure(check_magnitude_mask, prunes_one_at_zero)
    assert "sparsity=0 must prune nothing" in message


def test_wrong_entries_are_pointed_at():
    def swaps_two(weight, sparsity):
        mask = _topk_solution(weight, sparsity)
        if 0 < sparsity < 1:
            flat = mask.flatten()
            first_kept, first_pruned = int(flat.nonzero()[0]), int((~flat).nonzero()[0])
            flat[first_kept], flat[first_pruned] = False, True
            mask = flat.view_as(weight)
        return mask
    message = _failure(check_magnitude_mask, swaps_two)
    assert "the right number of zeros, but your mask prunes weight -0.9 (flat index 1)" in message
    assert "keeps the smaller-magnitude 0.3 (flat index 0)" in message


def test_count_zeros_mistakes():
    assert "the number of NON-zero entries" in _failure(check_count_zeros, lambda t: int((t != 0).sum()))
    assert "Return a Python int" in _failure(check_count_zeros, lambda t: (t == 0).sum())
    assert "expected the int 2, got a Python float 0.5; that is the FRACTION of zeros" in \
        _failure(check_count_zeros, lambda t: (t == 0).float().mean().item())


def test_not_a_function():
    assert "expected your function magnitude_mask, got NoneType" in _failure(check_magnitude_mask, None)


def test_failure_renders_without_a_traceback():
    lines = ExerciseFailure("first line\nsecond line")._render_traceback_()
    assert lines == ["✗ ExerciseFailure: first line", "  second line"]


def test_global_threshold_checker():
    from lessons_lib.checks import check_global_threshold
    from lessons_lib.pruning import global_threshold

    check_global_threshold(global_threshold)
    check_global_threshold(lambda ws, a: torch.tensor(global_threshold(ws, a)))   # a 0-d tensor is fine

    def per_layer(ws, a):
        return sum(w.abs().flatten().kthvalue(max(1, round(a * w.numel()))).values.item() for w in ws) / len(ws)

    def one_too_far(ws, a):
        s = torch.cat([w.abs().flatten() for w in ws])
        k = round(a * s.numel())
        return s.kthvalue(k + 1).values.item() if k else 0.0

    def signed(ws, a):
        s = torch.cat([w.flatten() for w in ws])
        k = round(a * s.numel())
        return s.kthvalue(k).values.item() if k else 0.0

    assert "averaged one threshold per layer" in _failure(check_global_threshold, per_layer)
    assert "off by one: you returned the (k+1)-th" in _failure(check_global_threshold, one_too_far)
    assert "ranked signed values" in _failure(check_global_threshold, signed)
    assert "should return one number" in _failure(check_global_threshold, lambda ws, a: [0.1])
    assert "changed the weights" in _failure(check_global_threshold, lambda ws, a: ws[0].zero_().sum().item())


def test_cubic_checker():
    from lessons_lib.checks import check_cubic_sparsity
    from lessons_lib.schedules import cubic_sparsity

    check_cubic_sparsity(lambda t, f, a, b: cubic_sparsity(t, f, a, b))

    def progress(t, a, b):
        return (t - a) / (b - a)

    assert "rises slowly at first" in _failure(check_cubic_sparsity, lambda t, f, a, b: f * progress(t, a, b) ** 3)
    assert "straight line" in _failure(check_cubic_sparsity, lambda t, f, a, b: f * progress(t, a, b))
    unclamped = _failure(check_cubic_sparsity, lambda t, f, a, b: f * (1 - (1 - progress(t, a, b)) ** 3))
    assert "clamp progress to [0, 1]" in unclamped


def test_a_not_implemented_error_from_torch_is_a_crash_not_an_unfinished_stub():
    """Only a `raise` in the learner's own code means "not implemented yet"; torch's is a bug to fix."""
    def sparse_kthvalue(weight, sparsity):
        return weight.abs() > weight.abs().flatten().to_sparse().kthvalue(1).values    # no sparse kthvalue

    message = _failure(check_magnitude_mask, sparse_kthvalue)
    assert message.startswith("magnitude_mask raised NotImplementedError for weight")
    assert "Could not run 'aten::kthvalue" in message and "comes from torch" in message
    assert "not implemented yet" not in message and len(message) < 700    # not torch's pages of backends

    from lessons_lib.checks import check_slim_pair

    class NoForward(torch.nn.Module):
        pass

    message = _failure(check_slim_pair, lambda layer, next_layer, keep: NoForward()(layer.weight))
    assert 'missing the required "forward" function' in message and "not implemented yet" not in message


def test_a_partly_done_exercise_scores_zero_and_says_which_case(capsys):
    from lessons_lib.checks import NotDone, check_cubic_sparsity
    from lessons_lib.schedules import cubic_sparsity

    def before_end_only(step, final, start, end):
        if step > end:
            raise NotImplementedError("after the end")
        return cubic_sparsity(step, final, start, end)

    result = check_cubic_sparsity(before_end_only)
    out = capsys.readouterr().out
    assert isinstance(result, NotDone) and repr(result) == "0"
    assert ("cubic_sparsity is not implemented yet: it raised NotImplementedError('after the end') for "
            "cubic_sparsity(step=15, final_sparsity=0.9, start=0, end=10).") in out

    def helper():                               # a stub in the learner's own helper is theirs too
        raise NotImplementedError
    assert isinstance(check_count_zeros(lambda t: helper()), NotDone)


def test_checker_arguments(capsys):
    from lessons_lib.checks import NotDone

    check_count_zeros(count_zeros=lambda t: int((t == 0).sum()))          # by keyword, as documented
    assert "✓ count_zeros passes" in capsys.readouterr().out
    with pytest.raises(TypeError, match="check_count_zeros"):
        check_count_zeros()
    assert "got what a check returned (NotDone): was count_zeros = check_...(count_zeros) run?" in \
        _failure(check_count_zeros, NotDone("count_zeros"))
    assert "got NotDone, what a check returns for an exercise not done yet (not the number 0)" in \
        _failure(check_count_zeros, lambda t: NotDone("count_zeros"))
    assert "count_zeros raised ExerciseFailure" in _failure(check_count_zeros, check_count_zeros)


def test_nbgrader_reads_zero_for_a_stub_and_full_points_only_for_a_pass():
    """nbgrader's own grading of a check cell's outputs: no output, a number, or an error."""
    nbformat = pytest.importorskip("nbformat")
    utils = pytest.importorskip("nbgrader.utils")

    def points(outputs):
        cell = nbformat.v4.new_code_cell("check(fn)", outputs=outputs)
        cell.metadata["nbgrader"] = {"grade": True, "solution": False, "points": 2, "grade_id": "c", "locked": True}
        return utils.determine_grade(cell)[0]

    stub = check_count_zeros(_not_implemented)
    data = {"text/plain": repr(stub), "text/html": stub._repr_html_()}
    assert points([nbformat.v4.new_output("stream", name="stdout", text="✗ ..."),
                   nbformat.v4.new_output("execute_result", data=data, execution_count=1)]) == 0
    assert check_count_zeros(lambda t: int((t == 0).sum())) is None                    # no value shown
    assert points([nbformat.v4.new_output("stream", name="stdout", text="✓ ...")]) == 2
    assert points([nbformat.v4.new_output("error", ename="ExerciseFailure", evalue="", traceback=[])]) == 0
