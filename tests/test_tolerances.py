"""The suite's comparison helper: bounds in eps units, and it can fail."""

import jax.numpy as jnp
import numpy as np
import pytest

from tolerances import F32
from tolerances import F64
from tolerances import assert_close
from tolerances import compare_dtype
from tolerances import eps
from tolerances import ulp

E32 = float(np.finfo(np.float32).eps)


def test_eps_and_ulp_units():
    assert eps(F32) == E32 and eps(F64) == float(np.finfo(np.float64).eps)
    assert eps(jnp.bfloat16) == 2.0 ** -7
    assert ulp(F32, 8) == 8 * E32


def test_bound_is_ulps_eps_times_expected_plus_scale():
    x = np.float32(1.16)  # the AMD/Intel case: a 1-ulp difference at ~1.16
    one_ulp = np.nextafter(x, np.float32(2))
    assert_close(one_ulp, np.float64(x), ulps=4)
    # 4 eps of (|e| + scale) with scale = |e| (one element): 8 eps of e pass
    e = np.float64(x)
    assert_close(e * (1 + 7.9 * E32), x, ulps=4, dtype=F32)
    with pytest.raises(AssertionError, match="off by more than the allowed"):
        assert_close(e * (1 + 8.1 * E32), x, ulps=4, dtype=F32)


def test_default_scale_is_normwise_and_scale_zero_is_elementwise():
    want = np.array([1.0, 1e-3], np.float32)
    got = want + np.array([0.0, 4 * E32], np.float32)  # 4 eps of the max entry
    assert_close(got, want, ulps=4)
    with pytest.raises(AssertionError, match="1 of 2 elements"):
        assert_close(got, want, ulps=4, scale=0)
    assert_close(got, want, ulps=4, scale=np.array([0.0, 1.0]))  # per element
    # an all-zero expected needs an explicit scale
    with pytest.raises(AssertionError):
        assert_close(np.float32(1e-30), np.float32(0.0), ulps=4)
    assert_close(np.float32(1e-30), np.float32(0.0), ulps=4, scale=1.0)


def test_ulps_may_grow_along_an_axis():
    want = np.ones((3, 2), np.float32)
    got = want + np.array([[1], [3], [5]]) * 2 * E32  # 1, 3, 5 eps of |e| + 1
    assert_close(got, want, ulps=np.array([[1], [3], [5]]))
    with pytest.raises(AssertionError, match=r"2 of 6 elements.*allowed 4.5"):
        assert_close(got, want, ulps=np.array([[1], [3], [4.5]]))


def test_dtype_is_the_least_precise_side():
    assert compare_dtype(jnp.ones(2, jnp.bfloat16), np.ones(2)) == jnp.bfloat16
    assert compare_dtype(np.float32(1), np.float64(1)) == np.float32
    assert compare_dtype(0.5, [1.0], dtype=F32) == np.float32
    with pytest.raises(TypeError, match="pass dtype="):
        assert_close(0.5, 0.5, ulps=1)
    # a float64 comparison is 2^29 times stricter than a float32 one
    with pytest.raises(AssertionError):
        assert_close(np.float64(1.0) + 8 * E32, np.float64(1.0), ulps=1000)


def test_trees_nan_inf_and_shapes():
    assert_close({"a": jnp.ones(3), "b": {"c": jnp.zeros(2)}},
                 {"a": np.ones(3), "b": {"c": np.zeros(2)}}, ulps=0)
    assert_close(jnp.array([0.5, 0.25]), [0.5, 0.25], ulps=0)  # a list is an array
    with pytest.raises(AssertionError, match=r"\['b'\]"):
        assert_close({"a": jnp.ones(3), "b": jnp.ones(2)},
                     {"a": np.ones(3), "b": np.zeros(2)}, ulps=4)
    with pytest.raises(AssertionError, match="structures differ"):
        assert_close({"a": jnp.ones(3)}, {"b": np.ones(3)}, ulps=4)
    assert_close(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]),
                 ulps=0)
    with pytest.raises(AssertionError, match="NaN positions"):
        assert_close(np.array([np.nan, 1.0]), np.array([1.0, 1.0]), ulps=1e9)
    with pytest.raises(AssertionError, match="infinities"):
        assert_close(np.array([np.inf]), np.array([-np.inf]), ulps=1e9)
    with pytest.raises(AssertionError, match="shape"):
        assert_close(np.ones(3), np.ones(2), ulps=1)
    assert_close(jnp.full(3, 0.5), 0.5, ulps=0)  # a scalar expected broadcasts
