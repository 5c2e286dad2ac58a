"""Data parallelism on 8 forced CPU devices matches the single-device run."""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def test_data_parallel_matches_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    res = subprocess.run([sys.executable, str(HERE / "_parallel_check.py")], env=env,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["devices"] == 8
    assert out["all_reduce"], "the step was not partitioned over the mesh"
    assert out["max_rel_diff_0"] < 1e-4 and out["max_rel_diff_16"] < 1e-4, out
