"""Starting points recorded from a reference implementation (split + weights).

A *start file* is a golden ``.npz`` (see ``tests/golden/goldens.py``) written
by ``tests/golden/gen_grokking_start.py`` from the grokking reference
(``LucasPrietoAl/grokking-at-the-edge-of-numerical-stability`` @ ``0cc9e8d``,
seed 42): the reference's train / test indices into the modular-arithmetic
table (row ``p·a + b`` holds the pair ``(a, b)``, the order of
:func:`optim_lab.data.modular.modular_arithmetic`), its initial MLP weights in
torch layout (``Linear.weight``: ``(out, in)``) and its first training
losses; ``tests/golden/gen_grokking_transformer.py`` writes the same for the
Fig. 6a transformer (the reference's ``state_dict`` keys). This module reads
such a file into the lab's layouts: index arrays for the data, and params in
the nested-dict layout of :func:`optim_lab.models.functional.functionalize`
— flax ``Linear`` kernels ``(in, out)`` (``{"layers": {0: {"kernel": ...}}}``
for the MLP; :class:`~optim_lab.models.grokking_transformer.GrokkingTransformer`
names for the transformer, :func:`torch_transformer_to_flax`).
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
# The reference Transformer's state_dict -> GrokkingTransformer params:
# (pattern, path template, transpose). Linear weights are (out, in) in torch.
_TRANSFORMER = (
    (r"embedding\.weight", ("embedding", "embedding"), False),
    (r"transformer\.layers\.(\d+)\.self_attn\.in_proj_weight",
     ("layers_{0}", "self_attn", "in_proj", "kernel"), True),
    (r"transformer\.layers\.(\d+)\.self_attn\.in_proj_bias",
     ("layers_{0}", "self_attn", "in_proj", "bias"), False),
    (r"transformer\.layers\.(\d+)\.self_attn\.out_proj\.weight",
     ("layers_{0}", "self_attn", "out_proj", "kernel"), True),
    (r"transformer\.layers\.(\d+)\.self_attn\.out_proj\.bias",
     ("layers_{0}", "self_attn", "out_proj", "bias"), False),
    (r"transformer\.layers\.(\d+)\.(linear[12])\.weight", ("layers_{0}", "{1}", "kernel"), True),
    (r"transformer\.layers\.(\d+)\.(linear[12])\.bias", ("layers_{0}", "{1}", "bias"), False),
    (r"transformer\.layers\.(\d+)\.(norm[12])\.weight", ("layers_{0}", "{1}", "scale"), False),
    (r"transformer\.layers\.(\d+)\.(norm[12])\.bias", ("layers_{0}", "{1}", "bias"), False),
    (r"linear\.weight", ("head", "kernel"), True),
    (r"linear\.bias", ("head", "bias"), False),
)


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


def torch_transformer_to_flax(arrays: dict[str, np.ndarray]) -> dict:
    """The grokking reference's ``Transformer`` ``state_dict`` (``init/<key>``)
    -> :class:`~optim_lab.models.grokking_transformer.GrokkingTransformer` params.

    Linear weights ``(out, in)`` become kernels ``(in, out)`` (the fused q/k/v
    ``in_proj_weight`` keeps its q, k, v order along the output axis, as the
    lab's ``in_proj`` splits it); LayerNorm ``weight`` becomes ``scale``; the
    head is the reference's ``linear``. Unknown ``init/`` keys are an error.

    Examples:
        >>> import numpy as np
        >>> p = torch_transformer_to_flax({
        ...     "init/embedding.weight": np.zeros((7, 4)),
        ...     "init/transformer.layers.0.self_attn.in_proj_weight": np.zeros((12, 4)),
        ...     "init/linear.weight": np.zeros((7, 4))})
        >>> p["layers_0"]["self_attn"]["in_proj"]["kernel"].shape, p["head"]["kernel"].shape
        ((4, 12), (4, 7))
    """
    params: dict = {}
    for key, value in arrays.items():
        if not key.startswith("init/"):
            continue
        for pattern, template, transpose in _TRANSFORMER:
            if m := re.fullmatch(pattern, key[len("init/"):]):
                break
        else:
            raise ValueError(f"{key}: not a parameter of the reference Transformer")
        *parents, leaf = (t.format(*m.groups()) for t in template)
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = np.ascontiguousarray(value.T) if transpose else value
    if "embedding" not in params:
        raise ValueError("no init/embedding.weight: not a transformer start file")
    return params


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
        226-200-200-113 without biases, float32);
        ``tests/golden/grokking_transformer.npz`` holds its Fig. 6a
        transformer's (5 017 / 7 527 rows, float32).
    """
    arrays, meta = _read(path)
    train, test, _ = load_split(path)
    transformer = "init/embedding.weight" in arrays
    params = (torch_transformer_to_flax if transformer else torch_linear_to_flax)(arrays)
    if like is not None:
        params = match_params(params, like)
    return ReferenceStart(train, test, params, meta)
