"""The Fig. 6 transformer through the binaries: one step of ``experiments.train``,
exact resume with dropout, and the ``experiments.grokking_transformer`` driver
(tiny sizes: d 32, FF 64, addition mod 11)."""

import json

import jax
import numpy as np
import pytest

from experiments import grokking_transformer as driver
from experiments.configs import grokking_transformer
from optim_lab import rundir
from optim_lab.training import train

import binaries

TINY = {"model.d_model": 32, "model.ff_dim": 64, "data.modulus": 11}


def _tiny(**overrides):
    c = grokking_transformer.get_config()
    for key, value in {**TINY, "log_every": 5, "eval_every": 5,
                       "checkpoint_every": 5, **overrides}.items():
        section, _, field = key.rpartition(".")
        (c[section] if section else c)[field] = value
    return c


def test_one_step_of_the_train_binary(tmp_path):
    workdir = tmp_path / "run"
    args = ["--config=experiments/configs/grokking_transformer.py", f"--workdir={workdir}",
            "--config.steps=1", "--config.log_every=1", "--config.eval_every=1",
            "--config.checkpoint_every=1",
            *(f"--config.{k}={v}" for k, v in TINY.items())]
    binaries.run_ok("experiments.train", *args, timeout=900)
    records = rundir.read_metrics(workdir)
    assert [r["step"] for r in records] == [0, 1]
    step1 = records[-1]
    assert np.isfinite(step1["train/loss"]) and step1["train/nonfinite"] == 0.0
    # 10 * 10 pairs in [1, 10], 40 % train; accuracies are multiples of 1/n
    for split, n in (("train", 40), ("test", 60)):
        acc = step1[f"{split}/accuracy"]
        assert 0.0 <= acc <= 1.0 and abs(acc * n - round(acc * n)) < 1e-4, (split, acc)
    config = json.loads((workdir / "config.json").read_text())
    assert config["model"]["name"] == "grokking_transformer"
    assert (config["model"]["d_model"], config["model"]["ff_dim"]) == (32, 64)
    assert (workdir / "checkpoints" / "1").is_dir()


def _params(config, workdir):
    return jax.device_get(train.restore_state(config, workdir).params)


def test_resume_with_dropout_is_exact(tmp_path):
    """10 steps straight == 5 steps, stop, resume to 10: bit-identical params
    and metrics. Dropout masks are a function of (seed, step), so the resumed
    half draws the masks the straight run drew; and dropout is really on (a
    training step's outputs depend on its key), so this can fail."""
    straight = _tiny(steps=10)
    train.train_and_evaluate(straight, tmp_path / "straight", progress=False)
    train.train_and_evaluate(_tiny(steps=5), tmp_path / "resumed", progress=False)
    train.train_and_evaluate(_tiny(steps=10), tmp_path / "resumed", progress=False)
    a, b = (rundir.read_metrics(tmp_path / d) for d in ("straight", "resumed"))
    assert [r["step"] for r in a] == [0, 5, 10]
    assert a == b
    jax.tree.map(np.testing.assert_array_equal, _params(straight, tmp_path / "straight"),
                 _params(straight, tmp_path / "resumed"))
    # dropout is really on in training: two step keys, two outputs; none in eval
    _, fn, _, _ = train.setup(straight)
    x = jax.numpy.ones((4, 2), jax.numpy.int32)
    out = [fn.apply(fn.params, fn.model_state, x, True, rng=jax.random.PRNGKey(k))[0]
           for k in (0, 1)]
    assert not np.array_equal(out[0], out[1])
    np.testing.assert_array_equal(fn.apply(fn.params, fn.model_state, x, False)[0],
                                  fn.apply(fn.params, fn.model_state, x, False)[0])


def test_driver_variants_and_report(tmp_path):
    """The driver's three optimizer settings (those the reference ran) and its
    table; the ε = 1e-25 AdamW runs keep a float64 Adam state."""
    cfgs = {v: driver.transformer_config(v, 5e-3, 500, 20) for v in driver.VARIANTS}
    o, w, p = cfgs["orthograd_adamw"], cfgs["adamw_wd1.5"], cfgs["adamw"]
    assert (o.optimizer.name, o.optimizer.b2, o.optimizer.eps) == ("orthograd_adamw", 0.999, 1e-8)
    assert o.optimizer.state_dtype is None and not o.enable_x64
    for c, wd in ((w, 1.5), (p, 0.0)):
        assert (c.optimizer.name, c.optimizer.b2, c.optimizer.eps) == ("adamw", 0.99, 1e-25)
        assert c.optimizer.weight_decay == wd
        assert c.optimizer.state_dtype == 64 and c.enable_x64
    assert all(c.optimizer.learning_rate == 5e-3 and c.steps == 500 and c.eval_every == 20
               and c.model.dropout == 0.1 for c in cfgs.values())
    rows, anchors = driver.run_all(
        tmp_path / "runs", tmp_path / "results", lrs=[5e-3], variants=["orthograd_adamw", "adamw"],
        steps=4, eval_every=20, mlp_anchor=False, command="cmd", d_model=32, ff_dim=64,
        modulus=11)
    assert [r["name"] for r in rows] == ["orthograd_adamw_lr0.005", "adamw_lr0.005"]
    assert anchors == [] and all(r["steps"] == 4 for r in rows)
    state = train.restore_state(driver.transformer_config("adamw", 5e-3, 4, 20, d_model=32,
                                                          ff_dim=64, modulus=11),
                                tmp_path / "runs" / "adamw_lr0.005")
    dtypes = {x.dtype for x in jax.tree.leaves(state.opt_state) if x.ndim > 0}
    assert dtypes == {np.dtype("float64")}
    text = (tmp_path / "results" / "transformer.md").read_text()
    assert "| ⊥AdamW, lr 0.005 | 4 |" in text and "| AdamW, lr 0.005 | 4 |" in text
    assert (tmp_path / "results" / "transformer.png").stat().st_size > 0
    # --report_only rewrites the report from the runs as they are, training nothing
    (tmp_path / "results" / "transformer.md").unlink()
    again, _ = driver.run_all(
        tmp_path / "runs", tmp_path / "results", lrs=[5e-3], variants=["orthograd_adamw"],
        steps=8, eval_every=20, mlp_anchor=False, command="cmd", report_only=True,
        d_model=32, ff_dim=64, modulus=11)
    assert again[0]["steps"] == 4
    assert "| ⊥AdamW, lr 0.005 | 4 |" in (tmp_path / "results" / "transformer.md").read_text()
    with pytest.raises(ValueError, match="--report_only: no run in"):
        driver.run_all(tmp_path / "none", tmp_path / "other", lrs=[5e-3],
                       variants=["adamw"], steps=4, eval_every=20, mlp_anchor=False,
                       command="cmd", report_only=True, d_model=32, ff_dim=64, modulus=11)


def _tiny_start(path, curves: dict):
    """A start file in the generator's format for the tiny transformer: its
    own params in torch layout, a 40 / 60 split of the 10 x 10 table and
    fake reference curves."""
    _, fn, _, _ = train.setup(driver.transformer_config("adamw", 5e-3, 4, 20, d_model=32,
                                                        ff_dim=64, modulus=11))
    p = jax.tree.map(np.asarray, fn.params)
    layer, attn = p["layers_0"], p["layers_0"]["self_attn"]
    torch = {"embedding.weight": p["embedding"]["embedding"] + 1.0,  # not the lab's init
             "linear.weight": p["head"]["kernel"].T, "linear.bias": p["head"]["bias"]}
    pre = "transformer.layers.0."
    torch.update({pre + "self_attn.in_proj_weight": attn["in_proj"]["kernel"].T,
                  pre + "self_attn.in_proj_bias": attn["in_proj"]["bias"],
                  pre + "self_attn.out_proj.weight": attn["out_proj"]["kernel"].T,
                  pre + "self_attn.out_proj.bias": attn["out_proj"]["bias"]})
    for name in ("linear1", "linear2"):
        torch.update({f"{pre}{name}.weight": layer[name]["kernel"].T,
                      f"{pre}{name}.bias": layer[name]["bias"]})
    for name in ("norm1", "norm2"):
        torch.update({f"{pre}{name}.weight": layer[name]["scale"],
                      f"{pre}{name}.bias": layer[name]["bias"]})
    rows = np.random.default_rng(0).permutation(100)
    np.savez(path, train_idx=rows[:40], test_idx=rows[40:],
             **{f"init/{k}": v for k, v in torch.items()},
             **{f"{name}/{k}": np.asarray(v) for name, c in curves.items() for k, v in c.items()})
    return path


def test_reference_start_runs_beside_the_reference_curves(tmp_path):
    """Each run again from the start file, its row beside the file's reference
    curve; everything archived, so --report_only works with the runs gone."""
    ref = {"steps": [1, 11], "train_loss": [2.0, 1.0], "train_acc": [0.1, 1.0],
           "test_acc": [0.05, 0.75], "weight_norm": [5.0, 6.0]}
    start = _tiny_start(tmp_path / "start.npz", {"orthograd_adamw_lr5e-3": ref})
    assert driver.reference_curves(start)[("orthograd_adamw", 5e-3)][1] == {
        "step": 11, "train/loss": 1.0, "train/accuracy": 1.0, "test/accuracy": 0.75,
        "params/global/norm": 6.0}
    kw = dict(lrs=[5e-3], variants=["orthograd_adamw"], steps=4, eval_every=20,
              mlp_anchor=False, command="cmd", lab_start=False, reference_start=True,
              start_file=start, d_model=32, ff_dim=64, modulus=11)
    rows, _ = driver.run_all(tmp_path / "runs", tmp_path / "results", **kw)
    assert rows == []  # no run from the lab's start
    runs = tmp_path / "runs"
    config = json.loads((runs / "ref_orthograd_adamw_lr0.005" / "config.json").read_text())
    assert config["model"]["init_from"] == config["data"]["split_from"] == str(start)
    params = train.restore_state(driver.transformer_config(
        "orthograd_adamw", 5e-3, 4, 20, start=start, d_model=32, ff_dim=64, modulus=11),
        runs / "ref_orthograd_adamw_lr0.005").params  # trained from the file's weights:
    first = rundir.read_metrics(runs / "ref_orthograd_adamw_lr0.005")[0]
    assert first["step"] == 0 and np.isfinite(first["train/loss"])
    assert float(np.abs(params["embedding"]["embedding"]
                        - np.load(start)["init/embedding.weight"]).max()) < 0.1
    text = (tmp_path / "results" / "transformer.md").read_text()
    section = text.split("## Transformer from the reference's start")[1]
    lines = [x for x in section.splitlines() if x.startswith("| ")][1:]
    assert lines[0].startswith("| ⊥AdamW, lr 0.005 | 4 |")
    assert lines[1].startswith("| *reference (torch)* | 11 |")  # steps of its curve
    assert "| 75.0 % |" in lines[1] and lines[1].split(" | ")[-3] == "11"  # ≥ 50 % at 11
    assert "- ⊥AdamW, lr 0.005: test ≥ 50 % at step never (reference 11);" in section
    archive = tmp_path / "results" / driver.ARCHIVE
    assert [p.name for p in archive.iterdir()] == ["ref_orthograd_adamw_lr0.005"]
    import shutil
    shutil.rmtree(runs)
    (tmp_path / "results" / "transformer.md").unlink()
    driver.run_all(tmp_path / "runs", tmp_path / "results", report_only=True, **kw)
    assert (tmp_path / "results" / "transformer.md").read_text() == text


def test_config_takes_a_start_file_from_the_command_line():
    """--config.model.init_from / --config.data.split_from exist (off by default)."""
    c = grokking_transformer.get_config()
    assert c.model.init_from is None and c.data.split_from is None
    c.model.init_from = c.data.split_from = str(driver.REFERENCE_START)  # typed str fields


def test_mlp_anchor_starts_from_the_reference_start():
    """The Fig. 6b MLP anchor uses the reference's split and initial weights."""
    from optim_lab.data import reference_start
    config = driver.mlp_anchor_config("mlp_orthograd_adamw", 500, 20)
    assert (config.optimizer.name, config.optimizer.learning_rate) == ("orthograd_adamw", 5e-3)
    data, fn, _, _ = train.setup(config)
    start = reference_start.load_start(config.model.init_from)
    assert (data.train_x.shape[0], data.test_x.shape[0]) == (5107, 7662)
    np.testing.assert_array_equal(fn.params["layers"][0]["kernel"],
                                  start.params["layers"][0]["kernel"])


@pytest.mark.parametrize("spec, match", [
    ("orthograd_adamw", "not VARIANT:LR"),
    ("adamw:1e-3:0", "STEPS must be a positive integer"),
    ("adamw:1e-3:many", "STEPS must be a positive integer"),
    ("sgd:1e-2", "not VARIANT:LR"),
    ("adamw:fast", "is not a number"),
    ("adamw:-1e-3", "must be > 0"),
])
def test_extra_runs_are_checked(spec, match):
    with pytest.raises(ValueError, match=match):
        driver.parse_extra(spec)
