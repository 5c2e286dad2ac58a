"""Golden trajectories of FAdam from ``pytorch-optimizer==4.1.0`` ``FAdam``.

The parity recipe: tensors (16, 32), (8, 4, 3, 3), (16,), (1,) with
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

Optional second reference (``--ref-dir`` holding a clone of
github.com/lessw2020/FAdam_PyTorch as ``FAdam_PyTorch``; its code is read with
``git show`` and never committed): ``fadam_lessw2020.npz`` with the float32
trajectories of the ``eps * max(1, RMS(g))`` form at ``d67fe1b`` (HEAD,
``traj_max1/``) and the ``eps * min(1, RMS(g))`` form at ``93666b5``
(``traj_min1/``; the v3-era form, with the stateful-fim fix of that commit),
default hyperparameters (clip = 1). The min1 stream has its zero gradient at
step 50 only, because that port gives NaN on a zero gradient at step 1
(recorded in the metadata).
"""

from __future__ import annotations

import pathlib

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


def streams(seed: int = SEED, steps: int = STEPS, zero_steps=ZERO_STEPS):
    """Initial parameters and the gradient stream (float32, torch layout)."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    scale = 10.0 ** rng.uniform(-6.0, 0.0, size=steps)
    grads = {}
    for k, s in SHAPES.items():
        g = rng.normal(scale=BASE_STD, size=(steps, *s)) * scale.reshape(
            (steps,) + (1,) * len(s))
        g[[t - 1 for t in zero_steps]] = 0.0
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


LESSW2020 = {"max1": "d67fe1b1ad65511a2e968939e8adbfefde2e8019",
             "min1": "93666b5"}
LESSW2020_ZERO_STEPS = {"max1": ZERO_STEPS, "min1": (50,)}
LESSW2020_STEPS = 300


def _load_lessw2020(ref_dir, commit: str):
    """Imports ``fadam.py`` of lessw2020/FAdam_PyTorch at ``commit``."""
    import importlib.util
    import subprocess
    import sys
    import tempfile
    import types
    src = subprocess.run(["git", "-C", str(ref_dir / "FAdam_PyTorch"), "show",
                          f"{commit}:fadam.py"], check=True, capture_output=True,
                         text=True).stdout
    if "torchtitan.logging_utils" not in sys.modules:  # optional logger import
        import logging
        stub = types.ModuleType("torchtitan.logging_utils")
        stub.logger = logging.getLogger("FAdam")
        sys.modules["torchtitan"] = types.ModuleType("torchtitan")
        sys.modules["torchtitan.logging_utils"] = stub
    path = pathlib.Path(tempfile.mkdtemp()) / f"lessw2020_fadam_{commit[:7]}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FAdam


def run_lessw2020(ref_dir, form: str, steps: int = LESSW2020_STEPS,
                  zero_steps=None):
    """Float32 parameters after every step of the lessw2020 port."""
    import torch
    cls = _load_lessw2020(ref_dir, LESSW2020[form])
    params0, grads = streams(steps=steps, zero_steps=(
        LESSW2020_ZERO_STEPS[form] if zero_steps is None else zero_steps))
    tensors = {k: torch.nn.Parameter(torch.from_numpy(v)) for k, v in params0.items()}
    opt = cls(list(tensors.values()), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.999),
              clip=1.0, p=0.5, eps=1e-8)
    traj = {k: np.zeros((steps, *v.shape), np.float32) for k, v in params0.items()}
    for t in range(steps):
        for k, p in tensors.items():
            p.grad = torch.from_numpy(grads[k][t])
        opt.step()
        for k, p in tensors.items():
            traj[k][t] = p.detach().numpy()
    return traj


def _generate_lessw2020(ref_dir, meta):
    arrays, nan_at_1 = {"recorded_steps": RECORDED}, {}
    for form in LESSW2020:
        traj = run_lessw2020(ref_dir, form)
        arrays.update({f"traj_{form}/{k}": v[RECORDED - 1] for k, v in traj.items()})
        first = run_lessw2020(ref_dir, form, steps=1, zero_steps=(1,))
        nan_at_1[form] = bool(any(np.isnan(v).any() for v in first.values()))
    return goldens.save("fadam_lessw2020", arrays, {
        **meta, "versions": goldens.package_versions("torch"),
        "reference": "github.com/lessw2020/FAdam_PyTorch fadam.py",
        "commits": LESSW2020, "zero_gradient_steps": LESSW2020_ZERO_STEPS,
        "hyperparameters": dict(lr=1e-3, weight_decay=0.1, betas=(0.9, 0.999),
                                clip=1.0, p=0.5, eps=1e-8),
        "nan_on_zero_gradient_at_step_1": nan_at_1})


def generate(ref_dir=None):
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
    if ref_dir is not None and (pathlib.Path(ref_dir) / "FAdam_PyTorch").exists():
        paths.append(_generate_lessw2020(pathlib.Path(ref_dir), meta))
    else:
        print("gen_fadam: no --ref-dir/FAdam_PyTorch clone, keeping "
              "fadam_lessw2020.npz as is")
    return paths
