"""Data parallelism and FSDP over a ``jax.sharding.Mesh`` of every device.

The same pure step runs on one device or many, in one process or many
(``jax.distributed.initialize`` first; ``jax.devices()`` then lists every
process's devices and the mesh spans them all):

- **Batches** are constrained to be split along their leading axis over the
  mesh's ``"data"`` axis. The training batch is drawn *inside* the jitted step
  from the (replicated) data source as a pure function of ``(seed, step)``;
  the SPMD partitioner gives each device the global batch indices and only its
  own rows to gather, so each process builds just its slice of the global
  batch, and the global batch does not depend on the number of processes or
  devices. XLA turns the batch means into all-reduces; an uneven batch (5 107
  samples on 8 devices) is padded by the partitioner.
- **State** (params, optimizer state) is replicated (``sharding="replicated"``)
  or sharded over the same axis (``"fsdp"``): each leaf of at least
  :data:`FSDP_MIN_SIZE` elements is split along its largest dimension divisible
  by the number of devices (:func:`fsdp_spec`), smaller or indivisible leaves
  stay replicated. Per-tensor, per-channel and global reductions of the
  optimizers and post-steps see the whole tensor: XLA inserts the collectives.

On one device all of this is the identity. Across processes, host values are
placed with :func:`place` (every process passes the same value) and read back
with :func:`host_value` (the global value of a sharded array);
:func:`exchange` / :func:`agree` let the processes agree on decisions only one
of them (or each on its own) can take, so none is left waiting in a
collective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import TypeVar

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from optim_lab.training.errors import RunError

DATA_AXIS = "data"
SHARDINGS = ("replicated", "fsdp")
FSDP_MIN_SIZE = 1024  # elements; smaller leaves (norm gains, biases, counts) stay replicated
_MESSAGE_BYTES = 4096  # a status exchanged between processes is cut to this size

T = TypeVar("T")


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(tree, mesh: Mesh | None):
    """Constrains every array of ``tree`` to be split along axis 0 (in jit)."""
    if mesh is None or mesh.size == 1:
        return tree
    return jax.lax.with_sharding_constraint(tree, batch_sharded(mesh))


# -- the state's layout ------------------------------------------------------------

def fsdp_spec(shape: tuple[int, ...], n: int, min_size: int = FSDP_MIN_SIZE) -> P:
    """The FSDP ``PartitionSpec`` of a leaf of ``shape`` on ``n`` devices.

    The largest dimension divisible by ``n`` (the first of equal ones) is
    split over the data axis; a leaf with fewer than ``min_size`` elements or
    no divisible dimension is replicated (``P()``).

    Examples:
        >>> fsdp_spec((226, 200), 4)
        P(None, 'data')
        >>> fsdp_spec((200, 113), 8), fsdp_spec((32,), 4), fsdp_spec((113, 7), 2)
        (P('data',), P(), P())
    """
    if n <= 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    dims = [d for d in range(len(shape)) if shape[d] % n == 0]
    if not dims:
        return P()
    best = max(dims, key=lambda d: (shape[d], -d))
    return P(*([None] * best + [DATA_AXIS]))


def state_shardings(tree: Any, mesh: Mesh | None, mode: str = "replicated",
                    min_size: int = FSDP_MIN_SIZE) -> Any:
    """A ``NamedSharding`` per leaf of ``tree`` (None without a mesh).

    ``mode``: ``"replicated"`` (every leaf on every device) or ``"fsdp"``
    (:func:`fsdp_spec` per leaf: a function of the leaf's shape only, so an
    optimizer moment gets the layout of its parameter).
    """
    if mode not in SHARDINGS:
        raise ValueError(f"sharding must be one of {', '.join(SHARDINGS)}, got {mode!r}")
    if mesh is None:
        return None
    if mode == "replicated":
        return jax.tree.map(lambda _: replicated(mesh), tree)
    return jax.tree.map(
        lambda x: NamedSharding(mesh, fsdp_spec(np.shape(x), mesh.size, min_size)), tree)


def place(tree: T, shardings: Any) -> T:
    """Puts ``tree`` (host or local device values) on ``shardings`` (outside jit).

    Exact (no arithmetic). With several processes every process must pass the
    same values; each then holds only the shards of its own devices.
    ``shardings`` is a pytree prefix of ``tree`` (one sharding for all: a
    single ``Sharding``); None returns ``tree`` unchanged.
    """
    if shardings is None:
        return tree
    if jax.process_count() == 1:
        return jax.device_put(tree, shardings)

    def put(x, sharding):
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(lambda x: put(x, shardings), tree)
    return jax.tree.map(put, tree, shardings)


def replicate(tree, mesh: Mesh | None):
    """Places ``tree`` replicated on every device of ``mesh`` (outside jit)."""
    if mesh is None or mesh.size == 1:
        return tree
    return place(tree, replicated(mesh))


def host_value(x: Any) -> np.ndarray:
    """The global value of one array as numpy (gathered across processes if sharded).

    A collective when ``x`` is sharded over other processes' devices: every
    process must call it, in the same order.
    """
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
    from jax.experimental import multihost_utils  # noqa: PLC0415
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def host_values(tree: T) -> T:
    """:func:`host_value` of every leaf."""
    return jax.tree.map(host_value, tree)


# -- processes -----------------------------------------------------------------------

def is_lead() -> bool:
    """Whether this is process 0: the one that writes logs and prints."""
    return jax.process_index() == 0


def exchange(message: str) -> list[str]:
    """Every process's ``message``, by process index (an all-gather; collective).

    Messages are UTF-8, cut to 4 KiB. With one process: ``[message]``.
    """
    if jax.process_count() == 1:
        return [message]
    from jax.experimental import multihost_utils  # noqa: PLC0415
    raw = message.encode()[:_MESSAGE_BYTES - 4]
    buf = np.zeros(_MESSAGE_BYTES, np.uint8)
    buf[:4] = np.frombuffer(np.uint32(len(raw)).tobytes(), np.uint8)
    buf[4:4 + len(raw)] = np.frombuffer(raw, np.uint8)
    rows = np.asarray(multihost_utils.process_allgather(buf))
    out = []
    for row in rows.reshape(jax.process_count(), _MESSAGE_BYTES):
        n = int(np.frombuffer(row[:4].tobytes(), np.uint32)[0])
        out.append(row[4:4 + n].tobytes().decode(errors="replace"))
    return out


_KINDS = {"value": ValueError, "run": RunError}


def agree(fn: Callable[[], T], *, lead_only: bool = False) -> T | None:
    """Runs ``fn`` (on process 0 only with ``lead_only``) and agrees on its outcome.

    If ``fn`` raised a ``ValueError`` or :class:`RunError` on any process,
    every process raises: that process re-raises its own error, the others an
    error of the same kind naming the process and its message. So a decision
    one process takes (process 0 refusing a locked workdir, a failed write)
    stops every process instead of leaving the others waiting in a collective.
    Single process: ``fn()``. Returns ``fn``'s result (None where not run).
    """
    if jax.process_count() == 1:
        return fn()
    result, error, status = None, None, ""
    if is_lead() or not lead_only:
        try:
            result = fn()
        except (ValueError, RunError) as e:
            error = e
            kind = "value" if isinstance(e, ValueError) else "run"
            status = f"{kind}:{e}"
    statuses = exchange(status)
    if error is not None:
        raise error
    for i, s in enumerate(statuses):
        if s:
            kind, _, text = s.partition(":")
            raise _KINDS[kind](f"process {i} stopped: {text}")
    return result
