"""log_grad_norm and load_grad_norms: recording and reading gradient norms."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optim_lab.schedules import norm_log

from tolerances import assert_close

GRADS = {"a": jnp.array([3.0, -4.0]), "b": {"c": jnp.array([[1.0, -2.0]])}}


@pytest.mark.parametrize("ord, expected", [(2, np.sqrt(30.0)), (1, 10.0)])
def test_log_grad_norm_is_identity_and_records_the_raw_norm(ord, expected):
    tx = optax.chain(norm_log.log_grad_norm(ord=ord), optax.clip_by_global_norm(0.1),
                     optax.adam(1e-3))
    state = tx.init(GRADS)
    updates, state = tx.update(GRADS, state, GRADS)
    assert_close(state[0].global_norm, expected, ulps=8)
    ident = norm_log.log_grad_norm(ord)
    out, _ = ident.update(GRADS, ident.init(GRADS))
    assert all(np.array_equal(x, y) for x, y in zip(
        np.concatenate([np.ravel(v) for v in [out["a"], out["b"]["c"]]]),
        np.concatenate([np.ravel(v) for v in [GRADS["a"], GRADS["b"]["c"]]])))


def test_log_grad_norm_rejects_other_orders():
    with pytest.raises(ValueError, match="ord"):
        norm_log.log_grad_norm(3)


def write_run(d, steps=20, log_every=5, optimizer="sgd", norms=None,
              last_step=None):
    """A fake optim_lab run directory (config.json + metrics.jsonl)."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(
        {"steps": steps, "optimizer": {"name": optimizer, "learning_rate": 0.1}}))
    logged = list(range(log_every, (last_step or steps) + 1, log_every))
    norms = norms if norms is not None else [float(s) for s in logged]
    lines = [json.dumps({"step": 0, "test/loss": 1.0})]
    for s, n in zip(logged, norms):
        lines.append(json.dumps({"step": s, "grads/global/l2": n,
                                 "grads/global/l1": 2 * n if isinstance(n, float) else n}))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


def test_loads_norms_in_step_order(tmp_path):
    run = write_run(tmp_path / "run")
    np.testing.assert_array_equal(norm_log.load_grad_norms(run), [5, 10, 15, 20])
    np.testing.assert_array_equal(norm_log.load_grad_norms(run, norm="l1"),
                                  [10, 20, 30, 40])


def test_nan_and_inf_strings_become_floats(tmp_path):
    run = write_run(tmp_path / "run", norms=[1.0, "nan", "inf", 2.0])
    out = norm_log.load_grad_norms(run)
    assert out[0] == 1.0 and np.isnan(out[1]) and np.isinf(out[2])


def test_irregular_last_window_is_respaced(tmp_path):
    run = write_run(tmp_path / "run", steps=22)
    lines = (run / "metrics.jsonl").read_text()
    lines += json.dumps({"step": 22, "grads/global/l2": 22.0}) + "\n"
    (run / "metrics.jsonl").write_text(lines)
    out = norm_log.load_grad_norms(run)
    assert_close(out, np.linspace(5, 22, 5), ulps=16)  # float64 interpolation


def test_csv_file(tmp_path):
    path = tmp_path / "norms.csv"
    path.write_text('"Step","run - gnorm"\n"0","2.5"\n"1","3.5"\n"2","1.0"\n')
    np.testing.assert_array_equal(norm_log.load_grad_norms(path), [2.5, 3.5, 1.0])


def test_matching_optimizer_and_steps_pass(tmp_path):
    run = write_run(tmp_path / "run")
    out = norm_log.load_grad_norms(run, optimizer="sgd", total_steps=20)
    assert len(out) == 4


@pytest.mark.parametrize("setup, kwargs, match", [
    (lambda d: None, {}, "does not exist"),
    (lambda d: d.mkdir(), {}, "no metrics.jsonl"),
    (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text("")), {}, "no config.json"),
    (lambda d: write_run(d, norms=[]), {}, "0 logged 'l2'"),
    (lambda d: write_run(d, norms=[1.0]), {}, "1 logged"),
    (lambda d: write_run(d, last_step=10), {}, "unfinished"),
    (lambda d: write_run(d), dict(optimizer="adam"), "optimizer 'sgd'"),
    (lambda d: write_run(d), dict(total_steps=40), "resample=True"),
    (lambda d: write_run(d), dict(norm="linf"), "norm"),
])
def test_clear_errors(tmp_path, setup, kwargs, match):
    d = tmp_path / "run"
    setup(d)
    with pytest.raises(ValueError, match=match):
        norm_log.load_grad_norms(d, **kwargs)


def test_resample_allows_other_length_and_warns_on_other_optimizer(tmp_path):
    run = write_run(tmp_path / "run")
    assert len(norm_log.load_grad_norms(run, total_steps=40, resample=True)) == 4
    with pytest.warns(UserWarning, match="optimizer 'sgd'"):
        norm_log.load_grad_norms(run, optimizer="adam", resample=True)


def test_csv_export_round_trips(tmp_path):
    run = write_run(tmp_path / "run", norms=[1.5, 0.1 + 0.2, "nan", 2.0])
    path = norm_log.write_grad_norm_csv(run, tmp_path / "n.csv", norm="l2")
    np.testing.assert_array_equal(norm_log.load_grad_norms(path),
                                  norm_log.load_grad_norms(run))
    assert path.read_text().splitlines()[:2] == ["step,grads/global/l2", "5,1.5"]
