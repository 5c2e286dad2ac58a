r"""Layer-Index Rescaling (LIR): depth-scaled re-initialisation of a params pytree.

LIR draws every weight matrix of decoder block :math:`l` (1-based) with a
standard deviation that shrinks with depth,

.. math::
    W^{(l)} \sim \mathcal{N}\!\Big(0, \frac{\sigma_\text{base}^2}{l \cdot s}\Big),
    \qquad \text{std}(W^{(l)}) = \frac{\sigma_\text{base}}{\sqrt{l \cdot s}},

with ``scale_factor`` :math:`s = 1` in the paper (σ_base = 0.006: layer 1 →
0.006, layer 2 → 0.00424, layer 10 → 0.0019). Matrices outside the blocks
(token embedding, LM head) get plain :math:`\mathcal{N}(0, \sigma_\text{base}^2)`,
block biases are set to 0, and norm gains are left untouched — the reference's
``re_initialize_model`` patch, applied here to a params pytree after
``model.init``. Each leaf is drawn from its own key, ``fold_in(key,
crc32(path))``, so adding or removing another parameter does not change a
leaf's draw. Samples are drawn in float32 (float64 for float64 leaves) and cast
to the leaf's dtype.
"""

from __future__ import annotations

import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optim_lab import _numerics
from optim_lab import _validation
from optim_lab.rescaling import _paths


def _leaf_key(key: jax.Array, path: str) -> jax.Array:
    return jax.random.fold_in(key, zlib.crc32(path.encode()) & 0x7FFFFFFF)


def _std_for(info: _paths.Leaf, x: jax.Array, base_std: float,
             scale_factor: float) -> np.ndarray | float:
    """σ_base/√(l·s) in a block (one per slice when stacked), else σ_base."""
    if not info.in_block:
        return base_std
    depths = info.depths(x.shape[0] if info.stacked else None)
    std = base_std / np.sqrt(depths * scale_factor)
    return std.reshape(-1, 1, 1) if info.stacked else float(std[0])


def _normal(key: jax.Array, x: jax.Array, std) -> jax.Array:
    dtype = _numerics.stat_dtype(x)
    z = jax.random.normal(key, x.shape, dtype)
    return (z * jnp.asarray(std, dtype)).astype(x.dtype)


def _reinit_leaf(info: _paths.Leaf, x, key, base_std, scale_factor,
                 padding_idx, embedding_re):
    if not (info.floating and info.selected):
        return x
    if len(info.slice_shape) == 2:
        out = _normal(_leaf_key(key, info.path), x,
                      _std_for(info, x, base_std, scale_factor))
        if (padding_idx is not None and not info.in_block
                and embedding_re.search(info.path)):
            if padding_idx >= x.shape[0]:
                raise ValueError(f"padding_idx must be in [0, {x.shape[0]}) for "
                                 f"{info.path!r}, got {padding_idx}")
            out = out.at[padding_idx].set(0)
        return out
    if len(info.slice_shape) == 1 and info.name == "bias" and info.in_block:
        return jnp.zeros_like(x)
    return x


def lir_reinit(
    params: Any,
    key: jax.Array,
    *,
    base_std: float = 0.006,
    block_pattern: str = _paths.DEFAULT_BLOCK_PATTERN,
    scale_factor: float = 1.0,
    mask: Any = None,
    stacked_pattern: str | None = None,
    padding_idx: int | None = None,
    embedding_pattern: str = r"embed",
) -> Any:
    r"""Re-initialises ``params`` with Layer-Index Rescaling.

    Per leaf (path = its "/"-joined key path):

    * a 2-D leaf inside block :math:`l` (``block_pattern``'s first group is
      the 0-based index, :math:`l = i + 1`) ← :math:`\mathcal{N}(0,
      (\sigma_\text{base}/\sqrt{l\,s})^2)`;
    * a 1-D leaf named ``bias`` inside a block ← 0;
    * any other 2-D leaf (embedding, head) ← :math:`\mathcal{N}(0,
      \sigma_\text{base}^2)`, with row ``padding_idx`` zeroed in leaves whose
      path matches ``embedding_pattern`` when ``padding_idx`` is given;
    * everything else (norm gains, scalars, conv kernels, integer leaves) is
      returned as is.

    Args:
        params: A params pytree (e.g. ``nnx.to_pure_dict`` of a model's params).
        key: A JAX PRNG key; the same key gives the same result.
        base_std: σ_base, positive. The paper uses 0.006 for LLaMA-1B and 0.02
            for GPT-2-124M.
        block_pattern: Regex searched in each leaf path; its first group is
            the 0-based block index. The default matches linen names
            (``layers_3``) and flax NNX lists (``layers/3``).
        scale_factor: :math:`s` in :math:`\sigma_\text{base}/\sqrt{l\,s}`,
            positive (the reference's ``scale_factor``, 1 in the paper).
        mask: Restricts LIR to some leaves: a pytree of Python bools with the
            structure of ``params`` (or a prefix of it), as in
            ``optax.masked``, or a callable ``params -> such pytree``. Leaves
            masked out are returned as is.
        stacked_pattern: Regex for scanned layers: a leaf whose path matches
            holds all blocks stacked on its leading axis; slice ``i`` is block
            :math:`l = i + 1` (a 3-D kernel is a stack of matrices, a 2-D
            ``bias`` a stack of biases). ``None``: no stacked leaves.
        padding_idx: Embedding row to zero (the torch ``padding_idx``); None:
            none.
        embedding_pattern: Regex naming the embedding leaves for
            ``padding_idx``.

    Returns:
        A pytree of the same structure, shapes and dtypes.

    Raises:
        ValueError: a non-positive ``base_std`` / ``scale_factor``, an invalid
            pattern, a ``block_pattern`` (and ``stacked_pattern``) that matches
            no leaf, or a ``padding_idx`` out of range.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> from optim_lab import lir_reinit
        >>> params = {
        ...     "embed": {"embedding": jnp.zeros((256, 64))},
        ...     "layers": {i: {"mlp": {"kernel": jnp.zeros((64, 512)),
        ...                            "bias": jnp.ones(512)},
        ...                    "norm": {"scale": jnp.ones(64)}} for i in range(4)},
        ... }
        >>> new = lir_reinit(params, jax.random.key(0), base_std=0.006)
        >>> [round(float(new["layers"][i]["mlp"]["kernel"].std()), 4)
        ...  for i in range(4)]      # 0.006 / sqrt(l), l = 1..4
        [0.006, 0.0042, 0.0035, 0.003]
        >>> round(float(new["embed"]["embedding"].std()), 4)
        0.006
        >>> block = new["layers"][3]
        >>> float(block["mlp"]["bias"].max()), float(block["norm"]["scale"].min())
        (0.0, 1.0)

    References:
        Owen, Kumar, Roy Chowdhury, Güra, `Variance Control via Weight
        Rescaling in LLM Pre-training <https://arxiv.org/abs/2503.17500>`_,
        2025; reference code ``bluorion-com/weight_rescaling``
        (``patches/initialization.py``).

    .. warning::
        Only **2-D** leaves are matrices here. A ``DenseGeneral`` /
        ``nnx.MultiHeadAttention`` kernel of shape ``(in, heads, head_dim)``
        and conv kernels are left untouched; reshape them or initialise them
        yourself. The paper's LIR is not combined with GPT-2's special
        residual init (the reference asserts against it): apply LIR to the
        whole model. Re-initialise **before** ``tx.init`` so optimizer state
        derived from the parameters sees the new values.
    """
    _validation.check_positive("base_std", base_std)
    _validation.check_positive("scale_factor", scale_factor)
    block_re = _paths.compile_pattern("block_pattern", block_pattern)
    stacked_re = _paths.compile_pattern("stacked_pattern", stacked_pattern,
                                        optional=True, group=False)
    embedding_re = _paths.compile_pattern("embedding_pattern", embedding_pattern,
                                          group=False)
    if padding_idx is not None:
        _validation.check_int("padding_idx", padding_idx, 0)
    infos, leaves, treedef = _paths.describe(params, block_re, stacked_re, mask)
    if not any(i.in_block for i in infos):
        raise _paths.no_block_error(infos, block_pattern)
    base_std, scale_factor = float(base_std), float(scale_factor)
    out = [_reinit_leaf(i, x, key, base_std, scale_factor, padding_idx,
                        embedding_re) for i, x in zip(infos, leaves)]
    return jax.tree_util.tree_unflatten(treedef, out)
