"""Linear / cosine / WSD / table schedules: values, conventions, validation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab.schedules import decay

from tolerances import assert_close

T = 20


def values(sched, n=T + 3):
    """The schedule at steps 0..n-1, in its own dtype (float32)."""
    return np.stack([np.asarray(sched(t)) for t in range(n)])


def test_linear_decay_is_optax_linear_schedule_reaching_zero_at_T():
    # one interpolation each, formed differently: 4 eps of |lr| + peak lr
    assert_close(values(decay.linear_decay(0.3, T)),
                 values(optax.linear_schedule(0.3, 0.0, T)), ulps=4)
    assert float(decay.linear_decay(0.3, T)(T)) == 0.0
    assert float(decay.linear_decay(0.3, T)(T - 1)) > 0.0


def test_linear_decay_with_warmup_matches_joined_optax_schedules():
    w = 5
    ref = optax.join_schedules([optax.linear_schedule(0.0, 0.3, w),
                                optax.linear_schedule(0.3, 0.0, T - w)], [w])
    assert_close(values(decay.linear_decay(0.3, T, warmup_steps=w)), values(ref),
                 ulps=4)


@pytest.mark.parametrize("warmup", [0, 4])
def test_cosine_matches_optax_warmup_cosine(warmup):
    ref = optax.warmup_cosine_decay_schedule(0.0, 0.3, warmup, T, end_value=0.0)
    assert_close(values(decay.cosine_decay(0.3, T, warmup_steps=warmup)), values(ref),
                 ulps=4)


@pytest.mark.parametrize("cooldown", ["linear", "1-sqrt"])
def test_wsd_phases(cooldown):
    sched = decay.wsd(2.0, 100, warmup_steps=10, cooldown_steps=20,
                      cooldown=cooldown)
    v = values(sched, 101)
    # float32 vs float64 formulas: 4 eps of |lr| + the peak lr (2.0)
    assert_close(v[:11], 2.0 * np.arange(11) / 10, ulps=4, scale=2.0)
    assert_close(v[10:81], 2.0, ulps=4)
    s = (np.arange(80, 101) - 80) / 20
    expect = 1 - s if cooldown == "linear" else 1 - np.sqrt(s)
    assert_close(v[80:], 2.0 * expect, ulps=4, scale=2.0)


def test_wsd_default_cooldown_is_twenty_percent():
    v = values(decay.wsd(1.0, 50), 51)
    assert np.all(v[:41] == 1.0) and v[41] < 1.0 and v[50] == 0.0


def test_from_table_values_interpolation_and_past_end():
    table = np.array([0.2, 1.0, 0.5, 0.0])
    sched = decay.from_table(0.1, table, 7)  # grid points at steps 0, 2, 4, 6
    v = values(sched, 9)
    assert_close(v[[0, 2, 4, 6]], 0.1 * table, ulps=8)
    assert_close(v[[1, 3, 5]], 0.1 * np.array([0.6, 0.75, 0.25]), ulps=8)
    assert v[7] == 0.0 and v[8] == 0.0


def test_from_table_one_entry_per_step_is_exact():
    table = np.random.default_rng(0).uniform(size=50)
    v = values(decay.from_table(1.0, table, 50), 50)
    np.testing.assert_array_equal(v, table.astype(np.float32))


def test_from_table_jits_and_works_in_inject_hyperparams():
    sched = decay.from_table(0.5, [1.0, 0.0], 3)
    assert_close(jax.jit(sched)(jnp.asarray(1)), 0.25, ulps=4)
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=sched)
    params = jnp.ones(2)
    state = tx.init(params)
    lrs = []
    for _ in range(4):
        updates, state = tx.update(jnp.ones(2), state, params)
        lrs.append(-updates[0])
    assert_close(jnp.stack(lrs), [0.5, 0.25, 0.0, 0.0], ulps=4)


@pytest.mark.parametrize("make", [decay.linear_decay, decay.cosine_decay,
                                  decay.wsd])
def test_schedules_jit_without_retracing_on_step(make):
    sched = jax.jit(make(1.0, 10))
    a, b = float(sched(jnp.asarray(3))), float(sched(jnp.asarray(4)))
    assert sched._cache_size() == 1 and a >= b


@pytest.mark.parametrize("call, match", [
    (lambda: decay.linear_decay(-0.1, 10), "learning_rate"),
    (lambda: decay.linear_decay(0.1, 1), "total_steps"),
    (lambda: decay.cosine_decay(0.1, 10, warmup_steps=11), "warmup_steps"),
    (lambda: decay.linear_decay(0.1, 10, warmup_steps=10), "warmup_steps"),
    (lambda: decay.wsd(0.1, 10, warmup_steps=5, cooldown_steps=6), "cooldown"),
    (lambda: decay.wsd(0.1, 10, cooldown="sqrt"), "cooldown"),
    (lambda: decay.wsd(0.1, 10, cooldown_steps=0), "cooldown_steps"),
    (lambda: decay.from_table(0.1, [1.0], 10), "table"),
    (lambda: decay.from_table(0.1, [1.0, np.nan], 10), "table"),
    (lambda: decay.from_table(0.1, [1.0, -1.0], 10), "table"),
    (lambda: decay.from_table(0.1, [1.0, 0.0], 1), "total_steps"),
])
def test_invalid_arguments_raise_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
