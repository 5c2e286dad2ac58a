"""Starting points recorded from a reference implementation (split + weights).

A *start file* is a golden ``.npz`` (see ``tests/golden/goldens.py``) written
by ``tests/golden/gen_grokking_start.py`` from the grokking reference
(``LucasPrietoAl/grokking-at-the-edge-of-numerical-stability`` @ ``0cc9e8d``,
seed 42): the reference's train / test indices into the modular-arithmetic
table (row ``p·a + b`` holds the pair ``(a, b)``, the order of
:func:`optim_lab.data.modular.modular_arithmetic`), its initial MLP weights in
torch layout (``Linear.weight``: ``(out, in)``) and its first training
losses. This module reads such a file into the lab's layouts: index arrays
for the data, and flax ``Linear`` kernels ``(in, out)`` in the nested-dict
layout of :func:`optim_lab.models.functional.functionalize`
(``{"layers": {0: {"kernel": ...}, ...}}``).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from typing import NamedTuple

import jax
import numpy as np

_WEIGHT = re.compile(r"^init/layers\.(\d+)\.weight$")
_BIAS = re.compile(r"^init/layers\.(\d+)\.bias$")


class ReferenceStart(NamedTuple):
    """A reference run's starting point, in the lab's layouts."""
    train_idx: np.ndarray  # (n_train,) int64 rows of the full table
    test_idx: np.ndarray  # (n_test,) int64
    params: dict  # {"layers": {i: {"kernel": (in, out)[, "bias": (out,)]}}}
    meta: dict  # the file's metadata (reference, commit, seed, config, versions)


def _read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(str(z["__meta__"])) if "__meta__" in z.files else {}
    return arrays, meta


def _check_split(train: np.ndarray, test: np.ndarray, path) -> None:
    for name, idx in (("train_idx", train), ("test_idx", test)):
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{path}: {name} must be a 1-D integer array, got "
                             f"shape {idx.shape} dtype {idx.dtype}")
    both = np.concatenate([train, test])
    if np.unique(both).size != both.size:
        raise ValueError(f"{path}: train_idx and test_idx overlap or repeat rows")
    if both.size and both.min() < 0:
        raise ValueError(f"{path}: negative row index {both.min()}")


def load_split(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, dict]:
    """Reads ``(train_idx, test_idx, meta)``; the two must be disjoint."""
    arrays, meta = _read(path)
    missing = {"train_idx", "test_idx"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: not a split file, missing {sorted(missing)}")
    train = arrays["train_idx"].astype(np.int64)
    test = arrays["test_idx"].astype(np.int64)
    _check_split(train, test, path)
    return train, test, meta


def torch_linear_to_flax(arrays: dict[str, np.ndarray]) -> dict:
    """``init/layers.{i}.weight`` (out, in) -> ``{"layers": {i: {"kernel":
    (in, out)}}}`` (and ``bias`` when present); dtypes are kept."""
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        if m := _WEIGHT.match(key):
            if value.ndim != 2:
                raise ValueError(f"{key}: a Linear weight is 2-D, got {value.shape}")
            layers.setdefault(int(m.group(1)), {})["kernel"] = np.ascontiguousarray(value.T)
        elif m := _BIAS.match(key):
            layers.setdefault(int(m.group(1)), {})["bias"] = value
    if sorted(layers) != list(range(len(layers))) or not layers:
        raise ValueError(f"layer indices must be 0..n-1, got {sorted(layers)}")
    return {"layers": {i: layers[i] for i in sorted(layers)}}


def match_params(params: Any, like: Any) -> Any:
    """Checks ``params`` against a template (a model's params: same tree and
    shapes) and casts each leaf to the template's dtype.

    Raises ``ValueError`` naming the first mismatch. Use it with the params of
    the model the training builds, e.g. ``functionalize(model).params``.
    """
    p_leaves, p_def = jax.tree.flatten_with_path(params)
    l_leaves, l_def = jax.tree.flatten_with_path(like)
    if p_def != l_def:
        raise ValueError(f"parameter trees differ: file {p_def} vs model {l_def}")
    for (kp, p), (_, ref) in zip(p_leaves, l_leaves):
        if np.shape(p) != np.shape(ref):
            raise ValueError(f"{jax.tree_util.keystr(kp)}: shape {np.shape(p)} in "
                             f"the file, {np.shape(ref)} in the model")
    return jax.tree.map(lambda p, ref: np.asarray(p).astype(ref.dtype), params, like)


def load_start(path: str | os.PathLike, like: Any = None) -> ReferenceStart:
    """Reads a start file: split indices and initial params in lab layout.

    Args:
        path: A start file (e.g. ``tests/golden/grokking_start.npz``).
        like: Optional template params (the lab model's); when given the
            params are checked against it and cast to its dtypes
            (:func:`match_params`). Otherwise they keep the file's dtypes
            (the grokking reference's weights are float32).

    Returns:
        ``ReferenceStart(train_idx, test_idx, params, meta)``.

    Examples:
        A toy start file in the generator's format (torch layout, ``(out, in)``):

        >>> import os, tempfile
        >>> import numpy as np
        >>> path = os.path.join(tempfile.mkdtemp(), "start.npz")
        >>> np.savez(path, train_idx=np.array([3, 0]), test_idx=np.array([1, 2]),
        ...          **{"init/layers.0.weight": np.ones((5, 4), np.float32),
        ...             "init/layers.1.weight": np.ones((3, 5), np.float32)})
        >>> start = load_start(path)
        >>> start.train_idx.tolist(), start.test_idx.tolist()
        ([3, 0], [1, 2])
        >>> [l["kernel"].shape for l in start.params["layers"].values()]
        [(4, 5), (5, 3)]

        The grokking reference's seed-42 start is
        ``tests/golden/grokking_start.npz`` (5 107 / 7 662 rows, MLP
        226-200-200-113 without biases, float32).
    """
    arrays, meta = _read(path)
    train, test, _ = load_split(path)
    params = torch_linear_to_flax(arrays)
    if like is not None:
        params = match_params(params, like)
    return ReferenceStart(train, test, params, meta)
