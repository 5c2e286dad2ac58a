"""``train_and_evaluate(config, workdir)``: data -> jitted step -> eval -> metrics -> checkpoint.

Everything is built from the config through the registries and validated
*before* anything is compiled: a bad optimizer name or hyperparameter, loss,
dataset or model option raises a ``ValueError`` naming the config field.
Re-running with the same workdir resumes from the newest checkpoint that
verifies; the resumed run is bit-identical to an uninterrupted one.

A run is data that must survive: the workdir is locked for one process, a
damaged checkpoint is reported and the next older one used, the log is cut
back to the restored step, a rerun asking for fewer steps than done changes
nothing, and ``max_nonfinite_steps`` consecutive non-finite steps stop the run
(checkpointed) with :class:`~optim_lab.training.errors.Diverged`. Errors the
user must act on are :class:`~optim_lab.training.errors.RunError` with a
one-line message.

Many processes (after ``jax.distributed.initialize``): every process runs this
same function on the same config and workdir (a shared filesystem); the mesh
spans every process's devices (``config.sharding``: replicated or FSDP
parameters, see :mod:`~optim_lab.training.parallel`). Process 0 alone holds
the workdir lock, checks and writes ``config.json``, writes ``metrics.jsonl``
and prints; the others learn the outcome of each of its decisions
(:func:`~optim_lab.training.parallel.agree`), and stop decisions (divergence,
the end of the run) come from replicated metrics, so every process takes them
at the same step. Checkpoints are saved and restored by all processes.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import math
import pathlib
import sys
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from optim_lab import _validation
from optim_lab import rundir
from optim_lab.data import dataset as dataset_lib
from optim_lab.data import reference_start
from optim_lab.data import registry as data_registry
from optim_lab.dynamics import activations
from optim_lab.losses import registry as loss_registry
from optim_lab.models import functional
from optim_lab.models import registry as model_registry
from optim_lab.optimizers import registry as optimizer_registry
from optim_lab.optimizers.state_dtype import with_state_dtype
from optim_lab.rescaling import lir as lir_lib
from optim_lab.rescaling import tvr as tvr_lib
from optim_lab.schedules import registry as schedule_registry
from optim_lab.training import checkpoint
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import parallel
from optim_lab.training import step as step_lib
from optim_lab.training import workdir as workdir_lib
from optim_lab.training.errors import Diverged
from optim_lab.training.errors import RunDataError
from optim_lab.training.state import TrainState


def _named(section: ml_collections.ConfigDict) -> tuple[str, dict[str, Any]]:
    kwargs = section.to_dict()
    return kwargs.pop("name"), kwargs


def _nonfinite_floats(tree: Any, prefix: str = "") -> Iterator[str]:
    """Dotted names of the float fields of a (nested) config that are not finite."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _nonfinite_floats(value, name + ".")
        elif isinstance(value, float) and not math.isfinite(value):
            yield f"{name} must be finite, got {value}"


def check_config(config: ml_collections.ConfigDict) -> None:
    """Validates the run-level fields (the registries check their sections)."""
    for problem in _nonfinite_floats(config.to_dict()):
        raise ValueError(problem)
    for field in ("steps", "log_every", "eval_every", "checkpoint_every",
                  "max_nonfinite_steps", "steps_per_call"):
        _validation.check_int(field, config[field], low=1)
    _validation.check_int("batch_size", config.batch_size, low=0)
    _validation.check_int("seed", config.seed, low=0)
    _validation.check_int("hessian_iters", config.hessian_iters, low=0)
    _validation.check_choice("data_parallel", config.data_parallel, (True, False))
    sharding = config.get("sharding", "replicated")
    _validation.check_choice("sharding", sharding, parallel.SHARDINGS)
    if sharding == "fsdp" and not config.data_parallel:
        raise ValueError("sharding: 'fsdp' needs data_parallel=True (it shards the "
                         "state over the data-parallel mesh)")
    if jax.process_count() > 1 and not config.data_parallel:
        raise ValueError(f"data_parallel: must be True with {jax.process_count()} "
                         "processes (every process takes part in one mesh)")
    for field in ("eval_every", "checkpoint_every"):
        if config[field] % config.log_every:
            raise ValueError(f"{field} must be a multiple of log_every "
                             f"({config.log_every}), got {config[field]}")


def build_loss(config: ml_collections.ConfigDict):
    """Per-example loss ``fn(logits, labels)`` in ``config.loss_dtype``."""
    fn = loss_registry.get(config.loss)
    return functools.partial(fn, dtype=loss_registry.dtype_from_bits(config.loss_dtype))


def build_optimizer(config: ml_collections.ConfigDict
                    ) -> optax.GradientTransformationExtraArgs:
    """The optimizer of ``config.optimizer`` with ``config.schedule``'s lr."""
    name, hparams = _named(config.optimizer)
    sched_name, sched_kwargs = _named(config.schedule)
    base_lr = hparams.pop("learning_rate")
    if (sched_kwargs.get("optimizer") is None
            and schedule_registry.accepts(sched_name, "optimizer")):
        sched_kwargs["optimizer"] = name  # e.g. refined: check the previous run's
    state_bits = hparams.pop("state_dtype", None)
    lr = schedule_registry.build(sched_name, base_lr, config.steps, **sched_kwargs)
    tx = optimizer_registry.build(name, lr, **hparams)
    return _with_state_dtype(tx, state_bits)


def _with_state_dtype(tx, bits: int | None):
    """``tx`` with its state in float``bits`` (None / 32: unchanged)."""
    _validation.check_choice("optimizer.state_dtype", bits, (None, 32, 64))
    if bits != 64:
        return tx
    if not jax.config.jax_enable_x64:
        raise ValueError("optimizer.state_dtype=64 needs enable_x64=True "
                         "(float64 arrays are disabled otherwise)")
    return with_state_dtype(tx, jnp.float64)


_TVR_FIELDS = {"tvr_target": "target", "tvr_interval": "interval",
               "tvr_threshold": "threshold", "tvr_scale_with_depth": "scale_with_depth",
               "tvr_mode": "mode"}


def _rescaling(config) -> dict[str, Any]:
    """``config.rescaling`` as a dict without its ``None`` (off / default) fields."""
    section = config.get("rescaling")
    return {k: v for k, v in (section.to_dict() if section else {}).items()
            if v is not None}


def build_post_step(config) -> list[step_lib.PostStep]:
    """The config's post-step transforms: TVR (``rescaling.tvr_*``) when on.

    TVR logs its per-layer statistics (``tvr/<leaf>/{std,mean,ratio,fired}``);
    with TVR on, a model with a residual-stream probe (the LLaMA LM) also logs
    ``act/max_abs`` and ``act/<point>/max_abs`` per step, from the loss
    forward itself (:func:`optim_lab.dynamics.activations.step_metrics`).
    """
    r = _rescaling(config)
    unknown = set(r) - set(_TVR_FIELDS) - {"lir_base_std"}
    if unknown:
        raise ValueError(f"rescaling.{sorted(unknown)[0]}: unknown field; known: "
                         + ", ".join(["lir_base_std", *_TVR_FIELDS]))
    tvr_kwargs = {_TVR_FIELDS[k]: v for k, v in r.items() if k in _TVR_FIELDS}
    if not tvr_kwargs:
        return []
    if "target" not in tvr_kwargs:
        raise ValueError("rescaling.tvr_target: must be set to turn TVR on (other "
                         f"tvr_* fields given: {', '.join(sorted(tvr_kwargs))})")
    try:
        return [tvr_lib.make_tvr_post_step(with_stats=True, **tvr_kwargs)]
    except (TypeError, ValueError) as e:
        raise ValueError(f"rescaling (tvr): {e}") from e


def _apply_lir(config, fn: functional.Functional) -> functional.Functional:
    """``fn`` re-initialised by LIR when ``rescaling.lir_base_std`` is set."""
    base_std = _rescaling(config).get("lir_base_std")
    if base_std is None:
        return fn
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), _LIR_KEY)
    try:
        return fn._replace(params=lir_lib.lir_reinit(fn.params, key, base_std=base_std))
    except (TypeError, ValueError) as e:
        raise ValueError(f"rescaling.lir_base_std: {e}") from e


_LIR_KEY = 0x4C4952  # "LIR": the LIR stream, independent of the model's init


def _load_init(path: str, fn: functional.Functional) -> functional.Functional:
    """``fn`` with its params replaced by those of a start file (``model.init_from``)."""
    if not pathlib.Path(path).is_file():
        raise ValueError(f"model.init_from: no such file {path!r}")
    try:
        params = reference_start.load_start(path, like=fn.params).params
    except (ValueError, KeyError, OSError) as e:
        raise ValueError(f"model.init_from ({path}): {e}") from e
    return fn._replace(params=jax.tree.map(jnp.asarray, params))


def setup(config) -> tuple[dataset_lib.Dataset, functional.Functional, Any,
                          optax.GradientTransformationExtraArgs]:
    """Validates ``config`` and builds ``(data, model, loss_fn, tx)``; compiles nothing.

    Runs in the config's x64 context (``enable_x64``), so float64 options
    (``loss_dtype=64``, ``optimizer.state_dtype=64``) validate as in training.
    """
    with x64_context(config):
        return _setup(config)


def _setup(config):
    check_config(config)
    data_name, data_kwargs = _named(config.data)
    data = data_registry.build(data_name, **data_kwargs)
    data.check_batch_size(config.batch_size)
    model_name, model_kwargs = _named(config.model)
    init_from = model_kwargs.pop("init_from", None)
    model = model_registry.build(model_name, data.spec, config.seed, **model_kwargs)
    if build_post_step(config):  # TVR on: log max |residual activation| per step too
        activations.enable_step_probe(model)
    fn = functional.functionalize(model)
    if init_from is not None:
        if _rescaling(config).get("lir_base_std") is not None:
            raise ValueError("rescaling.lir_base_std: cannot re-initialise a model "
                             "loaded with model.init_from")
        fn = _load_init(init_from, fn)
    fn = _apply_lir(config, fn)
    build_post_step(config)  # validates the TVR fields before anything compiles
    return data, fn, build_loss(config), build_optimizer(config)


def initial_state(fn: functional.Functional, tx, seed: int) -> TrainState:
    """Step 0: the model's initial params and a fresh optimizer state."""
    return TrainState(step=jnp.zeros((), jnp.int32), params=fn.params,
                      model_state=fn.model_state, opt_state=tx.init(fn.params),
                      rng=jax.random.PRNGKey(seed))


def build_mesh(config) -> jax.sharding.Mesh | None:
    """The data-parallel mesh (all devices), or None when not data-parallel."""
    return parallel.data_mesh() if config.data_parallel else None


def state_shardings(config, state: TrainState, mesh) -> Any:
    """The layout of ``state`` on ``mesh`` per ``config.sharding`` (None: no mesh)."""
    if mesh is None or mesh.size == 1:
        return None
    return parallel.state_shardings(state, mesh, config.get("sharding", "replicated"))


def compile_steps(config, fn, loss_fn, tx, post_step=(), mesh=None, sampler_fn=None,
                  shardings=None, pack_metrics=False):
    """The jitted ``train(state, source)`` (batch drawn inside) and ``eval``.

    ``source`` is the training sampler's data (``data.train_sampler()``; for
    in-memory datasets ``(train_x, train_y)``) and ``sampler_fn`` its batch
    function (default: rows of ``(x, y)``, :func:`dataset.get_batch`). With a
    ``mesh``, batches are split over its ``"data"`` axis; the new state keeps
    the layout ``shardings`` (a :class:`TrainState` of shardings,
    :func:`state_shardings`; None: as XLA propagates it, i.e. replicated for a
    replicated state). ``pack_metrics``: ``train`` returns its metrics as one
    :class:`~optim_lab.training.metrics.Packed` (an array per dtype, also when
    scanned): a window of steps is then fetched in a few host transfers
    instead of one per metric and step.
    """
    sampler_fn = sampler_fn or _rows
    step = step_lib.make_train_step(fn.apply, loss_fn, tx, post_step,
                                    tuple(config.log_state_fields),
                                    activations.step_metrics_fn(fn.model_state))

    def train(state, source):
        batch = sampler_fn(source, config.seed, state.step, config.batch_size)
        new_state, metrics = step(state, parallel.shard_batch(batch, mesh))
        if shardings is not None:
            new_state = jax.lax.with_sharding_constraint(new_state, shardings)
        if pack_metrics:  # scalars are replicated; keep their packed arrays so
            metrics = metrics_lib.pack(metrics)
            if mesh is not None:
                metrics = jax.lax.with_sharding_constraint(metrics,
                                                           parallel.replicated(mesh))
        return new_state, metrics

    collapse_dtype = loss_registry.dtype_from_bits(config.loss_dtype)
    evaluate = step_lib.make_eval_step(fn.apply, loss_fn, collapse_dtype,
                                       config.hessian_iters)

    def evaluate_sharded(params, model_state, data):
        return evaluate(params, model_state, parallel.shard_batch(data, mesh))

    return jax.jit(train, donate_argnums=donated()), jax.jit(evaluate_sharded)


def donated() -> tuple[int, ...]:
    """The jitted steps' donated arguments: the state, except on XLA:CPU.

    Donating the state saves device memory on accelerators; on XLA:CPU it
    measured ~5 % slower (the NaN guard and metrics keep the old state live,
    so donation only adds copies): benchmarks/train_step.py.
    """
    return () if jax.default_backend() == "cpu" else (0,)


def _rows(source, seed, step, batch_size):
    return dataset_lib.get_batch(*source, seed, step, batch_size)


def scan_steps(train_step: Callable) -> Callable:
    """``many(state, train_xy, n) -> (state, metrics stacked over n steps)``.

    Runs ``n`` (static) consecutive steps of ``train_step`` in one jitted
    ``lax.scan``: one dispatch instead of ``n``. Each step is the same
    computation as a single call, so the results are bit-identical.
    """
    fn = getattr(train_step, "__wrapped__", train_step)  # scan the traced body

    def many(state, train_xy, n):
        return jax.lax.scan(lambda st, _: fn(st, train_xy), state, None, length=n)

    return jax.jit(many, static_argnums=2, donate_argnums=donated())


def call_sizes(start: int, steps: int, per_call: int, log_every: int) -> Iterator[int]:
    """Steps per jitted call from ``start`` to ``steps``.

    Each call runs at most ``per_call`` steps and never crosses a multiple of
    ``log_every`` (eval and checkpoint steps are multiples of it too), so the
    loop can log, evaluate and save after the call that reaches one.

    Examples:
        >>> list(call_sizes(13, 30, 3, 5))
        [2, 3, 2, 3, 2, 3, 2]
    """
    s = start
    while s < steps:
        n = min(per_call, log_every - s % log_every, steps - s)
        yield n
        s += n


def epoch_call_sizes(start: int, config: ml_collections.ConfigDict,
                     per_epoch: int) -> Iterator[int]:
    """:func:`call_sizes` of ``config`` from ``start``, also cut at the ends of
    epochs of ``per_epoch`` steps (0: no epochs), so a call uses one epoch's
    permutation (or one block's: ``per_epoch`` steps per block).

    Examples:
        >>> import ml_collections
        >>> c = ml_collections.ConfigDict(dict(steps=12, steps_per_call=4, log_every=6))
        >>> list(epoch_call_sizes(0, c, 5))
        [4, 1, 1, 4, 2]
    """
    s = start
    for n in call_sizes(start, config.steps, config.steps_per_call, config.log_every):
        while n:
            m = min(n, per_epoch - s % per_epoch) if per_epoch else n
            yield m
            s, n = s + m, n - m


EPOCHS_PER_BLOCK = 16  # epochs whose permutations one program computes


def block_epochs(steps_per_call: int, per_epoch: int,
                 minimum: int = EPOCHS_PER_BLOCK) -> int:
    """Epochs per block of permutations: ``minimum``, or enough that a full
    call of ``steps_per_call`` steps fits in a block (0: no epochs).

    Examples:
        >>> block_epochs(10, 22), block_epochs(100, 3), block_epochs(10, 0)
        (16, 34, 0)
    """
    if not per_epoch:
        return 0
    return max(minimum, -(-steps_per_call // per_epoch))


def calls_by_block(start: int, sizes: Iterable[int], per_block: int,
                   source_of: Callable[[int], Any], default: Any = None
                   ) -> Iterator[tuple[int, Any]]:
    """``(steps, source)`` of each call of ``sizes`` from ``start``:
    ``source_of(block)`` for calls in block ``step // per_block``, computed
    once per block (``per_block`` 0: every call gets ``default``)."""
    s, block, source = start, None, default
    for n in sizes:
        if per_block and s // per_block != block:
            block = s // per_block
            source = source_of(block)
        yield n, source
        s += n


class Window(NamedTuple):
    """A log window to close: steps ``first..step``, their device metrics (one
    entry per call), the state after ``step``; ``last``: the run's last step."""
    step: int
    metrics: list[Any]
    first: int
    state: Any
    last: bool


OVERLAP_CALLS = 4  # calls dispatched before a deferred window is closed


def log_windows(calls: Iterable[tuple[int, Any, Any]], config: ml_collections.ConfigDict,
                start: int, overlap: bool | int | None = None) -> Iterator[Window]:
    """The log windows of a run's calls, in order, for the loop to close.

    ``calls`` yields ``(step reached, metrics, state)`` per jitted call; a
    window ends at each multiple of ``log_every`` and at the last step. With
    ``overlap`` (default: when the steps do not donate the state, see
    :func:`donated`), a window that needs no evaluation or checkpoint is
    yielded only after ``overlap`` more calls (``True``: :data:`OVERLAP_CALLS`)
    have been dispatched, so its fetch and host work overlap their
    computation instead of leaving the device idle (the window's state must
    stay valid: a divergence checkpoints it; a divergence is then seen up to
    that many calls late, and their steps are never logged). Windows come in
    step order either way, every deferred one before any later window; a
    caller may stop consuming at any window.
    """
    overlap = not donated() if overlap is None else overlap
    depth = OVERLAP_CALLS if overlap is True else int(overlap)
    window, first = [], start + 1
    pending = collections.deque()  # (deferred window, index of the call it waits for)
    for i, (s, metrics, state) in enumerate(calls):
        window.append(metrics)
        while pending and pending[0][1] <= i:
            yield pending.popleft()[0]
        last = s == config.steps
        if s % config.log_every == 0 or last:
            closing = Window(s, window, first, state, last)
            window, first = [], s + 1
            if depth and not last and s % config.eval_every and s % config.checkpoint_every:
                pending.append((closing, i + depth))
            else:
                while pending:
                    yield pending.popleft()[0]
                yield closing
    while pending:  # calls ended early (a caller's own cut)
        yield pending.popleft()[0]


class Batches:
    """Where each jitted call of a run takes its training batches from.

    Minibatches of in-memory rows: :func:`~optim_lab.data.dataset.get_batch`
    would recompute the epoch's permutation of the whole training set at
    every step (for a small model a large part of the step's work). Here the
    permutations are computed by the same function, each once, for a block of
    ``epochs_per_block`` epochs in one program
    (:func:`~optim_lab.data.dataset.epoch_permutations`), and passed to the
    calls of that block with the rows, ``source = (x, y, perms, first
    epoch)``; ``fn`` (:func:`~optim_lab.data.dataset.rows_of_epochs`) slices
    the step's batch: the same batches, bit for bit. Calls run across epoch
    ends and are cut only where the log needs it and at the end of a block
    (:meth:`call_sizes`). Any other sampler (the full batch, a stream
    dataset's own) is passed through unchanged.

    ``fn`` is the ``sampler_fn`` of :func:`compile_steps`; :meth:`calls`
    yields each call's ``(steps, source)``. With a ``mesh`` the sources are
    replicated on it.
    """

    def __init__(self, config: ml_collections.ConfigDict, data: dataset_lib.Dataset,
                 mesh=None, epochs_per_block: int = EPOCHS_PER_BLOCK):
        sampler = data.train_sampler()
        self.config, self.mesh = config, mesh
        per_epoch = (dataset_lib.steps_per_epoch(data.num_train, config.batch_size)
                     if data.sampler is None else 0)
        self.per_epoch = per_epoch
        self.epochs = block_epochs(config.steps_per_call, per_epoch, epochs_per_block)
        self.fn = dataset_lib.rows_of_epochs if per_epoch else sampler.fn
        self.source = parallel.replicate(sampler.source, mesh)
        seed, n, k = config.seed, data.num_train, self.epochs
        self._perms = jax.jit(lambda first: dataset_lib.epoch_permutations(seed, first, k, n))

    def block_source(self, block: int):
        """``(x, y, perms, first epoch)`` of the calls in ``block`` (minibatches
        of rows only)."""
        first = np.int32(block * self.epochs)  # the int32 of the step // per_epoch
        return (*self.source,
                *parallel.replicate((self._perms(first), jnp.asarray(first)), self.mesh))

    def call_sizes(self, start: int) -> Iterator[int]:
        """Steps per call from ``start``: :func:`epoch_call_sizes`, cut at blocks."""
        return epoch_call_sizes(start, self.config, self.per_epoch * self.epochs)

    def calls(self, start: int) -> Iterator[tuple[int, Any]]:
        """``(steps, source)`` of each call from ``start`` to ``config.steps``."""
        return calls_by_block(start, self.call_sizes(start), self.per_epoch * self.epochs,
                              self.block_source, self.source)


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str | pathlib.Path, *,
                       post_step: Sequence[step_lib.PostStep] = (),
                       progress: bool = True) -> dict[str, float]:
    """Trains per ``config``, logging to and checkpointing in ``workdir``.

    Args:
        config: See ``experiments/configs/base.py``.
        workdir: Run directory; an existing one of the same config resumes.
        post_step: Pure ``(params, step) -> params`` transforms applied inside
            the jitted step after the optimizer update (e.g. rescaling).
        progress: Print the one-line progress report at each log step
            (sweep drivers turn it off; metrics.jsonl is written either way).

    Returns:
        The last logged record (train window averages and eval metrics).
    """
    with x64_context(config):
        return _train_and_evaluate(config, workdir, post_step, progress)


def x64_context(config: ml_collections.ConfigDict):
    """``jax.enable_x64(True)`` when ``config.enable_x64``, else a no-op context."""
    _validation.check_choice("enable_x64", config.enable_x64, (True, False))
    return jax.enable_x64(True) if config.enable_x64 else contextlib.nullcontext()


def restore_state(config: ml_collections.ConfigDict,
                  workdir: str | pathlib.Path) -> TrainState | None:
    """The newest verified checkpointed :class:`TrainState` of a run (None if none).

    Read-only: a damaged checkpoint is reported and skipped, not moved.
    """
    with x64_context(config):
        _, fn, _, tx = setup(config)
        return checkpoint.restore(workdir, initial_state(fn, tx, config.seed))


def _notice(line: str) -> None:
    if parallel.is_lead():
        print(line, file=sys.stderr, flush=True)


def window_columns(window: Sequence[Any], step_ndim: int = 0
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A log window's metrics fetched in one transfer, and their means.

    Returns:
        ``(columns, means)``: :func:`~optim_lab.training.metrics.fetch_columns`
        (steps along axis 0, then ``step_ndim`` axes, e.g. a sweep's members)
        and each metric's window mean but the non-finite code's
        (:func:`~optim_lab.training.metrics.column_means`).
    """
    columns = metrics_lib.fetch_columns(window, step_ndim)
    return columns, metrics_lib.column_means(columns, exclude=(step_lib.NONFINITE_CODE,))


class Divergence:
    """Counts consecutive rejected (non-finite) steps across log windows.

    ``update`` is fed each log window's per-step host metrics (the columns
    of :func:`~optim_lab.training.metrics.fetch_columns`, at least
    ``train/nonfinite`` and the non-finite code) and says when the streak
    reaches ``limit`` (``config.max_nonfinite_steps``); ``message`` is the
    one-line :class:`~optim_lab.training.errors.Diverged` text; ``rejected``
    counts every rejected step for the progress line.
    """

    def __init__(self, limit: int):
        self.limit, self.streak, self.rejected = limit, 0, 0
        self.first_step, self.what = 0, ""

    def update(self, first_step: int, columns: Mapping[str, np.ndarray]) -> bool:
        """Feeds a window's per-step metrics (1-D columns, steps from
        ``first_step``); True once the streak hits the limit."""
        bad = np.asarray(columns["train/nonfinite"]) > 0
        if not bad.any():  # the common case, without a Python loop
            self.streak = 0 if bad.size else self.streak
            return False
        codes = columns[step_lib.NONFINITE_CODE]
        for i, rejected in enumerate(bad.tolist()):
            if rejected:
                self.rejected += 1
                if self.streak == 0:
                    self.first_step = first_step + i
                    self.what = step_lib.describe_nonfinite(float(codes[i]))
                self.streak += 1
            else:
                self.streak = 0
        return self.streak >= self.limit

    def message(self, step: int) -> str:
        """Why the run stopped at ``step`` (first bad step, what was non-finite)."""
        return (f"diverged: {self.streak} consecutive non-finite steps from step "
                f"{self.first_step} to {step} (non-finite: {self.what}); stopped "
                f"at step {step}, the last good state is checkpointed; lower the "
                "learning rate or use a new workdir")


def with_bits_per_byte(config, record: dict[str, float]) -> dict[str, float]:
    """Adds ``<split>/bits_per_byte`` (loss in nats / ln 2) for byte-level text."""
    if config.data.name == "text":
        for split in ("train", "test"):
            if f"{split}/loss" in record:
                record[f"{split}/bits_per_byte"] = record[f"{split}/loss"] / math.log(2)
    return record


def run_record(config, data: dataset_lib.Dataset) -> dict[str, Any]:
    """What ``config.json`` holds: the config, plus the data's fingerprint
    (e.g. a text corpus's size and sha256) so a changed corpus is refused."""
    record = workdir_lib.config_to_json(config)
    if data.fingerprint is not None:
        record["data_fingerprint"] = workdir_lib.config_to_json(dict(data.fingerprint))
    return record


def save_checkpoint(mngr, state, step: int) -> None:
    """Saves ``state`` (reached ``step``) with ``mngr`` and waits for the write.

    Every process calls it (orbax's multi-process save: each writes its own
    shards); a failed write on any process stops every process with a
    :class:`~optim_lab.training.errors.RunDataError` naming the step.
    """
    def save():
        try:
            checkpoint.save(mngr, state)
            mngr.wait_until_finished()  # the next step may donate `state`
        except Exception as e:  # orbax wraps OSError (a full disk) in its own types
            raise RunDataError(f"checkpoint at step {step} could not be saved: "
                               f"{type(e).__name__}: {e}") from e
    parallel.agree(save)


@contextlib.contextmanager
def _lead_workdir(workdir, record) -> Iterator[pathlib.Path]:
    """Process 0 locks and checks ``workdir``; every process learns the outcome."""
    with contextlib.ExitStack() as stack:
        def lock_and_check():
            workdir_lib.check(stack.enter_context(workdir_lib.lock(workdir)), record)
        parallel.agree(lock_and_check, lead_only=True)
        yield pathlib.Path(workdir)


def _train_and_evaluate(config, workdir, post_step, progress):
    data, fn, loss_fn, tx = setup(config)
    record = run_record(config, data)
    with _lead_workdir(workdir, record) as workdir:
        mesh = build_mesh(config)
        state = initial_state(fn, tx, config.seed)
        shardings = state_shardings(config, state, mesh)
        state = parallel.place(state, shardings)
        restored = checkpoint.restore(workdir, state, move_damaged=True)
        start = int(restored.step) if restored is not None else 0
        if start >= config.steps:
            if start > config.steps:
                _notice(f"{workdir} is already at step {start} (> steps="
                        f"{config.steps}); nothing to do, config.json unchanged")
            records = rundir.read_metrics(workdir)
            return records[-1] if records else {}
        parallel.agree(lambda: workdir_lib.write_config(workdir, record), lead_only=True)
        post_step = [*build_post_step(config), *post_step]
        return _run(config, workdir, data, fn, loss_fn, tx, post_step, progress,
                    restored if restored is not None else state, start, mesh, shardings)


def _run(config, workdir, data, fn, loss_fn, tx, post_step, progress, state, start,
         mesh, shardings):
    lead = parallel.is_lead()
    writer = parallel.agree(  # process 0 writes the log; the others a NullWriter
        lambda: metrics_lib.MetricsWriter(workdir, start, notify=_notice),
        lead_only=True) or metrics_lib.NullWriter()
    mngr = checkpoint.manager(workdir)
    try:
        batches = Batches(config, data, mesh)
        train_step, eval_step = compile_steps(config, fn, loss_fn, tx, post_step, mesh,
                                              batches.fn, shardings, pack_metrics=True)
        eval_data = parallel.replicate(
            (data.train_x, data.train_y, data.test_x, data.test_y), mesh)
        reporter = metrics_lib.Progress(config.steps, start) if progress and lead else None
        divergence = Divergence(config.max_nonfinite_steps)
        def evaluate(at: TrainState) -> dict[str, float]:
            return with_bits_per_byte(config, metrics_lib.to_host(
                eval_step(at.params, at.model_state, eval_data)))

        def close_window(w: Window) -> dict[str, float]:
            """Logs a window: averages, evaluation, checkpoint; stops on divergence."""
            s, at = w.step, w.state
            columns, means = window_columns(w.metrics)
            diverged = divergence.update(w.first, columns)
            record = {k: float(v) for k, v in means.items()}
            if s % config.eval_every == 0 or w.last:
                record.update(evaluate(at))
            parallel.agree(functools.partial(writer.write, s, record), lead_only=True)
            if reporter:
                reporter.report(s, record, divergence.rejected)
            if s % config.checkpoint_every == 0 or w.last or diverged:
                save_checkpoint(mngr, at, s)
            if diverged:
                raise Diverged(divergence.message(s))
            return record

        record: dict[str, float] = {}
        if start == 0:
            record = evaluate(state)
            parallel.agree(lambda: writer.write(0, record), lead_only=True)
        many = scan_steps(train_step) if config.steps_per_call > 1 else None

        def calls() -> Iterator[tuple[int, Any, TrainState]]:
            s, at = start, state
            for n, source in batches.calls(start):
                if many is None:
                    at, step_metrics = train_step(at, source)
                else:
                    at, step_metrics = many(at, source, n)
                s += n
                yield s, step_metrics, at

        for w in log_windows(calls(), config, start):
            record = close_window(w)
    finally:
        writer.close()
        mngr.close()
    return record
