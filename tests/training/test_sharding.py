"""FSDP-sharded state gives the results of a replicated one (single process, forced devices).

``_sharding_check.py`` runs in a subprocess with 8 forced CPU devices. Every
leaf that can be split is (``min_size=1``: the largest dimension divisible by 8).

Tolerances (float32 eps, normwise per leaf: ``max|fsdp - replicated| /
max|replicated|``):

- one optimizer update (or one TVR application) from the same inputs: 8 eps
  (one float32 step; only the order of the reductions that XLA splits into
  partial sums + all-reduce differs; measured <= 3.6);
- 6 training steps: 16 eps per step (measured <= 52, FAdam's first moment);
  ``orthograd_adamw`` with ``scope="leaf"``: 2048 eps, because Adam's first
  step ``lr * g / (|g| + eps)`` turns the rounding of a ⊥Grad-projected
  coordinate that cancels (``g_i ≈ c w_i``) into an O(lr) difference — one
  element of 4 096 at 460 eps after one step, and 76 eps already between 1 and
  8 *replicated* devices; the single-update check above bounds its reductions
  at 8 eps.

A reduction that saw only its shard would be off by O(1) relative (millions
of eps), so each bound can fail.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest
from jax.sharding import PartitionSpec as P

from optim_lab.optimizers import registry
from optim_lab.training import parallel

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEVICES = 8
UPDATE_ULPS = 8
STEP_ULPS = 16
SENSITIVE = {"orthograd_adamw[leaf]": 2048}
# cases whose update reduces over a tensor (norms, dot products, statistics)
REDUCING = {"adamp", "sgdp", "fadam", "alr_smag", "alr_hb", "orthograd_adamw[leaf]",
            "orthograd_adamw[global]", "tvr_lm"}
ALL_CASES = [*registry.names(), "orthograd_adamw[leaf]", "orthograd_adamw[global]", "tvr_lm"]


def _check(*args):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={DEVICES}",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    res = subprocess.run([sys.executable, str(HERE / "_sharding_check.py"), *args],
                         env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {r["case"]: r for r in rows}


def test_fsdp_spec_splits_the_largest_divisible_dimension():
    assert parallel.fsdp_spec((226, 200), 4) == P(None, "data")
    assert parallel.fsdp_spec((256, 32), 4) == P("data")
    assert parallel.fsdp_spec((64, 64), 8) == P("data")  # the first of equal ones
    assert parallel.fsdp_spec((113, 200), 3) == P()  # no divisible dimension
    assert parallel.fsdp_spec((32,), 4) == P()  # small: replicated
    assert parallel.fsdp_spec((32,), 4, min_size=1) == P("data")
    assert parallel.fsdp_spec((4096,), 1) == P()  # one device


def test_one_update_sharded_equals_replicated_for_every_case():
    rows = _check("updates")
    assert sorted(rows) == sorted(ALL_CASES)
    for case, r in rows.items():
        assert r["devices"] == DEVICES
        assert r["sharded_inputs"] > 0, case
        assert r["eps"] <= UPDATE_ULPS, r
        if case in REDUCING:  # the reduction over the whole tensor is a collective
            assert "all-reduce" in r["collectives"], r


def _check_trajectories(rows, cases):
    assert sorted(rows) == sorted(cases)
    for case, r in rows.items():
        budget = SENSITIVE.get(case, STEP_ULPS * r["steps"])
        assert r["finite"] and r["layout_kept"], r
        assert len(r["sharded_params"]) >= r["num_params"] // 2, r
        assert {"all-reduce", "all-gather"} <= set(r["collectives"]), r
        assert r["params_eps"] <= budget and r["opt_state_eps"] <= budget, r
        assert r["loss_eps"] <= STEP_ULPS, r


def test_training_steps_sharded_equal_replicated():
    cases = ["adamp", "orthograd_adamw[global]", "tvr_lm"]
    _check_trajectories(_check("trajectories", *cases), cases)


@pytest.mark.slow
def test_training_steps_sharded_equal_replicated_for_every_case():
    _check_trajectories(_check("trajectories"), ALL_CASES)
