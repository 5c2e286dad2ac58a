"""Orbax checkpoints of the full :class:`TrainState` (exact resume).

A checkpoint holds params, model state, optimizer state, step and rng; with
(seed, step) -> batch data the step is the data position, so restoring and
continuing is bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import pathlib

import jax
import orbax.checkpoint as ocp

from optim_lab.training.state import TrainState

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored into this run's state."""


def manager(workdir: str | pathlib.Path, max_to_keep: int = 2
            ) -> ocp.CheckpointManager:
    path = pathlib.Path(workdir).resolve() / CHECKPOINT_DIR
    return ocp.CheckpointManager(
        path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                   create=True))


def save(mngr: ocp.CheckpointManager, state: TrainState) -> None:
    step = int(jax.device_get(state.step))
    mngr.save(step, args=ocp.args.StandardSave(state._asdict()), force=True)


def restore_latest(mngr: ocp.CheckpointManager, template: TrainState
                   ) -> TrainState | None:
    """Restores the newest checkpoint into ``template``'s structure, or None.

    Raises:
        CheckpointError: the checkpoint is corrupt or belongs to another model
            or optimizer (its tree does not match ``template``).
    """
    step = mngr.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    try:
        restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
        state = TrainState(**restored)
    except Exception as e:  # orbax raises many types for a damaged tree
        raise CheckpointError(
            f"checkpoint {mngr.directory}/{step} is corrupt or does not match "
            f"this config's model/optimizer ({type(e).__name__}: {e}); use a new "
            "workdir or delete the checkpoint") from e
    if int(jax.device_get(state.step)) != step:
        raise CheckpointError(f"checkpoint {mngr.directory}/{step} holds step "
                              f"{int(state.step)}: corrupt")
    return state
