"""Residual-stream probe of the LLaMA LM (optim_lab/dynamics/activations.py)."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from experiments.configs import lm
from optim_lab import rundir
from optim_lab.dynamics import activations
from optim_lab.models import functional
from optim_lab.models.llama import Llama
from optim_lab.rescaling import tvr
from optim_lab.training import step as step_lib
from optim_lab.training import train
from optim_lab.training.state import TrainState

import binaries


def _model():
    return Llama(num_layers=3, d_model=16, num_heads=2, mlp_hidden=24, context=8,
                 vocab_size=11, rngs=nnx.Rngs(0))


def _tokens():
    return jax.random.randint(jax.random.key(1), (4, 8), 0, 11)


def _perturbed(params):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.05 * jax.random.normal(k, x.shape)
                                        for x, k in zip(leaves, keys)])


def test_recomputed_stream_gives_the_models_logits_bit_for_bit():
    model, tokens = _model(), _tokens()
    fn = functional.functionalize(model)
    params = _perturbed(fn.params)  # not the module's own weights
    stream, logits = activations.residual_stream(model, params, tokens)
    expected, _ = fn.apply(params, fn.model_state, tokens, False)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(expected))
    assert len(stream) == 4 and all(x.shape == (4, 8, 16) for x in stream)
    np.testing.assert_array_equal(np.asarray(stream[0]),
                                  np.asarray(params["embed"]["embedding"])[tokens])


def test_probe_is_max_and_median_of_the_stream():
    model, tokens = _model(), _tokens()
    params = _perturbed(functional.functionalize(model).params)
    out = jax.jit(lambda p, t: activations.residual_max_abs(model, p, t))(params, tokens)
    stream, _ = activations.residual_stream(model, params, tokens)
    names = activations.stream_names(3)
    for name, x in zip(names, stream):
        a = np.abs(np.asarray(x))
        assert float(out[f"act/{name}/max_abs"]) == a.max()
        assert float(out[f"act/{name}/median_abs"]) == pytest.approx(np.median(a), rel=1e-6)
    top = max(np.abs(np.asarray(x)).max() for x in stream[1:])
    assert float(out["act/max_abs"]) == top
    assert float(out["act/max_over_median"]) == pytest.approx(
        top / np.median(np.abs(np.asarray(stream[-1]))), rel=1e-6)


def test_blocks_with_zero_output_projections_are_the_identity():
    model, tokens = _model(), _tokens()
    params = functional.functionalize(model).params
    for i in range(3):
        block = params[f"layers_{i}"]
        block["attn"]["o_proj"]["kernel"] = jnp.zeros_like(block["attn"]["o_proj"]["kernel"])
        block["mlp"]["down_proj"]["kernel"] = jnp.zeros_like(
            block["mlp"]["down_proj"]["kernel"])
    out = activations.residual_max_abs(model, params, tokens)
    embed = float(out["act/embed/max_abs"])
    assert embed > 0
    assert [float(out[f"act/layers_{i}/max_abs"]) for i in range(3)] == [embed] * 3
    # and it scales with the embedding
    params["embed"]["embedding"] = 10.0 * params["embed"]["embedding"]
    scaled = activations.residual_max_abs(model, params, tokens)
    assert float(scaled["act/max_abs"]) == pytest.approx(10 * embed, rel=1e-6)


def test_needs_a_llama():
    with pytest.raises(TypeError, match="Llama"):
        activations.residual_stream(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), {}, _tokens())


# --- the per-step probe inside the training step ----------------------------------


def test_model_probe_equals_the_recomputed_stream_and_leaves_logits_unchanged():
    plain, probed, tokens = _model(), _model(), _tokens()
    probed.enable_residual_probe()
    fn, fn_probed = functional.functionalize(plain), functional.functionalize(probed)
    assert fn.model_state == {}  # off by default: no state, nothing computed
    params = _perturbed(fn.params)
    logits, state = fn_probed.apply(params, fn_probed.model_state, tokens, True)
    expected_logits, _ = fn.apply(params, fn.model_state, tokens, True)
    np.testing.assert_array_equal(np.asarray(logits), np.asarray(expected_logits))
    direct = activations.residual_max_abs(plain, params, tokens)
    got = activations.step_metrics(state)
    assert set(got) == {k for k in direct if k.endswith("max_abs")}
    for key, value in got.items():
        assert float(value) == float(direct[key]), key  # a max: exact


def test_train_step_logs_the_probe_of_its_own_forward():
    model, tokens = _model(), _tokens()
    plain = _model()
    model.enable_residual_probe()
    fn = functional.functionalize(model)
    params = _perturbed(fn.params)
    tx = optax.adamw(1e-2)
    train_step = jax.jit(step_lib.make_train_step(
        fn.apply, lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(
            logits, y).mean(-1), tx,
        [tvr.make_tvr_post_step(with_stats=True, target=0.01, interval=1)],
        state_metrics=activations.step_metrics_fn(fn.model_state)))
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       model_state=fn.model_state, opt_state=tx.init(params),
                       rng=jax.random.key(0))
    batch = (tokens, jnp.roll(tokens, -1, axis=1))
    for _ in range(2):  # the second step's forward sees the updated params
        before = state.params
        state, metrics = train_step(state, batch)
        direct = activations.residual_max_abs(plain, before, tokens)
        for key in ("act/max_abs", "act/embed/max_abs", "act/layers_2/max_abs"):
            assert float(metrics[key]) == float(direct[key]), key
        assert "tvr/num_fired" in metrics
    assert float(metrics["act/max_abs"]) > 0


def test_probe_needs_a_model_that_has_one():
    assert not activations.enable_step_probe(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    assert activations.step_metrics({}) == {}
    assert activations.step_metrics_fn({"mean": jnp.zeros(3)}) is None


@pytest.mark.slow  # a subprocess run: ~20 s on an idle 2-core machine, ~70 s loaded
def test_tiny_lm_binary_run_with_tvr_logs_the_probe_every_step(tmp_path):
    sizes = dict(num_layers=2, d_model=32, num_heads=2, mlp_hidden=64, context=16)
    flags = [f"--config.model.{k}={v}" for k, v in sizes.items()] + [
        "--config.data.context=16", f"--config.data.max_bytes={2 ** 16}",
        "--config.data.eval_windows=4", "--config.batch_size=4", "--config.steps=2",
        "--config.log_every=1", "--config.eval_every=2", "--config.checkpoint_every=2",
        "--config.model.init_std=0.006", "--config.rescaling.lir_base_std=0.006",
        "--config.rescaling.tvr_target=0.01", "--config.rescaling.tvr_interval=1"]
    binaries.run_ok("experiments.train", "--config=experiments/configs/lm.py",
                    f"--workdir={tmp_path / 'run'}", *flags)
    records = {r["step"]: r for r in rundir.read_metrics(tmp_path / "run")}
    assert all("act/max_abs" in records[s] and "tvr/num_fired" in records[s]
               for s in (1, 2))
    # step 1's value: the stream of the initial (LIR) params on step 0's batch
    c = lm.get_config()
    c.model.update(**sizes)
    c.data.update(context=16, max_bytes=2 ** 16, eval_windows=4)
    c.batch_size, c.steps = 4, 2
    c.model.init_std = c.rescaling.lir_base_std = 0.006
    c.rescaling.tvr_target, c.rescaling.tvr_interval = 0.01, 1
    data, fn, _, _ = train.setup(c)
    sampler = data.train_sampler()
    x, _ = sampler.fn(sampler.source, c.seed, jnp.zeros((), jnp.int32), c.batch_size)
    model = Llama(num_layers=2, d_model=32, num_heads=2, mlp_hidden=64, context=16,
                  vocab_size=256, rngs=nnx.Rngs(0))
    direct = activations.residual_max_abs(model, fn.params, x)
    for key in ("act/max_abs", "act/embed/max_abs", "act/layers_1/max_abs"):
        assert records[1][key] == float(direct[key]), key
    # without TVR the model carries no probe and logs none
    c.rescaling.tvr_target = c.rescaling.tvr_interval = None
    assert train.setup(c)[1].model_state == {}


def _tiny_lm_tvr_config(steps: int):
    c = lm.get_config()
    c.model.update(num_layers=2, d_model=32, num_heads=2, mlp_hidden=64, context=16)
    c.data.update(context=16, max_bytes=2 ** 16, eval_windows=4)
    c.batch_size, c.steps, c.log_every, c.eval_every, c.checkpoint_every = 4, steps, 1, 2, 2
    c.model.init_std = c.rescaling.lir_base_std = 0.006
    c.rescaling.tvr_target, c.rescaling.tvr_interval = 0.01, 3
    return c


@pytest.mark.slow  # three tiny LM runs
def test_lm_run_with_lir_tvr_and_the_probe_resumes_bit_identically(tmp_path):
    """4 steps straight == 2 + resume + 2 (the probe's state is checkpointed too)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_and_evaluate(_tiny_lm_tvr_config(4), straight, progress=False)
    train.train_and_evaluate(_tiny_lm_tvr_config(2), split, progress=False)
    train.train_and_evaluate(_tiny_lm_tvr_config(4), split, progress=False)
    a, b = rundir.read_metrics(straight), rundir.read_metrics(split)
    assert a == b and all("act/max_abs" in r for r in a if r["step"] > 0)
    sa = train.restore_state(_tiny_lm_tvr_config(4), straight)
    sb = train.restore_state(_tiny_lm_tvr_config(4), split)
    jax.tree.map(np.testing.assert_array_equal, (sa.params, sa.model_state),
                 (sb.params, sb.model_state))
    assert float(sa.model_state[activations.STATE_KEY][0]) > 0
