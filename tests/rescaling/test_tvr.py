"""tvr / tvr_with_stats / make_tvr_post_step: exact math against a NumPy float64
reimplementation, thresholds and modes, eligibility and masks, edge cases,
firing schedule under jit (no recompilation), resume, bf16, stacked layers,
diagnostics and invalid arguments.

Tolerances are in units of float32 eps (TOL = 8 eps). The rescale is a
handful of float32 operations on statistics that are themselves float32
reductions (error budget in ``_assert_matches_np``); measured errors on the
main case are <= 0.7 eps (std relative) and <= 0.4 eps * target (mean shift)
over 20 seeds, so 8 eps leaves room for other CPUs' reduction orders.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optim_lab
from optim_lab.rescaling import tvr as tvr_lib

EPS = float(np.finfo(np.float32).eps)
TOL = 8 * EPS


def _matrix(std, shape=(64, 96), mean=0.003, seed=0, dtype=jnp.float32):
    return (mean + std * jax.random.normal(jax.random.key(seed), shape)).astype(dtype)


def _np_tvr(w, target_l, threshold=1.2, two_sided=False):
    """The reference rule in float64: (new matrix, rescaled?)."""
    w = np.asarray(w, np.float64)
    mu, sd = w.mean(), w.std(ddof=1)
    do = sd / target_l > threshold or (two_sided and 0 < sd < target_l / threshold)
    return ((w - mu) * target_l / sd + mu if do else w), do


def _assert_matches_np(out, w, target_l, **kw):
    """``out`` equals the float64 rule up to the float32 rounding budget.

    out = (w - mu)*s + mu with s = target/sigma: a float32 mean is off by
    ~eps*(|mu| + sigma), which moves the output by that times (1 + s); sigma's
    relative error and the final rounding add ~eps*|out - mu| and eps*|out|.
    """
    ref, do = _np_tvr(w, target_l, **kw)
    out, w = np.asarray(out, np.float64), np.asarray(w, np.float64)
    mu, sd = w.mean(), w.std(ddof=1)
    s = target_l / sd if do else 1.0
    bound = TOL * ((abs(mu) + sd) * (1 + s) + np.abs(ref - mu) + np.abs(ref))
    np.testing.assert_array_less(np.abs(out - ref), bound + 1e-45)
    return do


def _params(w, **extra):
    return {"layers_0": {"attn": {"kernel": w}}, **extra}


def test_exact_rescale_math_against_numpy_float64():
    w = _matrix(0.05)
    out = optim_lab.tvr(_params(w), 50)["layers_0"]["attn"]["kernel"]
    assert out.dtype == jnp.float32
    assert _assert_matches_np(out, w, 0.01)
    out64, w64 = np.asarray(out, np.float64), np.asarray(w, np.float64)
    # The spec's bounds (std = target +- 1e-6, mean +- 1e-7) and the eps-level ones.
    assert abs(out64.std(ddof=1) - 0.01) <= 1e-6
    assert abs(out64.mean() - w64.mean()) <= 1e-7
    assert abs(out64.std(ddof=1) / 0.01 - 1) <= TOL
    assert abs(out64.mean() - w64.mean()) <= TOL * 0.01


def test_sibling_bias_zeroed_only_when_kernel_rescaled():
    params = {"layers_0": {"up": {"kernel": _matrix(0.05), "bias": jnp.ones(96)},
                           "down": {"kernel": _matrix(0.005), "bias": jnp.ones(96)}}}
    out = optim_lab.tvr(params, 50)["layers_0"]
    np.testing.assert_array_equal(out["up"]["bias"], 0.0)
    np.testing.assert_array_equal(out["down"]["bias"], 1.0)
    np.testing.assert_array_equal(out["down"]["kernel"], params["layers_0"]["down"]["kernel"])


@pytest.mark.parametrize("std", [0.0115, 0.01, 0.005, 0.0001])
def test_one_sided_below_threshold_is_bit_identical(std):
    w = _matrix(std, mean=0.0)
    out = optim_lab.tvr(_params(w), 50)
    np.testing.assert_array_equal(out["layers_0"]["attn"]["kernel"], w)
    jitted = jax.jit(optim_lab.tvr)(_params(w), jnp.int32(50))
    np.testing.assert_array_equal(jitted["layers_0"]["attn"]["kernel"], w)


@pytest.mark.parametrize("std,lifted", [(0.005, True), (0.0001, True),
                                        (0.009, False), (0.0115, False)])
def test_two_sided_lifts_only_below_target_over_threshold(std, lifted):
    w = _matrix(std, mean=0.0)
    out = optim_lab.tvr(_params(w), 50, mode="two_sided")["layers_0"]["attn"]["kernel"]
    assert _assert_matches_np(out, w, 0.01, two_sided=True) == lifted
    if not lifted:
        np.testing.assert_array_equal(out, w)
    else:
        assert abs(np.asarray(out, np.float64).std(ddof=1) / 0.01 - 1) <= TOL


@pytest.mark.parametrize("threshold,std,fires", [
    (1.0, 0.0105, True), (1.2, 0.0105, False),
    (1.0, 0.0125, True), (1.2, 0.0125, True),
])
def test_thresholds_one_and_one_point_two(threshold, std, fires):
    w = _matrix(std, mean=0.0, shape=(256, 256))
    out = optim_lab.tvr(_params(w), 50, threshold=threshold)["layers_0"]["attn"]["kernel"]
    assert _assert_matches_np(out, w, 0.01, threshold=threshold) == fires
    if not fires:
        np.testing.assert_array_equal(out, w)


def test_idempotent():
    params = _params(_matrix(0.05))
    once = optim_lab.tvr(params, 50)
    twice = optim_lab.tvr(once, 50)
    jax.tree.map(np.testing.assert_array_equal, once, twice)  # thr 1.2: bit-identical
    # thr 1.0: a matrix one rounding above the target may be rescaled again,
    # by an amount at the rounding level.
    once = optim_lab.tvr(params, 50, threshold=1.0)["layers_0"]["attn"]["kernel"]
    twice = optim_lab.tvr(_params(once), 50, threshold=1.0)["layers_0"]["attn"]["kernel"]
    np.testing.assert_allclose(twice, once, rtol=0, atol=TOL * float(jnp.max(jnp.abs(once))))


def test_defaults_match_the_spec():
    for fn in (optim_lab.tvr, optim_lab.tvr_with_stats):
        sig = inspect.signature(fn).parameters
        assert sig["target"].default == 0.01
        assert sig["interval"].default == 50
        assert sig["threshold"].default == 1.2
        assert sig["scale_with_depth"].default is False
        assert sig["mode"].default == "one_sided"
        assert sig["anchor"].default == "absolute"


def test_scale_with_depth_targets_target_over_sqrt_l():
    ws = {f"layers_{i}": {"mlp": {"kernel": _matrix(0.05, seed=i)}} for i in range(4)}
    plain = optim_lab.tvr(ws, 50)
    deep = optim_lab.tvr(ws, 50, scale_with_depth=True)
    for i in range(4):
        w = ws[f"layers_{i}"]["mlp"]["kernel"]
        assert _assert_matches_np(deep[f"layers_{i}"]["mlp"]["kernel"], w,
                                  0.01 / math.sqrt(i + 1))
        assert _assert_matches_np(plain[f"layers_{i}"]["mlp"]["kernel"], w, 0.01)


def test_scale_with_depth_threshold_uses_the_layer_target():
    """std 0.007: below 1.2 * 0.01 but above 1.2 * 0.01 / sqrt(4) in block 4."""
    ws = {f"layers_{i}": {"kernel": _matrix(0.007, seed=i, mean=0.0)} for i in (0, 3)}
    out = optim_lab.tvr(ws, 50, scale_with_depth=True)
    np.testing.assert_array_equal(out["layers_0"]["kernel"], ws["layers_0"]["kernel"])
    assert _assert_matches_np(out["layers_3"]["kernel"], ws["layers_3"]["kernel"], 0.005)


def _model_like():
    big = lambda seed, shape=(32, 48): _matrix(0.5, shape, seed=seed)  # noqa: E731
    return {"embed": {"embedding": big(1, (50, 32))},
            "head": {"kernel": big(2, (32, 50))},
            "norm": {"scale": 1.0 + _matrix(0.5, (32,), seed=3)},
            "layers_0": {"attn": {"kernel": big(4)}, "mlp": {"kernel": big(5)},
                         "attn_norm": {"scale": 1.0 + _matrix(0.5, (32,), seed=6)}},
            "layers_1": {"attn": {"kernel": big(7)}, "mlp": {"kernel": big(8)}}}


def test_only_block_matrices_rescaled_others_untouched_but_logged():
    params = _model_like()
    out, stats = optim_lab.tvr_with_stats(params, 50)
    for block in ("layers_0", "layers_1"):
        for name in ("attn", "mlp"):
            assert _assert_matches_np(out[block][name]["kernel"],
                                      params[block][name]["kernel"], 0.01)
            assert float(stats[f"tvr/{block}/{name}/kernel/fired"]) == 1.0
    for path in ("embed/embedding", "head/kernel", "norm/scale", "layers_0/attn_norm/scale"):
        a, b = params, out
        for key in path.split("/"):
            a, b = a[key], b[key]
        np.testing.assert_array_equal(a, b)
        x = np.asarray(a, np.float64)
        assert abs(float(stats[f"tvr/{path}/std"]) / x.std(ddof=1) - 1) <= TOL
        assert f"tvr/{path}/fired" not in stats
    assert float(stats["tvr/num_fired"]) == 4.0 and float(stats["tvr/check"]) == 1.0


@pytest.mark.parametrize("as_callable", [False, True])
def test_mask_overrides_eligibility(as_callable):
    params = _model_like()
    mask = jax.tree.map(lambda _: False, params)
    mask["layers_1"]["mlp"]["kernel"] = True
    mask["embed"] = True  # a prefix; mask overrides the default (embeddings excluded)
    out = optim_lab.tvr(params, 50, mask=(lambda p: mask) if as_callable else mask)
    assert _assert_matches_np(out["layers_1"]["mlp"]["kernel"],
                              params["layers_1"]["mlp"]["kernel"], 0.01)
    assert _assert_matches_np(out["embed"]["embedding"], params["embed"]["embedding"], 0.01)
    for block, name in (("layers_0", "attn"), ("layers_0", "mlp"), ("layers_1", "attn")):
        np.testing.assert_array_equal(out[block][name]["kernel"],
                                      params[block][name]["kernel"])


@pytest.mark.parametrize("mode", ["one_sided", "two_sided"])
def test_zero_and_one_by_one_matrices_pass_unchanged_without_nan(mode):
    params = {"layers_0": {"zero": {"kernel": jnp.zeros((8, 8)), "bias": jnp.ones(8)},
                           "const": {"kernel": jnp.full((4, 4), 0.3)},
                           "tiny": {"kernel": jnp.full((1, 1), 5.0)}}}
    for step in (50, jnp.int32(50)):
        out, stats = jax.jit(lambda p, s: optim_lab.tvr_with_stats(p, s, mode=mode))(
            params, step) if not isinstance(step, int) else optim_lab.tvr_with_stats(
            params, step, mode=mode)
        jax.tree.map(np.testing.assert_array_equal, out, params)
        assert all(np.isfinite(float(v)) for v in stats.values())
        assert float(stats["tvr/layers_0/zero/kernel/std"]) == 0.0
        assert float(stats["tvr/num_fired"]) == 0.0
        assert not any("tiny" in k for k in stats)  # 1x1: ddof=1 std undefined


def _fired_steps(fn, params, steps):
    w = params["layers_0"]["attn"]["kernel"]
    return [int(s) for s in steps
            if not np.array_equal(fn(params, s)["layers_0"]["attn"]["kernel"], w)]


def test_fires_at_multiples_of_interval_in_jit_without_recompiling():
    traces = []

    def post(params, step):
        traces.append(1)
        return optim_lab.tvr(params, step)

    fn = jax.jit(post)
    params = _params(_matrix(0.05))
    steps = [jnp.int32(s) for s in range(0, 161)]
    assert _fired_steps(fn, params, steps) == [50, 100, 150]
    assert len(traces) == 1
    assert "cond" in str(jax.make_jaxpr(post)(params, jnp.int32(3)))
    # Python-int steps branch in Python and agree.
    assert _fired_steps(optim_lab.tvr, params, range(0, 161)) == [50, 100, 150]


def test_post_step_factory_traces_once_and_validates_eagerly():
    post = optim_lab.make_tvr_post_step(interval=7, target=0.02)
    traces = []
    fn = jax.jit(lambda p, s: (traces.append(1), post(p, s))[1])
    params = _params(_matrix(0.05))
    assert _fired_steps(fn, params, [jnp.int32(s) for s in range(30)]) == [7, 14, 21, 28]
    assert len(traces) == 1
    out, stats = optim_lab.make_tvr_post_step(with_stats=True)(params, 50)
    assert float(stats["tvr/num_fired"]) == 1.0


def test_inside_lax_scan_over_steps():
    params = _params(_matrix(0.05))

    def body(p, s):
        p = jax.tree.map(lambda x: x * 1.01, p)  # a stand-in optimizer step
        return optim_lab.tvr(p, s, interval=4), None

    out, _ = jax.lax.scan(body, params, jnp.arange(1, 9))
    w = params["layers_0"]["attn"]["kernel"]
    expect = optim_lab.tvr(_params(w * 1.01 ** 4), 4, interval=4)["layers_0"]["attn"]["kernel"]
    expect = expect * 1.01 ** 4
    expect = optim_lab.tvr(_params(expect), 8, interval=4)["layers_0"]["attn"]["kernel"]
    np.testing.assert_allclose(out["layers_0"]["attn"]["kernel"], expect, rtol=0,
                               atol=TOL * 0.05)


@pytest.mark.parametrize("traced", [False, True])
def test_resume_anchor_fires_interval_after_resume(traced):
    params = _params(_matrix(0.05))
    r = jnp.int32(37) if traced else 37
    fn = jax.jit(lambda p, s: optim_lab.tvr(p, s, interval=10, anchor="resume",
                                            resume_step=r))
    steps = [jnp.int32(s) for s in range(30, 80)]
    assert _fired_steps(fn, params, steps) == [47, 57, 67, 77]
    absolute = jax.jit(lambda p, s: optim_lab.tvr(p, s, interval=10, resume_step=37))
    assert _fired_steps(absolute, params, steps) == [30, 40, 50, 60, 70]
    fresh = jax.jit(lambda p, s: optim_lab.tvr(p, s, interval=10, anchor="resume"))
    assert _fired_steps(fresh, params, steps) == [30, 40, 50, 60, 70]


def test_bf16_statistics_in_float32_and_dtype_kept():
    # Values near 1: a bf16 accumulation of 4096 entries would be off by far
    # more than float32 rounding (bf16 has 8 significant bits).
    w = _matrix(0.05, (64, 64), mean=1.0, dtype=jnp.bfloat16)
    out, stats = optim_lab.tvr_with_stats(_params(w), 50)
    k = out["layers_0"]["attn"]["kernel"]
    assert k.dtype == jnp.bfloat16
    x = np.asarray(w, np.float64)  # the exact bf16 values
    assert abs(float(stats["tvr/layers_0/attn/kernel/mean"]) / x.mean() - 1) <= TOL
    assert abs(float(stats["tvr/layers_0/attn/kernel/std"]) / x.std(ddof=1) - 1) <= TOL
    ref, _ = _np_tvr(x, 0.01)
    bf16_ulp = 2.0 ** -7  # spacing of bf16 in [1, 2)
    np.testing.assert_array_less(np.abs(np.asarray(k, np.float64) - ref), bf16_ulp)


def test_stacked_layers_per_slice_statistics_and_bias():
    stds = [0.005, 0.05, 0.011, 0.1]
    kernel = jnp.stack([_matrix(s, (32, 32), seed=i) for i, s in enumerate(stds)])
    params = {"blocks": {"mlp": {"kernel": kernel, "bias": jnp.ones((4, 32))},
                         "norm": {"scale": jnp.ones((4, 32))}}}
    for depth, expect in ((False, [0.0, 1.0, 0.0, 1.0]), (True, [0.0, 1.0, 1.0, 1.0])):
        out, stats = optim_lab.tvr_with_stats(params, 50, stacked_pattern=r"^blocks/",
                                              scale_with_depth=depth)
        assert [float(stats[f"tvr/blocks/mlp/kernel/{i}/fired"]) for i in range(4)] == expect
        for i in range(4):
            t = 0.01 / math.sqrt(i + 1) if depth else 0.01
            fired = _assert_matches_np(out["blocks"]["mlp"]["kernel"][i], kernel[i], t)
            assert float(fired) == expect[i]
            np.testing.assert_array_equal(out["blocks"]["mlp"]["bias"][i],
                                          0.0 if fired else 1.0)
            if not fired:
                np.testing.assert_array_equal(out["blocks"]["mlp"]["kernel"][i], kernel[i])
            x = np.asarray(kernel[i], np.float64)
            assert abs(float(stats[f"tvr/blocks/mlp/kernel/{i}/std"])
                       / x.std(ddof=1) - 1) <= TOL
        np.testing.assert_array_equal(out["blocks"]["norm"]["scale"], 1.0)
        assert "tvr/blocks/norm/scale/3/std" in stats


def test_stats_are_pre_rescale_and_computed_on_every_step():
    params = _model_like()
    for step, check in ((49, 0.0), (50, 1.0)):
        out, stats = optim_lab.tvr_with_stats(params, step)
        w = np.asarray(params["layers_1"]["mlp"]["kernel"], np.float64)
        key = "tvr/layers_1/mlp/kernel"
        assert abs(float(stats[key + "/std"]) / w.std(ddof=1) - 1) <= TOL
        assert abs(float(stats[key + "/mean"]) - w.mean()) <= TOL * np.abs(w).max()
        assert abs(float(stats[key + "/ratio"]) / (w.std(ddof=1) / 0.01) - 1) <= TOL
        assert float(stats[key + "/fired"]) == check
        assert float(stats["tvr/check"]) == check
        assert all(v.dtype == jnp.float32 and v.shape == () for v in stats.values())


def _linear_problem():
    x = jax.random.normal(jax.random.key(0), (64, 16))
    y = x @ jax.random.normal(jax.random.key(1), (16, 8))
    params = {"layers_0": {"kernel": 0.3 * jax.random.normal(jax.random.key(2), (16, 8)),
                           "bias": jnp.full((8,), 0.1)}}

    def loss(p):
        return jnp.mean((x @ p["layers_0"]["kernel"] + p["layers_0"]["bias"] - y) ** 2)
    return params, loss


def test_optimizer_moments_untouched_and_steps_after_rescale_finite():
    params, loss = _linear_problem()
    tx = optax.adamw(1e-2, weight_decay=0.1)
    post = optim_lab.make_tvr_post_step(target=0.05, interval=3)

    @jax.jit
    def step(p, o, s, use_tvr):
        g = jax.grad(loss)(p)
        u, o = tx.update(g, o, p)
        p = optax.apply_updates(p, u)
        return jax.lax.cond(use_tvr, lambda q: post(q, s), lambda q: q, p), o

    p, o = params, tx.init(params)
    for s in range(1, 3):
        p, o = step(p, o, jnp.int32(s), True)
    with_tvr, o_tvr = step(p, o, jnp.int32(3), True)   # a check step: fires
    without, o_plain = step(p, o, jnp.int32(3), False)
    jax.tree.map(np.testing.assert_array_equal, o_tvr, o_plain)
    assert not np.array_equal(with_tvr["layers_0"]["kernel"], without["layers_0"]["kernel"])
    np.testing.assert_array_equal(with_tvr["layers_0"]["bias"], 0.0)
    p, o = with_tvr, o_tvr
    for s in range(4, 12):
        p, o = step(p, o, jnp.int32(s), True)
        assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves((p, o)))
        assert np.isfinite(float(loss(p)))


def test_resume_with_absolute_anchor_is_bit_identical(tmp_path):
    """train_and_evaluate with TVR as post-step: 20 straight == 10 + resume + 10.

    interval 3, so the resume point (10) is not a check step.
    """
    from training.runs import tiny_config

    from optim_lab.training import metrics as metrics_lib
    from optim_lab.training import train

    post = [optim_lab.make_tvr_post_step(target=0.05, interval=3)]
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.train_and_evaluate(tiny_config(steps=20), straight, post_step=post, progress=False)
    train.train_and_evaluate(tiny_config(steps=10), split, post_step=post, progress=False)
    train.train_and_evaluate(tiny_config(steps=20), split, post_step=post, progress=False)
    assert metrics_lib.read_metrics(straight) == metrics_lib.read_metrics(split)
    a = train.restore_state(tiny_config(), straight)
    b = train.restore_state(tiny_config(), split)
    assert int(a.step) == int(b.step) == 20
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    jax.tree.map(np.testing.assert_array_equal, a.opt_state, b.opt_state)
    # TVR acted: the MLP's torch-init kernels (std ~0.12) were pulled to <= 1.2 * 0.05
    # at step 18 and moved little in the 2 steps after.
    kernel = np.asarray(a.params["layers"][0]["kernel"], np.float64)
    assert kernel.std(ddof=1) < 0.08


@pytest.mark.parametrize("kwargs,match", [
    (dict(target=0.0), r"target must be in \(0, inf\)"),
    (dict(target=-0.01), r"target must be in \(0, inf\)"),
    (dict(interval=0), r"interval must be an integer >= 1"),
    (dict(threshold=0.0), r"threshold must be in \(0, inf\)"),
    (dict(threshold=float("nan")), r"threshold must be a number"),
    (dict(mode="both"), r"mode must be one of 'one_sided', 'two_sided'"),
    (dict(anchor="start"), r"anchor must be one of 'absolute', 'resume'"),
    (dict(scale_with_depth="yes"), r"scale_with_depth must be one of"),
    (dict(resume_step=-1), r"resume_step must be an integer >= 0"),
    (dict(block_pattern=r"layers_\d+"), r"block_pattern must have a group"),
    (dict(block_pattern=r"blocks_(\d+)"), r"block_pattern .* matched no parameter path"),
    (dict(stacked_pattern="["), r"stacked_pattern must be a valid regular"),
    (dict(mask={"layers_0": 1}), r"mask leaves must be Python bools"),
])
def test_invalid_arguments_raise_naming_the_argument(kwargs, match):
    params = _params(_matrix(0.05))
    with pytest.raises(ValueError, match=match):
        optim_lab.tvr(params, 50, **kwargs)
    with pytest.raises(ValueError, match=match):  # at trace time, before compiling
        jax.jit(lambda p, s: optim_lab.tvr(p, s, **kwargs))(params, jnp.int32(50))
    if "mask" not in kwargs and "block_pattern" not in kwargs:
        with pytest.raises(ValueError, match=match):  # eagerly, at construction
            optim_lab.make_tvr_post_step(**kwargs)


def test_interval_must_be_an_integer():
    with pytest.raises(TypeError, match="interval must be an integer"):
        optim_lab.make_tvr_post_step(interval=2.5)


def test_scale_with_depth_needs_a_block_index():
    params = {"embed": {"embedding": _matrix(0.05)}, "layers_0": {"kernel": _matrix(0.05)}}
    mask = {"embed": True, "layers_0": False}
    with pytest.raises(ValueError, match="scale_with_depth=True needs a block index"):
        optim_lab.tvr(params, 50, mask=mask, scale_with_depth=True)


def test_top_level_exports():
    for name in ("tvr", "tvr_with_stats", "make_tvr_post_step"):
        assert getattr(optim_lab, name) is getattr(tvr_lib, name)
        assert name in optim_lab.__all__
