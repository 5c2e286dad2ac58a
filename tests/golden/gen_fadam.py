"""Golden trajectories of FAdam from ``pytorch-optimizer==4.1.0`` ``FAdam``.

Spec ``fadam.md`` §8: tensors (16, 32), (8, 4, 3, 3), (16,), (1,) with
parameters ~ N(0, 1); per step a base gradient ~ N(0, 1e-3) times a scale
factor 10^U(-6, 0) shared by all tensors, so the gradient RMS falls below
eps / eps_2 = 1e-6 on about half of the steps and both branches of the
adaptive epsilon fire; all-zero gradients at steps 1 and 50. 300 steps,
per-parameter path (``foreach=False``); the foreach path is run too and its
largest deviation is recorded in the metadata. Four configs: the defaults and
{lr 1e-2, clip 0.5, wd 0.01}, each with p = 0.5 and p = 0.25.

Stored per config (``tests/golden/fadam_<config>.npz``):

* ``traj/<tensor>``: float32 parameters after the steps in ``RECORDED``;
* ``state/<field>/<tensor>``: float32 (param, momentum, fim) after the steps
  in ``STATE_STEPS`` (one-step checks restart from the step before);
* ``traj64/<tensor>``: the same run in float64 (float64 state buffers) after
  the steps in ``RECORDED64``;
* ``scaled_branch``: (steps, tensors) int8, 1 where the reference's adaptive
  epsilon took the ``(eps_2 RMS(g))^(2p)`` branch.
"""

from __future__ import annotations

import numpy as np

import goldens

SHAPES = {"linear": (16, 32), "conv": (8, 4, 3, 3), "vector": (16,), "scalar": (1,)}
STEPS = 300
SEED = 0
ZERO_STEPS = (1, 50)  # 1-based steps with an all-zero gradient
BASE_STD = 1e-3
RECORDED = np.unique(np.concatenate([np.arange(1, 11), np.arange(20, STEPS + 1, 20),
                                     [49, 50, 51]]))
STATE_STEPS = np.array([1, 2, 49, 50, 51, 150, 151, 299, 300])
RECORDED64 = np.array([1, 2, 3, 10, 50, 51, 100, 200, 300])

CONFIGS = {
    "default": dict(lr=1e-3, weight_decay=0.1, clip=1.0, p=0.5),
    "default_p025": dict(lr=1e-3, weight_decay=0.1, clip=1.0, p=0.25),
    "clip05": dict(lr=1e-2, weight_decay=0.01, clip=0.5, p=0.5),
    "clip05_p025": dict(lr=1e-2, weight_decay=0.01, clip=0.5, p=0.25),
}
FIXED = dict(betas=(0.9, 0.999), eps=1e-8, eps_2=0.01)


def streams(seed: int = SEED, steps: int = STEPS):
    """Initial parameters and the gradient stream (float32, torch layout)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    scale = 10.0 ** rng.uniform(-6.0, 0.0, size=steps)
    grads = {}
    for k, s in SHAPES.items():
        g = rng.normal(scale=BASE_STD, size=(steps, *s)) * scale.reshape(
            (steps,) + (1,) * len(s))
        g[[t - 1 for t in ZERO_STEPS]] = 0.0
        grads[k] = g.astype(np.float32)
    return params, grads


def run_reference(config: dict, dtype=np.float32, foreach: bool = False,
                  maximize: bool = False, steps: int = STEPS):
    """Runs torch ``FAdam``; returns ``{field: {tensor: (steps, *shape)}}``."""
    import torch
    from pytorch_optimizer import FAdam
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    params0, grads = streams()
    tensors = {k: torch.nn.Parameter(torch.from_numpy(v.astype(dtype)))
               for k, v in params0.items()}
    opt = FAdam(list(tensors.values()), **FIXED, **config, foreach=foreach,
                maximize=maximize, momentum_dtype=tdtype, fim_dtype=tdtype)
    out = {f: {k: np.zeros((steps, *v.shape), dtype) for k, v in params0.items()}
           for f in ("param", "momentum", "fim")}
    for t in range(steps):
        for k, p in tensors.items():
            p.grad = torch.from_numpy(grads[k][t].astype(dtype))
        opt.step()
        for k, p in tensors.items():
            out["param"][k][t] = p.detach().numpy()
            out["momentum"][k][t] = opt.state[p]["momentum"].numpy()
            out["fim"][k][t] = opt.state[p]["fim"].numpy()
    return out


def scaled_branch(config: dict) -> np.ndarray:
    """(steps, tensors) 1 where ``eps_2 RMS(g) < eps`` with ``RMS(g) > 0``."""
    import torch
    _, grads = streams()
    out = np.zeros((STEPS, len(SHAPES)), np.int8)
    for j, k in enumerate(SHAPES):
        for t in range(STEPS):
            rms = torch.from_numpy(grads[k][t]).pow(2).mean().sqrt()
            out[t, j] = bool(rms > 0) and bool(FIXED["eps_2"] * rms < FIXED["eps"])
    del config
    return out


def generate(ref_dir=None):
    del ref_dir
    meta = {"versions": goldens.package_versions("torch", "pytorch-optimizer"),
            "seed": SEED, "steps": STEPS, "shapes": SHAPES, "layout": "torch",
            "zero_gradient_steps": ZERO_STEPS, "fixed": FIXED,
            "stream": "numpy default_rng(seed): params ~ N(0,1) per tensor; "
                      "scale = 10**U(-6,0) of shape (steps,); per tensor "
                      "g ~ N(0, 1e-3) of shape (steps, *shape) times scale; "
                      "steps 1 and 50 set to 0; cast to float32",
            "path": "foreach=False"}
    paths = []
    for name, config in CONFIGS.items():
        ref = run_reference(config)
        ref_fe = run_reference(config, foreach=True)
        ref64 = run_reference(config, dtype=np.float64)
        fe_dev = max(float(np.max(np.abs(ref["param"][k] - ref_fe["param"][k])))
                     for k in SHAPES)
        arrays = {f"traj/{k}": v[RECORDED - 1] for k, v in ref["param"].items()}
        for field in ("param", "momentum", "fim"):
            arrays.update({f"state/{field}/{k}": v[STATE_STEPS - 1]
                           for k, v in ref[field].items()})
        arrays.update({f"traj64/{k}": v[RECORDED64 - 1]
                       for k, v in ref64["param"].items()})
        arrays.update(recorded_steps=RECORDED, state_steps=STATE_STEPS,
                      recorded64_steps=RECORDED64,
                      scaled_branch=scaled_branch(config))
        paths.append(goldens.save(
            f"fadam_{name}", arrays,
            {**meta, "config": config, "foreach_max_abs_dev": fe_dev}))
    return paths
