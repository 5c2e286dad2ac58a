"""Argument validation: messages name the argument and the allowed range."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab import _validation as v


@pytest.mark.parametrize("fn,value,match", [
    (v.check_positive, 0.0, r"lr must be in \(0, inf\), got 0.0"),
    (v.check_positive, -1, r"lr must be in \(0, inf\), got -1"),
    (v.check_non_negative, -1e-9, r"lr must be in \[0, inf\)"),
    (v.check_unit_interval, 1.0, r"lr must be in \[0, 1\), got 1.0"),
    (v.check_unit_interval, -0.1, r"lr must be in \[0, 1\)"),
    (v.check_positive, float("nan"), "lr must be a number, got NaN"),
])
def test_out_of_range(fn, value, match):
    with pytest.raises(ValueError, match=match):
        fn("lr", value)


_NON_FINITE = [float("inf"), -float("inf"), np.float32("inf"), jnp.asarray(-np.inf)]


@pytest.mark.parametrize("check", [
    lambda x: v.check_range("x", x),  # no bounds at all
    lambda x: v.check_range("x", x, low=-1.0),
    lambda x: v.check_range("x", x, high=1.0),
    lambda x: v.check_positive("x", x),
    lambda x: v.check_non_negative("x", x),
    lambda x: v.check_unit_interval("x", x),
    lambda x: v.check_learning_rate(x),
], ids=["unbounded", "low", "high", "positive", "non_negative", "unit", "lr"])
@pytest.mark.parametrize("value", _NON_FINITE + [float("nan")],
                         ids=["inf", "-inf", "f32_inf", "jax_-inf", "nan"])
def test_non_finite_floats_are_refused_for_every_range(check, value):
    with pytest.raises(ValueError, match=r"(x|learning_rate) must be (finite and in|a number)"):
        check(value)


def test_non_finite_message_names_the_range():
    with pytest.raises(ValueError, match=r"x must be finite and in \(-inf, inf\), got inf"):
        v.check_range("x", float("inf"))
    with pytest.raises(ValueError, match=r"eps must be finite and in \[0, inf\), got -inf"):
        v.check_non_negative("eps", -float("inf"))
    with pytest.raises(ValueError, match=r"b1 must be finite and in \[0, 1\), got inf"):
        v.check_unit_interval("b1", float("inf"))


def test_learning_rate_check():
    v.check_learning_rate(1e-3)
    v.check_learning_rate(np.float32(0.5))
    v.check_learning_rate(optax.linear_schedule(1.0, 0.0, 10))  # not called
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=r"learning_rate must be (finite and )?in "
                                             r"\(0, inf\)"):
            v.check_learning_rate(bad)
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        v.check_learning_rate("fast")
    out = jax.jit(lambda x: (v.check_learning_rate(x), x)[1])(-1.0)
    assert float(out) == -1.0  # traced (inject_hyperparams): skipped


def test_require_params():
    v.require_params("tx", {"w": 1.0})
    with pytest.raises(ValueError, match=r"^tx needs the current parameters: call "
                                         r"update\(updates, state, params\)\.$"):
        v.require_params("tx", None)
    with pytest.raises(ValueError, match=r"tx needs the current parameters \(decay\)"):
        v.require_params("tx", None, "decay")


def test_accepts_in_range_numpy_and_schedules():
    v.check_positive("lr", np.float32(1e-3))
    v.check_unit_interval("b1", jnp.asarray(0.9))
    v.check_positive("lr", optax.linear_schedule(1.0, 0.0, 10), allow_schedule=True)
    with pytest.raises(TypeError, match="lr must be a number"):
        v.check_positive("lr", optax.linear_schedule(1.0, 0.0, 10))
    with pytest.raises(TypeError, match="lr must be a number"):
        v.check_positive("lr", "fast")


def test_traced_values_are_not_checked():
    out = jax.jit(lambda x: (v.check_positive("lr", x), x)[1])(-1.0)
    assert float(out) == -1.0  # inject_hyperparams: init already checked it


def test_choice_and_int():
    with pytest.raises(ValueError, match="scope must be one of 'a', 'b'; got 'c'"):
        v.check_choice("scope", "c", ("a", "b"))
    with pytest.raises(TypeError, match="steps must be an integer"):
        v.check_int("steps", 1.5)
    with pytest.raises(TypeError, match="steps must be an integer"):
        v.check_int("steps", True)
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        v.check_int("steps", 0, low=1)
