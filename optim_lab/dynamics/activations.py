r"""Residual-stream activation probe of the LLaMA-style LM (``optim_lab.models.llama``).

The weight-rescaling paper reports the *top activation magnitude* of the
residual stream (≈ 2000 → ≈ 200 with TVR at 1 B scale). This probe recomputes
the stream of :class:`~optim_lab.models.llama.Llama` on given params, block by
block, exactly as ``Llama.__call__`` does (embedding, then ``layers_0`` ...
``layers_{L-1}``), so no model change (``nnx.sow``) is needed:

.. math::
    x_0 = \operatorname{embed}(\text{tokens}), \qquad
    x_l = \operatorname{block}_l(x_{l-1}), \quad l = 1..L,

and reports, per stream point, :math:`\max |x_l|` and the median of
:math:`|x_l|` over all batch, position and channel entries, plus the overall
maximum and its ratio to the median of the last block's output (the
"massive activation" measure: a few entries far above the typical one). The
final norm and head then give the model's logits bit for bit
(:func:`residual_stream` returns them too, so callers can check that).

During training the same maxima come without a second forward pass: a model
with :meth:`~optim_lab.models.llama.Llama.enable_residual_probe` stores them
in its model state on every forward, and :func:`step_metrics` reads them from
the model state that the training step's loss forward returns (the
statistics of the training batch, before that step's update).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from optim_lab import _numerics
from optim_lab.models import llama as llama_lib


def with_params(model: llama_lib.Llama, params: Any) -> llama_lib.Llama:
    """A copy of ``model`` holding ``params`` (a pure dict, e.g. a checkpoint's)."""
    graphdef, state, rest = nnx.split(model, nnx.Param, ...)
    state = jax.tree.map(lambda v: v, state)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state, rest, copy=True)


def residual_stream(model: llama_lib.Llama, params: Any, tokens: jax.Array
                    ) -> tuple[list[jax.Array], jax.Array]:
    """``([x_0, x_1, ..., x_L], logits)`` of ``model`` with ``params`` on ``tokens``.

    ``x_0`` is the embedding output and ``x_l`` the output of block ``l``
    (``layers_{l-1}``), each ``(B, T, d_model)``; ``logits`` are what
    ``model(tokens)`` returns for these params.

    Raises:
        TypeError: ``model`` is not a :class:`~optim_lab.models.llama.Llama`.
    """
    if not isinstance(model, llama_lib.Llama):
        raise TypeError(f"residual_stream needs an optim_lab Llama model, got "
                        f"{type(model).__name__}")
    m = with_params(model, params)
    x = m.embed(tokens)
    stream = [x]
    for i in range(m.num_layers):
        x = getattr(m, f"layers_{i}")(x)
        stream.append(x)
    return stream, m.head(m.norm(x))


def stream_names(num_layers: int) -> list[str]:
    """``["embed", "layers_0", ..., "layers_{L-1}"]``: the stream points' names."""
    return ["embed"] + [f"layers_{i}" for i in range(num_layers)]


def residual_max_abs(model: llama_lib.Llama, params: Any, tokens: jax.Array
                     ) -> dict[str, jax.Array]:
    """Max and median ``|activation|`` of the residual stream (float32 scalars).

    Returns:
        ``act/<point>/max_abs`` and ``act/<point>/median_abs`` for each point
        of :func:`stream_names` (``layers_i`` = the output of block i + 1),
        ``act/max_abs`` (the maximum over blocks, embedding excluded) and
        ``act/max_over_median`` (that maximum over the median |x| of the last
        block's output).

    Examples:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> from optim_lab.dynamics.activations import residual_max_abs
        >>> from optim_lab.models.llama import Llama
        >>> m = Llama(num_layers=2, d_model=16, num_heads=2, mlp_hidden=24,
        ...           context=8, vocab_size=11, rngs=nnx.Rngs(0))
        >>> params = nnx.to_pure_dict(nnx.state(m, nnx.Param))
        >>> out = residual_max_abs(m, params, jnp.zeros((2, 8), jnp.int32))
        >>> sorted(k for k in out if k.endswith("max_abs"))
        ['act/embed/max_abs', 'act/layers_0/max_abs', 'act/layers_1/max_abs', 'act/max_abs']
    """
    stream, _ = residual_stream(model, params, tokens)
    out = {}
    for name, x in zip(stream_names(len(stream) - 1), stream):
        a = jnp.abs(_numerics.upcast(x))
        out[f"act/{name}/max_abs"] = jnp.max(a).astype(jnp.float32)
        out[f"act/{name}/median_abs"] = jnp.median(a).astype(jnp.float32)
    top = jnp.max(jnp.stack([jnp.max(jnp.abs(_numerics.upcast(x))) for x in stream[1:]]))
    last_median = out[f"act/layers_{len(stream) - 2}/median_abs"]
    out["act/max_abs"] = top.astype(jnp.float32)
    out["act/max_over_median"] = _numerics.safe_div(top, last_median).astype(jnp.float32)
    return out


STATE_KEY = "residual_max_abs"  # the probe's entry in a model's pure model state


def enable_step_probe(model: Any) -> bool:
    """Turns on the in-forward residual probe of ``model`` if it has one.

    Returns whether it did (a :class:`~optim_lab.models.llama.Llama` has one;
    other models are left as they are).
    """
    enable = getattr(model, "enable_residual_probe", None)
    if enable is None:
        return False
    enable()
    return True


def step_metrics(model_state: Any) -> dict[str, jax.Array]:
    """The probe's metrics from a forward pass's new model state ({} without it).

    ``act/<point>/max_abs`` for each point of :func:`stream_names` and
    ``act/max_abs`` (maximum over the blocks, embedding excluded): the same
    keys and values as :func:`residual_max_abs` on the forward's tokens.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.dynamics.activations import step_metrics
        >>> out = step_metrics({"residual_max_abs": jnp.array([0.5, 2.0, 1.0])})
        >>> float(out["act/max_abs"]), float(out["act/layers_1/max_abs"])
        (2.0, 1.0)
    """
    if not isinstance(model_state, Mapping) or STATE_KEY not in model_state:
        return {}
    peaks = jnp.asarray(model_state[STATE_KEY], jnp.float32)
    out = {f"act/{name}/max_abs": peaks[i]
           for i, name in enumerate(stream_names(peaks.shape[-1] - 1))}
    out["act/max_abs"] = jnp.max(peaks[1:])
    return out


def step_metrics_fn(model_state: Any) -> Callable[[Any], dict[str, jax.Array]] | None:
    """:func:`step_metrics` if ``model_state`` holds the probe, else None."""
    return step_metrics if step_metrics(model_state) else None
