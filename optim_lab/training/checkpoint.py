"""Orbax checkpoints of the full :class:`TrainState`, verified on restore.

A checkpoint holds params, model state, optimizer state, step and rng; with
(seed, step) -> batch data the step is the data position, so restoring and
continuing is bit-identical to an uninterrupted run.

Each checkpoint is an orbax ``Composite`` of two items written atomically
together: ``state`` (the train state) and ``manifest`` (JSON: per leaf, its
dtype, shape and the SHA-256 of its bytes). Restoring recomputes the digests
of what came back and compares them with the manifest, so a damaged file is
never trained on: a checkpoint that fails (unreadable, missing manifest,
digest mismatch, wrong step) is reported in one line and the next older
checkpoint is tried; when an older one verifies, the damaged ones are moved
aside to ``checkpoints_damaged/`` (when restoring for training, so their steps
can be saved again); with none left, nothing is moved and
:class:`CheckpointError` is raised.

**Many processes** (``jax.distributed``): every process calls :func:`save`
and :func:`restore` (orbax writes each array's shards once, from the process
that holds them; the manifest is written by process 0). Digests are of each
leaf's *global* value (gathered across processes when sharded), so a
checkpoint verifies the same whatever the number of processes or the layout
that saved it. :func:`restore` lays the arrays out as the template's
(``jax.Array`` leaves with their shardings): a run saved by 2 processes with
FSDP resumes in 1 process replicated, and the reverse. The processes agree on
each checkpoint's verdict (one that fails to read anywhere fails for all);
only process 0 reports and moves damaged checkpoints.
"""

from __future__ import annotations

import hashlib
import pathlib
import shutil
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from optim_lab.training import parallel
from optim_lab.training.errors import CheckpointError
from optim_lab.training.state import TrainState

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "checkpoints_damaged"
MANIFEST_FORMAT = 1

__all__ = ["CHECKPOINT_DIR", "DAMAGED_DIR", "CheckpointError", "manager", "save",
           "restore", "digests"]


def manager(workdir: str | pathlib.Path, max_to_keep: int = 2
            ) -> ocp.CheckpointManager:
    path = pathlib.Path(workdir).resolve() / CHECKPOINT_DIR
    return ocp.CheckpointManager(
        path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                                   create=True))


def digests(tree: Any) -> dict[str, list]:
    """``{leaf path: [dtype, shape, sha256 of its bytes]}`` of a pytree.

    Of each leaf's global value (a collective for arrays sharded over several
    processes: every process must call it).
    """
    host = parallel.host_values(tree)
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(host)[0]:
        a = np.ascontiguousarray(np.asarray(leaf))
        key = jax.tree_util.keystr(path, simple=True, separator="/")
        out[key] = [str(a.dtype), list(a.shape), hashlib.sha256(a.tobytes()).hexdigest()]
    return out


def save(mngr: ocp.CheckpointManager, state: TrainState) -> None:
    """Saves ``state`` with its manifest under its step."""
    step = int(jax.device_get(state.step))
    tree = state._asdict()
    manifest = {"format": MANIFEST_FORMAT, "step": step, "leaves": digests(tree)}
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree), manifest=ocp.args.JsonSave(manifest)),
        force=True)


def _why_damaged(tree: Any, manifest: Any, step: int) -> str | None:
    """Why a restored tree does not match its manifest (None if it does)."""
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return "its manifest is missing or unreadable"
    if manifest.get("step") != step:
        return f"its manifest is for step {manifest.get('step')}"
    expected, actual = manifest.get("leaves", {}), digests(tree)
    if set(expected) != set(actual):
        return "its leaves differ from its manifest"
    bad = [k for k in actual if list(expected[k]) != actual[k]]
    if bad:
        return f"checksum mismatch in {len(bad)} leaf(s), first {bad[0]}"
    if int(np.asarray(tree["step"])) != step:
        return f"it holds step {int(np.asarray(tree['step']))}"
    return None


def _restore_step(mngr: ocp.CheckpointManager, step: int, abstract: Any) -> Any:
    error = ""
    try:
        restored = mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), manifest=ocp.args.JsonRestore()))
        tree, manifest = restored["state"], restored["manifest"]
    except Exception as e:  # orbax/tensorstore raise many types for damage
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        error = f"unreadable ({type(e).__name__}: {first})"
    # Every process reads its own shards: agree before the digests' collective.
    errors = parallel.exchange(error)
    if any(errors):
        i = next(i for i, e in enumerate(errors) if e)
        where = f" on process {i}" if len(errors) > 1 else ""
        raise CheckpointError(errors[i] + where)
    why = _why_damaged(tree, manifest, step)
    if why:
        raise CheckpointError(why)
    return tree


def _move_aside(directory: pathlib.Path, step: int) -> pathlib.Path:
    src = directory / str(step)
    dst_dir = directory.parent / DAMAGED_DIR
    dst_dir.mkdir(exist_ok=True)
    dst, n = dst_dir / str(step), 1
    while dst.exists():
        dst, n = dst_dir / f"{step}.{n}", n + 1
    shutil.move(str(src), str(dst))
    return dst


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _move_damaged(path: pathlib.Path, failures, step: int,
                  report: Callable[[str], None]) -> None:
    for bad, _ in failures:
        report(f"notice: moved damaged checkpoint {bad} to "
               f"{_move_aside(path, bad)}; resuming from step {step}")


def _lead_only(report: Callable[[str], None]) -> Callable[[str], None]:
    return report if parallel.is_lead() else (lambda line: None)


def restore(workdir: str | pathlib.Path, template: TrainState, *,
            move_damaged: bool = False,
            report: Callable[[str], None] = _stderr) -> TrainState | None:
    """The newest checkpoint of ``workdir`` that verifies, or None if none exist.

    Args:
        workdir: The run directory.
        template: A state of the run's structure (shapes and dtypes); its
            ``jax.Array`` leaves' shardings are the restored layout.
        move_damaged: Once an older checkpoint verifies, move the newer ones
            that failed to ``checkpoints_damaged/`` (training does, so their
            steps can be saved again; readers don't).
        report: Called with one line per checkpoint that fails (on process 0).

    Raises:
        CheckpointError: checkpoints exist but none verifies.
    """
    path = pathlib.Path(workdir).resolve() / CHECKPOINT_DIR
    if not path.is_dir():
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template._asdict())
    mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(
        create=False, read_only=not move_damaged))
    report = _lead_only(report)
    failures = []
    try:
        for step in sorted(mngr.all_steps(), reverse=True):
            try:
                state = TrainState(**_restore_step(mngr, step, abstract))
            except CheckpointError as e:
                failures.append((step, str(e)))
                report(f"warning: checkpoint {path}/{step} is damaged ({e}); trying "
                       "the next older checkpoint")
                continue
            if move_damaged and failures:
                parallel.agree(lambda: _move_damaged(path, failures, step, report),
                               lead_only=True)
            return state
    finally:
        mngr.close()
    if failures:
        raise CheckpointError(
            f"no valid checkpoint in {path} ("
            + "; ".join(f"{step}: {why}" for step, why in failures)
            + "): use a new workdir, or move the checkpoints away to restart this run")
    return None
