"""The binaries' command line (``experiments/_cli.py``), run as a user runs them.

A config or flag mistake is one ``error:`` line naming the field and exit
status 2, with no traceback (``--debug`` shows it); switching the optimizer
drops the config file's other hyperparameters with one ``note:`` line.
"""

import json
import subprocess

import pytest

import binaries

GROKKING = "--config=experiments/configs/grokking.py"


def _run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return binaries.run(module, *args, timeout=timeout)


def _assert_one_line_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr[-3000:]
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("args, needles", [
    ([GROKKING, "--config.foo=1"], ["--config.foo", "unknown config field 'foo'"]),
    ([GROKKING, "--config.optimizer.learnin_rate=0.1"],
     ["--config.optimizer.learnin_rate", "did you mean 'optimizer.learning_rate'?"]),
    (["--config=experiments/configs/no_such_config.py"],
     ["--config", "no_such_config.py", "No such file"]),
    ([GROKKING, "--config.steps=abc"], ["--config.steps=abc"]),
    ([GROKKING, "--config.optimizer.name=sgd", "--config.optimizer.b1=0.9"],
     ["--config.optimizer.b1", "optimizer 'sgd' does not take 'b1'"]),
    ([GROKKING, "--config.optimizer.name=adamww"],
     ["optimizer.name", "did you mean 'adamw'?"]),
    ([GROKKING, "--config.optimizer.b2=1.5"], ["b2", "1.5"]),
    ([GROKKING, "--config.steps=None"], ["steps", "None"]),
    ([GROKKING, "stray_argument"], ["unexpected arguments: stray_argument"]),
    ([GROKKING, "--wrkdir=x"], ["wrkdir", "workdir"]),
], ids=["unknown_field", "misspelt_field", "missing_config_file", "unparsable_value",
        "command_line_field_not_taken", "unknown_optimizer", "out_of_range",
        "required_field_reset", "positional_argument", "unknown_flag"])
def test_config_and_flag_errors_are_one_line_with_status_2(tmp_path, args, needles):
    out = _run("experiments.train", f"--workdir={tmp_path / 'run'}", *args)
    _assert_one_line_error(out, *needles)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("config, field, value", [
    ("grokking", "model.hidden", "(200,-5)"),
    ("grokking", "model.hidden", "(0,)"),
    ("adamp_digits", "model.channels", "(16,0)"),
])
def test_invalid_model_sizes_name_the_field(tmp_path, config, field, value):
    out = _run("experiments.train", f"--config=experiments/configs/{config}.py",
               f"--workdir={tmp_path}", f"--config.{field}={value}")
    _assert_one_line_error(out, field)


def test_debug_shows_the_traceback(tmp_path):
    out = _run("experiments.train", GROKKING, f"--workdir={tmp_path}",
               "--config.model.hidden=(0,)", "--debug")
    assert out.returncode != 0 and "Traceback" in out.stderr
    assert "model.hidden" in out.stderr


@pytest.mark.parametrize("module, flag, needles", [
    ("experiments.adamp", "--parts=tyo", ["--parts", "did you mean 'toy'?"]),
    ("experiments.fadam", "--lrs=abc", ["--lrs", "'abc' is not a positive number"]),
    ("experiments.polyak", "--studies=quad", ["--studies", "did you mean 'quadratic'?"]),
    ("experiments.schedules", "--problems=mlp_adm", ["--problems", "did you mean 'mlp_adam'?"]),
    ("experiments.grokking_demo", "--seed=-1", ["--seed"]),
    ("experiments.plot", "--workdirs=/nonexistent/run", ["--workdirs", "/nonexistent/run"]),
])
def test_every_driver_reports_flag_errors_in_one_line(module, flag, needles):
    _assert_one_line_error(_run(module, flag, timeout=120), *needles)


def test_switching_to_sgd_drops_the_file_hyperparameters_and_trains(tmp_path):
    out = _run("experiments.train", GROKKING, f"--workdir={tmp_path}",
               "--config.optimizer.name=sgd", "--config.optimizer.weight_decay=None",
               "--config.steps=1", "--config.log_every=1", "--config.eval_every=1",
               "--config.checkpoint_every=1", "--config.data.modulus=11",
               "--config.model.hidden=(8,)")
    assert out.returncode == 0, out.stderr[-3000:]
    notes = [line for line in out.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: optimizer sgd does not take b1, b2, eps (set by the "
                     "config file); dropped"], out.stderr
    opt = json.loads((tmp_path / "config.json").read_text())["optimizer"]
    assert opt["name"] == "sgd" and opt["learning_rate"] == 0.01
    assert opt["b1"] is opt["b2"] is opt["eps"] is None  # dropped
    assert opt["weight_decay"] is None  # reset from the file's 0.0 by --...=None
    assert (tmp_path / "checkpoints" / "1").is_dir()


_TINY = [GROKKING, "--config.data.modulus=11", "--config.model.hidden=(8,)",
         "--config.log_every=5", "--config.eval_every=5", "--config.checkpoint_every=5"]


def test_locked_workdir_is_one_line_with_status_1(tmp_path):
    from optim_lab.training import workdir as workdir_lib
    with workdir_lib.lock(tmp_path):
        out = _run("experiments.train", *_TINY, f"--workdir={tmp_path}",
                   "--config.steps=5")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.strip().splitlines() == [
        f"error: workdir {tmp_path} in use by pid {__import__('os').getpid()}; wait "
        "for it to finish or use another workdir"]


def test_diverging_run_stops_with_one_line_and_status_1(tmp_path):
    out = _run("experiments.train", *_TINY, f"--workdir={tmp_path}", "--config.steps=100",
               "--config.optimizer.name=sgd", "--config.optimizer.learning_rate=1e12",
               "--config.max_nonfinite_steps=5")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-3000:]
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "diverged: " in errors[0], out.stderr[-3000:]
    assert "stopped at step 5" in errors[0] or "stopped at step 10" in errors[0]
    assert (tmp_path / "checkpoints").is_dir()
    records = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train/nonfinite"] > 0
