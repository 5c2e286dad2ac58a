"""The Fig. 6 grokking transformer (Prieto et al., ICLR 2025) in flax NNX.

A port of the reference's ``Transformer``: token embedding (vocab 113 for
a, b ∈ [1, 112]), **no positional embedding**, ``num_layers`` (one) PyTorch
``nn.TransformerEncoderLayer`` in its default configuration — post-LN, ReLU,
feed-forward 2048, 4 heads, no mask, LayerNorm ε 1e-5, biases, and dropout 0.1
on the attention probabilities, after the attention block, inside the
feed-forward block and after it — then a linear head applied at the **last
position**: tokens ``(B, S)`` -> logits ``(B, num_classes)``. Without
positions attention is permutation-equivariant, which is harmless for the
commutative a + b and kept for fidelity.

Parameters start as PyTorch's defaults: embedding N(0, 1); the fused q/k/v
``in_proj`` kernel Xavier-uniform with zero bias; ``out_proj`` kernel
U(±1/√fan_in) with zero bias; the feed-forward and head layers U(±1/√fan_in)
for kernels and biases; LayerNorms 1 / 0.

Dropout needs a key in training: ``model(tokens, rng=key)``, with the key a
pure function of ``(seed, step)`` (the training step passes
``jax.random.fold_in(state.rng, state.step)``) so a resumed run draws the same
masks. In training mode without a key (and ``dropout > 0``) the call raises; in
evaluation mode (``model.eval()``) dropout is off and the key is ignored.

Reference: Prieto et al., `Grokking at the Edge of Numerical Stability
<https://arxiv.org/abs/2501.04697>`_, ICLR 2025, Fig. 6.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from optim_lab import _validation
from optim_lab.models.mlp import _torch_bias_init

_TORCH_KERNEL = nnx.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def _torch_linear(din: int, dout: int, rngs: nnx.Rngs, *, zero_bias: bool = False,
                  kernel_init=_TORCH_KERNEL) -> nnx.Linear:
    bias_init = nnx.initializers.zeros if zero_bias else _torch_bias_init(din)
    return nnx.Linear(din, dout, kernel_init=kernel_init, bias_init=bias_init,
                      rngs=rngs)


class SelfAttention(nnx.Module):
    """``nn.MultiheadAttention`` (batch first, no mask) with attention dropout."""

    def __init__(self, d_model: int, num_heads: int, dropout: float, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.in_proj = _torch_linear(d_model, 3 * d_model, rngs, zero_bias=True,
                                     kernel_init=nnx.initializers.xavier_uniform())
        self.out_proj = _torch_linear(d_model, d_model, rngs, zero_bias=True)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, rng: jax.Array | None) -> jax.Array:
        b, s, d = x.shape
        q, k, v = (a.reshape(b, s, self.num_heads, d // self.num_heads)
                   for a in jnp.split(self.in_proj(x), 3, axis=-1))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // self.num_heads)
        probs = self.dropout(jax.nn.softmax(scores, axis=-1), rngs=rng)
        return self.out_proj(jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, s, d))


class EncoderLayer(nnx.Module):
    """Post-LN ``nn.TransformerEncoderLayer`` (ReLU, dropout in four places)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float, *,
                 rngs: nnx.Rngs):
        self.self_attn = SelfAttention(d_model, num_heads, dropout, rngs=rngs)
        self.linear1 = _torch_linear(d_model, ff_dim, rngs)
        self.linear2 = _torch_linear(ff_dim, d_model, rngs)
        self.norm1 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
        self.norm2 = nnx.LayerNorm(d_model, epsilon=1e-5, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.dropout1 = nnx.Dropout(dropout)
        self.dropout2 = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, rng: jax.Array | None) -> jax.Array:
        keys = [None] * 4 if rng is None else list(jax.random.split(rng, 4))
        x = self.norm1(x + self.dropout1(self.self_attn(x, keys[0]), rngs=keys[1]))
        ff = self.linear2(self.dropout(jax.nn.relu(self.linear1(x)), rngs=keys[2]))
        return self.norm2(x + self.dropout2(ff, rngs=keys[3]))


class GrokkingTransformer(nnx.Module):
    """Tokens ``(B, S)`` in ``[0, vocab_size)`` -> logits ``(B, num_classes)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from optim_lab.models.grokking_transformer import GrokkingTransformer
        >>> m = GrokkingTransformer(vocab_size=7, num_classes=7, d_model=8,
        ...                         num_heads=2, ff_dim=16, rngs=nnx.Rngs(0))
        >>> m.eval()
        >>> m(jnp.ones((3, 2), jnp.int32)).shape
        (3, 7)
    """

    def __init__(self, *, vocab_size: int = 113, num_classes: int = 113,
                 d_model: int = 128, num_heads: int = 4, ff_dim: int = 2048,
                 num_layers: int = 1, dropout: float = 0.1, rngs: nnx.Rngs):
        for name, value in (("vocab_size", vocab_size), ("num_classes", num_classes),
                            ("d_model", d_model), ("num_heads", num_heads),
                            ("ff_dim", ff_dim), ("num_layers", num_layers)):
            _validation.check_int(f"model.{name}", value, low=1)
        if d_model % num_heads:
            raise ValueError(f"model.d_model ({d_model}) must be a multiple of "
                             f"model.num_heads ({num_heads})")
        _validation.check_range("model.dropout", dropout, 0.0, 1.0, high_inclusive=False)
        self.num_layers, self.rate = num_layers, dropout
        self.embedding = nnx.Embed(vocab_size, d_model, rngs=rngs,
                                   embedding_init=nnx.initializers.normal(1.0))
        for i in range(num_layers):
            setattr(self, f"layers_{i}",
                    EncoderLayer(d_model, num_heads, ff_dim, dropout, rngs=rngs))
        self.head = _torch_linear(d_model, num_classes, rngs)

    def __call__(self, tokens: jax.Array, *, rng: jax.Array | None = None) -> jax.Array:
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(f"GrokkingTransformer takes integer tokens, got "
                             f"{tokens.dtype} inputs (for modular data use "
                             "data.encoding='tokens')")
        training = not self.layers_0.dropout.deterministic and self.rate > 0
        if training and rng is None:
            raise ValueError("GrokkingTransformer uses dropout in training: pass "
                             "rng= (the training step's fold_in(state.rng, step)) "
                             "or call model.eval()")
        keys = (list(jax.random.split(rng, self.num_layers)) if training
                else [None] * self.num_layers)
        x = self.embedding(tokens)
        for i in range(self.num_layers):
            x = getattr(self, f"layers_{i}")(x, keys[i])
        return self.head(x[:, -1])
