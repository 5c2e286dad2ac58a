r"""Gradient-norm logs: record them while training, read them back to refine.

:func:`log_grad_norm` is an identity transformation that stores the global
norm of the gradient it receives,

.. math::
    \|g\|_2 = \Big(\sum_i g_i^2\Big)^{1/2} \quad\text{or}\quad
    \|g\|_1 = \sum_i |g_i|,

in its state. Place it **first** in the chain so it sees the raw gradient
(before clipping, Adam's preconditioner and decoupled weight decay). The
training core logs the same quantities as ``grads/global/l2`` and
``grads/global/l1``.

:func:`load_grad_norms` reads them back from a previous run's workdir
(``metrics.jsonl`` + ``config.json``) or from a ``step,norm`` CSV file, and
refuses a run that is missing, unfinished, or made with another optimizer or
step count (unless ``resample=True``).

References:
    Defazio, Cutkosky, Mehta, Mishchenko, `Optimal Linear Decay Learning Rate
    Schedules and Further Refinements <https://arxiv.org/abs/2310.07831>`_,
    2023.
"""

from __future__ import annotations

import csv
import pathlib
import warnings
from typing import Any
from typing import NamedTuple

import jax
import numpy as np
import optax

from optim_lab import _numerics
from optim_lab import _validation
from optim_lab import rundir

METRICS_FILE = rundir.METRICS_FILE
CONFIG_FILE = rundir.CONFIG_FILE
ORDS = (1, 2)


class LogGradNormState(NamedTuple):
    global_norm: jax.Array  # shape=(), the last gradient's L1 or L2 norm


def log_grad_norm(ord: int = 2) -> optax.GradientTransformation:  # noqa: A002
    """Identity on updates that records their global L2 (or L1) norm.

    Args:
        ord: 2 for the L2 norm (``optax.global_norm``), 1 for the sum of
            absolute values over every leaf.

    Returns:
        An ``optax.GradientTransformation`` whose state is a
        ``LogGradNormState``.

    Examples:
        >>> import jax.numpy as jnp
        >>> import optax
        >>> from optim_lab.schedules.norm_log import log_grad_norm
        >>> tx = optax.chain(log_grad_norm(ord=1), optax.sgd(0.1))
        >>> g = {"a": jnp.array([3.0, -4.0])}
        >>> _, state = tx.update(g, tx.init(g))
        >>> float(state[0].global_norm)
        7.0
    """
    _validation.check_choice("ord", ord, ORDS)

    def init_fn(params):
        del params
        return LogGradNormState(global_norm=jax.numpy.zeros((), jax.numpy.float32))

    def update_fn(updates, state, params=None):
        del params, state
        if ord == 2:
            value = optax.global_norm(updates)
        else:
            value = _numerics.tree_abs_sum(updates)
        return updates, LogGradNormState(global_norm=value.astype(jax.numpy.float32))

    return optax.GradientTransformation(init_fn, update_fn)


def _read_jsonl(workdir: pathlib.Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, values)`` of ``key`` in a run's metrics.jsonl, one per step."""
    try:
        records = rundir.read_metrics(workdir)
    except ValueError as e:
        raise ValueError(f"refine_from: {e}") from e
    steps, values = rundir.metric_series(records, key)
    last = {int(st): v for st, v in zip(steps, values)}  # a step logged twice: last wins
    order = sorted(last)
    return np.asarray(order, np.float64), np.asarray([last[st] for st in order])


def _read_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """``step,norm`` rows after a header line (extra columns are ignored)."""
    steps, values = [], []
    with path.open(newline="") as f:
        rows = csv.reader(f)
        next(rows, None)
        for row in rows:
            if len(row) >= 2:
                steps.append(rundir.as_float(row[0]))
                values.append(rundir.as_float(row[1]))
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def _previous_config(workdir: pathlib.Path) -> dict[str, Any]:
    try:
        return rundir.load_config(workdir)
    except ValueError as e:
        raise ValueError(f"refine_from: {e}") from e


def _check_compatible(cfg: dict[str, Any], last_step: float, where: pathlib.Path,
                      optimizer: str | None, total_steps: int | None,
                      resample: bool) -> None:
    prev_steps = cfg.get("steps")
    if prev_steps is not None and last_step < prev_steps:
        raise ValueError(f"refine_from: the run in {where} is unfinished (norms "
                         f"logged up to step {int(last_step)} of {prev_steps})")
    prev_opt = (cfg.get("optimizer") or {}).get("name")
    if optimizer is not None and prev_opt != optimizer:
        msg = (f"refine_from: {where} was trained with optimizer {prev_opt!r}, "
               f"this run uses {optimizer!r}")
        if not resample:
            raise ValueError(msg + "; its norms do not describe this optimizer "
                             "(set resample=True to use them anyway)")
        warnings.warn(msg, UserWarning, stacklevel=4)
    if total_steps is not None and prev_steps != total_steps and not resample:
        raise ValueError(f"refine_from: {where} ran {prev_steps} steps, this run "
                         f"has {total_steps}; set resample=True to stretch its "
                         "refined schedule over the new length")


def _uniform(steps: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Values on equally spaced steps (logs may end with a shorter window)."""
    ok = np.isfinite(steps)
    steps, values = steps[ok], values[ok]
    if len(steps) < 2 or np.allclose(np.diff(steps), steps[1] - steps[0]):
        return values
    return np.interp(np.linspace(steps[0], steps[-1], len(steps)), steps, values)


def load_grad_norms(refine_from: str | pathlib.Path, *, norm: str = "l2",
                    optimizer: str | None = None, total_steps: int | None = None,
                    resample: bool = False) -> np.ndarray:
    """A previous run's logged gradient norms, in step order (float64).

    Args:
        refine_from: A run directory (``metrics.jsonl`` with ``"step"`` and
            ``"grads/global/<norm>"`` entries, ``config.json`` with
            ``optimizer.name`` and ``steps``) or a CSV file of ``step,norm``
            rows after a header line (no compatibility checks).
        norm: ``"l2"`` or ``"l1"``: which logged norm to read.
        optimizer: The new run's optimizer; must match the previous run's.
        total_steps: The new run's length; must match the previous run's.
        resample: Accept a different optimizer (with a warning) or length.

    Returns:
        The norms on equally spaced logged steps; NaN/inf are kept (the
        refinement interpolates over them).

    Raises:
        ValueError: The path is missing, is not a run, holds an unfinished
            run, has fewer than 2 logged norms, or does not match.
    """
    _validation.check_choice("norm", norm, ("l2", "l1"))
    path = pathlib.Path(refine_from).expanduser()
    if not path.exists():
        raise ValueError(f"refine_from: {path} does not exist")
    cfg = None
    if path.is_file():
        steps, values = _read_csv(path)
        where = path
    else:
        where = path / METRICS_FILE
        if not where.exists():
            raise ValueError(f"refine_from: {path} has no {METRICS_FILE}; it is "
                             "not a finished optim_lab run")
        cfg = _previous_config(path)
        steps, values = _read_jsonl(path, f"grads/global/{norm}")
    if len(values) < 2:
        raise ValueError(f"refine_from: {where} has {len(values)} logged "
                         f"'{norm}' gradient norms; need >= 2")
    if cfg is not None:
        _check_compatible(cfg, steps[-1], path, optimizer, total_steps, resample)
    return _uniform(steps, values)


def write_grad_norm_csv(workdir: str | pathlib.Path, path: str | pathlib.Path, *,
                        norm: str = "l2") -> pathlib.Path:
    """Exports a run's logged norms as ``step,norm`` CSV (readable by
    :func:`load_grad_norms`, e.g. to refine from a run whose workdir is gone).

    Returns:
        ``path``.
    """
    _validation.check_choice("norm", norm, ("l2", "l1"))
    metrics = pathlib.Path(workdir) / METRICS_FILE
    if not metrics.exists():
        raise ValueError(f"{workdir} has no {METRICS_FILE}")
    steps, values = _read_jsonl(pathlib.Path(workdir), f"grads/global/{norm}")
    path = pathlib.Path(path)
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["step", f"grads/global/{norm}"])
        out.writerows((int(s), repr(float(v))) for s, v in zip(steps, values))
    return path
