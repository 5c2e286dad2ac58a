"""The grokking reference's seed-42 start (tests/golden/grokking_start.npz):
its split and initial weights load into the lab's data and MLP, and the lab's
first 20 full-batch AdamW + StableMax steps reproduce the reference's losses.
The Fig. 6a transformer's start (tests/golden/grokking_transformer.npz, from
``gen_grokking_transformer.py``) loads into the lab's transformer, whose
eval-mode logits then equal the reference model's.

The golden comes from ``gen_grokking_start.py`` (the reference @ 0cc9e8d,
torch 2.13.0, Fig. 1b setting: AdamW lr 1e-2, betas (0.9, 0.999), eps 1e-25,
no weight decay, StableMax loss in float64, full batch).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optim_lab import stablemax_cross_entropy
from optim_lab.data import reference_start
from optim_lab.data.modular import modular_arithmetic
from optim_lab.models.functional import functionalize
from optim_lab.models.mlp import MLP

import goldens

PATH = goldens.GOLDEN_DIR / "grokking_start.npz"
F32_EPS = float(np.finfo(np.float32).eps)
F64_EPS = float(np.finfo(np.float64).eps)


@pytest.fixture(scope="module")
def golden():
    return goldens.load("grokking_start")


def test_metadata_records_the_reference_setting(golden):
    _, meta = golden
    assert meta["reference"]["commit"].startswith("0cc9e8d") and meta["seed"] == 42
    cfg = meta["config"]
    assert (cfg["modulus"], cfg["train_fraction"], cfg["loss"]) == (113, 0.4, "stablemax")
    opt = cfg["optimizer"]
    assert (opt["name"], opt["lr"], opt["betas"], opt["eps"], opt["weight_decay"]) == (
        "AdamW", 0.01, [0.9, 0.999], 1e-25, 0)
    assert meta["versions"]["torch"].startswith("2.13.0")


def test_split_is_the_reference_partition(golden):
    arrays, _ = golden
    start = reference_start.load_start(PATH)
    n = 113 * 113
    assert (start.train_idx.size, start.test_idx.size) == (5107, 7662)
    both = np.concatenate([start.train_idx, start.test_idx])
    np.testing.assert_array_equal(np.sort(both), np.arange(n))
    # The lab's table order is the reference's: row 113 a + b holds (a, b).
    ds = modular_arithmetic(split_from=PATH)
    x = np.asarray(ds.train_x)
    pairs = np.stack([x[:, :113].argmax(1), x[:, 113:].argmax(1)], 1)
    np.testing.assert_array_equal(pairs, arrays["train_pairs"])
    np.testing.assert_array_equal(ds.train_y, pairs.sum(1) % 113)
    assert ds.test_x.shape == (7662, 226)
    # ... and it is not the lab's own seeded split.
    assert not np.array_equal(ds.train_y, modular_arithmetic().train_y)


def test_initial_weights_in_flax_layout(golden):
    arrays, _ = golden
    model = MLP(226, (200, 200), 113, use_bias=False, rngs=nnx.Rngs(0))
    like = functionalize(model).params
    start = reference_start.load_start(PATH, like=like)
    sq = 0.0
    for i, layer in start.params["layers"].items():
        w = arrays[f"init/layers.{i}.weight"]
        assert w.dtype == np.float32  # the reference's model is float32
        np.testing.assert_array_equal(layer["kernel"], w.T)
        assert layer["kernel"].shape == like["layers"][i]["kernel"].shape
        fan_in = w.shape[1]  # torch default init: U(+-1/sqrt(fan_in))
        assert np.abs(w).max() <= fan_in ** -0.5
        np.testing.assert_allclose(w.std(), fan_in ** -0.5 / np.sqrt(3), rtol=0.02)
        sq += float(np.sum(w.astype(np.float64) ** 2))
    # the reference code's initial global weight norm, ≈ 13.1
    np.testing.assert_allclose(np.sqrt(sq), 13.08, atol=0.01)


def _lab_run(dtype, steps):
    """The lab's first full-batch steps from the reference start: MLP in
    ``dtype``, StableMax CE in float64, optax AdamW as the reference's."""
    with jax.enable_x64(True):
        ds = modular_arithmetic(split_from=PATH)
        model = MLP(226, (200, 200), 113, use_bias=False, dtype=dtype,
                    rngs=nnx.Rngs(0))
        f = functionalize(model)
        params = reference_start.load_start(PATH, like=f.params).params
        x, y = jnp.asarray(ds.train_x, dtype), ds.train_y

        def loss_fn(p):
            logits, _ = f.apply(p, f.model_state, x, False)
            return jnp.mean(stablemax_cross_entropy(logits, y, dtype=jnp.float64))

        tx = optax.adamw(1e-2, b1=0.9, b2=0.999, eps=1e-25, weight_decay=0.0)

        @jax.jit
        def step(p, s):
            loss, g = jax.value_and_grad(loss_fn)(p)
            u, s = tx.update(g, s, p)
            p = optax.apply_updates(p, u)
            norms = [jnp.linalg.norm(layer["kernel"].astype(jnp.float64))
                     for layer in p["layers"].values()]
            return p, s, loss, jnp.stack(norms)

        state, losses, norms = tx.init(params), [], []
        for _ in range(steps):
            params, state, loss, n = step(params, state)
            losses.append(float(loss))
            norms.append(np.asarray(n))
        return np.asarray(losses), np.asarray(norms)


def test_first_losses_match_reference_in_float64(golden):
    """Everything float64 on both sides (the reference's --train_precision 64,
    same split and initial weights). The only differences are summation
    orders (XLA vs torch's GEMMs, and the reference's per-epoch row shuffle
    before the mean), i.e. O(1) ulp per loss; in float64 the rounding
    differences fed into Adam stay ~1e-16 relative and do not grow to the
    loss's ulp within 20 steps (observed: at most 1.1 ulp). Bound: 8 ulp of
    each loss. Per-layer weight norms after each step: each side's norm is a
    sum of up to 45 200 squares in its own order (~log2(45 200) = 16 ulp
    apart at worst for pairwise sums) on top of 20 updates that differ by a
    few ulp: bound 64 ulp (observed 8.3). A different split, init, optimizer
    setting or loss moves the losses by 1e-4 or more within a few steps, and
    one coordinate stepping differently (by lr = 1e-2) moves a norm by ~1e-5
    relative, far outside both bounds."""
    arrays, _ = golden
    want = arrays["losses_train64"]
    losses, norms = _lab_run(jnp.float64, len(want))
    np.testing.assert_allclose(losses, want, rtol=8 * F64_EPS, atol=0)
    np.testing.assert_allclose(norms, arrays["weight_norms_train64"],
                               rtol=64 * F64_EPS, atol=0)
    assert want[-1] < want[0] - 1.0  # the 20 steps do train (4.73 -> 3.57)


def test_first_losses_match_reference_in_float32(golden):
    """The reference's default: float32 model, float64 StableMax. Step 0 is a
    pure forward pass with identical weights and data: the float32 logits
    differ only by summation order, the float64 mean averages that out, so
    the loss agrees to 4 float32 ulp. Afterwards Adam (eps 1e-25, near-sign
    steps) amplifies float32 rounding: the reference's own float32 and float64
    runs drift 1.7e-4 apart by step 20. The lab's float32 run must stay within
    10x that gap of the reference's float32 run (observed: 2x)."""
    arrays, _ = golden
    want = arrays["losses"]
    losses, _ = _lab_run(jnp.float32, len(want))
    np.testing.assert_allclose(losses[0], want[0], rtol=4 * F32_EPS, atol=0)
    own_gap = np.max(np.abs(arrays["losses"] - arrays["losses_train64"]))
    assert 1e-5 < own_gap < 1e-3
    assert np.max(np.abs(losses - want)) <= 10 * own_gap


def _write(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_load_errors(tmp_path):
    w = {"init/layers.0.weight": np.ones((3, 2), np.float32)}
    bad = _write(tmp_path / "overlap.npz", train_idx=np.array([0, 1]),
                 test_idx=np.array([1, 2]), **w)
    with pytest.raises(ValueError, match="overlap"):
        reference_start.load_start(bad)
    with pytest.raises(ValueError, match="missing"):
        reference_start.load_split(_write(tmp_path / "nosplit.npz", **w))
    ok = _write(tmp_path / "ok.npz", train_idx=np.array([0]), test_idx=np.array([1]), **w)
    start = reference_start.load_start(ok, like={"layers": {0: {"kernel": np.zeros((2, 3))}}})
    assert start.params["layers"][0]["kernel"].dtype == np.float64  # cast to the model's
    with pytest.raises(ValueError, match="shape"):
        reference_start.load_start(ok, like={"layers": {0: {"kernel": np.zeros((3, 2))}}})
    with pytest.raises(ValueError, match="trees differ"):
        reference_start.load_start(ok, like={"layers": {0: {"kernel": np.zeros((2, 3)),
                                                          "bias": np.zeros(3)}}})
    with pytest.raises(ValueError, match="layer indices"):
        reference_start.torch_linear_to_flax({"init/layers.1.weight": np.ones((2, 2))})


TRANSFORMER = goldens.GOLDEN_DIR / "grokking_transformer.npz"


@pytest.fixture(scope="module")
def transformer_start():
    from experiments import grokking_transformer as driver
    from optim_lab.training import train
    config = driver.transformer_config("orthograd_adamw", 5e-3, 10, 10, start=TRANSFORMER)
    data, fn, _, _ = train.setup(config)
    return data, fn, goldens.load("grokking_transformer")[0]


def test_transformer_start_loads_split_and_weights(transformer_start):
    data, fn, arrays = transformer_start
    assert (data.train_x.shape, data.test_x.shape) == ((5017, 2), (7527, 2))
    # the reference's table: row 112 (i - 1) + (j - 1) holds (i, j), i, j in [1, 112]
    rows = arrays["train_idx"].astype(np.int64)
    np.testing.assert_array_equal(data.train_x, np.stack([1 + rows // 112, 1 + rows % 112], 1))
    np.testing.assert_array_equal(data.train_y, np.asarray(data.train_x).sum(1) % 113)
    p = fn.params
    np.testing.assert_array_equal(p["embedding"]["embedding"], arrays["init/embedding.weight"])
    layer = "init/transformer.layers.0."
    np.testing.assert_array_equal(p["layers_0"]["self_attn"]["in_proj"]["kernel"],
                                  arrays[layer + "self_attn.in_proj_weight"].T)
    np.testing.assert_array_equal(p["layers_0"]["linear2"]["kernel"],
                                  arrays[layer + "linear2.weight"].T)
    np.testing.assert_array_equal(p["layers_0"]["norm1"]["scale"], arrays[layer + "norm1.weight"])
    np.testing.assert_array_equal(p["head"]["bias"], arrays["init/linear.bias"])
    n_file = sum(v.size for k, v in arrays.items() if k.startswith("init/"))
    assert n_file == sum(x.size for x in jax.tree.leaves(p))  # every parameter came from it


def test_transformer_forward_matches_the_reference(transformer_start):
    """Eval-mode logits of the reference's first 64 training pairs and its
    full-batch loss at the start, float32 on both sides: summation orders
    differ (XLA vs torch), so a few ulps of the logits' scale."""
    data, fn, arrays = transformer_start
    logits, _ = fn.apply(fn.params, fn.model_state, data.train_x, False)
    ref = arrays["init_logits"]
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(np.asarray(logits[:len(ref)]), ref, rtol=0,
                               atol=32 * F32_EPS * scale)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    loss = -float(jnp.mean(jnp.take_along_axis(logp, data.train_y[:, None], 1)))
    np.testing.assert_allclose(loss, float(arrays["init_train_loss"]), rtol=32 * F32_EPS)
    # a random start's loss, near ln 113 (not, e.g., a file of zeros)
    assert loss > 4.5 and abs(loss - np.log(113)) < 0.5


def test_transformer_mapping_errors():
    with pytest.raises(ValueError, match="not a parameter of the reference Transformer"):
        reference_start.torch_transformer_to_flax({"init/embedding.weight": np.zeros((3, 2)),
                                                   "init/transformer.pos.weight": np.zeros(2)})
    with pytest.raises(ValueError, match="not a transformer start file"):
        reference_start.torch_transformer_to_flax({"init/linear.weight": np.zeros((3, 2))})
