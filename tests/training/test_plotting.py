"""Learning-curve plots from run directories, and the plot binary."""

import json

import matplotlib.image as mpimg
import numpy as np
import pytest

from optim_lab.training import plotting

import binaries


def _fake_run(path, scale):
    path.mkdir()
    with (path / "metrics.jsonl").open("w") as f:
        for s in (0, 10, 20, 30):
            f.write(json.dumps({"step": s, "train/loss": scale / (s + 1),
                                "test/loss": "nan" if s == 20 else 2.0,
                                "train/accuracy": s / 30, "test/accuracy": s / 60,
                                "probe/softmax_collapse": s / 100}) + "\n")


def test_plot_runs_writes_png(tmp_path):
    _fake_run(tmp_path / "a", 1.0)
    _fake_run(tmp_path / "b", 2.0)
    out = plotting.plot_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "c.png",
                             log_x=True, extra_keys=["probe/softmax_collapse"])
    img = mpimg.imread(out)
    assert img.shape[1] > img.shape[0] > 100  # three panels side by side
    steps, values = plotting.series(
        [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()],
        "test/loss")
    assert steps.tolist() == [0, 10, 20, 30] and str(values[2]) == "nan"


def test_empty_run_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metrics.jsonl records"):
        plotting.plot_runs([tmp_path / "empty"], tmp_path / "x.png")


def test_plot_binary(tmp_path):
    _fake_run(tmp_path / "a", 1.0)
    out = tmp_path / "curves.png"
    binaries.run_ok("experiments.plot", f"--workdirs={tmp_path / 'a'}", f"--out={out}",
                    "--log_x", timeout=120)
    assert out.stat().st_size > 10_000


# -- runs grouped over seeds (sweeps) -------------------------------------------------


def _seeded_run(path, lr, seed, losses, steps=(0, 10, 20)):
    """A run directory with a config.json and given train/loss values."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(
        {"seed": seed, "steps": steps[-1], "optimizer": {"name": "adamw",
                                                        "learning_rate": lr}}))
    with (path / "metrics.jsonl").open("w") as f:
        for s, loss in zip(steps, losses):
            ok = loss != "nan"  # the lab logs a non-finite value as a string
            f.write(json.dumps({"step": s, "train/loss": loss,
                                "test/loss": 2 * loss if ok else loss,
                                "train/accuracy": 1 - loss if ok else loss,
                                "test/accuracy": 0.5}) + "\n")


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "sweep"
    _seeded_run(root / "lr=0.1,seed=0", 0.1, 0, [1.0, 0.5, 0.25])
    _seeded_run(root / "lr=0.1,seed=1", 0.1, 1, [1.0, 0.7, 0.35])
    _seeded_run(root / "lr=0.1,seed=2", 0.1, 2, [1.0, 0.6, 0.3, 0.1], steps=(0, 10, 20, 30))
    _seeded_run(root / "lr=0.2,seed=0", 0.2, 0, [1.0, 0.2, "nan"])
    (root / "summary.md").write_text("not a run")
    return root


def test_runs_are_grouped_by_config_except_seed(sweep_dir):
    runs = plotting.find_runs([sweep_dir])
    assert [r.name for r in runs] == ["lr=0.1,seed=0", "lr=0.1,seed=1", "lr=0.1,seed=2",
                                      "lr=0.2,seed=0"]
    assert plotting.find_runs([runs[0]]) == [runs[0]]
    groups = plotting.group_by_seed(runs)
    # seed 2 ran longer (steps=30): another config, its own group; labels name
    # the differing fields in config.json order
    assert [(g.label, g.seeds) for g in groups] == [
        ("steps=20, optimizer.learning_rate=0.1", [0, 1]),
        ("steps=30, optimizer.learning_rate=0.1", [2]),
        ("steps=20, optimizer.learning_rate=0.2", [0])]
    assert plotting.group_by_seed(runs[:2])[0].label == "all runs"


def test_seed_band_statistics():
    a = (np.array([0.0, 10, 20]), np.array([1.0, 0.5, 0.25]))
    b = (np.array([0.0, 10, 20, 30]), np.array([1.0, 0.7, 0.35, 0.1]))
    steps, mean, lo, hi = plotting.seed_band([a, b], "std")
    assert steps.tolist() == [0, 10, 20]  # the steps every run logged
    np.testing.assert_allclose(mean, [1.0, 0.6, 0.3], rtol=1e-15)
    std = np.array([0.0, np.sqrt(0.02), np.sqrt(0.005)])  # ddof 1 of two values
    np.testing.assert_allclose(hi - mean, std, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(mean - lo, std, rtol=1e-12, atol=1e-15)
    _, _, lo, hi = plotting.seed_band([a, b], "minmax")
    assert lo.tolist() == [1.0, 0.5, 0.25] and hi.tolist() == [1.0, 0.7, 0.35]
    _, mean, lo, hi = plotting.seed_band([a], "std")
    assert (lo == mean).all() and (hi == mean).all()
    with pytest.raises(ValueError, match="band must be one of"):
        plotting.seed_band([a], "iqr")


def test_plot_groups_writes_png(sweep_dir, tmp_path):
    groups = plotting.group_by_seed(plotting.find_runs([sweep_dir]))
    out = plotting.plot_groups(groups, tmp_path / "g.png", band="minmax", log_x=True)
    img = mpimg.imread(out)
    assert img.shape[1] > img.shape[0] > 100


def test_plot_binary_groups_a_sweep_directory(sweep_dir, tmp_path):
    out = tmp_path / "grouped.png"
    binaries.run_ok("experiments.plot", f"--workdirs={sweep_dir}", f"--out={out}",
                    "--group_seeds", "--labels=a,b,c", timeout=120)
    assert out.stat().st_size > 10_000
