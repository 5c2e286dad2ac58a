"""Golden trajectories of ALR-SMAG from ``AlrSmag`` of ``fabian-sp/step-back``.

The reference is not on PyPI: pass a checkout of ``fabian-sp/step-back`` at
commit ``74b8843`` (branch ``f-iap``) with ``--ref-dir``; only
``stepback/optim/alr_smag.py`` is read, its relative ``..types`` import is
stubbed, and nothing of it is committed::

    git clone -b f-iap https://github.com/fabian-sp/step-back ~/refs/step-back
    git -C ~/refs/step-back checkout 74b8843
    python tests/golden/generate.py polyak --ref-dir ~/refs/step-back

Problem (the ALR-SMAG parity recipe): interpolating least squares, A ∈ R^{64×10} ~ N(0,1),
b = A x* (x* ~ N(0,1)), x0 = 0, split into two tensors of sizes 6 and 4 (one
param group, so ‖d‖² is reduced over both), minibatch loss
½·mean((A_S x − b_S)²) over 8 rows drawn with replacement from a fixed RNG,
200 steps, float32, torch 2.13 CPU. The stream (A, b, batch indices) is stored
in the golden, so tests replay exactly the same minibatches without torch.
"""

from __future__ import annotations

import hashlib
import pathlib

import numpy as np

import goldens

SEED = 0
ROWS, DIM, BATCH, STEPS = 64, 10, 8, 200
SPLIT = 6  # params = {"a": x[:6], "b": x[6:]}
REF_FILE = pathlib.Path("stepback/optim/alr_smag.py")
REF_COMMIT = "74b8843"
# name -> AlrSmag kwargs (c = 0.2 diverges: tests compare 10 steps).
CONFIGS = {
    "lr1_b09_c1": dict(lr=1.0, beta=0.9, c=1.0, weight_decay=0.0),
    "lr05_b09_c1_wd": dict(lr=0.5, beta=0.9, c=1.0, weight_decay=1e-3),
    "lr10_b05_c05": dict(lr=10.0, beta=0.5, c=0.5, weight_decay=0.0),
    "lr10_b09_c05": dict(lr=10.0, beta=0.9, c=0.5, weight_decay=0.0),
    "lr10_b09_c02": dict(lr=10.0, beta=0.9, c=0.2, weight_decay=0.0),
}


def stream(seed: int = SEED):
    """``(A, b, idx)``: float32 data and the (steps, batch) row indices."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    x_star = rng.standard_normal(DIM).astype(np.float32)
    b = a @ x_star
    idx = rng.integers(0, ROWS, size=(STEPS, BATCH))
    return a, b, idx


def _load_reference(ref_dir: pathlib.Path):
    path = pathlib.Path(ref_dir) / REF_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: --ref-dir must be a checkout of fabian-sp/step-back "
            f"at {REF_COMMIT}")
    source = path.read_text()
    stub = "from ..types import Params, LossClosure, OptFloat"
    if stub not in source:
        raise ValueError(f"{path}: unexpected source (no {stub!r}); wrong commit?")
    namespace = {"__name__": "stepback_alr_smag"}
    exec(compile(source.replace(stub, "Params = LossClosure = OptFloat = object"),
                 str(path), "exec"), namespace)
    return namespace["AlrSmag"], hashlib.sha256(source.encode()).hexdigest()


def _run(cls, kwargs, a, b, idx):
    import torch
    x = {"a": torch.nn.Parameter(torch.zeros(SPLIT)),
         "b": torch.nn.Parameter(torch.zeros(DIM - SPLIT))}
    opt = cls(list(x.values()), lb=0.0, **kwargs)
    at, bt = torch.from_numpy(a), torch.from_numpy(b)
    traj = np.zeros((STEPS, DIM), np.float32)
    losses = np.zeros(STEPS, np.float32)
    for t in range(STEPS):
        rows = torch.from_numpy(idx[t])
        opt.zero_grad()
        residual = at[rows] @ torch.cat([x["a"], x["b"]]) - bt[rows]
        loss = 0.5 * torch.mean(residual ** 2)
        loss.backward()
        opt.step(loss=loss)
        losses[t] = loss.item()
        traj[t] = torch.cat([x["a"], x["b"]]).detach().numpy()
    t1 = np.asarray(opt.state["step_size_list"], np.float64)
    tau = np.minimum(kwargs["lr"], t1)
    return traj, losses, t1, tau


def generate(ref_dir=None):
    if ref_dir is None:
        raise ValueError("polyak: --ref-dir (a fabian-sp/step-back checkout at "
                         f"{REF_COMMIT}) is required")
    cls, sha = _load_reference(ref_dir)
    a, b, idx = stream()
    arrays = {"A": a, "b": b, "idx": idx}
    for name, kwargs in CONFIGS.items():
        traj, losses, t1, tau = _run(cls, kwargs, a, b, idx)
        arrays.update({f"{name}/params": traj, f"{name}/loss": losses,
                       f"{name}/t1": t1, f"{name}/tau": tau})
    meta = {"versions": goldens.package_versions("torch", "numpy"),
            "reference": f"fabian-sp/step-back@{REF_COMMIT}:{REF_FILE}",
            "reference_sha256": sha, "seed": SEED, "steps": STEPS,
            "rows": ROWS, "dim": DIM, "batch": BATCH, "split": SPLIT,
            "lb": 0.0, "configs": CONFIGS, "dtype": "float32",
            "loss": "0.5*mean((A[idx[t]] @ x - b[idx[t]])**2)",
            "params": "x after each step, concatenated [a (6), b (4)]; x0 = 0",
            "tau": "min(lr, t1) with t1 = step_size_list of the reference"}
    return [goldens.save("polyak_alr_smag", arrays, meta)]
