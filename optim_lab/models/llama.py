"""A small LLaMA-style decoder-only language model (flax NNX).

Token embedding, ``num_layers`` blocks of

    x = x + Attention(RMSNorm(x))      causal multi-head, RoPE on q and k
    x = x + SwiGLU(RMSNorm(x))         down(silu(gate(x)) * up(x))

a final RMSNorm and an untied linear head; no biases anywhere. Blocks are the
attributes ``layers_0``, ``layers_1``, ..., so parameter paths read
``layers_{i}/attn/q_proj/kernel`` (what per-layer weight rescaling matches with
``r"layers_(\\d+)"``). The projections keep the HuggingFace LLaMA names and are
separate matrices (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``,
``gate_proj``, ``up_proj``, ``down_proj``), so per-matrix statistics match the
reference; the forward pass concatenates q/k/v (and gate/up) kernels into one
matmul. Every matrix, embedding and head included, starts at N(0, init_std²)
(HuggingFace's ``initializer_range``, 0.02); RMSNorm gains start at 1.
Kernels use flax layout ``(in, out)``.

Residual-stream probe: after :meth:`Llama.enable_residual_probe`, every forward
pass also stores max |x| of the residual stream (the embedding output and each
block's output) in the model's :class:`ResidualMaxAbs` variable. It is a
non-``Param`` variable, so the training step gets it in the new model state
of its own loss forward, at the cost of one max-reduction per block and
without a second forward pass (``optim_lab.dynamics.activations.step_metrics``
turns it into metrics).

RoPE is the rotate-half (GPT-NeoX / HuggingFace) form with base
``rope_base``: channel pairs ``(i, i + head_dim/2)`` of position ``m`` are
rotated by ``m · rope_base^(-2i/head_dim)``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from optim_lab import _validation


def rope_angles(positions: jax.Array, head_dim: int, base: float = 10000.0
                ) -> tuple[jax.Array, jax.Array]:
    """``cos, sin`` of shape ``positions.shape + (head_dim // 2,)``."""
    inv_freq = base ** (-jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotates ``x`` ``(..., T, heads, head_dim)`` by its positions ``(T,)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.models.llama import apply_rope
        >>> x = jnp.ones((1, 3, 2, 4))
        >>> bool(jnp.allclose(apply_rope(x, jnp.arange(3))[:, 0], x[:, 0]))
        True
    """
    cos, sin = rope_angles(positions, x.shape[-1], base)
    cos, sin = cos[:, None, :].astype(x.dtype), sin[:, None, :].astype(x.dtype)
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _linear(din: int, dout: int, init_std: float, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(din, dout, use_bias=False, rngs=rngs,
                      kernel_init=nnx.initializers.normal(init_std))


def _fused(x: jax.Array, *layers: nnx.Linear) -> list[jax.Array]:
    """``[x @ W_i]`` as one matmul over the concatenated kernels."""
    kernel = jnp.concatenate([layer.kernel[...] for layer in layers], axis=1)
    return jnp.split(x @ kernel, len(layers), axis=-1)


class Attention(nnx.Module):
    """Causal multi-head self-attention with RoPE, no biases."""

    def __init__(self, d_model: int, num_heads: int, *, init_std: float,
                 rope_base: float, rngs: nnx.Rngs):
        self.num_heads, self.rope_base = num_heads, rope_base
        self.q_proj = _linear(d_model, d_model, init_std, rngs)
        self.k_proj = _linear(d_model, d_model, init_std, rngs)
        self.v_proj = _linear(d_model, d_model, init_std, rngs)
        self.o_proj = _linear(d_model, d_model, init_std, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        heads = lambda a: a.reshape(b, t, self.num_heads, d // self.num_heads)  # noqa: E731
        q, k, v = map(heads, _fused(x, self.q_proj, self.k_proj, self.v_proj))
        pos = jnp.arange(t)
        q, k = apply_rope(q, pos, self.rope_base), apply_rope(k, pos, self.rope_base)
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.num_heads)
        causal = pos[:, None] >= pos[None, :]
        probs = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, t, d)
        return self.o_proj(out)


class SwiGLU(nnx.Module):
    """``down(silu(gate(x)) * up(x))``, no biases."""

    def __init__(self, d_model: int, hidden: int, *, init_std: float, rngs: nnx.Rngs):
        self.gate_proj = _linear(d_model, hidden, init_std, rngs)
        self.up_proj = _linear(d_model, hidden, init_std, rngs)
        self.down_proj = _linear(hidden, d_model, init_std, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        gate, up = _fused(x, self.gate_proj, self.up_proj)
        return self.down_proj(jax.nn.silu(gate) * up)


class Block(nnx.Module):
    """Pre-RMSNorm attention and SwiGLU, each with a residual connection."""

    def __init__(self, d_model: int, num_heads: int, mlp_hidden: int, *,
                 init_std: float, rope_base: float, norm_eps: float, rngs: nnx.Rngs):
        self.attn_norm = nnx.RMSNorm(d_model, epsilon=norm_eps, rngs=rngs)
        self.attn = Attention(d_model, num_heads, init_std=init_std,
                              rope_base=rope_base, rngs=rngs)
        self.mlp_norm = nnx.RMSNorm(d_model, epsilon=norm_eps, rngs=rngs)
        self.mlp = SwiGLU(d_model, mlp_hidden, init_std=init_std, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.attn_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class ResidualMaxAbs(nnx.Variable):
    """max |x| of the residual stream in the last forward pass, float32 ``(L + 1,)``.

    Entry 0 is the embedding output, entry ``l`` the output of block ``l``
    (``layers_{l-1}``); the maximum runs over batch, position and channel.
    """


class Llama(nnx.Module):
    """LLaMA-style causal LM: int tokens ``(B, T)`` -> logits ``(B, T, vocab)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from optim_lab.models.llama import Llama
        >>> m = Llama(num_layers=2, d_model=16, num_heads=2, mlp_hidden=24,
        ...           context=8, vocab_size=11, rngs=nnx.Rngs(0))
        >>> m(jnp.zeros((3, 8), jnp.int32)).shape
        (3, 8, 11)
    """

    def __init__(self, *, num_layers: int = 4, d_model: int = 128, num_heads: int = 4,
                 mlp_hidden: int = 344, context: int = 128, vocab_size: int = 256,
                 init_std: float = 0.02, rope_base: float = 10000.0,
                 norm_eps: float = 1e-6, rngs: nnx.Rngs):
        for name, value, low in (("num_layers", num_layers, 1), ("d_model", d_model, 2),
                                 ("num_heads", num_heads, 1), ("mlp_hidden", mlp_hidden, 1),
                                 ("context", context, 1), ("vocab_size", vocab_size, 1)):
            _validation.check_int(f"model.{name}", value, low=low)
        if d_model % (2 * num_heads):
            raise ValueError(f"model.d_model ({d_model}) must be a multiple of "
                             f"2 * model.num_heads ({2 * num_heads}) for RoPE")
        _validation.check_positive("model.init_std", init_std)
        _validation.check_positive("model.rope_base", rope_base)
        _validation.check_positive("model.norm_eps", norm_eps)
        self.num_layers, self.context = num_layers, context
        self.embed = nnx.Embed(vocab_size, d_model, rngs=rngs,
                               embedding_init=nnx.initializers.normal(init_std))
        for i in range(num_layers):
            setattr(self, f"layers_{i}", Block(
                d_model, num_heads, mlp_hidden, init_std=init_std,
                rope_base=rope_base, norm_eps=norm_eps, rngs=rngs))
        self.norm = nnx.RMSNorm(d_model, epsilon=norm_eps, rngs=rngs)
        self.head = _linear(d_model, vocab_size, init_std, rngs)
        self.residual_max_abs: ResidualMaxAbs | None = None

    def enable_residual_probe(self) -> None:
        """From now on every forward pass stores max |x| of the residual stream
        in ``self.residual_max_abs`` (a :class:`ResidualMaxAbs`, initially zeros).

        Examples:
            >>> import jax.numpy as jnp
            >>> from flax import nnx
            >>> from optim_lab.models.llama import Llama
            >>> m = Llama(num_layers=2, d_model=16, num_heads=2, mlp_hidden=24,
            ...           context=8, vocab_size=11, rngs=nnx.Rngs(0))
            >>> m.enable_residual_probe()
            >>> _ = m(jnp.zeros((1, 8), jnp.int32))
            >>> m.residual_max_abs[...].shape
            (3,)
        """
        if self.residual_max_abs is None:
            self.residual_max_abs = nnx.data(ResidualMaxAbs(
                jnp.zeros((self.num_layers + 1,), jnp.float32)))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"Llama takes integer tokens, got {tokens.dtype} inputs "
                             "(for modular data use data.encoding='tokens')")
        if tokens.shape[-1] > self.context:
            raise ValueError(f"sequence length {tokens.shape[-1]} exceeds "
                             f"model.context = {self.context}")
        x = self.embed(tokens)
        peaks = [_max_abs(x)]
        for i in range(self.num_layers):
            x = getattr(self, f"layers_{i}")(x)
            peaks.append(_max_abs(x))
        if self.residual_max_abs is not None:
            self.residual_max_abs[...] = jax.lax.stop_gradient(jnp.stack(peaks))
        return self.head(self.norm(x))


def _max_abs(x: jax.Array) -> jax.Array:
    """``max |x|`` in float32 (exact: the maximum of any float dtype is one of its
    entries). Unused reductions are dropped when the probe is off."""
    return jnp.max(jnp.abs(x)).astype(jnp.float32)
