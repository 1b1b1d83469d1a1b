"""The generic checkers: each passes a correct object and rejects the common wrong ones with a clear message."""

import math

import pytest
import torch

from dgm_course import checks
from dgm_course.checks import CheckError


def masked_linear(dim, offset):
    """x -> x @ (W * mask).T with mask = tril(ones, offset); offset -1 is autoregressive, 0 sees itself."""
    w = torch.randn(dim, dim, generator=torch.Generator().manual_seed(0))
    mask = torch.tril(torch.ones(dim, dim), offset)
    return lambda x: x @ (w * mask).T


def test_autoregressive_accepts_strict_mask_and_rejects_offsets():
    checks.check_autoregressive(masked_linear(6, -1), 6, require_all=True)
    with pytest.raises(CheckError, match="output 0 depends on itself"):
        checks.check_autoregressive(masked_linear(6, 0), 6)
    with pytest.raises(CheckError, match="drops connections"):
        checks.check_autoregressive(masked_linear(6, -2), 6, require_all=True)
    checks.check_autoregressive(masked_linear(6, -2), 6)  # still autoregressive, only weaker


def test_autoregressive_with_an_ordering_and_several_outputs_per_variable():
    order = [2, 0, 3, 1]
    perm = torch.tensor(order)
    base = masked_linear(4, -1)

    def f(x):  # autoregressive in the order 2, 0, 3, 1, with K = 3 outputs per variable
        y = torch.empty_like(x)
        y[:, perm] = base(x[:, perm])
        return torch.stack([y, 2 * y, y**2], -1)

    checks.check_autoregressive(f, 4, order=order, require_all=True)
    with pytest.raises(CheckError, match="comes after it in the ordering"):
        checks.check_autoregressive(f, 4)
    with pytest.raises(ValueError, match="permutation"):
        checks.check_autoregressive(f, 4, order=[0, 0, 1, 2])


def test_invertible_and_log_det():
    a = torch.tensor([[2.0, 0.0], [0.5, 0.3]], dtype=torch.float64)

    def forward(x):
        return x @ a.T, torch.linalg.slogdet(a)[1].expand(len(x))

    def inverse(y):
        return y @ torch.linalg.inv(a).T

    x = torch.randn(5, 2, dtype=torch.float64)
    checks.check_invertible(forward, inverse, x)
    checks.check_log_det(forward, x)
    with pytest.raises(CheckError, match="does not undo"):
        checks.check_invertible(forward, lambda y: y @ torch.linalg.inv(a), x)  # transpose forgotten
    with pytest.raises(CheckError, match="(?s)log_det is wrong.*expected: log\\|det J\\| = -0.5108"):
        checks.check_log_det(lambda x: (x @ a.T, torch.zeros(len(x), dtype=x.dtype)), x)
    with pytest.raises(CheckError, match="no log-determinant"):
        checks.check_log_det(lambda x: x @ a.T, x)
    with pytest.raises(CheckError, match="wrong shape"):
        checks.check_log_det(lambda x: (x @ a.T, torch.zeros(1, len(x), dtype=x.dtype)), x)


def test_normalized_1d_and_2d():
    normal = torch.distributions.Normal(0.0, 1.0)
    checks.check_normalized(normal.log_prob, -10, 10)
    with pytest.raises(CheckError, match="(?s)does not integrate to 1.*2.50"):
        checks.check_normalized(lambda x: normal.log_prob(x) + math.log(2.5), -10, 10)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2))
    checks.check_normalized(mvn.log_prob, -8, 8, dim=2)
    with pytest.raises(CheckError, match="does not integrate"):
        checks.check_normalized(lambda x: normal.log_prob(x[:, 0]), -8, 8, dim=2)  # a marginal is not a 2-D density


def test_sampler_chi_square():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.0])
    checks.check_sampler(lambda n, g: torch.multinomial(probs, n, replacement=True, generator=g), probs)
    near = torch.tensor([0.12, 0.2, 0.28, 0.4, 0.0])
    with pytest.raises(CheckError, match="does not follow the target distribution"):
        checks.check_sampler(lambda n, g: torch.multinomial(near, n, replacement=True, generator=g), probs)
    with pytest.raises(CheckError, match="impossible outcome"):
        checks.check_sampler(lambda n, g: torch.randint(0, 5, (n,), generator=g), probs)
    with pytest.raises(CheckError, match="out of range"):
        checks.check_sampler(lambda n, g: torch.randint(0, 5, (n,), generator=g) + 3, probs)
    with pytest.raises(CheckError, match="wrong shape"):
        checks.check_sampler(lambda n, g: torch.zeros(n, 1, dtype=torch.long), probs)


def test_close_and_tensor_and_sum_to_one():
    checks.check_close("x", torch.tensor([1.0, 2.0]), [1.0, 2.0 + 1e-8])
    with pytest.raises(CheckError, match=r"(?s)expected: 2 \(at flat index 1\).*found:    2.5"):
        checks.check_close("x", torch.tensor([1.0, 2.5]), [1.0, 2.0])
    with pytest.raises(CheckError, match="wrong shape"):
        checks.check_close("x", torch.zeros(3), torch.zeros(2))
    with pytest.raises(CheckError, match="wrong type"):
        checks.check_tensor("x", [1.0])
    with pytest.raises(CheckError, match=r"wrong shape(?s:.*)\(\*, 3\)"):
        checks.check_tensor("x", torch.zeros(2, 4), shape=(None, 3))
    with pytest.raises(CheckError, match="NaN"):
        checks.check_tensor("x", torch.tensor([float("nan")]))
    with pytest.raises(CheckError, match="dtype"):
        checks.check_tensor("x", torch.zeros(2), dtype=torch.long)
    checks.check_sum_to_one("p", torch.softmax(torch.randn(4, 3), -1))
    with pytest.raises(CheckError, match="does not sum to 1 along dim 0"):
        checks.check_sum_to_one("p", torch.softmax(torch.randn(4, 3), -1), dim=0)


def test_scalar_accepts_one_finite_number_and_rejects_the_rest():
    assert checks.check_scalar("loss", torch.tensor([[2.5]])).shape == ()
    with pytest.raises(CheckError, match=r"(?s)loss returns the wrong thing.*tensor of shape \(3,\).*take the mean"):
        checks.check_scalar("loss", torch.zeros(3), "take the mean")
    with pytest.raises(CheckError, match="found:    float"):
        checks.check_scalar("loss", 2.5)
    with pytest.raises(CheckError, match=r"(?s)loss is not finite.*found:    inf.*hint:     use softplus"):
        checks.check_scalar("loss", torch.tensor(math.inf), "take the mean", "use softplus")
    with pytest.raises(CheckError, match=r"(?s)found:    nan.*hint:     take the mean"):
        checks.check_scalar("loss", torch.tensor(math.nan), "take the mean")


def test_failure_message_layout_and_pass_line(capsys):
    with pytest.raises(CheckError) as info:
        checks.fail("the thing is wrong", "1", "2", "look here")
    assert str(info.value).splitlines() == ["the thing is wrong", "  expected: 1", "  found:    2", "  hint:     look here"]
    assert isinstance(info.value, AssertionError)
    checks.passed("Exercise 1")
    assert capsys.readouterr().out == "[passed] Exercise 1\n"


@checks.exercise("ex9_double", "Exercise 9: doubling")
def check_double(double):
    checks.check_close("double(x)", double(torch.arange(3.0)), torch.tensor([0.0, 2.0, 4.0]))


def test_exercise_decorator_verdicts(capsys):
    check_double(lambda x: 2 * x)
    assert capsys.readouterr().out == "[passed] Exercise 9: doubling\n"

    def stub(x):
        raise NotImplementedError("ex9_double: replace this line with your solution")

    with pytest.raises(checks.NotDoneError, match="^ex9_double is not done yet"):
        check_double(stub)
    with pytest.raises(CheckError, match="(?s)raised RuntimeError.*line \\d+ of your code: .*x @ x.T @ x"):
        check_double(lambda x: x @ x.T @ x)
    with pytest.raises(CheckError, match="not close enough"):
        check_double(lambda x: 2 * x + 1e-3)
    assert "[passed]" not in capsys.readouterr().out


def test_exercise_decorator_keeps_the_callers_random_state_and_dtype():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    torch.set_default_dtype(torch.float64)
    try:
        check_double(lambda x: (2 * x).float() + 0 * torch.rand(3))  # draws from the global generator
        assert torch.get_default_dtype() == torch.float64
    finally:
        torch.set_default_dtype(torch.float32)
    assert torch.equal(torch.rand(2), expected)


def test_plain_rejects_answers_that_lie():
    class Liar:
        def __eq__(self, other):
            return True

    class Sub(torch.Tensor):
        pass

    assert type(checks.plain("x", torch.ones(2).as_subclass(torch.Tensor))) is torch.Tensor
    assert checks.plain("x", 3).item() == 3
    with pytest.raises(CheckError, match="Liar"):
        checks.plain("x", Liar())
    with pytest.raises(CheckError, match="subclass"):
        checks.plain("x", torch.ones(2).as_subclass(Sub))
    with pytest.raises(CheckError, match="subclass"):
        checks.check_close("x", torch.ones(2).as_subclass(Sub), torch.ones(2))


def test_tolerance_follows_the_dtype_and_messages_show_the_difference():
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    checks.check_close("exp", x.float().exp(), x.exp())  # float32 work against a float64 reference
    with pytest.raises(CheckError, match="expected: 1\\n  found:    1\\.0000001$"):
        checks.check_close("x", torch.tensor([1.0000001], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64))


def test_a_failed_check_shows_its_message_without_the_checkers_traceback(tmp_path):
    import subprocess
    import sys

    import nbformat
    from nbclient import NotebookClient

    code = "from dgm_course import checks\nchecks.fail('the answer is wrong', 'one thing', 'another', 'a hint')"
    script = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert script.returncode == 1
    assert script.stderr.startswith("CheckError: the answer is wrong") and "Traceback" not in script.stderr

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=60, allow_errors=True, kernel_name="python3").execute(cwd=str(tmp_path))
    error = nb.cells[0].outputs[-1]
    text = "\n".join(error.traceback)
    assert error.ename == "CheckError" and "the answer is wrong" in text and "a hint" in text
    assert "checks.py" not in text and "Traceback" not in text
