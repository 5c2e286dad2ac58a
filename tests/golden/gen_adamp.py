"""Golden trajectories of AdamP / SGDP from ``adamp==0.3.0`` (torch CPU).

The parity recipe: tensors in torch layout: conv (8, 4, 3, 3), linear (16, 32), a
second linear (16, 8) whose gradients are always scale-invariant, an all-zero
(4, 8) kernel, bias (16,), BN weight (8,) and a (1,) scalar. Params are drawn
from ``default_rng(0)`` (N(0, 1); the zero kernel is 0); each run draws its
gradient stream from ``default_rng(1)``. The stream *kind* sets the gradients
of conv, linear and the zero kernel, recomputed from the current weights every
step so that each branch of the scale-invariance test is hit far from its
threshold:

- ``none``: Gaussian noise plus a radial part of half its per-row norm
  (``|cos| ≈ 0.45`` per row and overall). Pure Gaussian gradients are *not*
  used: their layer-view ``|cos|`` is below ``0.1/sqrt(numel)`` with
  probability ``P(|N(0,1)| < 0.1) ≈ 8 %`` per step, near the threshold.
- ``channel``: Gaussian with each output channel's component along its weight
  row removed (channel branch).
- ``layer``: ``g_c = s_c p_c / ||p_c|| + 0.1 n_c⊥`` with ``Σ s_c ||p_c|| = 0``
  (per-row ``|cos|`` ≈ 0.5–1, global cos = 0: layer branch).
- ``zero``: all gradients zero.

The second linear always gets channel-orthogonal gradients (zero in the
``zero`` stream); 1-d tensors get Gaussian gradients (zero in ``zero``). The
zero kernel has zero weights at step 1 (the test fires through the clamped
cosine, the projection is a no-op).

Stored per config and stream: params after steps ``RECORDED`` (torch layout)
and the reference's per-step branch (0 none / 1 channel / 2 layer) of every
tensor with ndim > 1, read from the view the reference tested last.
"""

from __future__ import annotations

import numpy as np

import goldens

SHAPES = {"conv": (8, 4, 3, 3), "linear": (16, 32), "linear_si": (16, 8),
          "zero_kernel": (4, 8), "bias": (16,), "bn_scale": (8,), "scalar": (1,)}
KERNELS = ("conv", "linear", "linear_si", "zero_kernel")  # ndim > 1
STREAMS = ("none", "channel", "layer", "zero")
STEPS = 200
RECORDED = np.array([1, 3, STEPS])  # 1-based steps whose params are stored
PARAM_SEED, GRAD_SEED = 0, 1

ADAMP_CONFIGS = {
    f"nesterov{int(n)}_wd{wd:g}": dict(lr=1e-2, nesterov=n, weight_decay=wd)
    for n in (False, True) for wd in (0.0, 1e-2)}
SGDP_CONFIGS = {
    f"mom{m:g}_nesterov{int(n)}_damp{d:g}": dict(
        lr=0.1, momentum=m, nesterov=n, dampening=d, weight_decay=1e-4)
    for m in (0.0, 0.9) for n in (False, True) for d in (0.0, 0.1)}
# One config per file is also run in float64 (exact-algorithm parity).
FLOAT64_CONFIGS = ("nesterov0_wd0.01", "mom0_nesterov0_damp0", "mom0.9_nesterov1_damp0.1")
# golden file -> (reference class, configs)
FILES = {
    "adamp": ("AdamP", ADAMP_CONFIGS),
    "sgdp_mom0": ("SGDP", {k: v for k, v in SGDP_CONFIGS.items() if v["momentum"] == 0}),
    "sgdp_mom0.9": ("SGDP", {k: v for k, v in SGDP_CONFIGS.items() if v["momentum"]}),
}


def initial_params(dtype=np.float32) -> dict[str, np.ndarray]:
    """Initial params in ``dtype`` (float32 by default), torch layout."""
    rng = np.random.default_rng(PARAM_SEED)
    params = {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}
    params["zero_kernel"] = np.zeros(SHAPES["zero_kernel"], dtype)
    return params


def _rows(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).astype(np.float64)


def _radial(p, noise):
    rows, n = _rows(p), _rows(noise)
    norm = np.linalg.norm(rows, axis=1, keepdims=True)
    unit = np.divide(rows, norm, out=np.zeros_like(rows), where=norm > 0)
    return n + 0.5 * np.linalg.norm(n, axis=1, keepdims=True) * unit


def _channel_orthogonal(p, noise):
    rows, n = _rows(p), _rows(noise)
    sq = np.sum(rows * rows, axis=1, keepdims=True)
    coef = np.divide(np.sum(rows * n, axis=1, keepdims=True), sq,
                     out=np.zeros_like(sq), where=sq > 0)
    return n - coef * rows


def _layer_only(p, s, noise):
    """Rows ``s_c p_c / ||p_c|| + 0.1 n_c⊥`` with ``Σ_c s_c ||p_c|| = 0``.

    Each row keeps a radial part (per-row ``|cos|`` ≈ 0.5–1, far above the
    channel threshold) while the whole tensor is orthogonal to ``p``. The
    rows are normalised and carry a small channel-orthogonal noise ``n⊥`` so
    the stream is well conditioned: with ``s_c p_c`` alone, momentum SGD grows
    the weights exponentially and Adam sees near-zero coordinates whose sign
    flips with rounding, so float32 runs (torch and JAX alike) drift from a
    float64 run by 1e-4 within 100 steps.
    """
    rows = _rows(p)
    norm = np.linalg.norm(rows, axis=1)
    if not np.any(norm):
        return np.zeros_like(rows)
    s = s - norm * (s @ norm) / (norm @ norm)
    unit = np.divide(rows, norm[:, None], out=np.zeros_like(rows),
                     where=norm[:, None] > 0)
    return s[:, None] * unit + 0.1 * _channel_orthogonal(p, noise)


_KINDS = {"none": _radial, "channel": _channel_orthogonal}


def gradients(kind: str, params: dict[str, np.ndarray],
              rng: np.random.Generator, dtype=np.float32) -> dict[str, np.ndarray]:
    """One step of stream ``kind`` at ``params`` (torch layout, ``dtype``)."""
    params = {k: params[k] for k in SHAPES}  # draw in a fixed order
    noise = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    scales = {k: rng.standard_normal(v.shape[0]) for k, v in params.items()}
    out = {}
    for k, p in params.items():
        if kind == "zero":
            g = np.zeros(p.shape)
        elif p.ndim <= 1:
            g = noise[k]
        elif k == "linear_si":
            g = _channel_orthogonal(p, noise[k])
        elif kind == "layer":
            g = _layer_only(p, scales[k], noise[k])
        else:
            g = _KINDS[kind](p, noise[k])
        out[k] = np.asarray(g).reshape(p.shape).astype(dtype)
    return out


def run_reference(cls_name: str, config: dict, kind: str, dtype=np.float32,
                  recorded=RECORDED):
    """Params after ``recorded`` steps and per-step kernel branches."""
    import adamp
    import torch
    tensors = {k: torch.nn.Parameter(torch.from_numpy(v))
               for k, v in initial_params(dtype).items()}
    opt = getattr(adamp, cls_name)(list(tensors.values()), **config)
    rng = np.random.default_rng(GRAD_SEED)
    snapshots = {k: [] for k in tensors}
    branches = np.zeros((STEPS, len(KERNELS)), np.int8)
    for t in range(STEPS):
        current = {k: p.detach().numpy().copy() for k, p in tensors.items()}
        for k, g in gradients(kind, current, rng, dtype).items():
            tensors[k].grad = torch.from_numpy(g)
        last = _recorder_step(opt, tensors)
        opt.step()
        for i, k in enumerate(KERNELS):
            view, wd = last.get(k, (None, 1))
            branches[t, i] = 0 if wd == 1 else (1 if view == "_channel_view" else 2)
        if t + 1 in recorded:
            for k, p in tensors.items():
                snapshots[k].append(p.detach().numpy().copy())
    return {k: np.stack(v) for k, v in snapshots.items()}, branches


def _recorder_step(opt, tensors):
    """Patches ``opt._projection`` for one step: name -> (last view, wd ratio)."""
    by_storage = {p.data_ptr(): k for k, p in tensors.items()}
    last: dict[str, tuple[str, float]] = {}
    cls = type(opt)

    def projection(p, grad, perturb, delta, wd_ratio, eps):
        views = []
        orig_cos = opt._cosine_similarity

        def cos(x, y, e, view_func):
            views.append(view_func.__name__)
            return orig_cos(x, y, e, view_func)

        opt._cosine_similarity = cos
        try:
            out = cls._projection(opt, p, grad, perturb, delta, wd_ratio, eps)
        finally:
            del opt._cosine_similarity
        last[by_storage[p.data_ptr()]] = (views[-1], out[1])
        return out

    opt._projection = projection
    return last


def generate(ref_dir=None):
    del ref_dir
    params0 = initial_params()
    paths = []
    for name, (cls_name, configs) in FILES.items():
        arrays: dict[str, np.ndarray] = {"recorded_steps": RECORDED}
        arrays.update({f"init/{k}": v for k, v in params0.items()})
        for cname, config in configs.items():
            for kind in STREAMS:
                traj, branches = run_reference(cls_name, config, kind)
                for k, v in traj.items():
                    arrays[f"params/{cname}/{kind}/{k}"] = v
                arrays[f"branch/{cname}/{kind}"] = branches
                if cname in FLOAT64_CONFIGS:
                    traj, branches = run_reference(cls_name, config, kind, np.float64,
                                                   recorded=(STEPS,))
                    for k, v in traj.items():
                        arrays[f"params64/{cname}/{kind}/{k}"] = v[-1]
                    arrays[f"branch64/{cname}/{kind}"] = branches
        meta = {"versions": goldens.package_versions("torch", "adamp", "numpy"),
                "reference": f"adamp.{cls_name} (adamp==0.3.0)",
                "param_seed": PARAM_SEED, "grad_seed": GRAD_SEED, "steps": STEPS,
                "shapes": SHAPES, "kernels": KERNELS, "streams": STREAMS,
                "configs": configs, "layout": "torch", "dtype": "float32",
                "float64": {"configs": sorted(set(configs) & set(FLOAT64_CONFIGS)),
                            "keys": "params64/<config>/<stream>/<tensor> after the "
                                    "last step, branch64/<config>/<stream>"},
                "branch_codes": {"none": 0, "channel": 1, "layer": 2}}
        paths.append(goldens.save(name, arrays, meta))
    return paths
