"""Data parallelism over a ``jax.sharding.Mesh`` of the local devices.

The same pure step runs on one device or many: parameters, optimizer state and
the in-memory dataset are replicated, and each batch is constrained to be
split along its leading axis over the mesh's ``"data"`` axis. XLA's SPMD
partitioner then turns the batch means into all-reduces; an uneven batch
(5 107 samples on 8 devices) is padded by the partitioner. On one device all
of this is the identity. Across hosts, call ``jax.distributed.initialize()``
first; the mesh then spans every process's devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


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


def replicate(tree, mesh: Mesh | None):
    """Places ``tree`` replicated on every device of ``mesh`` (outside jit)."""
    if mesh is None or mesh.size == 1:
        return tree
    return jax.device_put(tree, replicated(mesh))
