"""Throughput of many runs in one program, and of scanned dispatch.

    python -m benchmarks.sweep [--repeats=5]

All loops are the lab's real ones minus file writes, timed interleaved in one
process, by wall clock and by this process's CPU time in the same blocks, and
every timed function returns what a real step keeps (params, model and
optimizer state) after blocking on it:

(a) **8 members (2 seeds × 4 learning rates) vmapped vs the same 8 runs one
    after another**: the sweep's own loop (``sweep.Partition``: one jitted,
    vmapped step over the stacked states, batches sliced from each epoch's
    permutation; metrics fetched once per ``log_every`` window and split per
    member) against each member's own single-run loop (``train.compile_steps``
    fed by ``train.Batches``, as ``train_and_evaluate`` runs it) with its own
    window fetches. On the digits MLP (``fadam_digits``: 64-64-10, batch 64,
    AdamW) and on the grokking MLP (``grokking``: 226-200-200-113, full batch
    of 5 107).
(b) **``steps_per_call=10`` vs 1** on the digits MLP (``train.scan_steps``:
    ten steps per dispatch, metrics stacked), and the lab loop with it vs a
    bare hand-written jitted loop (``value_and_grad`` + ``optax.adamw`` +
    ``apply_updates``, each epoch's permutation computed once and sliced in
    the step, one dispatch per step).

For the grokking MLP it also measures what bounds the ratio: the step's
FLOPs and bytes (XLA's cost analysis) against this machine's matmul rate and
memory bandwidth measured in the same run, the page faults per member-step,
and the same comparison in a child process whose glibc allocator keeps freed
memory (``allocator.retain_freed_memory()``, as ``experiments.sweep`` does).

Every log window is closed as between a real run's evaluations (the configs'
``eval_every`` and ``checkpoint_every`` are moved past the timed steps): its
metrics fetched and averaged after the next ``train.OVERLAP_CALLS`` calls are
dispatched. Every size of scanned call is compiled before timing.

Writes the "sweep" section of ``results/benchmarks.md``.
"""

from __future__ import annotations

import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app
from absl import flags
from flax import nnx

from benchmarks import _report
from experiments.configs import fadam_digits
from experiments.configs import grokking
from optim_lab.data import dataset as dataset_lib
from optim_lab.models import functional
from optim_lab.models import mlp
from optim_lab.training import allocator
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import sweep
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Interleaved timed blocks per loop.")
flags.DEFINE_integer("digits_steps", 100, "Steps per timed block, digits MLP.")
flags.DEFINE_integer("grokking_steps", 10, "Steps per timed block, grokking MLP.")
flags.DEFINE_bool("grokking_only", False, "Only time the grokking loops and print their "
                  "rates as JSON (the child process of the allocator comparison).")
flags.DEFINE_bool("retain_freed", False, "Call allocator.retain_freed_memory() first, as "
                  "experiments.sweep does (the child process of the allocator comparison).")

SEEDS = (0, 1)
LRS = (1e-3, 2e-3, 5e-3, 1e-2)


def _timing(c):
    """``c`` for timing the training loop: long enough never to end, with no
    evaluation or checkpoint inside the timed steps (every log window closes
    a few calls later, as between evaluations of a real run)."""
    c.steps = c.eval_every = c.checkpoint_every = 10**6
    return c


def digits_config():
    c = fadam_digits.get_config()
    c.optimizer.name = "adamw"
    return _timing(c)


def grokking_config():
    return _timing(grokking.get_config())


def _members(config):
    axes = sweep.parse_axes([f"seed={','.join(map(str, SEEDS))}",
                             "optimizer.learning_rate=" + ",".join(map(str, LRS))], config)
    return sweep.expand(config, axes)


def _setup(config, gather: bool = False):
    """``train.setup(config)``; ``gather``: the MLP's one-hot first layer as a row
    gather (``mlp.MLP(one_hot_groups=2)``, the same initial params)."""
    data, fn, loss_fn, tx = train.setup(config)
    if gather:
        model = mlp.MLP(data.spec.num_features, tuple(config.model.hidden),
                        data.spec.num_classes, use_bias=config.model.use_bias,
                        init=config.model.init, one_hot_groups=2,
                        rngs=nnx.Rngs(config.seed))
        fn = functional.functionalize(model)._replace(params=fn.params)
    return data, fn, loss_fn, tx


def _single(config, gather: bool = False):
    """``(jitted step, state, calls)`` of one run as ``train_and_evaluate`` builds
    them: ``calls`` yields each call's ``(steps, source)`` (``train.Batches``)."""
    data, fn, loss_fn, tx = _setup(config, gather)
    batches = train.Batches(config, data)
    step, _ = train.compile_steps(config, fn, loss_fn, tx,
                                  post_step=train.build_post_step(config),
                                  sampler_fn=batches.fn, pack_metrics=True)
    return step, train.initial_state(fn, tx, config.seed), batches.calls(0)


class _Loop:
    """A run's loop from ``calls`` (``(step reached, metrics, state)`` per call)
    as the lab runs it: its log windows (``train.log_windows``) closed by
    ``close``. ``run(steps)`` closes windows until ``steps`` more steps are
    logged and returns the newest state (blocked on)."""

    def __init__(self, config, calls, close):
        self.logged, self.latest, self.close = 0, None, close

        def tracked():
            for s, metrics, state in calls:
                self.latest = state
                yield s, metrics, state
        self.windows = train.log_windows(tracked(), config, 0)

    def run(self, steps):
        target = self.logged + steps
        while self.logged < target:
            w = next(self.windows)
            self.close(w)
            self.logged = w.step
        return _report.block(self.latest)


def vmapped_loop(config, chunk: int = 0, gather: bool = False):
    """``run(steps) -> states``: the sweep's program over the 8 members, in
    chunks of ``chunk`` members run in turn (0: all at once), each window closed
    by ``sweep.close_window`` (with writers that write nothing)."""
    members = _members(config)
    (group,) = sweep.group(members)
    data, fn, _, _ = _setup(config, gather)
    program = sweep.Program(config, fn, data, group.traced)
    loops = []
    for part in sweep.chunks(members, chunk):
        p = sweep.Partition(program, [m.config for m in part],
                            [_single(m.config, gather)[1] for m in part], data, 0, len(part))
        slots = [sweep.Slot(m, None, metrics_lib.NullWriter(), None,
                            train.Divergence(m.config.max_nonfinite_steps)) for m in part]
        loops.append((p, _Loop(config, p.calls(), lambda w, p=p, slots=slots:
                                   sweep.close_window(p, slots, w))))

    def run(steps):
        return [loop.run(steps) for _, loop in loops]
    return _warm(run, config), program, loops[0][0]


def _lab_loop(config, step, state, calls) -> _Loop:
    """One run's loop (``train_and_evaluate``'s minus file writes)."""
    divergence = train.Divergence(config.max_nonfinite_steps)
    many = train.scan_steps(step) if config.steps_per_call > 1 else None

    def run_calls():
        s, at = 0, state
        for n, source in calls:
            at, metrics = step(at, source) if many is None else many(at, source, n)
            s += n
            yield s, metrics, at

    def close(w):
        divergence.update(w.first, train.window_columns(w.metrics)[0])
    return _Loop(config, run_calls(), close)


def sequential_loop(config, gather: bool = False):
    """``run(steps) -> states``: the same 8 members, one single run after another."""
    loops = [_lab_loop(m.config, *_single(m.config, gather)) for m in _members(config)]

    def run(steps):
        return [loop.run(steps) for loop in loops]
    return _warm(run, config)


def _warm(run, config):
    """Runs every call size once before timing (scanned calls are compiled per
    size): calls are cut at log steps and at the ends of blocks of epochs, so
    the first block and one more window hold every size, as in a real run."""
    if config.steps_per_call > 1:
        data = train.setup(config)[0]
        per_epoch = dataset_lib.steps_per_epoch(data.num_train, config.batch_size)
        run(per_epoch * train.block_epochs(config.steps_per_call, per_epoch)
            + config.log_every)
    return run


def with_calls(config, per_call):
    """``config`` with ``steps_per_call=per_call``."""
    config = config.copy_and_resolve_references()
    config.steps_per_call = per_call
    return config


def lab_loop(config, per_call):
    """``run(steps) -> state``: one run's loop, ``per_call`` steps per dispatch."""
    config = with_calls(config, per_call)
    return _warm(_lab_loop(config, *_single(config)).run, config)


def bare_loop(config, per_epoch_permutation: bool = True):
    """``run(steps) -> (params, opt_state)``: value_and_grad + optax.adamw, nothing
    else; the batches drawn from each epoch's permutation computed once per epoch,
    or (``per_epoch_permutation=False``) by ``dataset.get_batch`` in the step."""
    data, fn, _, _ = train.setup(config)
    o, b, n = config.optimizer, config.batch_size, data.num_train
    tx = optax.adamw(o.learning_rate, weight_decay=o.weight_decay)

    def loss(params, x, y):
        logits, _ = fn.apply(params, fn.model_state, x, True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    @jax.jit
    def permutation(epoch):
        return jax.random.permutation(
            jax.random.fold_in(jax.random.key(config.seed), epoch), n)

    @jax.jit
    def step(params, opt_state, t, perm, x, y):
        if per_epoch_permutation:
            idx = jax.lax.dynamic_slice_in_dim(perm, t % per_epoch * b, b)
            bx, by = x[idx], y[idx]
        else:
            bx, by = dataset_lib.get_batch(x, y, config.seed, t, b)
        g = jax.grad(loss)(params, bx, by)
        u, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, u), opt_state

    carry = [fn.params, tx.init(fn.params), 0, None]
    per_epoch = n // b

    def run(steps):
        for _ in range(steps):
            t = carry[2]
            if per_epoch_permutation and (t % per_epoch == 0 or carry[3] is None):
                carry[3] = permutation(np.int32(t // per_epoch))
            carry[0], carry[1] = step(carry[0], carry[1], np.int32(t), carry[3],
                                      data.train_x, data.train_y)
            carry[2] += 1
        return _report.block(carry[:2])
    return run


def _timed(fns: dict, repeats: int, per: float) -> dict[str, float]:
    """Rates (``per`` / median seconds) by wall clock and, as ``cpu:<name>``, by
    this process's CPU time (all threads), measured on the same interleaved
    blocks; as ``faults:<name>``, minor page faults per ``per``.

    On a machine shared with other jobs the wall clock also counts the time
    this process waits for a core; its CPU time counts only its own work.
    """
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    faults = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            f0, c0, w0 = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
                          time.process_time(), time.perf_counter())
            fn()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    med = statistics.median
    return {**{k: per / med(v) for k, v in wall.items()},
            **{f"cpu:{k}": per / med(v) for k, v in cpu.items()},
            **{f"faults:{k}": med(v) / per for k, v in faults.items()}}


def measure_vmap(config, steps, repeats, chunks=(), gather=False,
                 scan=False) -> dict[str, float]:
    """Member-steps per second of the vmapped (also in ``chunks``) and sequential
    loops; with ``gather`` also both loops of the MLP with a gathered first layer;
    with ``scan`` also the vmapped step alone, ``steps`` of it in one ``lax.scan``
    (``vmapped_scan``: its computation, no dispatch, no metric fetch)."""
    vmapped, program, part = vmapped_loop(config)
    loops = {"vmapped": vmapped, "sequential": sequential_loop(config)}
    loops.update({f"chunk{c}": vmapped_loop(config, c)[0] for c in chunks})
    if gather:
        loops.update({"gather_vmapped": vmapped_loop(config, gather=True)[0],
                      "gather_sequential": sequential_loop(config, gather=True)})
    fns = {k: (lambda f=f: f(steps)) for k, f in loops.items()}
    if scan:
        perm = program.epoch_perms(part.seeds, np.int32(0)) if program.per_epoch else None
        inputs = (part.hp, perm, part.source)
        fns["vmapped_scan"] = lambda: _report.block(
            program.many(part.state, inputs, steps)[0])
    return _timed(fns, repeats, len(SEEDS) * len(LRS) * steps)


def measure_dispatch(config, steps, repeats) -> dict[str, float]:
    """Steps per second of the lab loop at 1 and 10 steps per call, and the bare loop;
    and, per step inside one ``lax.scan`` of ``steps`` (no dispatch), the lab step's,
    a batch drawn from the block's permutations (``train.Batches``) and one drawn
    by ``get_batch``."""
    loops = {"k1": lab_loop(config, 1), "k10": lab_loop(config, 10),
             "bare": bare_loop(config), "bare_get_batch": bare_loop(config, False)}
    step, state, calls = _single(config)
    source = next(calls)[1]
    many = train.scan_steps(step)
    x, y = source[:2]

    def draws(draw):
        return jax.jit(lambda: jax.lax.scan(
            lambda t, _: (t + 1, draw(t)[0].sum()), jnp.int32(0), None, length=steps))
    b = config.batch_size
    per_step = draws(lambda t: dataset_lib.get_batch(x, y, config.seed, t, b))
    per_epoch = draws(lambda t: dataset_lib.rows_of_epochs(source, None, t, b))
    fns = {k: (lambda f=f: f(steps)) for k, f in loops.items()}
    fns["scan_step"] = lambda: _report.block(many(state, source, steps))
    fns["draw_get_batch"] = lambda: _report.block(per_step())
    fns["draw_of_epoch"] = lambda: _report.block(per_epoch())
    return _timed(fns, repeats, steps)


def measure_machine(repeats) -> dict[str, float]:
    """This machine's float32 matmul rate (a 2048² matmul) and memory bandwidth
    (``x * c`` over 256 MB, read and written in place), per CPU-second."""
    a = jnp.ones((2048, 2048), jnp.float32)
    mm = jax.jit(lambda a: a @ a)
    x = [jnp.ones((64 << 20,), jnp.float32)]
    scale = jax.jit(lambda x: x * 1.0001, donate_argnums=0)

    def stream():
        x[0] = _report.block(scale(x[0]))
    rates = _timed({"matmul": lambda: _report.block(mm(a)), "stream": stream}, repeats, 1)
    return {"flops": 2 * 2048**3 * rates["cpu:matmul"],
            "bytes": 2 * x[0].nbytes * rates["cpu:stream"]}


def matmul_floor(repeats, rows: int = 5107, widths=(226, 200, 200, 113),
                 members: int = 8) -> float:
    """CPU seconds per member-step of the grokking MLP's matmuls alone, each at
    its best measured rate.

    The step's matmuls: each layer's forward (``bk,kn->bn``) and kernel
    gradient (``bk,bn->kn``), and the input gradient of every layer but the
    first (``bn,kn->bk``), over the full batch of ``rows``. Each form is timed
    as ``members`` single matmuls and as one batched over ``members``; the
    faster counts.
    """
    forms = []
    for i, (k, n) in enumerate(zip(widths[:-1], widths[1:])):
        forms += [("bk,kn->bn", k, n), ("bk,bn->kn", k, n)]
        if i:
            forms.append(("bn,kn->bk", k, n))
    key = jax.random.key(0)
    fns = {}
    for j, (spec, k, n) in enumerate(forms):
        size = {"b": rows, "k": k, "n": n}
        ins = spec.split("->")[0].split(",")
        one = [jax.random.normal(key, tuple(size[c] for c in t)) for t in ins]
        many = [jax.random.normal(key, (members, *x.shape)) for x in one]
        f1 = jax.jit(lambda *a, spec=spec: jnp.einsum(spec, *a))
        f8 = jax.jit(lambda *a, spec=spec: jnp.einsum(
            ",".join("m" + t for t in spec.split("->")[0].split(",")) + "->m"
            + spec.split("->")[1], *a))
        fns[f"{j}:single"] = lambda f1=f1, one=one: _report.block(
            [f1(*one) for _ in range(members)])
        fns[f"{j}:batched"] = lambda f8=f8, many=many: _report.block(f8(*many))
    rates = _timed(fns, repeats, members)  # member-matmuls per CPU-second
    return sum(1 / max(rates[f"cpu:{j}:single"], rates[f"cpu:{j}:batched"])
               for j in range(len(forms)))


def step_costs(config) -> dict[str, float]:
    """XLA's cost and memory analysis of one member's step, single-run and vmapped:
    FLOPs, bytes accessed (vmapped: per member), temporary buffer bytes per call."""
    _, program, part = vmapped_loop(config)
    vm = program.step.lower(part.state, (part.hp, None, part.source)).compile()
    step, state, calls = _single(config)
    one = step.lower(state, next(calls)[1]).compile()
    k = len(SEEDS) * len(LRS)
    return {"flops": one.cost_analysis()["flops"],
            "bytes": one.cost_analysis()["bytes accessed"],
            "vm_bytes": vm.cost_analysis()["bytes accessed"] / k,
            "temp": one.memory_analysis().temp_size_in_bytes,
            "vm_temp": vm.memory_analysis().temp_size_in_bytes}


def grokking_rates(repeats, steps) -> dict[str, float]:
    return measure_vmap(grokking_config(), steps, repeats, chunks=(2,), gather=True)


def grokking_in_child(repeats, steps) -> dict[str, float] | None:
    """The grokking comparison in a child process that first calls
    ``allocator.retain_freed_memory()``, as ``experiments.sweep`` does."""
    cmd = [sys.executable, "-m", "benchmarks.sweep", "--grokking_only", "--retain_freed",
           f"--repeats={repeats}", f"--grokking_steps={steps}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=_report.ROOT,
                         timeout=3600)
    if out.returncode:
        print(out.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _l3_bytes() -> int:
    """The last-level (L3) cache size from sysfs (0 if unknown)."""
    for index in pathlib.Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            if (index / "level").read_text().strip() == "3":
                size = (index / "size").read_text().strip()
                return int(size.rstrip("KM")) * (1 << 20 if size.endswith("M") else 1 << 10)
        except (OSError, ValueError):
            continue
    return 0


def _mark(ratio: float, target: float | None) -> str:
    if target is None:
        return "–"
    return f"≥ {target:g}× {'✓' if ratio >= target else '✗'}"


def _row(what: str, rates: dict[str, float], subject: str, baseline: str,
         target: float | None) -> str:
    """One table row: wall-clock rates and ratio (judged), and the CPU-time ratio."""
    ratio = rates[subject] / rates[baseline]
    cpu = rates[f"cpu:{subject}"] / rates[f"cpu:{baseline}"]
    return (f"| {what} | {rates[subject]:.0f} | {rates[baseline]:.0f} | **{ratio:.2f}×** | "
            f"{cpu:.2f}× | {_mark(ratio, target)} |")


def _dispatch_note(digits, digits10, disp) -> str:
    us = 1e6
    step_us = us / disp["cpu:scan_step"]
    old_us, new_us = us / disp["cpu:draw_get_batch"], us / disp["cpu:draw_of_epoch"]
    k1_us, k10_us, bare_us, bare_old_us = (
        us / disp[f"cpu:{k}"] for k in ("k1", "k10", "bare", "bare_get_batch"))
    vm_us, seq_us = us / digits["cpu:vmapped"], us / digits["cpu:sequential"]
    vm_scan_us = us / digits["cpu:vmapped_scan"]
    vm10_us, seq10_us = us / digits10["cpu:vmapped"], us / digits10["cpu:sequential"]
    return (
        "Where the time goes (CPU time of this process per step). Digits MLP: a lab step "
        f"costs {step_us:.0f} µs inside one `lax.scan` (no dispatch). Its batch is sliced "
        f"from its epoch's permutation, computed once, 16 epochs per program "
        f"({new_us:.0f} µs per draw; `train.Batches`, the same batches as before); "
        "`dataset.get_batch`, which recomputes the permutation of the 1 437 examples "
        f"(threefry bits and a sort) every step, costs {old_us:.0f} µs per draw. Per step "
        f"the single-run loops cost {k1_us:.0f} µs (steps_per_call=1), {k10_us:.0f} µs "
        "(steps_per_call=10: calls of 10 across epoch ends, each a log window; a window's "
        f"metrics packed into one array per dtype and fetched after the next "
        f"{train.OVERLAP_CALLS} calls are dispatched), {bare_us:.0f} µs (bare, one "
        "dispatch per step) and "
        f"{bare_old_us:.0f} µs (bare with `get_batch`): what ten steps per call save is "
        "the per-call overhead (dispatch of the state and metric pytrees, the host loop); "
        "what remains against the bare loop is the lab step's own work (its metrics: "
        "gradient and update norms, effective step sizes, the non-finite guard). The sweep's 8 "
        f"members in one call: {vm_us:.0f} µs per member-step against {seq_us:.0f} µs "
        f"one run after another. The vmapped step alone (inside one `lax.scan`, no "
        f"dispatch, no fetch) costs {vm_scan_us:.0f} µs per member-step against "
        f"{step_us:.0f} µs for one run's step alone ({step_us / vm_scan_us:.1f}× less "
        "computation per member); the other "
        f"{max(vm_us - vm_scan_us, 0):.0f} µs of a vmapped member-step are the sweep "
        "loop's per-call work: one dispatch of the stacked state per step (the traced "
        "hyperparameters and the block's permutations are inputs of the step, not "
        "outputs: carried, they were copied every call), and each log window fetched "
        "as one array per dtype and averaged per member in one pass, after the next "
        f"{train.OVERLAP_CALLS} calls are dispatched. With `steps_per_call=10` in both "
        "loops the single runs "
        f"lose most of their dispatch cost too ({seq10_us:.0f} µs per member-step one "
        f"after another, {vm10_us:.0f} µs vmapped): what vmapping then saves is only "
        "the computation of 8 small steps done as one. By wall clock the 8-member ratio is "
        "lower than by CPU time when the runs one after another keep more of the two "
        "cores busy: CPU seconds per wall-clock second "
        f"{digits['sequential'] / digits['cpu:sequential']:.2f} one after another, "
        f"{digits['vmapped'] / digits['cpu:vmapped']:.2f} vmapped (XLA:CPU runs a "
        "computation on its own thread beside the dispatching host thread).")


def _grokking_note(grok, child, costs, machine) -> str:
    k = len(SEEDS) * len(LRS)
    seq_ms, vm_ms = 1e3 / grok["cpu:sequential"], 1e3 / grok["cpu:vmapped"]
    floor_ms = costs["flops"] / machine["flops"] * 1e3
    mm_ms = machine["matmul_floor"] * 1e3
    ceiling = round(seq_ms / mm_ms, 2)
    mem_ms = costs["vm_bytes"] / machine["bytes"] * 1e3
    act_mb = k * 5107 * (200 + 200 + 113) * 4 / 1e6
    l3 = _l3_bytes() / 1e6
    faults = (f"{grok['faults:vmapped']:.0f} minor page faults per member-step vmapped "
              f"against {grok['faults:sequential']:.0f} one run after another")
    text = (
        "Grokking MLP: a member's step is a full-batch matmul chain of "
        f"{costs['flops'] / 1e9:.2f} GFLOP (XLA's cost analysis). At this machine's "
        f"float32 matmul rate measured in the same run ({machine['flops'] / 1e9:.0f} "
        f"GFLOP per CPU-second, a 2048² matmul) that is {floor_ms:.1f} ms; one run after "
        f"another takes {seq_ms:.1f} ms CPU per member-step, {floor_ms / seq_ms:.0%} of "
        "the machine's matmul rate already. The step is compute-bound, not memory-bound: "
        f"the vmapped step's {costs['vm_bytes'] / 1e6:.0f} MB per member (cost analysis; "
        f"{act_mb:.0f} MB of forward activations for 8 members, {l3:.0f} MB L3) at the "
        f"measured {machine['bytes'] / 1e9:.0f} GB per CPU-second is {mem_ms:.1f} ms. "
        "Vmapping removes dispatch, which is negligible here, and cannot remove FLOPs. "
        "The step's eight matmuls alone (each layer's forward and kernel gradient, the "
        "input gradients of layers 2-3), each timed at its best rate as 8 single or one "
        f"batched matmul, take {mm_ms:.1f} ms per member: a vmapped step doing nothing "
        f"else would be at most **{ceiling:.2f}×** the sequential runs. Reaching 1.3× "
        "would take a vmapped step with no cost beyond its matmuls at their best rates "
        f"(the loss, ReLUs, AdamW update and metrics are the other {seq_ms - mm_ms:.1f} ms "
        "of a sequential member-step)"
        + (", so the target is out of reach on this CPU" if ceiling < 1.3 else "")
        + ". "
        f"The vmapped step takes {vm_ms:.1f} ms CPU per member-step, with "
        f"{faults}: XLA allocates a call's temporaries as one buffer, "
        f"{costs['vm_temp'] / 1e6:.0f} MB for the vmapped step against "
        f"{costs['temp'] / 1e6:.0f} MB for a single member's, and glibc's malloc serves "
        "a block above its mmap threshold (at most 32 MiB) with a fresh mmap and "
        "returns it with munmap, so every vmapped call faults all its pages in again "
        "(4 KiB each; a single member's smaller buffer may stay in the heap, depending "
        "on the allocator's state).")
    if child:
        text += (
            " With glibc's allocator told to keep freed memory "
            "(`optim_lab.training.allocator.retain_freed_memory()`, which "
            "`experiments.sweep` calls at start; a child process), vmapped vs "
            f"sequential is **{child['vmapped'] / child['sequential']:.2f}×**"
            f" by wall clock, {child['cpu:vmapped'] / child['cpu:sequential']:.2f}× by CPU "
            f"time ({child['faults:vmapped']:.0f} faults per member-step; chunks of 2: "
            f"{child['chunk2'] / child['sequential']:.2f}×). The rest of the gap is XLA's "
            "layout of the batched first layer (the shared input is multiplied by all 8 "
            "kernels as one [5 107, 1 600] matmul, and its output and the gradient of "
            "that layer are transposed through memory) and batched dot forms slower than "
            "the single-member ones.")
    g, g_cpu = (grok["gather_vmapped"] / grok["gather_sequential"],
                grok["cpu:gather_vmapped"] / grok["cpu:gather_sequential"])
    text += (
        " The one-hot first layer as a row gather (`mlp.MLP(one_hot_groups=2)`, the same "
        "params) removes that layer's matmuls and transposes from both loops: "
        f"{1e3 / grok['cpu:gather_sequential']:.1f} ms CPU per member-step one after "
        f"another, vmapped {g:.2f}× by wall clock, {g_cpu:.2f}× by CPU time")
    if child:
        text += (f"; with the allocator keeping freed memory "
                 f"{child['gather_vmapped'] / child['gather_sequential']:.2f}× "
                 f"({child['cpu:gather_vmapped'] / child['cpu:gather_sequential']:.2f}× "
                 "CPU)")
    return text + "."


def _section(r, digits, digits10, disp, grok, child, costs, machine) -> str:
    rows = [
        _row("8 members vmapped vs one after another, digits MLP 64-64-10, batch 64",
             digits, "vmapped", "sequential", 4.0),
        _row("… the same with `steps_per_call=10` in both loops (not the target's "
             "setting: shown for what scanned dispatch leaves to vmapping)",
             digits10, "vmapped", "sequential", None),
        _row("8 members vmapped vs one after another, grokking MLP 226-200-200-113, "
             "full batch", grok, "vmapped", "sequential", 1.3),
        _row("… the same, `--sweep_chunk=2` (4 programs of 2 in turn), grokking MLP",
             grok, "chunk2", "sequential", 1.3),
    ]
    rows.append(_row("… 8 members vmapped, grokking MLP with its one-hot first layer as "
                     "a row gather (both loops)", grok, "gather_vmapped",
                     "gather_sequential", 1.3))
    if child:
        rows.append(_row("… 8 members vmapped, grokking MLP, glibc keeping freed memory "
                         "(child process, its own baseline)", child, "vmapped",
                         "sequential", 1.3))
        rows.append(_row("… the same with the first layer as a gather (child process)",
                         child, "gather_vmapped", "gather_sequential", 1.3))
    rows += [
        _row("steps_per_call=10 vs 1, digits MLP", disp, "k10", "k1", 2.0),
        _row("lab loop, steps_per_call=10 vs bare jitted loop (each epoch's "
             "permutation computed once), digits MLP", disp, "k10", "bare", 1.0),
        _row("lab loop, steps_per_call=10 vs bare jitted loop drawing with `get_batch` "
             "(the permutation every step: the baseline before), digits MLP",
             disp, "k10", "bare_get_batch", 1.0),
    ]
    return "\n".join([
        "## Sweeps: vmapped members, scanned dispatch", "",
        f"Regenerate: `python -m benchmarks.sweep --repeats={r}"
        + "".join(f" --{name}={FLAGS[name].value}" for name in ("digits_steps", "grokking_steps")
                  if FLAGS[name].present)
        + f"` · {_report.machine()} · "
        f"load average {os.getloadavg()[0]:.1f} at the end", "",
        f"(a) 8 members ({len(SEEDS)} seeds × {len(LRS)} learning rates, AdamW) as one "
        "vmapped program (`sweep.Partition`, what `experiments.sweep` runs) vs the same 8 "
        "runs one after another (each its own single-run loop), throughput in "
        "member-steps/s; (b) one run's steps/s. Every loop is the lab's (batches from "
        "`train.Batches`, window metrics fetched every `log_every` steps and averaged per "
        "member, no file writes), timed functions return params and optimizer state; "
        f"medians of {r} interleaved blocks ({FLAGS.digits_steps} digits / "
        f"{FLAGS.grokking_steps} grokking steps per member), by wall clock (the "
        "repository's convention, judged against the target) and by this process's CPU "
        "time in the same blocks (what the wall clock becomes when other jobs share the "
        "cores).", "",
        "| comparison | subject (steps/s) | baseline (steps/s) | ratio | ratio, CPU time "
        "| target |",
        "|---|---|---|---|---|---|", *rows, "",
        _dispatch_note(digits, digits10, disp) + "\n",
        _grokking_note(grok, child, costs, machine) + "\n",
        "The machine is shared with other jobs (load average above): wall-clock ratios "
        "move between runs; the CPU-time column is the steadier one.",
    ]).rstrip()


def main(argv):
    del argv
    r = FLAGS.repeats
    if FLAGS.retain_freed and not allocator.retain_freed_memory():
        raise SystemExit("error: --retain_freed: this C library has no mallopt")
    if FLAGS.grokking_only:
        print(json.dumps(grokking_rates(r, FLAGS.grokking_steps)))
        return
    digits = measure_vmap(digits_config(), FLAGS.digits_steps, r, scan=True)
    digits10 = measure_vmap(with_calls(digits_config(), 10), FLAGS.digits_steps, r)
    disp = measure_dispatch(digits_config(), FLAGS.digits_steps, r)
    grok = grokking_rates(r, FLAGS.grokking_steps)
    machine = measure_machine(r)
    machine["matmul_floor"] = matmul_floor(r)
    costs = step_costs(grokking_config())
    child = grokking_in_child(r, FLAGS.grokking_steps)
    md = _section(r, digits, digits10, disp, grok, child, costs, machine)
    print(md)
    _report.write_section("sweep", md)


if __name__ == "__main__":
    app.run(main)
