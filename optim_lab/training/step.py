"""The pure, jitted training and evaluation steps.

``make_train_step`` returns ``step(state, batch) -> (state, metrics)``: the
optimizer is called as ``tx.update(grads, opt_state, params, value=loss)`` so
Polyak-type transforms receive the loss, post-step parameter transforms
``(params, step) -> params`` run inside the step, and a step whose loss,
gradient, update (or post-step params) is not finite leaves params and
optimizer state untouched (counted in ``train/nonfinite``; which part went
non-finite is the bit code ``train/nonfinite_code``) instead of poisoning
them. ``state_metrics(model_state)`` adds metrics that the loss forward left
in the model state (e.g. the residual-stream max |activation| probe). Per-step metrics are cheap
reductions (loss, gradient L1/L2, max |update|, effective step per leaf);
accuracies come from the full-set evaluation, which keeps the step within
~4 % of a bare jitted loop (``benchmarks/train_step.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from optim_lab import _numerics
from optim_lab.dynamics import alignment
from optim_lab.dynamics import collapse
from optim_lab.dynamics import curvature
from optim_lab.dynamics import norms
from optim_lab.training.state import TrainState

# ``(params, step) -> params``, or ``-> (params, metrics)`` to log flat scalar
# metrics of its own (e.g. TVR's per-layer statistics).
PostStep = Callable[[Any, jax.Array], Any]

NONFINITE_CODE = "train/nonfinite_code"  # bit i set: NONFINITE_PARTS[i] not finite
NONFINITE_PARTS = ("loss", "gradients", "updates", "params")


def describe_nonfinite(code: float) -> str:
    """Names the parts flagged in a step's ``NONFINITE_CODE`` (e.g. "loss, gradients")."""
    bits = int(code)
    return ", ".join(p for i, p in enumerate(NONFINITE_PARTS) if bits >> i & 1) or "none"


def _accuracy(logits, labels):
    """Fraction of correct predictions, exactly 1.0 when all are correct.

    ``jnp.mean`` multiplies by a rounded 1/n (so does XLA for ``count / n``):
    5 017 correct of 5 017 gave 0.99999994, and "train accuracy 100 %" never
    happened. Every other value is within an ulp of count / n.
    """
    correct = jnp.sum(jnp.argmax(logits, -1) == labels, dtype=jnp.int32)
    return jnp.where(correct == labels.size, jnp.float32(1),
                     correct.astype(jnp.float32) / labels.size)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.stack(leaves).all() if leaves else jnp.array(True)


def _tree_max_abs(tree) -> jax.Array:
    leaves = [jnp.max(jnp.abs(_numerics.upcast(x))) for x in jax.tree.leaves(tree)]
    return jnp.max(jnp.stack(leaves)) if leaves else jnp.zeros((), jnp.float32)


def _state_scalars(opt_state, fields: Sequence[str]) -> dict[str, jax.Array]:
    """``opt/<field>`` for the first scalar state field of each given name."""
    out = {}
    for name in fields:
        found = optax.tree_utils.tree_get_all_with_path(opt_state, name)
        scalars = [v for _, v in found if jnp.ndim(v) == 0]
        if scalars:
            out[f"opt/{name}"] = jnp.asarray(scalars[0], jnp.float32)
    return out


def make_train_step(apply: Callable, loss_fn: Callable,
                    tx: optax.GradientTransformationExtraArgs,
                    post_step: Sequence[PostStep] = (),
                    log_state_fields: Sequence[str] = (),
                    state_metrics: Callable[[Any], dict[str, jax.Array]] | None = None):
    """Builds ``step(state, (x, y)) -> (state, metrics)`` (not yet jitted).

    ``apply(params, model_state, x, train, rng=None)`` is the model's pure
    forward (:mod:`optim_lab.models.functional`); the step passes
    ``rng = fold_in(state.rng, state.step)`` so stochastic layers (dropout)
    are a pure function of (seed, step) and resume exactly.
    ``state_metrics`` maps the new model state of the loss forward (before
    the update, on this step's batch) to extra metrics.
    """

    def objective(params, model_state, x, y, rng):
        logits, new_model_state = apply(params, model_state, x, True, rng=rng)
        per_example = loss_fn(logits, y)
        return jnp.mean(per_example), new_model_state

    def step(state: TrainState, batch) -> tuple[TrainState, dict[str, jax.Array]]:
        x, y = batch
        rng = jax.random.fold_in(state.rng, state.step)  # dropout: f(seed, step)
        (loss, model_state), grads = jax.value_and_grad(
            objective, has_aux=True)(state.params, state.model_state, x, y, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params,
                                       value=loss)
        params = optax.apply_updates(state.params, updates)
        post_metrics = {}
        for fn in post_step:
            out = fn(params, state.step + 1)
            if isinstance(out, tuple):
                out, extra = out
                post_metrics.update(extra)
            params = out
        grad_l1 = _numerics.tree_abs_sum(grads)
        update_max = _tree_max_abs(updates)
        # One finiteness test reusing the metrics' reductions: a NaN/inf
        # anywhere in the gradient makes its L1 norm non-finite (as does a
        # gradient whose L1 norm overflows float32), and likewise the updates.
        bad = [~jnp.isfinite(loss), ~jnp.isfinite(grad_l1), ~jnp.isfinite(update_max),
               ~_all_finite(params) if post_step else jnp.array(False)]
        ok = ~(bad[0] | bad[1] | bad[2] | bad[3])
        keep = lambda new, old: jax.tree.map(  # noqa: E731
            lambda a, b: jnp.where(ok, a, b), new, old)
        new_state = TrainState(
            step=state.step + 1,
            params=keep(params, state.params),
            model_state=keep(model_state, state.model_state),
            opt_state=keep(opt_state, state.opt_state),
            rng=state.rng)
        delta = jax.tree.map(jnp.subtract, new_state.params, state.params)
        metrics = {
            "train/loss": loss.astype(jnp.float32),
            "train/nonfinite": 1.0 - ok.astype(jnp.float32),
            NONFINITE_CODE: sum(b.astype(jnp.float32) * 2.0 ** i for i, b in enumerate(bad)),
            "grads/global/l2": jnp.sqrt(_numerics.tree_sq_norm(grads)),
            "grads/global/l1": grad_l1,
            "updates/global/max_abs": update_max,
            **norms.effective_step(delta, state.params),
            **_state_scalars(opt_state, log_state_fields),
            **post_metrics,
            **(state_metrics(model_state) if state_metrics else {}),
        }
        return new_state, metrics

    return step


def make_eval_step(apply: Callable, loss_fn: Callable,
                   collapse_dtype: jnp.dtype, hessian_iters: int = 0):
    """Builds ``eval(params, model_state, data) -> metrics`` (not yet jitted).

    Full-batch forward passes in eval mode on train and test sets, plus the
    probes on the training set: Softmax-Collapse fraction (in
    ``collapse_dtype``), zero-loss fraction under the active loss, max
    |logit|, gradient/weight cosines (full training gradient) and parameter
    norms; with ``hessian_iters > 0`` also the top Hessian eigenvalue of the
    training loss (HVP power iteration).
    """

    def split_metrics(params, model_state, x, y, prefix):
        logits, _ = apply(params, model_state, x, False)
        per_example = loss_fn(logits, y)
        return logits, per_example, {
            f"{prefix}/loss": jnp.mean(per_example).astype(jnp.float32),
            f"{prefix}/accuracy": _accuracy(logits, y)}

    def train_loss(params, model_state, x, y):
        logits, _ = apply(params, model_state, x, False)
        return jnp.mean(loss_fn(logits, y))

    def evaluate(params, model_state, data) -> dict[str, jax.Array]:
        train_x, train_y, test_x, test_y = data
        logits, per_example, out = split_metrics(params, model_state, train_x,
                                                 train_y, "train")
        _, _, test = split_metrics(params, model_state, test_x, test_y, "test")
        grads = jax.grad(train_loss)(params, model_state, train_x, train_y)
        extra = {}
        if hessian_iters:
            extra["probe/hessian_top_eig"] = curvature.top_hessian_eigenvalue(
                lambda p: train_loss(p, model_state, train_x, train_y), params,
                jax.random.key(0), hessian_iters)
        return {
            **extra,
            **out, **test,
            "probe/softmax_collapse": collapse.softmax_collapse_frac(
                logits, collapse_dtype),
            "probe/zero_loss": collapse.zero_loss_frac(per_example),
            "probe/max_logit": jnp.max(jnp.abs(logits)).astype(jnp.float32),
            **alignment.grad_weight_cosine(grads, params),
            **norms.tree_norms(params, "params"),
        }

    return evaluate
