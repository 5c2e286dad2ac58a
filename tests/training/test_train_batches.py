"""train.Batches: each epoch's permutation computed once, the same batches as get_batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab.data import dataset
from optim_lab.training import metrics as metrics_lib
from optim_lab.training import train

from runs import tiny_config


def _minibatch_config(**overrides):
    # 48 training rows, batch 4: 12 steps per epoch; logs every 10 steps.
    fields = dict(steps=40, batch_size=4, log_every=10, eval_every=10,
                  checkpoint_every=10)
    return tiny_config(**{**fields, **overrides})


class _PerStepPermutation(train.Batches):
    """The batching the loop used before: get_batch in every step, calls not cut
    at epochs (the reference the per-epoch permutations must reproduce)."""

    def __init__(self, config, data, mesh=None):
        super().__init__(config, data, mesh)
        self.per_epoch, self.fn = 0, data.train_sampler().fn


def _leaves(state):
    return jax.tree.leaves(jax.device_get(state))


@pytest.mark.parametrize("per_call, log_every, block, sizes", [
    # At most 10 per call, cut at logs (10, 20, 30), across the epoch ends 12, 24, 36.
    (10, 10, 16, [5, 10, 10, 10]),
    # Blocks of 2 epochs: also cut at the block's end (24).
    (10, 10, 2, [5, 10, 4, 6, 10]),
    # 30 per call: blocks of 3 epochs (36 steps), the fewest a call can need.
    (30, 30, 2, [25, 6, 4]),
])
def test_call_sources_give_get_batchs_batches(per_call, log_every, block, sizes):
    config = _minibatch_config(steps=40, steps_per_call=per_call, log_every=log_every,
                               eval_every=log_every, checkpoint_every=log_every)
    data = train.setup(config)[0]
    batches = train.Batches(config, data, epochs_per_block=block)
    assert batches.per_epoch == 12 and batches.fn is dataset.rows_of_epochs
    x, y = data.train_sampler().source
    draw = jax.jit(batches.fn, static_argnums=3)
    got_sizes, s, seen = [], 5, []
    for n, source in batches.calls(5):  # starts mid-epoch
        got_sizes.append(n)
        for step in range(s, s + n):
            got = draw(source, config.seed, jnp.int32(step), 4)
            want = dataset.get_batch(x, y, config.seed, jnp.int32(step), 4)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
            seen.append(step)
        s += n
    assert seen == list(range(5, 40))
    assert got_sizes == sizes


def test_other_samplers_pass_through():
    config = tiny_config(steps=7, steps_per_call=3)  # full batch
    data = train.setup(config)[0]
    batches = train.Batches(config, data)
    assert batches.per_epoch == 0 and batches.fn is data.train_sampler().fn
    assert [n for n, _ in batches.calls(0)] == [3, 2, 2]
    assert all(src is batches.source for _, src in batches.calls(0))


@pytest.mark.parametrize("per_call", [1, 10])
def test_runs_are_bit_identical_to_per_step_permutations(tmp_path, monkeypatch, per_call):
    before, after = tmp_path / "before", tmp_path / "after"
    with monkeypatch.context() as m:
        m.setattr(train, "Batches", _PerStepPermutation)
        train.train_and_evaluate(_minibatch_config(steps_per_call=per_call), before,
                                 progress=False)
    # Stopped (and checkpointed) at step 13: mid-epoch (12-24) and, for 10 per
    # call, inside the call window 12-20; the rerun resumes there.
    train.train_and_evaluate(_minibatch_config(steps=13, steps_per_call=per_call), after,
                             progress=False)
    train.train_and_evaluate(_minibatch_config(steps_per_call=per_call), after,
                             progress=False)
    a, b = metrics_lib.read_metrics(before), metrics_lib.read_metrics(after)
    assert [r["step"] for r in b] == [0, 10, 13, 20, 30, 40]
    assert a[:2] == b[:2] and a[3:] == b[4:]
    # Step 20's train window is 14-20 after the resume, 11-20 straight; its
    # evaluation (the fields of step 0's record) is of the same params.
    evals = [k for k in a[0] if k != "step"]
    assert len(evals) > 3 and {k: a[2][k] for k in evals} == {k: b[3][k] for k in evals}
    config = _minibatch_config()
    for x, y in zip(_leaves(train.restore_state(config, before)),
                    _leaves(train.restore_state(config, after)), strict=True):
        np.testing.assert_array_equal(x, y)
