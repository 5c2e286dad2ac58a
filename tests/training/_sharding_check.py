"""Run in a subprocess with forced CPU devices by test_sharding.py.

Cases: every registered optimizer, ⊥Grad (``orthograd_adamw``, scope leaf and
global) and TVR (the tiny LM). ``python _sharding_check.py updates`` checks one
optimizer update (or one TVR application) from the same state and gradients,
jitted with the inputs replicated and FSDP-sharded; ``python _sharding_check.py
trajectories [CASE ...]`` runs the same jitted training steps with the state
replicated and FSDP-sharded. One JSON line per case: the worst per-leaf
normwise difference in float32 eps, which leaves were sharded, whether the
layout held and which collectives XLA inserted.
"""

import json
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import base
from experiments.configs import lm as lm_config
from optim_lab.optimizers import registry
from optim_lab.training import parallel
from optim_lab.training import train

STEPS = 6
EPS32 = float(np.finfo(np.float32).eps)


def mlp_config(name, **hparams):
    c = base.get_base_config()
    c.data.modulus = 23  # 211 training pairs, 46 one-hot inputs
    c.model.hidden = (64, 64)
    c.model.use_bias = True  # 1-D leaves too (AdamP / SGDP treat them apart)
    c.batch_size = 32
    entry = registry.get(name)
    hp = dict(entry.test_hparams)
    c.optimizer = base.optimizer_config(name, hp.pop("learning_rate", 1e-2), **hp)
    c.optimizer.update(hparams)
    return c


def lm_tvr_config():
    c = lm_config.get_config()
    c.model.num_layers, c.model.d_model, c.model.num_heads = 2, 32, 2
    c.model.mlp_hidden, c.model.context, c.data.context = 64, 32, 32
    c.data.max_bytes, c.data.eval_windows, c.batch_size = 65536, 8, 8
    c.rescaling.tvr_target, c.rescaling.tvr_interval = 0.02, 2
    c.rescaling.tvr_threshold = 1.0  # fires at every check
    return c


def cases():
    for name in registry.names():
        yield name, mlp_config(name)
    for scope in ("leaf", "global"):
        yield f"orthograd_adamw[{scope}]", mlp_config("orthograd_adamw",
                                                       orthograd_scope=scope)
    yield "tvr_lm", lm_tvr_config()


def run(config, mode, mesh, steps=STEPS):
    """``steps`` jitted training steps with the state laid out per ``mode``."""
    data, fn, loss_fn, tx = train.setup(config)
    state = train.initial_state(fn, tx, config.seed)
    shardings = parallel.state_shardings(state, mesh, mode, min_size=1)
    state = parallel.place(state, shardings)
    sampler = data.train_sampler()
    step, _ = train.compile_steps(config, fn, loss_fn, tx, train.build_post_step(config),
                                  mesh, sampler.fn, shardings)
    source = parallel.replicate(sampler.source, mesh)
    hlo = step.lower(state, source).compile().as_text() if mesh is not None else ""
    for _ in range(steps):
        state, metrics = step(state, source)
    return state, jax.device_get(metrics), hlo, shardings


def worst_eps(a_tree, b_tree):
    """Max over leaves of max|a - b| / max|b| in float32 eps (per-leaf normwise)."""
    worst, where = 0.0, ""
    flat = jax.tree_util.tree_flatten_with_path(a_tree)[0]
    for (path, a), b in zip(flat, jax.tree.leaves(b_tree), strict=True):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if not a.size or not np.issubdtype(b.dtype, np.floating):
            continue
        scale = np.max(np.abs(b))
        err = float(np.max(np.abs(a - b)) / scale / EPS32) if scale else float(
            np.max(np.abs(a)) > 0) * np.inf
        if err > worst:
            worst, where = err, jax.tree_util.keystr(path)
    return worst, where


def _sharded(shardings) -> list[str]:
    return [jax.tree_util.keystr(p) for p, s in
            jax.tree_util.tree_flatten_with_path(shardings)[0]
            if s.spec != jax.sharding.PartitionSpec()]


def _collectives(hlo: str) -> list[str]:
    return sorted(set(re.findall(
        r"\b(all-reduce|all-gather|reduce-scatter|all-to-all|collective-permute)\b", hlo)))


def updates(mesh):
    """One update from the same inputs, replicated vs FSDP, for every case."""
    for name, config in cases():
        state, _, _, _ = run(config, "replicated", None, steps=3)  # non-trivial moments
        data, fn, loss_fn, tx = train.setup(config)
        post = train.build_post_step(config)
        if post:  # TVR: one application at a step where it fires
            fn_, args = (lambda p: post[0](p, jnp.int32(2))), (state.params,)
        else:
            def loss(p):
                x, y = data.train_sampler().fn(data.train_sampler().source, 0,
                                                jnp.int32(3), config.batch_size)
                return jnp.mean(loss_fn(fn.apply(p, fn.model_state, x, False)[0], y))
            value, grads = jax.value_and_grad(loss)(state.params)
            def fn_(g, s, p, v):
                return tx.update(g, s, p, value=v)
            args = (grads, state.opt_state, state.params, value)
        host = jax.device_get(args)
        out, shardings, hlo = {}, None, ""
        for mode in ("replicated", "fsdp"):
            shardings = parallel.state_shardings(host, mesh, mode, min_size=1)
            compiled = jax.jit(fn_).lower(*parallel.place(host, shardings)).compile()
            out[mode] = jax.device_get(compiled(*parallel.place(host, shardings)))
            hlo = compiled.as_text()
        if post:  # (params, stats): a matrix's mean may be ~0 by cancellation,
            # so it is compared on the scale of the matrix's entries (mean, std)
            err, where = worst_eps(out["fsdp"][0], out["replicated"][0])
            stats_f, stats_r = out["fsdp"][1], out["replicated"][1]
            for k, v in stats_r.items():
                scale = abs(v)
                if k.endswith("/mean"):
                    scale = max(scale, abs(stats_r[k[:-len("mean")] + "std"]))
                e = float(abs(float(stats_f[k]) - float(v)) / (scale * EPS32)) if scale else 0.0
                if e > err:
                    err, where = e, k
        else:
            err, where = worst_eps(out["fsdp"], out["replicated"])
        print(json.dumps({"case": name, "check": "update", "devices": mesh.size,
                          "eps": err, "worst": where,
                          "sharded_inputs": len(_sharded(shardings)),
                          "collectives": _collectives(hlo)}), flush=True)


def main():
    mesh = parallel.data_mesh()
    if sys.argv[1] == "updates":
        return updates(mesh)
    only = set(sys.argv[2:])
    for name, config in cases():
        if only and name not in only:
            continue
        rep, rep_metrics, _, _ = run(config, "replicated", mesh)
        fsdp, fsdp_metrics, hlo, shardings = run(config, "fsdp", mesh)
        sharded = _sharded(shardings.params)
        kept = all(x.sharding.is_equivalent_to(s, x.ndim) for x, s in zip(
            jax.tree.leaves(fsdp), jax.tree.leaves(shardings), strict=True))
        p_err, p_where = worst_eps(fsdp.params, rep.params)
        o_err, o_where = worst_eps(fsdp.opt_state, rep.opt_state)
        loss_err = abs(fsdp_metrics["train/loss"] - rep_metrics["train/loss"]) / (
            abs(rep_metrics["train/loss"]) * EPS32)
        print(json.dumps({
            "case": name, "check": "trajectory", "devices": mesh.size, "steps": STEPS,
            "params_eps": p_err, "params_worst": p_where,
            "opt_state_eps": o_err, "opt_state_worst": o_where,
            "loss_eps": float(loss_err),
            "sharded_params": sharded,
            "num_params": len(jax.tree.leaves(fsdp.params)),
            "layout_kept": bool(kept),
            "collectives": _collectives(hlo),
            "finite": bool(all(np.isfinite(np.asarray(x)).all()
                               for x in jax.tree.leaves(fsdp.params))),
        }), flush=True)


if __name__ == "__main__":
    main()
