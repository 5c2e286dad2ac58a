"""Sweeps: axes, member directories, groups, vmapped members equal to single runs, resume.

Tolerance of "a member equals its single run": vmap batches every matmul and
reduction of the step over the members, and XLA may then sum in another order
(a batched ``dot_general`` is tiled differently from a plain one), so a value
can differ by an ulp or so after one step; nothing else differs (same
initialisation, same batches: the seed-only and lr-only programs compute the
same formulas with the same constants). The trajectories of a non-chaotic
float32 run separate at most linearly, so the budget is 4 eps per step (the
suite's one-float32-step allowance, tests/tolerances.py) times the step
count, normwise per state leaf (``|Δ| <= 4·steps·eps·max|leaf|``) and
element-wise relative for each logged metric (``4·max(step, 1)`` eps at its
step). Measured (``OPTIM_LAB_TOLERANCE_REPORT``) on the 20-step tiny sweep
below (batch 16): <= 1 eps for the state (budget 80), <= 2.2 eps for the
metrics; the same sweep full-batch reached 17 eps in the state of the
lr = 0.03 members, which is why the budget grows with the step count.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab import rundir
from optim_lab.data import dataset
from optim_lab.training import checkpoint
from optim_lab.training import errors
from optim_lab.training import sweep
from optim_lab.training import train
from optim_lab.training import workdir as workdir_lib

from runs import tiny_config
from tolerances import assert_close

EPS_PER_STEP = 4
AXES = ["seed=0,1", "optimizer.learning_rate=0.01,0.03"]
BATCH = {"batch_size": 16}  # 3 batches per epoch: the seed picks the batch order


def _members(specs=AXES, **overrides):
    config = tiny_config(**{**BATCH, **overrides})
    return sweep.expand(config, sweep.parse_axes(specs, config))


def _run(root, specs=AXES, chunk=0, **overrides):
    members = _members(specs, **overrides)
    sweep.run(members, root, chunk=chunk, progress=False)
    return members


def _state(config, d):
    return jax.device_get(train.restore_state(config, d))


def _assert_same(a, b, config):
    """Bit-identical logs and final states of two run directories."""
    assert rundir.read_metrics(a) == rundir.read_metrics(b)
    for x, y in zip(jax.tree.leaves(_state(config, a)),
                    jax.tree.leaves(_state(config, b)), strict=True):
        np.testing.assert_array_equal(x, y)


def _assert_close_run(a, b, config, steps):
    """Logs and final states within the module's budget (see the docstring)."""
    ra, rb = rundir.read_metrics(a), rundir.read_metrics(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb):
        assert set(x) == set(y)
        keys = sorted(k for k in y if k != "step")
        assert_close(np.array([x[k] for k in keys], np.float32),
                     np.array([y[k] for k in keys], np.float32),
                     ulps=EPS_PER_STEP * max(y["step"], 1), scale=0,
                     err_msg=f"{a.name} metrics at step {y['step']}")
    sa, sb = _state(config, a), _state(config, b)
    assert int(sa.step) == int(sb.step) == steps
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb), strict=True):
        if np.issubdtype(y.dtype, np.floating):
            assert_close(x, y, ulps=EPS_PER_STEP * steps, err_msg=f"{a.name} state")
        else:
            np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The 2 seeds x 2 learning rates tiny sweep, 20 steps, run straight."""
    root = tmp_path_factory.mktemp("swept")
    return root, _run(root)


# -- axes and names -----------------------------------------------------------------


def test_axis_values_take_the_fields_types():
    config = tiny_config()
    axes = sweep.parse_axes(
        ["seed=0, 2", "optimizer.learning_rate=1e-3,3e-3", "model.hidden=(16,),(8, 4)",
         "data_parallel=false,true", "optimizer.b2=None,0.9", "loss=softmax,stablemax"],
        config)
    assert [a.values for a in axes] == [
        (0, 2), (1e-3, 3e-3), ((16,), (8, 4)), (False, True), (None, 0.9),
        ("softmax", "stablemax")]
    assert isinstance(axes[0].values[0], int) and isinstance(axes[1].values[0], float)


@pytest.mark.parametrize("specs,match", [
    (["optimizer.learnin_rate=1e-3"],
     r"unknown config field 'optimizer.learnin_rate' \(did you mean "
     r"'optimizer.learning_rate'\?\)"),
    (["sed=0,1"], r"unknown config field 'sed' \(did you mean 'seed'\?\)"),
    (["optimizer=1"], "'optimizer' is a config section"),
    (["seed=0,one"], r"seed: cannot parse 'one' as int"),
    (["optimizer.learning_rate=1e-3,fast"], r"cannot parse 'fast' as float"),
    (["model.hidden=16"], r"cannot parse '16' as tuple"),
    (["seed="], "seed has an empty list of values"),
    (["seed=0,,1"], "empty value at position 2"),
    (["seed=0,1,0"], "value '0' is given twice"),
    (["seed=0", "optimizer.b1=0.9", "seed=1"], "seed is given twice; put all its values"),
    (["seed"], "expected FIELD=VALUE1,VALUE2"),
    ([], "give at least one axis"),
])
def test_bad_specs_fail_with_one_line(specs, match):
    with pytest.raises(ValueError, match=match) as info:
        sweep.parse_axes(specs, tiny_config())
    assert "\n" not in str(info.value)


def test_invalid_member_fails_before_compiling(tmp_path, monkeypatch):
    def no_compile(*a, **k):
        raise AssertionError("compiled before validating")
    monkeypatch.setattr(train, "compile_steps", no_compile)
    members = _members(["optimizer.learning_rate=0.01,-1"])
    with pytest.raises(ValueError, match=r"sweep member optimizer.learning_rate=-1.0: "
                       r".*learning_rate must be in \(0, inf\)"):
        sweep.run(members, tmp_path / "sw", progress=False)
    assert not (tmp_path / "sw").exists()


def test_member_names_are_readable_and_filesystem_safe():
    assert sweep.member_name({"seed": 0, "optimizer.learning_rate": 1e-3}) == \
        "seed=0,optimizer.learning_rate=0.001"
    assert sweep.member_name({"schedule.refine_from": "/runs/a b", "model.hidden": (16, 8),
                              "optimizer.b2": None}) == \
        "schedule.refine_from=_runs_a_b,model.hidden=(16,8),optimizer.b2=None"
    long = sweep.member_name({"data.path": "x" * 500})
    assert len(long) == 200 and long != sweep.member_name({"data.path": "x" * 499})


# -- groups -------------------------------------------------------------------------


def test_members_differing_in_structure_form_separate_groups():
    members = _members(["optimizer.name=adamw,adam", "seed=0,1",
                        "optimizer.learning_rate=0.01,0.03"])
    groups = sweep.group(members)
    assert [len(g.members) for g in groups] == [4, 4]
    assert [g.traced for g in groups] == [("optimizer.learning_rate", "seed")] * 2
    assert {g.members[0].config.optimizer.name for g in groups} == {"adamw", "adam"}
    for specs in (["data.train_fraction=0.3,0.5"], ["model.hidden=(16,),(8,)"],
                  ["steps=10,20"], ["optimizer.b2=None,0.99"], ["loss=softmax,stablemax"]):
        assert len(sweep.group(_members(specs))) == 2, specs
    one = sweep.group(_members(["optimizer.b2=0.9,0.99", "schedule.name=constant"]))
    assert len(one) == 1 and one[0].traced == ("optimizer.b2",)


def test_float_needed_as_a_python_number_becomes_structure(tmp_path):
    # optax.sgd is built with `momentum or None`: a traced momentum cannot work.
    members = _members(["optimizer.momentum=0.5,0.9", "optimizer.learning_rate=0.01,0.03"],
                       **{"optimizer.name": "sgd", "optimizer.weight_decay": None})
    assert len(sweep.group(members)) == 1
    groups = sweep.plan(members, tmp_path)
    assert [len(g.members) for g in groups] == [2, 2]
    assert [g.traced for g in groups] == [("optimizer.learning_rate",)] * 2


# -- running ------------------------------------------------------------------------


def test_members_equal_single_runs(swept, tmp_path):
    root, members = swept
    assert sorted(p.name for p in root.iterdir()) == sorted(m.name for m in members)
    assert "seed=1,optimizer.learning_rate=0.03" in [m.name for m in members]
    for m in members:
        single = tmp_path / m.name
        train.train_and_evaluate(m.config, single, progress=False)
        assert json.loads((root / m.name / "config.json").read_text()) == \
            json.loads((single / "config.json").read_text())
        _assert_close_run(root / m.name, single, m.config, 20)
    finals = [rundir.read_metrics(root / m.name)[-1]["train/loss"] for m in members]
    assert len(set(finals)) == 4  # every member trained its own run


def test_rerun_to_more_steps_resumes_bit_identically(swept, tmp_path, monkeypatch):
    root, members = swept
    _run(tmp_path, steps=10)
    _run(tmp_path, steps=20)
    for m in members:
        _assert_same(tmp_path / m.name, root / m.name, m.config)
    logs = {m.name: (tmp_path / m.name / "metrics.jsonl").read_bytes() for m in members}
    monkeypatch.setattr(sweep, "_run_chunk", None)  # finished members: nothing runs
    out = sweep.run(_members(steps=20), tmp_path, progress=False)
    assert {k: v["step"] for k, v in out.items()} == {m.name: 20 for m in members}
    assert logs == {m.name: (tmp_path / m.name / "metrics.jsonl").read_bytes()
                    for m in members}


def test_members_killed_mid_save_resume_from_their_own_step(swept, tmp_path, capsys):
    root, members = swept
    _run(tmp_path, steps=10, checkpoint_every=5)
    # As if killed while saving step 10: the first member's save never happened.
    shutil.rmtree(tmp_path / members[0].name / "checkpoints" / "10")
    capsys.readouterr()
    _run(tmp_path, steps=20, checkpoint_every=5)
    for m in members:
        _assert_same(tmp_path / m.name, root / m.name, m.config)


def test_chunks_bound_the_members_per_program(swept, tmp_path, capsys):
    root, members = swept
    assert [len(c) for c in sweep.chunks(list(range(5)), 3)] == [3, 2]
    assert [len(c) for c in sweep.chunks(list(range(4)), 3)] == [2, 2]
    assert [len(c) for c in sweep.chunks(list(range(4)), 0)] == [4]
    members = _members()
    sweep.run(members, tmp_path, chunk=3, progress=True)
    out = capsys.readouterr().out
    assert "group 1/1 chunk 2/2, mean of 2: step 20/20" in out
    for m in members:
        _assert_close_run(tmp_path / m.name, root / m.name, m.config, 20)


@pytest.mark.parametrize("every", [10, 20])  # 20: step 10's window is closed late
def test_diverging_member_stops_alone(tmp_path, every):
    members = _members(["optimizer.learning_rate=0.01,1e12"], max_nonfinite_steps=7,
                       eval_every=every, checkpoint_every=every,
                       **{"optimizer.name": "sgd", "optimizer.weight_decay": None})
    with pytest.raises(errors.Diverged, match=r"1 of 2 sweep members diverged .*"
                       r"optimizer.learning_rate=1000000000000.0; .*stopped at step 10"):
        sweep.run(members, tmp_path, progress=False)
    ok, bad = (tmp_path / m.name for m in members)
    assert rundir.read_metrics(ok)[-1]["step"] == 20
    assert rundir.read_metrics(bad)[-1]["step"] == 10
    state = train.restore_state(members[1].config, bad)
    assert int(state.step) == 10
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_member_directories_are_guarded(tmp_path, monkeypatch):
    members = _members(steps=5, checkpoint_every=5, log_every=5, eval_every=5)
    with workdir_lib.lock(tmp_path / members[2].name):
        with pytest.raises(errors.WorkdirInUse, match="in use by pid"):
            sweep.run(members, tmp_path, progress=False)
    sweep.run(members, tmp_path, progress=False)

    def no_compile(*a, **k):
        raise AssertionError("compiled before checking the member directories")
    monkeypatch.setattr(train, "compile_steps", no_compile)
    changed = _members(steps=10, checkpoint_every=5, log_every=5, eval_every=5,
                       **{"optimizer.b2": 0.9})
    with pytest.raises(ValueError, match=r"sweep member seed=0,optimizer.learning_rate=0.01: "
                       r".* holds a run with a different config"):
        sweep.run(changed, tmp_path, progress=False)
    assert checkpoint.restore(tmp_path / members[0].name, _template(members[0])) is not None


def _template(member):
    _, fn, _, tx = train.setup(member.config)
    return train.initial_state(fn, tx, member.config.seed)


@pytest.mark.parametrize("block", [16, 2])
def test_epoch_permutations_give_get_batchs_batches(block):
    members = _members()  # 48 training rows, batch 16: 3 steps per epoch
    data, fn, _, _ = train.setup(members[0].config)
    program = sweep.Program(members[0].config, fn, data, (), epochs_per_block=block)
    assert program.per_epoch == 3 and program.epochs == block
    seeds = jnp.asarray([0, 5], jnp.int32)
    x, y = data.train_sampler().source
    for step in range(8):
        first = step // (3 * block) * block
        perms, firsts = program.epoch_perms(seeds, np.int32(first))
        for i, seed in enumerate((0, 5)):
            got = sweep._rows_of_epochs((perms[i], firsts[i]), (x, y), None, step, 16)
            want = dataset.get_batch(x, y, seed, step, 16)
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b)
    c = members[0].config
    assert list(program.call_sizes(1, c)) == [1] * 19
    c.steps_per_call = 4  # log_every 5: calls of <= 4 steps, cut at logs (and blocks)
    assert list(program.call_sizes(1, c)) == (
        [4, 4, 1, 4, 1, 4, 1] if block == 16 else [4, 1, 3, 1, 2, 2, 1, 3, 1, 1])


def test_scanned_sweep_equals_the_stepped_one(swept, tmp_path):
    root, members = swept
    _run(tmp_path, steps_per_call=4)
    for m in members:
        _assert_same(tmp_path / m.name, root / m.name, m.config)
