"""Which leaves of a params pytree sit in which block (shared by LIR and TVR).

A leaf's path is its "/"-joined key path
(``jax.tree_util.keystr(path, simple=True, separator="/")``, e.g.
``"layers/3/mlp/kernel"`` for flax NNX lists, ``"layers_3/mlp/kernel"`` for
linen names). ``block_pattern`` is searched in it; its first group is the
0-based block index ``i`` and the 1-based depth is ``l = i + 1``. A leaf whose
path matches ``stacked_pattern`` holds every block at once (``nnx.scan`` /
``nn.scan`` layers): slice ``i`` of its leading axis is block ``l = i + 1``.
Everything here is static (Python), decided before anything is traced.
"""

from __future__ import annotations

import re
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

#: Matches linen names (``layers_3``) and flax NNX lists (``layers/3``).
DEFAULT_BLOCK_PATTERN = r"layers[_/](\d+)"


class Leaf(NamedTuple):
    """Static facts about one leaf of a params pytree."""
    path: str             # "/"-joined key path
    name: str             # last path component ("kernel", "bias", "scale", ...)
    block: int | None     # 1-based depth l from block_pattern (None: outside)
    stacked: bool         # leading axis indexes blocks (slice i is l = i + 1)
    selected: bool        # the mask's value (True without a mask)
    floating: bool        # inexact dtype (only those are ever touched)
    slice_shape: tuple    # shape of one block's matrix (drops a stacked axis)

    @property
    def in_block(self) -> bool:
        return self.stacked or self.block is not None

    def depths(self, n: int | None = None) -> np.ndarray:
        """The 1-based depths: ``[l]``, or ``1..L`` for a stacked leaf."""
        if self.stacked:
            return np.arange(1, n + 1, dtype=np.float64)
        return np.array([float(self.block)])


def compile_pattern(name: str, pattern: Any, *, optional: bool = False,
                    group: bool = True) -> re.Pattern | None:
    """A compiled regex (with a group if ``group``; None allowed if
    ``optional``); ``ValueError`` naming ``name`` otherwise."""
    if pattern is None and optional:
        return None
    if not isinstance(pattern, str):
        raise ValueError(f"{name} must be a regular expression string, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ValueError(f"{name} must be a valid regular expression, got "
                         f"{pattern!r}: {e}") from e
    if group and compiled.groups < 1:
        raise ValueError(f"{name} must have a group capturing the 0-based block "
                         f"index, e.g. r'layers[_/](\\d+)'; got {pattern!r}")
    return compiled


def path_string(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def _block_of(pattern: re.Pattern, path: str) -> int | None:
    m = pattern.search(path)
    if m is None:
        return None
    try:
        return int(m.group(1)) + 1
    except (TypeError, ValueError) as e:
        raise ValueError(f"block_pattern's first group must capture an integer "
                         f"block index; in {path!r} it captured "
                         f"{m.group(1)!r}") from e


def resolve_mask(mask: Any, params: Any, n_leaves: int) -> list[bool]:
    """Per-leaf booleans from a pytree (or a prefix of one) or a callable."""
    if mask is None:
        return [True] * n_leaves
    if callable(mask):
        mask = mask(params)
    try:
        full = jax.tree.map(lambda m, sub: jax.tree.map(lambda _: m, sub),
                            mask, params)
    except (ValueError, TypeError) as e:
        raise ValueError("mask must be a pytree of bools with the structure of "
                         f"params (or a prefix of it): {e}") from e
    values = jax.tree.leaves(full)
    if len(values) != n_leaves:
        raise ValueError(f"mask must give one bool per params leaf: got "
                         f"{len(values)} for {n_leaves} leaves")
    out = []
    for v in values:
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"mask leaves must be Python bools (static), got {v!r}")
        out.append(bool(v))
    return out


def describe(params: Any, block_pattern: re.Pattern,
             stacked_pattern: re.Pattern | None, mask: Any
             ) -> tuple[list[Leaf], list[Any], Any]:
    """``(infos, leaves, treedef)`` for ``params`` (leaves in flatten order)."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    selected = resolve_mask(mask, params, len(flat))
    infos, leaves = [], []
    for (path, x), sel in zip(flat, selected):
        p = path_string(path)
        shape = np.shape(x)
        stacked = bool(stacked_pattern is not None and stacked_pattern.search(p))
        if stacked and not shape:
            raise ValueError(f"stacked_pattern matched the scalar leaf {p!r}; a "
                             "stacked leaf needs a leading block axis")
        infos.append(Leaf(
            path=p, name=p.rsplit("/", 1)[-1], block=None if stacked else
            _block_of(block_pattern, p), stacked=stacked, selected=sel,
            floating=bool(jnp.issubdtype(jnp.result_type(x), jnp.inexact)),
            slice_shape=tuple(shape[1:] if stacked else shape)))
        leaves.append(x)
    return infos, leaves, treedef


def no_block_error(infos: list[Leaf], block_pattern: str) -> ValueError:
    sample = ", ".join(repr(i.path) for i in infos[:4])
    return ValueError(
        f"block_pattern {block_pattern!r} matched no parameter path (paths look "
        f"like {sample}); pass a block_pattern whose first group is the block "
        "index, a stacked_pattern for scanned layers, or a mask")

