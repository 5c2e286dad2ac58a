"""Many runs in one program: sweeps vmapped over seeds and hyperparameters.

A sweep is the cartesian product of *axes* (``seed=0,1,2``,
``optimizer.learning_rate=1e-3,3e-3``) applied to a base config. Each
*member* is an ordinary run directory ``<root>/<member name>/`` (its full
``config.json``, ``metrics.jsonl``, verified checkpoints of its own state), so
every reader of run directories works on it unchanged, and a member's results
equal a single :func:`~optim_lab.training.train.train_and_evaluate` run of its
config up to the order of floating-point reductions (tested on MLPs within
4 float32 eps per step; vmapped convolutions sum in another order, which
Adam's normalisation amplifies: a vmapped BN-CNN + Adam member differs from
its single run by about 1e-3 normwise after two steps, a different sample of
the same run rather than the same trajectory).

**Groups.** Members whose configs differ only in ``seed`` and in float
hyperparameters (the float fields of the ``optimizer``, ``schedule`` and
``rescaling`` sections and top-level ``loss*`` floats) form one group and run
as one ``jax.vmap``-ed, jitted program. Any other difference (optimizer name,
model or data fields, ints, strings, a float set in one member and ``None`` in
another) is structure: such members form separate groups, run in turn.

**Traced hyperparameters.** Inside the vmapped step each member's config is
rebuilt with the fields that vary within its group replaced by traced scalars
(weakly typed, so they round like the Python floats of a single run), and the
optimizer, schedule and loss are built from it by the same registry code as a
single run (the lab's validation skips tracers; every member's concrete values
were validated first). Fields that do not vary stay Python constants, so the
member's program is the single run's computation. A float that a constructor
needs as a Python number (a branch or an int on it) cannot be traced: the
trace raises, and that field is made structural (the group splits by it).
The seed reaches per-member initialisation (each member's model and optimizer
state are built from its own config) and the batch order
(``get_batch(..., seed, step, ...)`` with the member's traced seed).

**Resume.** A member resumes like a single run: from its newest verified
checkpoint, its log cut back to that step, its directory locked while it runs
and refused if it holds another config; a finished member is skipped. The
members of one vmapped program share the step counter, so they must start
from a common step: the members of a group are partitioned by the step they
restore (the same jitted program serves every partition, without
recompiling). Members are saved together, so they normally agree; a sweep
killed in the middle of a save leaves some members one checkpoint interval
ahead, and those continue from their own checkpoint rather than being rolled
back: nothing done is discarded or recomputed.

**Many devices and processes.** With ``data_parallel`` (the default) and more
than one device, every member's batch is split over the mesh of all devices
(of every process, after ``jax.distributed.initialize``), as in a single
data-parallel run; the members' stacked state is replicated. Every process
runs the same programs on the same members; process 0 alone locks the member
directories and writes their ``config.json`` and ``metrics.jsonl``; all
processes save and restore checkpoints together and take the same stop
decisions from the same replicated metrics. A sweep saved by some number of
processes resumes on any other.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import pathlib
import re
import sys
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging as absl_logging

from optim_lab import _registry
from optim_lab import _validation
from optim_lab import rundir
from optim_lab.data import dataset as dataset_lib
from optim_lab.training import checkpoint
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import parallel
from optim_lab.training import train
from optim_lab.training import workdir as workdir_lib
from optim_lab.training.errors import Diverged
from optim_lab.training.state import TrainState

__all__ = ["Axis", "Member", "Group", "Program", "Partition", "parse_axis", "parse_axes",
           "member_name", "expand", "traceable", "group", "plan", "run", "chunks", "Slot",
           "close_window",
           "hp_arrays", "stack_states", "member_columns"]

SEED = "seed"
TRACEABLE_SECTIONS = ("optimizer.", "schedule.", "rescaling.")
_SAFE = re.compile(r"[^A-Za-z0-9._=,+()-]")
_MAX_NAME = 200
# One vmapped program keeps the step counter shared (unbatched).
_STATE_AXES = TrainState(step=None, params=0, model_state=0, opt_state=0, rng=0)


# --- axes --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Axis:
    """One ``--sweep`` axis: a dotted config field and its values."""
    field: str
    values: tuple[Any, ...]


def _fields(config: ml_collections.ConfigDict, prefix: str = "") -> Iterator[str]:
    for key in config.keys():
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            yield from _fields(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _field_type(config: ml_collections.ConfigDict, field: str) -> type:
    """The declared type of dotted ``field``; ``ValueError`` if it is unknown."""
    *sections, key = field.split(".")
    node = config
    for part in sections:
        node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
    if not isinstance(node, ml_collections.ConfigDict) or key not in node:
        raise ValueError(f"--sweep: unknown config field {field!r}"
                         f"{_registry.did_you_mean(field, _fields(config))}")
    if isinstance(node[key], ml_collections.ConfigDict):
        raise ValueError(f"--sweep: {field!r} is a config section; sweep one of its "
                         "fields (e.g. " + ", ".join(list(_fields(node[key], field + "."))[:3])
                         + ")")
    return node.get_type(key)


def _split_values(text: str) -> list[str]:
    """Splits on commas outside brackets: ``(16,),(32,16)`` -> two values."""
    items, depth, current = [], 0, []
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    items.append("".join(current).strip())
    return items


_BOOLS = {"true": True, "t": True, "1": True, "yes": True,
          "false": False, "f": False, "0": False, "no": False}


def _parse_value(field: str, kind: type, text: str) -> Any:
    """``text`` as a value of ``kind`` (``None`` resets any field)."""
    if text in ("None", "none"):
        return None
    try:
        if kind is bool:
            return _BOOLS[text.lower()]
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
        value = ast.literal_eval(text)
        if kind in (tuple, list):
            if not isinstance(value, (tuple, list)):
                raise ValueError(f"not a {kind.__name__}")
            return kind(value)
        return value
    except (KeyError, ValueError, SyntaxError, TypeError):
        raise ValueError(f"--sweep: {field}: cannot parse {text!r} as "
                         f"{getattr(kind, '__name__', kind)}") from None


def parse_axis(spec: str, config: ml_collections.ConfigDict) -> Axis:
    """Parses ``"field=v1,v2,..."``; values take the field's type.

    Raises:
        ValueError: no ``=``, an unknown field (with a suggestion), an empty
            list or value, an unparsable or repeated value.
    """
    field, sep, text = spec.partition("=")
    field = field.strip()
    if not sep or not field:
        raise ValueError(f"--sweep={spec!r}: expected FIELD=VALUE1,VALUE2,... "
                         "(e.g. --sweep=seed=0,1,2)")
    kind = _field_type(config, field)
    if not text.strip():
        raise ValueError(f"--sweep: {field} has an empty list of values")
    items = _split_values(text)
    if "" in items:
        raise ValueError(f"--sweep: {field}={text}: empty value at position "
                         f"{items.index('') + 1}")
    values = tuple(_parse_value(field, kind, item) for item in items)
    for i, value in enumerate(values):
        if value in values[:i]:
            raise ValueError(f"--sweep: {field}: value {items[i]!r} is given twice")
    return Axis(field, values)


def parse_axes(specs: Sequence[str], config: ml_collections.ConfigDict) -> list[Axis]:
    """Parses every ``--sweep`` spec; an axis may appear only once."""
    if not specs:
        raise ValueError("--sweep: give at least one axis, e.g. --sweep=seed=0,1,2")
    axes = [parse_axis(spec, config) for spec in specs]
    seen: set[str] = set()
    for axis in axes:
        if axis.field in seen:
            raise ValueError(f"--sweep: {axis.field} is given twice; put all its "
                             "values in one --sweep")
        seen.add(axis.field)
    return axes


# --- members -----------------------------------------------------------------------


@dataclasses.dataclass
class Member:
    """One run of a sweep: its directory name, axis values and full config."""
    name: str
    values: dict[str, Any]
    config: ml_collections.ConfigDict


def _format(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return repr(value).replace(" ", "")  # (64,64)
    return repr(value) if isinstance(value, float) else str(value)


def member_name(values: Mapping[str, Any]) -> str:
    """A readable, filesystem-safe directory name, ``seed=0,optimizer.learning_rate=0.001``.

    Characters outside ``[A-Za-z0-9._=,+()-]`` become ``_``; a name longer
    than 200 characters is cut and ends with a hash of the full name.

    Examples:
        >>> member_name({"seed": 0, "optimizer.learning_rate": 1e-3})
        'seed=0,optimizer.learning_rate=0.001'
        >>> member_name({"model.hidden": (64, 64), "data.path": "/data/a b.txt"})
        'model.hidden=(64,64),data.path=_data_a_b.txt'
    """
    full = ",".join(f"{k}={_format(v)}" for k, v in values.items())
    name = _SAFE.sub("_", full)
    if name.startswith("."):
        name = "_" + name[1:]
    if len(name) > _MAX_NAME:
        name = name[:_MAX_NAME - 13] + "~" + hashlib.sha256(full.encode()).hexdigest()[:12]
    return name


def _set(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
    *sections, key = field.split(".")
    node = config
    for part in sections:
        node = node[part]
    node[key] = value


def expand(config: ml_collections.ConfigDict, axes: Sequence[Axis]) -> list[Member]:
    """The cartesian product of ``axes`` over ``config`` (first axis slowest)."""
    members, names = [], {}
    for combo in itertools.product(*(a.values for a in axes)):
        values = dict(zip((a.field for a in axes), combo))
        member_config = config.copy_and_resolve_references()
        for field, value in values.items():
            _set(member_config, field, value)
        name = member_name(values)
        if name in names:
            raise ValueError(f"--sweep: members {names[name]} and {values} get the "
                             f"same directory name {name!r}")
        names[name] = values
        members.append(Member(name, values, member_config))
    return members


# --- groups ------------------------------------------------------------------------


@dataclasses.dataclass
class Group:
    """Members that run as one vmapped program.

    ``traced``: the fields whose values differ between the members (passed to
    the program as traced per-member scalars); every other field is equal.
    """
    members: list[Member]
    traced: tuple[str, ...]


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer.learning_rate": 0.001, ...}`` of a JSON-normalised config."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def traceable(field: str, value: Any) -> bool:
    """Whether ``field`` may differ inside one vmapped program (see module doc)."""
    if field == SEED:
        return isinstance(value, int) and not isinstance(value, bool)
    top_level_loss = "." not in field and field.startswith("loss")
    return isinstance(value, float) and (field.startswith(TRACEABLE_SECTIONS)
                                         or top_level_loss)


def _group_key(flat: Mapping[str, Any], structural: frozenset[str]) -> tuple:
    return tuple((k, "<traced>" if k not in structural and traceable(k, v) else
                  json.dumps(v, sort_keys=True)) for k, v in sorted(flat.items()))


def group(members: Sequence[Member],
          structural: frozenset[str] = frozenset()) -> list[Group]:
    """Groups members by structure (everything but seed and float hyperparameters).

    Args:
        members: The sweep's members.
        structural: Fields to treat as structure even if traceable (fields a
            trace showed to be needed as Python numbers).

    Returns:
        The groups in order of first appearance, members in sweep order.
    """
    flats = [_flat(workdir_lib.config_to_json(m.config)) for m in members]
    buckets: dict[tuple, list[int]] = {}
    for i, flat in enumerate(flats):
        buckets.setdefault(_group_key(flat, structural), []).append(i)
    groups = []
    for idx in buckets.values():
        varying = tuple(sorted(k for k in flats[idx[0]]
                               if len({json.dumps(flats[i][k]) for i in idx}) > 1))
        groups.append(Group([members[i] for i in idx], varying))
    return groups


# --- the vmapped program ---------------------------------------------------------------


def _with_values(template: dict[str, Any], values: Mapping[str, Any]
                 ) -> ml_collections.ConfigDict:
    """A config from ``template`` (a ``to_dict()``) with dotted fields replaced.

    A new ``ConfigDict`` (not an assignment into a typed one), so that a field
    may hold a tracer.
    """
    d = copy.deepcopy(template)
    for field, value in values.items():
        *sections, key = field.split(".")
        node = d
        for part in sections:
            node = node[part]
        node[key] = value
    return ml_collections.ConfigDict(d)


def _get(config: ml_collections.ConfigDict, field: str) -> Any:
    node = config
    for part in field.split("."):
        node = node[part]
    return node


def _unwrap(jitted: Callable) -> Callable:
    return getattr(jitted, "__wrapped__", jitted)  # the traced body of a jax.jit


def _rows_of_epochs(perm: tuple[jax.Array, jax.Array], source, seed, step, batch_size: int):
    """:func:`~optim_lab.data.dataset.get_batch` given its block's permutations.

    ``perm = (perms, first)`` with ``perms = epoch_permutations(seed, first, k,
    n)``, the permutations ``get_batch`` computes for the ``k`` epochs from
    ``first``, one of which holds ``step``: the batch is then the same rows.
    """
    del seed  # in perm
    return dataset_lib.batch_of_epochs(*source, *perm, step, batch_size)


class Program:
    """The jitted, vmapped train and eval steps of one group.

    ``step(state, (hp, perm, source)) -> (state, metrics)``: ``state`` is
    the members' stacked :class:`TrainState` with one shared step counter,
    ``hp`` maps each traced field to a ``[members]`` array, ``perm`` holds
    the members' permutations of the current block of epochs (see below);
    each metric is a ``[members]`` array, packed
    (:class:`~optim_lab.training.metrics.Packed`, few leaves to fetch;
    :func:`~optim_lab.training.train.window_columns` fetches a window). Only the state is carried:
    ``hp`` and ``perm`` are inputs, never copied to outputs.
    ``many(state, (hp, perm, source), n)`` runs ``n`` steps in one
    ``lax.scan`` (metrics ``[n, members]``);
    ``evaluate(hp, params, model_state, data)`` the members' evaluations.

    Each member's step is the single run's: its config is rebuilt with the
    traced fields, and optimizer, loss and post-step transforms come from the
    same builders as in :func:`~optim_lab.training.train.train_and_evaluate`.

    Minibatches of an in-memory dataset: ``get_batch`` recomputes the epoch's
    permutation of the whole training set at every step (for a small model
    most of a step's work). Here ``epoch_perms(seeds, first)`` computes it once
    per epoch per member, for a block of ``epochs`` epochs from ``first`` in
    one program, with the same function, and the step slices it (``perm =
    (perms, firsts)``; None otherwise): the same batches, as in
    :class:`~optim_lab.training.train.Batches`. A call runs across epoch ends
    and stays within one block (:meth:`call_sizes`).

    With a ``mesh`` (several devices, possibly of several processes), each
    member's batch is split over its ``"data"`` axis as in a single
    data-parallel run (every device gathers only its own rows of the global
    batch); the inputs must be placed replicated on the mesh
    (:class:`Partition` does), and the stacked state and the metrics come
    back replicated, so every process holds all members' values.
    """

    def __init__(self, config: ml_collections.ConfigDict, fn, data,
                 fields: Sequence[str], mesh: jax.sharding.Mesh | None = None,
                 epochs_per_block: int = train.EPOCHS_PER_BLOCK):
        self.fields, self.mesh = tuple(fields), mesh
        everywhere = parallel.replicated(mesh) if mesh is not None else None
        template, sampler = config.to_dict(), data.train_sampler()
        n = data.num_train
        self.per_epoch = (dataset_lib.steps_per_epoch(n, config.batch_size)
                          if data.sampler is None else 0)
        self.epochs = k = train.block_epochs(config.steps_per_call, self.per_epoch,
                                             epochs_per_block)

        def compiled(hp, sampler_fn):
            cfg = _with_values(template, hp)
            return train.compile_steps(
                cfg, fn, train.build_loss(cfg), train.build_optimizer(cfg),
                post_step=train.build_post_step(cfg), mesh=mesh, sampler_fn=sampler_fn)

        def replicated(tree):
            if everywhere is None:
                return tree
            return jax.lax.with_sharding_constraint(tree, everywhere)

        def one_step(hp, perm, state, source):
            rows = sampler.fn if perm is None else functools.partial(_rows_of_epochs, perm)
            return _unwrap(compiled(hp, rows)[0])(state, source)

        def one_eval(hp, params, model_state, data):
            return _unwrap(compiled(hp, sampler.fn)[1])(params, model_state, data)

        vstep = jax.vmap(one_step, in_axes=(0, 0, _STATE_AXES, None),
                         out_axes=(_STATE_AXES, 0))

        def step(state, inputs):
            hp, perm, source = inputs
            state, metrics = vstep(hp, perm, state, source)
            return replicated((state, metrics_lib.pack(metrics)))

        def evaluate(hp, params, model_state, data):
            return replicated(jax.vmap(one_eval, in_axes=(0, 0, 0, None))(
                hp, params, model_state, data))

        def perms(seeds, first):
            return replicated((jax.vmap(
                lambda seed: dataset_lib.epoch_permutations(seed, first, k, n))(seeds),
                jnp.full(seeds.shape, first, jnp.int32)))

        self._one_step = one_step
        self.step = jax.jit(step)
        self.many = train.scan_steps(self.step)
        self.evaluate = jax.jit(evaluate)
        self.epoch_perms = jax.jit(perms) if self.per_epoch else None

    def call_sizes(self, start: int, config: ml_collections.ConfigDict) -> Iterator[int]:
        """Steps per call from ``start``: the single run's calls, also cut at blocks."""
        return train.epoch_call_sizes(start, config, self.per_epoch * self.epochs)

    def probe(self, hp: Mapping[str, Any], state: TrainState, source) -> None:
        """Traces one member's step with ``hp`` traced (compiles nothing).

        Raises:
            jax.errors.JAXTypeError: a field of ``hp`` is needed as a Python
                number (a branch, a shape or an int computed from it).
        """
        jax.eval_shape(self._one_step, dict(hp), None, state, source)


def hp_arrays(configs: Sequence[ml_collections.ConfigDict], fields: Sequence[str]
              ) -> dict[str, jax.Array]:
    """Per traced field, the members' values as one weakly typed array.

    ``jnp.asarray`` of a Python number is weakly typed, and stays so when
    stacked and vmapped: a traced value then combines with arrays as a single
    run's Python number does (taking the array's dtype).
    """
    return {f: jnp.stack([jnp.asarray(_get(c, f)) for c in configs]) for f in fields}


@dataclasses.dataclass
class _Built:
    """One member's ``train.setup`` results."""
    data: Any
    fn: Any
    tx: Any


def _build(config: ml_collections.ConfigDict) -> _Built:
    data, fn, _, tx = train.setup(config)
    return _Built(data, fn, tx)


def _program(config: ml_collections.ConfigDict, built: _Built,
             fields: Sequence[str], mesh: jax.sharding.Mesh | None = None) -> Program:
    return Program(config, built.fn, built.data, fields, mesh)


def _mesh(config: ml_collections.ConfigDict) -> jax.sharding.Mesh | None:
    """The group's data-parallel mesh over every process's devices (None: one device)."""
    mesh = train.build_mesh(config)
    return mesh if mesh is not None and mesh.size > 1 else None


def _check_sharding(config: ml_collections.ConfigDict) -> None:
    if config.get("sharding", "replicated") != "replicated":
        raise ValueError(f"sharding: sweeps keep every member's state replicated, got "
                         f"{config.sharding!r} (train FSDP runs with experiments.train)")


def _needs_concrete(error: BaseException | None) -> bool:
    """Whether ``error`` (or one it was raised from) is a tracer used as a number.

    Walks ``__cause__`` / ``__context__``: a constructor that re-raises errors
    with its own message may hide JAX's error behind another type.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, jax.errors.JAXTypeError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _untraceable(groups: Sequence[Group]) -> frozenset[str]:
    """Traced float fields that a trace shows to be needed as Python numbers."""
    bad: set[str] = set()
    for g in groups:
        floats = [f for f in g.traced if f != SEED]
        if not floats:
            continue
        config = g.members[0].config
        with train.x64_context(config):
            built = _build(config)
            program = _program(config, built, floats)
            state = train.initial_state(built.fn, built.tx, config.seed)
            source = built.data.train_sampler().source

            def fails(fields):
                try:
                    program.probe({f: jnp.asarray(_get(config, f)) for f in fields},
                                  state, source)
                except Exception as e:  # noqa: BLE001 - re-raised unless a tracer's
                    if _needs_concrete(e):
                        return True
                    raise
                return False

            if fails(floats):
                bad.update([f for f in floats if fails([f])] or floats)
    return frozenset(bad)


def plan(members: Sequence[Member], root: str | pathlib.Path) -> list[Group]:
    """Validates every member and its directory, then groups them; compiles nothing.

    A traced field that a trace shows to be needed as a Python number is made
    structural, and the groups are formed again.

    Raises:
        ValueError: a member's config is invalid (the message names the member
            and the field) or its directory holds another run.
    """
    root = pathlib.Path(root)
    for m in members:
        try:
            _check_sharding(m.config)
            with train.x64_context(m.config):
                built = _build(m.config)
            workdir_lib.check(root / m.name, train.run_record(m.config, built.data))
        except (ValueError, TypeError) as e:
            raise type(e)(f"sweep member {m.name}: {e}") from e
    structural: frozenset[str] = frozenset()
    while True:
        groups = group(members, structural)
        more = _untraceable(groups) - structural
        if not more:
            return groups
        structural |= more


# --- running -----------------------------------------------------------------------


def _notice(line: str) -> None:
    if parallel.is_lead():
        print(line, file=sys.stderr, flush=True)


def _quiet(_: str) -> None:
    pass


@contextlib.contextmanager
def _orbax_quiet() -> Iterator[None]:
    """Silences orbax's warnings about a read-only checkpoint directory."""
    level = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        yield
    finally:
        absl_logging.set_verbosity(level)


def _restored_step(member: Member, root: pathlib.Path) -> int:
    """The step a member would resume from (read-only, silent: planning only)."""
    with train.x64_context(member.config), _orbax_quiet():
        built = _build(member.config)
        template = parallel.replicate(  # global arrays on several processes
            train.initial_state(built.fn, built.tx, member.config.seed),
            _mesh(member.config))
        state = checkpoint.restore(root / member.name, template, report=_quiet)
    return int(state.step) if state is not None else 0


def _finished(member: Member, d: pathlib.Path, step: int) -> dict[str, Any]:
    """A member with nothing to do: its last logged record."""
    if step > member.config.steps:
        _notice(f"{d} is already at step {step} (> steps={member.config.steps}); "
                "nothing to do, config.json unchanged")
    records = rundir.read_metrics(d)
    return records[-1] if records else {}


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in ``ceil(n / size)`` chunks of nearly equal length (0: one chunk)."""
    if not items:
        return []
    n = -(-len(items) // size) if size else 1
    per = -(-len(items) // n)
    return [list(items[i:i + per]) for i in range(0, len(items), per)]


@dataclasses.dataclass
class Slot:
    """A running member: its directory, files, divergence counter and record."""
    member: Member
    dir: pathlib.Path
    writer: metrics_lib.MetricsWriter
    mngr: Any
    divergence: Any
    record: dict[str, float] = dataclasses.field(default_factory=dict)
    stopped: str | None = None  # the divergence message, once stopped


def stack_states(states: Sequence[TrainState]) -> TrainState:
    """The members' states stacked on the host (no per-shape compiles)."""
    host = jax.device_get([s._replace(step=None) for s in states])
    stacked = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *host)
    return stacked._replace(step=states[0].step)


def _member_states(state: TrainState, which: Sequence[int],
                   mesh: jax.sharding.Mesh | None = None) -> dict[int, TrainState]:
    """Members' slices of the stacked state (what their checkpoints hold),
    fetched in one transfer; with a ``mesh``, placed replicated on it (every
    process saves its part of the same global arrays)."""
    host = jax.device_get(state._replace(step=None))
    out = {i: jax.tree.map(lambda x: jnp.asarray(x[i]), host)._replace(step=state.step)
           for i in which}
    if mesh is None:
        return out
    return {i: parallel.replicate(member, mesh) for i, member in out.items()}


def member_columns(columns: Mapping[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Member ``i``'s per-step values (1-D, as a single run's
    :func:`~optim_lab.training.metrics.fetch_columns`) from
    :func:`~optim_lab.training.train.window_columns`'s ``[steps, members]``
    columns."""
    return {k: v[:, i] for k, v in columns.items()}


class Partition:
    """Members of one group at one common step, trained in one program.

    The members are padded to ``width`` (copies of the last one, whose results
    are dropped), so every chunk of a group runs the same compiled program.
    """

    def __init__(self, program: Program, configs: Sequence[ml_collections.ConfigDict],
                 states: Sequence[TrainState], data, start: int, width: int):
        self.program, self.start, self.config = program, start, configs[0]
        configs = list(configs) + [configs[-1]] * (width - len(configs))
        mesh = program.mesh
        self.hp = hp_arrays(configs, program.fields)
        if mesh is not None:  # device_put keeps the values weakly typed
            self.hp = jax.device_put(self.hp, parallel.replicated(mesh))
        self.seeds = parallel.replicate(
            jnp.asarray([c.seed for c in configs], jnp.int32), mesh)
        self.state = parallel.replicate(
            stack_states(list(states) + [states[-1]] * (width - len(states))), mesh)
        self.source = parallel.replicate(data.train_sampler().source, mesh)
        self.eval_data = parallel.replicate(
            (data.train_x, data.train_y, data.test_x, data.test_y), mesh)

    def evaluate(self, state: TrainState | None = None) -> dict[str, np.ndarray]:
        """The members' evaluation of ``state`` (default: the current state)."""
        state = self.state if state is None else state
        return jax.device_get(self.program.evaluate(
            self.hp, state.params, state.model_state, self.eval_data))

    def calls(self) -> Iterator[tuple[int, Any, TrainState]]:
        """Runs the steps; yields ``(step reached, device metrics, stacked
        state)`` per call (the calls of :func:`~optim_lab.training.train.log_windows`)."""
        c, p, s = self.config, self.program, self.start

        def block_perms(block: int):
            return p.epoch_perms(self.seeds, np.int32(block * p.epochs))

        for n, perm in train.calls_by_block(s, p.call_sizes(s, c), p.per_epoch * p.epochs,
                                            block_perms):
            inputs = (self.hp, perm, self.source)
            if c.steps_per_call > 1:
                self.state, metrics = p.many(self.state, inputs, n)
            else:
                self.state, metrics = p.step(self.state, inputs)
            s += n
            yield s, metrics, self.state


def _eval_record(config, host: Mapping[str, np.ndarray], i: int) -> dict[str, float]:
    return train.with_bits_per_byte(config, {k: float(v[i]) for k, v in host.items()})


def _train(part: Partition, slots: Sequence[Slot], label: str,
           progress: bool) -> None:
    """The training loop of :func:`~optim_lab.training.train.train_and_evaluate`,
    for every member of a partition: log, eval, checkpoint, divergence stop;
    a window that needs no evaluation or checkpoint is closed a few calls
    later, as there (:func:`~optim_lab.training.train.log_windows`)."""
    c = part.config
    reporter = (metrics_lib.Progress(c.steps, part.start)
                if progress and parallel.is_lead() else None)
    if part.start == 0:
        host = part.evaluate()
        for i, slot in enumerate(slots):
            slot.record = _eval_record(c, host, i)
        _write(slots, 0)
    for w in train.log_windows(part.calls(), c, part.start):
        close_window(part, slots, w)
        if reporter:
            _report(reporter, label, w.step, slots)
        if all(slot.stopped for slot in slots):
            return


def close_window(part: Partition, slots: Sequence[Slot], w: train.Window) -> None:
    """Logs every live member's window (averages, evaluation), saves the
    checkpoints due and stops the members that diverged (checkpointed)."""
    c, s = part.config, w.step
    columns, means = train.window_columns(w.metrics, step_ndim=1)  # [steps, members]
    evals = part.evaluate(w.state) if s % c.eval_every == 0 or w.last else None
    diverged = []
    for i, slot in enumerate(slots):
        if slot.stopped:
            continue
        if slot.divergence.update(w.first, member_columns(columns, i)):
            diverged.append(i)
        slot.record = {k: float(v[i]) for k, v in means.items()}
        if evals is not None:
            slot.record.update(_eval_record(c, evals, i))
    _write([sl for sl in slots if not sl.stopped], s)
    save = s % c.checkpoint_every == 0 or w.last
    saving = [i for i, sl in enumerate(slots) if not sl.stopped and (save or i in diverged)]
    for i, member_state in _member_states(w.state, saving, part.program.mesh).items():
        train.save_checkpoint(slots[i].mngr, member_state, s)
    for i in diverged:
        slots[i].stopped = slots[i].divergence.message(s)
        _notice(f"sweep member {slots[i].member.name}: {slots[i].stopped}")


def _write(slots: Sequence[Slot], step: int) -> None:
    """Logs each slot's record at ``step`` (process 0 writes; all agree it did)."""
    def write():
        for slot in slots:
            slot.writer.write(step, slot.record)
    parallel.agree(write, lead_only=True)


@contextlib.contextmanager
def _lead_lock(d: pathlib.Path, record: Mapping[str, Any]) -> Iterator[pathlib.Path]:
    """Process 0 locks and checks member directory ``d``; every process learns
    the outcome (a refused directory stops all of them)."""
    with contextlib.ExitStack() as stack:
        def lock_and_check():
            workdir_lib.check(stack.enter_context(workdir_lib.lock(d)), record)
        parallel.agree(lock_and_check, lead_only=True)
        yield d


def _writer(d: pathlib.Path, start: int):
    """Process 0's metrics writer of ``d`` (cut back to ``start``); elsewhere a
    writer that writes nothing."""
    return parallel.agree(lambda: metrics_lib.MetricsWriter(d, start, _notice),
                          lead_only=True) or metrics_lib.NullWriter()


def _report(reporter: metrics_lib.Progress, label: str, step: int,
            slots: Sequence[Slot]) -> None:
    live = [sl.record for sl in slots if not sl.stopped] or [{}]
    mean = {k: float(np.mean([r[k] for r in live])) for k in live[0]}
    rejected = sum(sl.divergence.rejected for sl in slots)
    print(f"{label}, mean of {len(live)}: {reporter.line(step, mean, rejected)}",
          flush=True)


def _run_chunk(program: Program, members: Sequence[Member], root: pathlib.Path,
               width: int, label: str, progress: bool) -> dict[str, Any]:
    """Locks, checks and restores ``members``, then trains them by start step."""
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        by_start: dict[int, list[tuple[Member, TrainState]]] = {}
        data = None
        for m in members:
            built = _build(m.config)
            record = train.run_record(m.config, built.data)
            d = stack.enter_context(_lead_lock(root / m.name, record))
            initial = parallel.replicate(
                train.initial_state(built.fn, built.tx, m.config.seed), program.mesh)
            restored = checkpoint.restore(d, initial, move_damaged=True)
            start = int(restored.step) if restored is not None else 0
            if start >= m.config.steps:
                out[m.name] = _finished(m, d, start)
                continue
            parallel.agree(functools.partial(workdir_lib.write_config, d, record),
                           lead_only=True)
            by_start.setdefault(start, []).append(
                (m, restored if restored is not None else initial))
            data = built.data
        for start, pairs in sorted(by_start.items()):
            part = Partition(program, [m.config for m, _ in pairs],
                             [s for _, s in pairs], data, start, width)
            slots: list[Slot] = []
            try:
                for m, _ in pairs:
                    d = root / m.name
                    slots.append(Slot(m, d, _writer(d, start), checkpoint.manager(d),
                                       train.Divergence(m.config.max_nonfinite_steps)))
                _train(part, slots, label, progress)
            finally:
                for slot in slots:
                    slot.writer.close()
                    slot.mngr.close()
            out.update({sl.member.name: sl.stopped or sl.record for sl in slots})
    return out


def run(members: Sequence[Member], root: str | pathlib.Path, *, chunk: int = 0,
        progress: bool = True, groups: Sequence[Group] | None = None
        ) -> dict[str, dict[str, float]]:
    """Trains every member of a sweep into ``root/<member name>/``.

    Every member config and directory is validated and the groups formed
    before anything compiles. Groups run in turn; within a group, at most
    ``chunk`` members run at once, in one vmapped program.

    Args:
        members: From :func:`expand` (possibly adjusted by the caller).
        root: The sweep directory.
        chunk: Members per program (bounds memory); 0: a whole group at once.
        progress: Print one line per log step and program.
        groups: The result of :func:`plan` for ``members`` if already computed.

    Returns:
        Per member name, its last logged record.

    Raises:
        ValueError: an invalid member config or a directory of another run.
        Diverged: after every group ran, if members diverged (each one stopped
            with its checkpoint; the others ran to the end).

    Several devices or processes (after ``jax.distributed.initialize``): with
    ``data_parallel`` (the default), every member's batch is split over the
    mesh of all devices, as in a single data-parallel run, and the members'
    state stays replicated (``sharding`` must be ``replicated``). Every
    process calls this with the same members and root (a shared filesystem):
    process 0 alone locks member directories, writes their ``config.json``
    and ``metrics.jsonl`` and prints; all processes save and restore the
    checkpoints together and take the same stop decisions (from the same
    replicated metrics).
    """
    _validation.check_int("sweep_chunk", chunk, low=0)
    root = pathlib.Path(root)
    groups = plan(members, root) if groups is None else groups
    results: dict[str, Any] = {}
    for gi, g in enumerate(groups, 1):
        pending = []
        for m in g.members:
            step = _restored_step(m, root)
            if step >= m.config.steps:
                results[m.name] = _finished(m, root / m.name, step)
            else:
                pending.append((step, m))
        pending.sort(key=lambda p: p[0])  # members at one step share chunks
        parts = chunks([m for _, m in pending], chunk)
        if not parts:
            continue
        config = g.members[0].config
        with train.x64_context(config):
            program = _program(config, _build(config), g.traced, _mesh(config))
            for ci, part in enumerate(parts, 1):
                label = f"group {gi}/{len(groups)}" + (
                    f" chunk {ci}/{len(parts)}" if len(parts) > 1 else "")
                results.update(_run_chunk(program, part, root,
                                          max(map(len, parts)), label, progress))
    stopped = {k: v for k, v in results.items() if isinstance(v, str)}
    if stopped:
        name, why = next(iter(stopped.items()))
        raise Diverged(f"{len(stopped)} of {len(members)} sweep members diverged "
                       f"(each stopped at its last good state, checkpointed; the "
                       f"others ran to the end): {', '.join(stopped)}; {name}: {why}")
    return {k: results[k] for k in (m.name for m in members) if k in results}
