r"""Decay-to-zero learning-rate schedules: linear, cosine, WSD and tables.

Every schedule maps the optimizer step :math:`t` to a learning rate, is
jit-friendly (pure ``jnp`` in the step) and is validated eagerly. With a
linear warm-up of :math:`W` steps (optax's convention: 0 at step 0, the peak
:math:`\eta` at step :math:`W`) and :math:`T` total steps:

.. math::
    \text{linear:}\quad \eta_t = \eta\,\frac{T - t}{T - W}, \qquad
    \text{cosine:}\quad \eta_t = \frac{\eta}{2}\Big(1 + \cos\frac{\pi (t - W)}{T - W}\Big)
    \qquad (t \ge W).

Warmup-stable-decay (WSD) holds :math:`\eta` until the cool-down of :math:`C`
steps and then decays to 0 with :math:`1 - s` (``"linear"``) or
:math:`1 - \sqrt{s}` (``"1-sqrt"``), :math:`s = (t - T + C)/C`.

**Step convention.** These schedules reach 0 at step :math:`T` (the paper's
:math:`\eta(1 - t/T)`), so the last trained step :math:`T-1` still has a
small positive rate. The refined schedule (:mod:`optim_lab.schedules.refined`)
reaches 0 at :math:`t = T-1`: ``refine_schedule`` of constant norms equals
``optax.linear_schedule(1, 0, T - 1)``, not ``linear_decay``.

References:
    Defazio, Cutkosky, Mehta, Mishchenko, `Optimal Linear Decay Learning Rate
    Schedules and Further Refinements <https://arxiv.org/abs/2310.07831>`_
    (v1: "When, Why and How Much? Adaptive Learning Rate Scheduling by
    Refinement"), 2023.
    Hägele et al., `Scaling Laws and Compute-Optimal Training beyond Fixed
    Training Durations <https://arxiv.org/abs/2405.18392>`_, 2024 (WSD,
    1-sqrt cool-down).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np
import optax

from optim_lab import _validation

COOLDOWNS = ("linear", "1-sqrt")


def _check_common(base_lr: float, total_steps: int, warmup_steps: int) -> None:
    _validation.check_positive("learning_rate", base_lr)
    _validation.check_int("total_steps", total_steps, low=2)
    _validation.check_int("warmup_steps", warmup_steps, low=0)
    if warmup_steps >= total_steps:
        raise ValueError(f"warmup_steps must be < total_steps ({total_steps}) "
                         f"to leave a decay phase, got {warmup_steps}")


def _as_float(count) -> jnp.ndarray:
    """The step as JAX's default float (float64 under x64)."""
    return jnp.asarray(count, dtype=jnp.result_type(float))


def _warmup(step: jnp.ndarray, warmup_steps: int) -> jnp.ndarray:
    """Linear ramp 0 -> 1 over ``warmup_steps`` (1 when there is none)."""
    if warmup_steps == 0:
        return jnp.ones_like(step)
    return jnp.clip(step / warmup_steps, 0.0, 1.0)


def linear_decay(base_lr: float, total_steps: int,
                 warmup_steps: int = 0) -> optax.Schedule:
    """Linear warm-up to ``base_lr``, then linear decay to 0 at ``total_steps``.

    Args:
        base_lr: Peak learning rate, positive.
        total_steps: Run length :math:`T \\ge 2`; the rate is 0 from step T on.
        warmup_steps: Linear warm-up length, in ``[0, total_steps)``.

    Returns:
        An ``optax.Schedule``.

    Examples:
        >>> from optim_lab.schedules.decay import linear_decay
        >>> sched = linear_decay(1.0, 10, warmup_steps=2)
        >>> [round(float(sched(t)), 3) for t in (0, 1, 2, 6, 10)]
        [0.0, 0.5, 1.0, 0.5, 0.0]
    """
    _check_common(base_lr, total_steps, warmup_steps)

    def schedule(count):
        t = _as_float(count)
        decay = jnp.clip((total_steps - t) / (total_steps - warmup_steps), 0.0, 1.0)
        return base_lr * _warmup(t, warmup_steps) * decay
    return schedule


def cosine_decay(base_lr: float, total_steps: int,
                 warmup_steps: int = 0) -> optax.Schedule:
    """Linear warm-up, then half-cosine decay to 0 at ``total_steps``.

    Equals ``optax.warmup_cosine_decay_schedule(0, base_lr, warmup_steps,
    total_steps, end_value=0)``.

    Args:
        base_lr: Peak learning rate, positive.
        total_steps: Run length :math:`T \\ge 2`.
        warmup_steps: Linear warm-up length, in ``[0, total_steps)``.

    Returns:
        An ``optax.Schedule``.

    Examples:
        >>> from optim_lab.schedules.decay import cosine_decay
        >>> sched = cosine_decay(1.0, 10)
        >>> [round(float(sched(t)), 3) for t in (0, 5, 10)]
        [1.0, 0.5, 0.0]
    """
    _check_common(base_lr, total_steps, warmup_steps)

    def schedule(count):
        t = _as_float(count)
        s = jnp.clip((t - warmup_steps) / (total_steps - warmup_steps), 0.0, 1.0)
        return base_lr * _warmup(t, warmup_steps) * 0.5 * (1.0 + jnp.cos(jnp.pi * s))
    return schedule


def wsd(base_lr: float, total_steps: int, warmup_steps: int = 0,
        cooldown_steps: int | None = None,
        cooldown: str = "linear") -> optax.Schedule:
    """Warmup-stable-decay: warm-up, constant ``base_lr``, then a cool-down to 0.

    Args:
        base_lr: Learning rate of the stable phase, positive.
        total_steps: Run length :math:`T \\ge 2`; the rate is 0 from step T on.
        warmup_steps: Linear warm-up length, ``>= 0``.
        cooldown_steps: Cool-down length :math:`C \\ge 1`; ``None`` means
            ``max(1, round(0.2 * total_steps))``. ``warmup_steps + C`` must not
            exceed ``total_steps``.
        cooldown: ``"linear"`` (:math:`1 - s`) or ``"1-sqrt"``
            (:math:`1 - \\sqrt{s}`).

    Returns:
        An ``optax.Schedule``.

    Examples:
        >>> from optim_lab.schedules.decay import wsd
        >>> sched = wsd(1.0, 10, cooldown_steps=4, cooldown="1-sqrt")
        >>> [round(float(sched(t)), 3) for t in (0, 6, 7, 10)]
        [1.0, 1.0, 0.5, 0.0]
    """
    _check_common(base_lr, total_steps, warmup_steps)
    if cooldown_steps is None:
        cooldown_steps = max(1, round(0.2 * total_steps))
    _validation.check_int("cooldown_steps", cooldown_steps, low=1)
    _validation.check_choice("cooldown", cooldown, COOLDOWNS)
    if warmup_steps + cooldown_steps > total_steps:
        raise ValueError(
            f"warmup_steps + cooldown_steps must be <= total_steps "
            f"({total_steps}), got {warmup_steps} + {cooldown_steps}")
    start = total_steps - cooldown_steps

    def schedule(count):
        t = _as_float(count)
        s = jnp.clip((t - start) / cooldown_steps, 0.0, 1.0)
        decay = 1.0 - (s if cooldown == "linear" else jnp.sqrt(s))
        return base_lr * _warmup(t, warmup_steps) * decay
    return schedule


def from_table(base_lr: float, table: Sequence[float] | np.ndarray,
               total_steps: int) -> optax.Schedule:
    """``base_lr * table``, interpolated linearly over the steps ``0..T-1``.

    The table's entries sit at equally spaced points of the run:
    ``table[0]`` at step 0 and ``table[-1]`` at step ``T - 1``; the rate is
    ``base_lr * interp(t / (T - 1), linspace(0, 1, len(table)), table)``, and 0
    from step ``T`` on; a table of ``T`` entries is returned exactly, one entry
    per step. The table is a ``jnp`` constant, so the schedule jits.

    Args:
        base_lr: Multiplier of the table, positive.
        table: At least 2 finite, non-negative multipliers.
        total_steps: Run length :math:`T \\ge 2`.

    Returns:
        An ``optax.Schedule``.

    Examples:
        >>> from optim_lab.schedules.decay import from_table
        >>> sched = from_table(0.1, [1.0, 0.5, 0.0], 5)
        >>> [round(float(sched(t)), 3) for t in range(6)]
        [0.1, 0.075, 0.05, 0.025, 0.0, 0.0]
    """
    _validation.check_positive("learning_rate", base_lr)
    _validation.check_int("total_steps", total_steps, low=2)
    values = np.asarray(table, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError(f"table must be 1-D with >= 2 entries, got shape "
                         f"{values.shape}")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("table must hold finite, non-negative values")
    tbl = jnp.asarray(values)
    scale = (values.size - 1) / (total_steps - 1)  # table entries per step

    def schedule(count):
        pos = jnp.asarray(count, tbl.dtype) * scale  # exact when len == T
        i = jnp.clip(jnp.floor(pos), 0, values.size - 2).astype(jnp.int32)
        frac = jnp.clip(pos - i, 0.0, 1.0)
        value = base_lr * (tbl[i] + frac * (tbl[i + 1] - tbl[i]))
        return jnp.where(jnp.asarray(count) > total_steps - 1, 0.0, value)
    return schedule
