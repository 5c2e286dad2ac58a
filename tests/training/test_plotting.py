"""Learning-curve plots from run directories, and the plot binary."""

import json
import subprocess
import sys

import matplotlib.image as mpimg
import pytest

from optim_lab.training import plotting

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


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
        [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()],
        "test/loss")
    assert steps.tolist() == [0, 10, 20, 30] and str(values[2]) == "nan"


def test_empty_run_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metrics.jsonl records"):
        plotting.plot_runs([tmp_path / "empty"], tmp_path / "x.png")


def test_plot_binary(tmp_path):
    _fake_run(tmp_path / "a", 1.0)
    out = tmp_path / "curves.png"
    res = subprocess.run([sys.executable, "-m", "experiments.plot",
                          f"--workdirs={tmp_path / 'a'}", f"--out={out}", "--log_x"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert out.stat().st_size > 10_000
