r"""The LM train step: lab vs a bare jitted loop, model FLOP/s, every optimizer.

    python -m benchmarks.lm_step [--steps=3] [--repeats=5] [--opt_repeats=3]

On the byte-level LLaMA-style LM of ``experiments/configs/lm.py`` (4 blocks,
d 128, context 128, batch 32; AdamW), in one process:

1. **Lab vs bare.** The lab's jitted train step (``train.compile_steps``:
   batch drawn inside the step, registry AdamW, NaN guard, per-step metrics
   kept on device, window averaging every ``log_every`` steps) against a bare
   hand-written loop: a pure-JAX forward of the same model written out here
   (embedding, RMSNorm, RoPE attention, SwiGLU, head; checked against the
   model's logits), ``value_and_grad`` + ``optax.adamw`` + ``apply_updates``,
   the batch drawn inside the step the same way. Both return params and
   optimizer state, and both are timed in interleaved blocks of ``--steps``
   steps (the order rotated each round); the ratio is of medians.
2. **Model FLOP/s.** Training FLOPs per step, 3 × forward with forward =
   2 · (matmul parameters) + 4 · T · d · L per token (the attention score and
   value products, dense as computed), divided by the step time, as a
   fraction of this machine's dense-matmul FLOP/s: a jitted 2048 × 2048
   float32 matmul timed in the same interleaved loop. The forward pass and
   forward + backward alone are timed too, to show where the time goes.
3. **Optimizers.** The lab's train step with every registered optimizer
   (``optim_lab.optimizers.registry.names()``, each at its registry test
   hyperparameters) relative to AdamW, interleaved.

Writes the "lm_step" section of ``results/benchmarks.md``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags

from benchmarks import _report
from experiments.configs import lm
from optim_lab.models import llama
from optim_lab.optimizers import registry
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 3, "Train steps per timed block.", lower_bound=1)
flags.DEFINE_integer("repeats", 6, "Interleaved timed blocks (lab vs bare).", lower_bound=1)
flags.DEFINE_integer("opt_repeats", 8, "Interleaved timed blocks per optimizer.",
                     lower_bound=1)
flags.DEFINE_list("optimizers", [], "Registry names to time (default: all).")
flags.DEFINE_integer("matmul", 2048, "Side of the reference float32 matmul.", lower_bound=64)

TARGET_RATIO, TARGET_MFU, TARGET_OPT = 1.05, 0.30, 1.15


# --- the bare loop: the model written out by hand ------------------------------


def _rmsnorm(x, scale, eps=1e-6):
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * scale


def _attention(p, x, num_heads, rope_base):
    b, t, d = x.shape
    w = jnp.concatenate([p["q_proj"]["kernel"], p["k_proj"]["kernel"],
                         p["v_proj"]["kernel"]], axis=1)
    q, k, v = (a.reshape(b, t, num_heads, d // num_heads)
               for a in jnp.split(x @ w, 3, axis=-1))
    pos = jnp.arange(t)
    q, k = llama.apply_rope(q, pos, rope_base), llama.apply_rope(k, pos, rope_base)
    s = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // num_heads)
    s = jnp.where(pos[:, None] >= pos[None, :], s, -jnp.inf)
    o = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(s, axis=-1), v)
    return o.reshape(b, t, d) @ p["o_proj"]["kernel"]


def _swiglu(p, x):
    w = jnp.concatenate([p["gate_proj"]["kernel"], p["up_proj"]["kernel"]], axis=1)
    gate, up = jnp.split(x @ w, 2, axis=-1)
    return (jax.nn.silu(gate) * up) @ p["down_proj"]["kernel"]


def bare_forward(params, tokens, num_layers, num_heads, rope_base):
    x = params["embed"]["embedding"][tokens]
    for i in range(num_layers):
        p = params[f"layers_{i}"]
        x = x + _attention(p["attn"], _rmsnorm(x, p["attn_norm"]["scale"]), num_heads,
                           rope_base)
        x = x + _swiglu(p["mlp"], _rmsnorm(x, p["mlp_norm"]["scale"]))
    return _rmsnorm(x, params["norm"]["scale"]) @ params["head"]["kernel"]


def _batch(stream, seed, step, batch_size, context):
    key = jax.random.fold_in(jax.random.key(seed), step)
    starts = jax.random.randint(key, (batch_size,), 0, stream.shape[0] - context)
    w = stream[starts[:, None] + jnp.arange(context + 1)].astype(jnp.int32)
    return w[:, :-1], w[:, 1:]


def bare_loop(config, params, stream):
    m = config.model
    forward = lambda p, x: bare_forward(p, x, m.num_layers, m.num_heads,  # noqa: E731
                                        m.rope_base)
    o = config.optimizer
    tx = optax.adamw(o.learning_rate, b1=o.b1, b2=o.b2, eps=o.eps,
                     weight_decay=o.weight_decay)

    def loss(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

    @jax.jit
    def step(p, opt_state, n):
        x, y = _batch(stream, config.seed, n, config.batch_size, m.context)
        value, g = jax.value_and_grad(loss)(p, x, y)
        u, opt_state = tx.update(g, opt_state, p)
        return optax.apply_updates(p, u), opt_state, n + 1, value

    carry = [params, tx.init(params), jnp.zeros((), jnp.int32)]

    def run(steps):
        for _ in range(steps):
            carry[0], carry[1], carry[2], _ = step(*carry)
        _report.block((carry[0], carry[1]))
    return run, forward, loss


# --- the lab's loop ----------------------------------------------------------------


def lab_loop(config, fn, loss_fn, tx, source, sampler_fn):
    train_step, _ = train.compile_steps(config, fn, loss_fn, tx, sampler_fn=sampler_fn)
    state = [train.initial_state(fn, tx, config.seed)]
    count = [0]

    def run(steps):
        window = []
        for _ in range(steps):
            state[0], m = train_step(state[0], source)
            window.append(m)
            count[0] += 1
            if count[0] % config.log_every == 0:
                metrics_lib.column_means(metrics_lib.fetch_columns(window))
                window = []
        _report.block((state[0].params, state[0].opt_state))
    return run


def time_rotated(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each ``fn``, interleaved, the order rotated.

    Like ``_report.time_interleaved``, but round ``r`` starts with the
    ``r``-th function, so no function always runs first (on a machine whose
    load drifts, a fixed position biases the medians).
    """
    names = list(fns)
    for fn in fns.values():  # warm-up / compile
        fn()
    samples: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            samples[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in samples.items()}


# --- FLOPs -------------------------------------------------------------------------


def train_flops(config, params) -> float:
    """3 × forward FLOPs per step (matmuls + dense attention products)."""
    m = config.model
    dense = sum(int(np.prod(x.shape)) for path, x in
                jax.tree_util.tree_flatten_with_path(params)[0]
                if jax.tree_util.keystr(path, simple=True, separator="/").endswith("kernel"))
    tokens = config.batch_size * m.context
    per_token = 2 * dense + 4 * m.context * m.d_model * m.num_layers
    return 3.0 * tokens * per_token


def matmul_runner(m: int, k: int, n: int):
    """A jitted float32 ``(m, k) @ (k, n)`` and its FLOPs."""
    a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
    mm = jax.jit(lambda x, y: x @ y)

    def run():
        _report.block(mm(a, b))
    return run, 2.0 * m * k * n


# --- the benchmark ---------------------------------------------------------------


def measure(steps: int, repeats: int, n_matmul: int) -> dict:
    config = lm.get_config()
    data, fn, loss_fn, tx = train.setup(config)
    sampler = data.train_sampler()
    lab = lab_loop(config, fn, loss_fn, tx, sampler.source, sampler.fn)
    bare, forward, loss = bare_loop(config, fn.params, sampler.source)
    x, y = _batch(sampler.source, 0, 0, config.batch_size, config.model.context)
    expected, _ = fn.apply(fn.params, fn.model_state, x, False)
    np.testing.assert_allclose(np.asarray(jax.jit(forward)(fn.params, x)),
                               np.asarray(expected), rtol=2e-4, atol=2e-5)
    fwd = jax.jit(loss)
    fwd_bwd = jax.jit(jax.value_and_grad(loss))
    mm, mm_flops = matmul_runner(n_matmul, n_matmul, n_matmul)
    m = config.model
    rows = config.batch_size * m.context
    model_mm, model_mm_flops = matmul_runner(rows, m.d_model, 2 * m.mlp_hidden)
    t = time_rotated({
        "lab": lambda: lab(steps), "bare": lambda: bare(steps),
        "forward": lambda: _report.block(fwd(fn.params, x, y)),
        "forward_backward": lambda: _report.block(fwd_bwd(fn.params, x, y)),
        "matmul": mm, "model_matmul": model_mm}, repeats)
    per = {k: (v / steps if k in ("lab", "bare") else v) for k, v in t.items()}
    return dict(per=per, flops=train_flops(config, fn.params), mm_flops=mm_flops,
                model_mm_flops=model_mm_flops, model_mm_shape=(rows, m.d_model,
                                                               2 * m.mlp_hidden),
                config=config, n_params=sum(int(np.prod(a.shape))
                                            for a in jax.tree.leaves(fn.params)))


def measure_optimizers(names, steps: int, repeats: int) -> dict[str, float]:
    """Seconds per lab train step with each optimizer (median, interleaved)."""
    config = lm.get_config()
    data, fn, loss_fn, _ = train.setup(config)
    sampler = data.train_sampler()
    runners = {}
    for name in names:
        hp = dict(registry.get(name).test_hparams)
        tx = registry.build(name, **hp)
        runners[name] = lab_loop(config, fn, loss_fn, tx, sampler.source, sampler.fn)
    t = time_rotated({k: (lambda r=r: r(steps)) for k, r in runners.items()}, repeats)
    return {k: v / steps for k, v in t.items()}


def where_the_time_goes(per: dict[str, float], mm: float, model_mm: float, shape,
                        n_matmul: int, d_model: int) -> str:
    """The lab step's time split, from the timings (one paragraph)."""
    r_, k_, n_ = shape
    fwd, fb = per["forward"] / per["lab"], per["forward_backward"] / per["lab"]
    rest = 1 - fb
    text = (f"Where the time goes: the forward pass is {100 * fwd:.0f} % of the lab "
            f"step, forward + backward {100 * fb:.0f} % (the backward costs "
            f"{per['forward_backward'] / per['forward'] - 1:.1f}× the forward); ")
    text += ("the optimizer update, the batch gather and the lab's guard and "
             f"metrics take the rest ({100 * rest:.0f} %). " if rest >= 0.05 else
             "the optimizer update, the batch gather and the lab's guard and metrics "
             "are within the timing noise. ")
    share = model_mm / mm
    text += (f"The model's largest matmul alone (the fused gate/up projection, "
             f"{r_}×{k_} @ {k_}×{n_}) runs at {model_mm / 1e9:.1f} GFLOP/s, "
             f"{100 * share:.0f} % of the {n_matmul}² matmul's rate")
    if share >= 0.8:
        text += (", so the matmuls are not what holds the step back: the gap is the "
                 "non-matmul work — the attention's T × T masking and softmax and "
                 "their backward, RoPE, RMSNorm, SwiGLU gating, residual adds and the "
                 "embedding gather / scatter — memory-bound element-wise work that "
                 "counts almost no FLOPs.")
    else:
        text += (f": thin matmuls (inner dimension d = {d_model}) run below the large "
                 "matmul's rate, and the attention's T × T masking and softmax, RoPE, "
                 "RMSNorm and SwiGLU gating add memory-bound element-wise work that "
                 "counts almost no FLOPs.")
    return text


def report(res: dict, opt: dict[str, float], steps: int, repeats: int,
           opt_repeats: int, n_matmul: int) -> str:
    per, c = res["per"], res["config"]
    mm = res["mm_flops"] / per["matmul"]
    flops = {k: res["flops"] / 3 if k == "forward" else res["flops"]  # bwd = 2 fwd
             for k in ("lab", "bare", "forward", "forward_backward")}
    mfu = {k: f / per[k] / mm for k, f in flops.items()}
    ratio = per["lab"] / per["bare"]
    m = c.model
    model_mm = res["model_mm_flops"] / per["model_matmul"]
    r_, k_, n_ = res["model_mm_shape"]
    lines = [
        "## LM train step: lab vs bare loop, model FLOP/s, optimizers", "",
        f"Regenerate: `python -m benchmarks.lm_step --steps={steps} --repeats={repeats} "
        f"--opt_repeats={opt_repeats}` · {_report.machine()}", "",
        f"Byte-level LLaMA LM of `experiments/configs/lm.py`: {m.num_layers} blocks, "
        f"d {m.d_model}, {m.num_heads} heads, SwiGLU {m.mlp_hidden}, context "
        f"{m.context}, batch {c.batch_size} ({res['n_params'] / 1e6:.2f} M parameters, "
        f"{c.batch_size * m.context} tokens / step); AdamW. Training FLOPs per step "
        f"{res['flops'] / 1e9:.1f} G (3 × forward; forward = 2 · matmul parameters + "
        "4 · T · d · L per token, attention products dense as computed). **The machine "
        "is shared with other agents' jobs running at the same time**: absolute times "
        "are slow and noisy; the ratios come from interleaved medians in one process.",
        "", "| what | ms | model GFLOP/s | fraction of matmul FLOP/s |",
        "|---|---|---|---|",
        f"| {n_matmul}² float32 matmul (reference) | {per['matmul'] * 1e3:.1f} | "
        f"{mm / 1e9:.1f} | 1 |",
        f"| the model's largest matmul alone ({r_}×{k_} @ {k_}×{n_}) | "
        f"{per['model_matmul'] * 1e3:.2f} | {model_mm / 1e9:.1f} | "
        f"{100 * model_mm / mm:.1f} % |"]
    names = {"forward": "forward only (loss, bare)",
             "forward_backward": "forward + backward (bare)",
             "bare": "bare train step (+ AdamW update)",
             "lab": "lab train step (registry AdamW, NaN guard, metrics)"}
    for k, label in names.items():
        lines.append(f"| {label} | {per[k] * 1e3:.1f} | {flops[k] / per[k] / 1e9:.1f} | "
                     f"{100 * mfu[k]:.1f} % |")
    verdict = lambda ok: "✓" if ok else "✗"  # noqa: E731
    lines += [
        "", f"**Lab / bare: {ratio:.3f}×** (target ≤ {TARGET_RATIO}× "
        f"{verdict(ratio <= TARGET_RATIO)}; median of {repeats} interleaved blocks of "
        f"{steps} steps, the order rotated each round, both returning params and "
        "optimizer state). "
        f"**Model FLOP/s of the lab step: {100 * mfu['lab']:.1f} % of the matmul's** "
        f"(target ≥ {100 * TARGET_MFU:.0f} % {verdict(mfu['lab'] >= TARGET_MFU)}). "
        + where_the_time_goes(per, mm, model_mm, res["model_mm_shape"], n_matmul, m.d_model),
        ""]
    base = opt.get("adamw")
    if opt and base:
        lines += [f"Train step with every registered optimizer (registry test "
                  f"hyperparameters), relative to AdamW; median of {opt_repeats} "
                  f"interleaved blocks of {steps} steps, the order rotated each round "
                  "(the optimizer update is a small part of this step, so the ratios "
                  "mostly measure timing noise on the shared machine):", "",
                  "| optimizer | ms / step | vs AdamW | target |", "|---|---|---|---|"]
        for name, sec in opt.items():
            r = sec / base
            lines.append(f"| {name} | {sec * 1e3:.1f} | {r:.3f}× | ≤ {TARGET_OPT}× "
                         f"{verdict(r <= TARGET_OPT)} |")
    return "\n".join(lines)


def main(argv):
    del argv
    names = FLAGS.optimizers or list(registry.names())
    if "adamw" not in names:
        names = ["adamw", *names]
    res = measure(FLAGS.steps, FLAGS.repeats, FLAGS.matmul)
    print({k: f"{v * 1e3:.1f} ms" for k, v in res["per"].items()}, flush=True)
    opt = measure_optimizers(names, FLAGS.steps, FLAGS.opt_repeats)
    md = report(res, opt, FLAGS.steps, FLAGS.repeats, FLAGS.opt_repeats, FLAGS.matmul)
    print(md)
    _report.write_section("lm_step", md)


if __name__ == "__main__":
    app.run(main)
