"""Golden trajectories of ⊥Grad from ``pytorch-optimizer==4.1.0`` ``OrthoGrad``.

The parity recipe: OrthoGrad wrapping (a) torch AdamW(lr 1e-2, betas (0.9, 0.999),
eps 1e-8, wd 0) and (b) torch SGD(lr 0.1, momentum 0.8); tensors (16, 32),
(8, 4, 3, 3), (16,), (1,) and an all-zero (16,) bias in torch layout; a
Gaussian gradient stream; 200 steps; float32. Parameters are stored in torch
layout after every step (float32 as ``traj/``, and the same run in float64 as
``traj64/``); the test transposes to flax layout.
"""

from __future__ import annotations

import numpy as np

import goldens

SHAPES = {"linear": (16, 32), "conv": (8, 4, 3, 3), "vector": (16,),
          "scalar": (1,), "zero_bias": (16,)}
STEPS = 200
SEED = 0
# Stored steps (1-based): every step of the first ten, then every tenth.
RECORDED = np.unique(np.concatenate([np.arange(1, 11), np.arange(10, STEPS + 1, 10)]))


def streams(seed: int = SEED, steps: int = STEPS):
    """Initial params and the gradient stream, both float32, torch layout."""
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(size=s).astype(np.float32) for k, s in SHAPES.items()}
    params["zero_bias"] = np.zeros(SHAPES["zero_bias"], np.float32)
    grads = {k: rng.normal(size=(steps, *s)).astype(np.float32)
             for k, s in SHAPES.items()}
    return params, grads


BASES = {
    "adamw": ("AdamW", dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)),
    "sgd": ("SGD", dict(lr=0.1, momentum=0.8)),
}


def _run(base: str, dtype=np.float32):
    import torch
    from pytorch_optimizer import OrthoGrad
    params0, grads = streams()
    tensors = {k: torch.nn.Parameter(torch.from_numpy(v.astype(dtype)))
               for k, v in params0.items()}
    cls, kwargs = BASES[base]
    opt = OrthoGrad(getattr(torch.optim, cls)(list(tensors.values()), **kwargs))
    traj = {k: np.zeros((STEPS, *v.shape), dtype) for k, v in params0.items()}
    for t in range(STEPS):
        for k, p in tensors.items():
            p.grad = torch.from_numpy(grads[k][t].astype(dtype))
        opt.step()
        for k, p in tensors.items():
            traj[k][t] = p.detach().numpy()
    return traj


def _parallel_case():
    import torch
    from pytorch_optimizer import OrthoGrad
    w = torch.nn.Parameter(torch.tensor([1.0, 0.0, 0.0, 0.0]))
    opt = OrthoGrad(torch.optim.SGD([w], lr=1.0))
    w.grad = torch.tensor([1.0, 1e-8, 0.0, 0.0])
    opt.apply_orthogonal_gradients([w])
    return w.grad.numpy().copy()


def generate(ref_dir=None):
    del ref_dir
    meta = {"versions": goldens.package_versions("torch", "pytorch-optimizer"),
            "seed": SEED, "steps": STEPS, "shapes": SHAPES, "layout": "torch",
            "stream": "numpy default_rng(seed): params ~ N(0,1) (zero_bias = 0), "
                      "then grads ~ N(0,1) of shape (steps, *shape) per tensor"}
    paths = []
    for base, (cls, kwargs) in BASES.items():
        arrays = {f"traj/{k}": v[RECORDED - 1] for k, v in _run(base).items()}
        arrays.update({f"traj64/{k}": v[RECORDED - 1]
                       for k, v in _run(base, np.float64).items()})
        arrays["recorded_steps"] = RECORDED
        paths.append(goldens.save(f"orthograd_{base}", arrays,
                                  {**meta, "base": cls, "base_kwargs": kwargs}))
    paths.append(goldens.save("orthograd_parallel", {"grad": _parallel_case()},
                              {**meta, "case": "w=[1,0,0,0], g=[1,1e-8,0,0]"}))
    return paths
