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
