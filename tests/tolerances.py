"""Float comparisons in units of the dtype's precision (BUILD.md, "Numerical tolerances").

XLA:CPU emits different vector / FMA code on different CPUs (AVX2 vs AVX-512,
AMD vs Intel), so float results legitimately differ in the last bits between
machines. A tolerance written as a bare number (``atol=1e-7``) silently
assumes one machine's rounding; here every bound is a count of machine
epsilons of the compared dtype, scaled by the size of the numbers involved.

``assert_close(actual, expected, ulps=n)`` checks, element by element::

    |actual - expected| <= n * eps(dtype) * (|expected| + scale)

i.e. numpy's ``rtol + atol`` form with ``rtol = n·eps`` and
``atol = n·eps·scale`` (an existing ``rtol, atol`` pair is ``ulps =
rtol / eps``, ``scale = atol / rtol``).

* ``eps(dtype)`` is ``jnp.finfo(dtype).eps`` (2^-23 for float32, 2^-52 for
  float64, 2^-7 for bfloat16): relative to ``|expected|`` one unit is between
  one and two true ulps of the compared value.
* ``scale`` is the magnitude of the numbers the result was computed from,
  below which an element is in effect compared in absolute terms. The
  default, ``max |expected|`` over the array (per leaf of a pytree), makes
  the bound *normwise*: an element that is small only because of
  cancellation between O(max) quantities gets the same absolute slack as the
  largest element. Pass ``scale=0`` for a purely element-wise relative bound
  (right for quantities formed without cancellation: squares, norms, ratios of
  positives), a number for the known size of the inputs (e.g. when
  ``expected`` is all zeros), or an array broadcastable to ``expected`` (e.g.
  ``abs(params_before)`` for one step ``params + small update``).
* ``dtype`` defaults to the *least* precise floating dtype of ``actual`` and
  ``expected`` (a float32 result against a float64 oracle is judged in float32
  eps); Python scalars and lists carry no dtype, so when neither side has a
  floating dtype ``dtype=`` must be passed.
* NaNs must sit at the same positions and infinities must match exactly.

Rules of thumb (see BUILD.md): >= 4 ulps for one float32 step; multi-step
trajectories keep a rounding budget that grows with the step count, written
in the same units (``ulps=84 + step / 2``); float64 golden parity is written
in float64 eps.

Set ``OPTIM_LAB_TOLERANCE_REPORT=<file>`` to append, for every call, the
measured error in the same units next to the allowed ``ulps`` (one JSON line
per call) — the way to re-derive budgets on a new machine.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

F32 = jnp.float32
F64 = jnp.float64


def eps(dtype: Any) -> float:
    """Machine epsilon of a floating dtype (``jnp.finfo``, so bf16 works)."""
    return float(jnp.finfo(dtype).eps)


def ulp(dtype: Any, n: float = 1.0) -> float:
    """``n`` machine epsilons of ``dtype``: an absolute/relative tolerance value.

    For ``rtol=`` / ``pytest.approx(rel=)`` where ``assert_close`` does not fit.
    """
    return n * eps(dtype)


def _float_dtype(x: Any):
    dt = getattr(x, "dtype", None)
    if dt is None or not jnp.issubdtype(dt, jnp.floating):
        return None
    return jnp.dtype(dt)


def compare_dtype(actual: Any, expected: Any, dtype: Any = None):
    """The dtype whose eps judges the comparison (see the module docstring)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    found = [d for d in (_float_dtype(actual), _float_dtype(expected)) if d is not None]
    if not found:
        raise TypeError("assert_close: neither side has a floating dtype "
                        "(Python scalars / lists); pass dtype=")
    return max(found, key=eps)


def _is_leaf(x: Any) -> bool:
    # lists / tuples of numbers are arrays here, not pytrees of scalars
    return isinstance(x, (list, tuple)) and not hasattr(x, "_fields")


def _measure(a: np.ndarray, e: np.ndarray, unit: np.ndarray):
    """Element-wise error in units of ``eps * (|e| + scale)`` (inf if unit 0)."""
    diff = np.abs(a - e)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.where(diff == 0, 0.0, diff / unit)
    return diff, np.where(np.isnan(err), np.inf, err)


def _check_leaf(actual, expected, *, ulps, dtype, scale, err_msg):
    """Raises if out of bounds; returns ``(measured, allowed)`` at the worst element."""
    dt = compare_dtype(actual, expected, dtype)
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if e.shape != a.shape:
        try:
            e = np.broadcast_to(e, a.shape)  # a scalar expected broadcasts
        except ValueError:
            raise AssertionError(
                f"{err_msg}: shape {a.shape} vs expected {e.shape}") from None
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if not np.array_equal(nan_a, nan_e):
        raise AssertionError(f"{err_msg}: NaN positions differ "
                             f"({int(nan_a.sum())} actual vs {int(nan_e.sum())} expected)")
    inf = np.isinf(a) | np.isinf(e)
    if not np.array_equal(a[inf], e[inf]):
        raise AssertionError(f"{err_msg}: infinities differ")
    ok = ~(nan_a | inf)
    allowed = np.broadcast_to(np.asarray(ulps, np.float64), ok.shape)[ok]
    if not ok.any():
        return 0.0, float(np.max(ulps))
    a, e = a[ok], e[ok]
    if scale is None:
        s = np.max(np.abs(e))
    else:
        s = np.broadcast_to(np.asarray(scale, np.float64), ok.shape)[ok]
    unit = eps(dt) * (np.abs(e) + s)
    diff, err = _measure(a, e, unit)
    with np.errstate(divide="ignore", invalid="ignore"):
        used = np.where(err == 0, 0.0, err / allowed)
    worst = int(np.argmax(used))
    measured, limit = float(err[worst]), float(allowed[worst])
    if measured > limit:
        bad = int(np.sum(err > allowed))
        raise AssertionError(
            f"{err_msg}: {bad} of {err.size} elements off by more than the allowed "
            f"eps ({dt.name} eps = {eps(dt):.3g}) of |expected| + scale; worst "
            f"{measured:.3g} eps (allowed {limit:g}): actual {a[worst]!r}, expected "
            f"{e[worst]!r}, |diff| = {diff[worst]:.3g}")
    return measured, limit


def _report(ulps: float, measured: float, dtype, err_msg: str) -> None:
    path = os.environ.get("OPTIM_LAB_TOLERANCE_REPORT")
    if not path:
        return
    frame = next((f for f in reversed(traceback.extract_stack()[:-2])
                  if f.filename != __file__), None)
    where = f"{os.path.relpath(frame.filename)}:{frame.lineno}" if frame else "?"
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    with open(path, "a") as f:
        f.write(json.dumps({"where": where, "test": test, "msg": err_msg,
                            "dtype": str(dtype), "ulps": ulps,
                            "measured": measured}) + "\n")


def assert_close(actual: Any, expected: Any, *, ulps: float, dtype: Any = None,
                 scale: Any = None, err_msg: str = "") -> None:
    """Asserts ``|actual - expected| <= ulps * eps(dtype) * (|expected| + scale)``.

    Args:
        actual: An array, scalar, list, or a pytree (dict / NamedTuple) of them.
        expected: The same structure (a scalar ``expected`` broadcasts).
        ulps: The allowed error in machine epsilons (see the module docstring;
            >= 4 for one float32 step); a number, or an array broadcastable to
            ``actual`` (e.g. a budget growing along a trajectory's step axis).
        dtype: The dtype whose eps is the unit; default the least precise
            floating dtype of the two sides.
        scale: Absolute floor of the magnitude, per leaf: default
            ``max |expected|`` (normwise); ``0`` for element-wise relative; a
            number or a broadcastable array otherwise.
        err_msg: Prefix of the failure message.
    """
    a_paths, a_def = jax.tree_util.tree_flatten_with_path(actual, is_leaf=_is_leaf)
    e_leaves, e_def = jax.tree.flatten(expected, is_leaf=_is_leaf)
    bare = jax.tree_util.treedef_is_leaf(a_def) or jax.tree_util.treedef_is_leaf(e_def)
    if a_def != e_def and not (bare and len(a_paths) == len(e_leaves) == 1):
        raise AssertionError(f"{err_msg}: tree structures differ: {a_def} vs {e_def}")
    pairs = [(x, y, f"{err_msg}{jax.tree_util.keystr(p)}")
             for (p, x), y in zip(a_paths, e_leaves)]
    for x, y, msg in pairs:
        measured, limit = _check_leaf(x, y, ulps=ulps, dtype=dtype, scale=scale,
                                      err_msg=msg or "assert_close")
        _report(limit, measured, compare_dtype(x, y, dtype), msg)
