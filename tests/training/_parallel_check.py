"""Run in a subprocess with 8 forced CPU devices by test_parallel.py."""

import json
import sys
import tempfile

import jax
import numpy as np

from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train

from runs import tiny_config


def main():
    out = {"devices": jax.device_count()}
    root = tempfile.mkdtemp()
    for batch_size in (0, 16):
        runs = {}
        for dp in (True, False):
            c = tiny_config(steps=10, data_parallel=dp, batch_size=batch_size)
            train.train_and_evaluate(c, f"{root}/{batch_size}_{dp}")
            runs[dp] = metrics_lib.read_metrics(f"{root}/{batch_size}_{dp}")
        diffs = [abs(a[k] - b[k]) / (abs(b[k]) + 1e-6)
                 for a, b in zip(runs[True], runs[False]) for k in b
                 if isinstance(b[k], float) and k != "step"]
        out[f"max_rel_diff_{batch_size}"] = float(np.max(diffs))
    c = tiny_config(data_parallel=True)
    data, fn, loss_fn, tx = train.setup(c)
    mesh = train.build_mesh(c)
    step, _ = train.compile_steps(c, fn, loss_fn, tx, mesh=mesh)
    state = train.initial_state(fn, tx, 0)
    hlo = step.lower(state, (data.train_x, data.train_y)).compile().as_text()
    out["all_reduce"] = "all-reduce" in hlo
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
