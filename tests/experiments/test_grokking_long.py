"""The long StableMax runs' configs, wall-clock record and milestone report
(``experiments/grokking_summary.py``, used by ``benchmarks/grokking_stablemax_long.py``);
no training here."""

import json
import pathlib

import jax
import numpy as np
import pytest

from experiments import grokking_summary as summary
from experiments.configs import grokking_stablemax_long
from experiments.configs import grokking_stablemax_long_ref
from optim_lab.training import train

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_long_configs_keep_a_float64_adam_state():
    c = grokking_stablemax_long.get_config()
    assert (c.optimizer.eps, c.optimizer.state_dtype, c.enable_x64) == (1e-25, 64, True)
    assert (c.loss, c.loss_dtype, c.steps_per_call) == ("stablemax", 64, 100)
    ref = grokking_stablemax_long_ref.get_config()
    start = ROOT / "tests" / "golden" / "grokking_start.npz"
    assert ref.data.split_from == ref.model.init_from == str(start) and start.is_file()
    assert ref.seed == 42 and ref.optimizer.state_dtype == 64
    for key in ("steps", "loss", "loss_dtype", "optimizer"):
        assert ref[key] == c[key]


def test_build_config_and_run_names():
    ref = summary.build_config("ref", None, 100, 64, 64)
    assert ref.model.init_from.endswith("grokking_start.npz") and ref.steps == 100
    f32 = summary.build_config("long", 7, 80_000, 64, 32)
    assert (f32.seed, f32.optimizer.state_dtype, f32.enable_x64) == (7, 32, True)
    both32 = summary.build_config("long", None, 60_000, 32, 32)
    assert not both32.enable_x64  # float32 loss and state: as the earlier f32 run
    with pytest.raises(ValueError, match="--seed"):
        summary.build_config("ref", 3, 100, 64, 64)
    assert summary.run_name("ref", 42, 64, 64) == "ref"
    assert summary.run_name("long", 7, 64, 32) == "seed7_f32state"
    assert summary.run_name("long", 42, 32, 32) == "seed42_f32state_f32loss"
    assert summary.command_for("seed7", {"steps": 80_000}) == (
        "python -m benchmarks.grokking_stablemax_long --seed=7 --steps=80000")
    assert summary.command_for("ref_timed", {"steps": 52_000}) == (
        "python -m benchmarks.grokking_stablemax_long --config=ref "
        "--workdir=runs/stablemax_long/ref_timed --steps=52000")
    assert summary.label("ref_timed") == (
        "reference start (seed 42 split + init), timed rerun (one session, quiet machine)")
    assert summary.run_name("ref", 42, 64, 64, gather=True) == "ref_gather"
    assert summary.label("ref_gather_timed") == (
        "reference start (seed 42 split + init), first layer as a row gather, timed rerun "
        "(one session, quiet machine)")
    assert summary.command_for("ref_gather_timed", {"steps": 56_000}) == (
        "python -m benchmarks.grokking_stablemax_long --config=ref --gather "
        "--workdir=runs/stablemax_long/ref_gather_timed --steps=56000")


def test_gather_config_builds_the_same_function_with_the_reference_weights():
    dense = summary.build_config("ref", None, 10, 64, 64)
    gather = summary.build_config("ref", None, 10, 64, 64, gather=True)
    assert gather.model.one_hot_groups == 2 and "one_hot_groups" not in dense.model
    (data, fn_dense, _, _), (_, fn_gather, _, _) = train.setup(dense), train.setup(gather)
    x = data.train_x[:64]
    for a, b in zip(jax.tree.leaves(fn_dense.params), jax.tree.leaves(fn_gather.params),
                    strict=True):
        np.testing.assert_array_equal(a, b)  # both the reference's initial weights
    run = lambda fn: fn.apply(fn.params, fn.model_state, x, False)[0]  # noqa: E731
    np.testing.assert_array_equal(run(fn_dense), run(fn_gather))  # the forward is exact


def test_goal_sentence_judges_the_timed_run():
    row = {"label": "x", "steps": 52_000, "hits": {0.95: 51_500},
           "minutes": {0.95: 16.25}, "cpu_minutes": {0.95: 30.0}, "load": 2.1}
    assert "missed by 1.2 min" in summary.goal_sentence(row)
    row["minutes"][0.95] = 14.0
    assert ": met." in summary.goal_sentence(row)
    row["hits"][0.95] = None
    assert "95 % not reached by step 52 000" in summary.goal_sentence(row)


def test_step_flops_of_the_gather():
    dense = summary.step_flops(5107, [226, 200, 200, 113], gather=False)
    gather = summary.step_flops(5107, [226, 200, 200, 113], gather=True)
    assert dense == pytest.approx(2.86e9, rel=1e-2)
    assert 1 - gather / dense == pytest.approx(0.32, abs=0.01)


def test_seconds_at_interpolates_the_clock():
    clock = [{"step": 100, "wall_s": 10.0}, {"step": 300, "wall_s": 50.0}]
    assert summary.seconds_at(clock, 50) == 5.0
    assert summary.seconds_at(clock, 200) == 30.0
    assert summary.seconds_at(clock, 400) is None and summary.seconds_at([], 1) is None


def _records(path, lines):
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_clock_resumes_from_the_newest_checkpoint(tmp_path):
    """Records past the newest checkpoint (work an interrupted session lost)
    are dropped; the clock continues from the seconds recorded there."""
    for step in (5000, 10000):
        (tmp_path / "checkpoints" / str(step)).mkdir(parents=True)
    _records(tmp_path / summary.CLOCK_FILE,
             [{"step": s, "wall_s": s / 100, "cpu_s": s / 50, "load1": 1.0}
              for s in (5000, 10000, 10500)])
    _records(tmp_path / "metrics.jsonl", [{"step": 10000}])
    with summary.Clock(tmp_path, poll=0.01) as clock:
        assert [r["step"] for r in summary.read_clock(tmp_path)] == [5000, 10000]
        with open(tmp_path / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": 10100}) + "\n")
        clock._note()
    records = summary.read_clock(tmp_path)
    assert [r["step"] for r in records] == [5000, 10000, 10100]
    assert 100.0 <= records[-1]["wall_s"] < 160.0  # 100 s at the checkpoint + this session
    assert records[-1]["cpu_s"] >= 200.0


def _run(root, name, accs, seconds_per_step, steps=80_000):
    wd = root / name
    wd.mkdir(parents=True)
    (wd / "config.json").write_text(json.dumps({"steps": steps}))
    _records(wd / "metrics.jsonl", [
        {"step": s, "test/accuracy": a, "train/accuracy": 1.0, "probe/zero_loss": 0.0,
         "params/global/norm": 1e4, "probe/max_logit": 1e6} for s, a in accs])
    _records(wd / summary.CLOCK_FILE, [
        {"step": s, "wall_s": s * seconds_per_step, "cpu_s": 2 * s * seconds_per_step,
         "load1": 2.0} for s, _ in accs if s > 0])
    return wd


def test_milestone_report_from_run_directories(tmp_path):
    root, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    _run(root, "seed7", [(0, 0.0), (30_000, 0.6), (40_000, 0.96), (80_000, 0.995)], 0.012)
    _run(root, "ref", [(0, 0.0), (35_000, 0.55), (52_000, 0.955)], 0.012)
    _run(root, "_first20", [(0, 0.0), (21, 0.0)], 0.01, steps=21)  # not a run of the table
    runs = summary.find_runs(root)
    assert [p.name for p in runs] == ["ref", "seed7"]
    f32state = summary.report(
        [{"step": s, "test/accuracy": a, "train/accuracy": 1.0, "probe/zero_loss": 0.0,
          "params/global/norm": n, "probe/max_logit": 1e6}
         for s, a, n in [(0, 0.0, 13.0), (58_500, 0.51, 2e4), (63_500, 0.635, 2.5e4),
                         (80_000, 0.32, 1.5e6)]],
        80_000, None, state_dtype="32")
    (results / "stablemax_long_f32state.md").write_text(f32state)
    text = summary.milestone_report(runs, results, None, summary.onset_analysis(runs))
    assert "| *reference (torch, its seed 42)* | 80 000 | ≤ 35 000 |" in text
    assert "≤ 51 000 · 46.0 min" in text
    # ref: 50 % at 35 000 (7.0 min at 0.012 s/step, CPU twice that), 95 % at 52 000;
    # still running
    assert ("| reference start (seed 42 split + init) | 52 000 of 80 000 (running / "
            "resumable) | 35 000 · 7.0 min (CPU 14.0) | 52 000 · 10.4 min (CPU 20.8) | "
            "52 000 · 10.4 min (CPU 20.8) | not reached |") in text
    assert ("| lab seed 7 | 80 000 | 30 000 · 6.0 min (CPU 12.0) | 40 000 · 8.0 min "
            "(CPU 16.0) |") in text
    assert "| 16.0 (CPU 32.0, load 2.0) |" in text  # seed 7's total
    assert "99.5% @ 80 000" in text
    assert ("| lab seed 42, **float32 Adam state** ([page](stablemax_long_f32state.md)) | "
            "80 000 | 58 500 | not reached | not reached | not reached | 63.5% @ 63 500 | "
            "32.0% |") in text
    assert "the same onset within 2%" in text  # 52 000 vs the reference's 51 000
    assert "lab seed 7: 30000" in text
    assert "python -m benchmarks.grokking_stablemax_long --config=ref --steps=80000" in text


def test_reports_survive_the_run_directories_through_the_archive(tmp_path):
    root, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    _run(root, "seed7", [(0, 0.0), (30_000, 0.6), (40_000, 0.96), (80_000, 0.995)], 0.012)
    _run(root, "ref", [(0, 0.0), (35_000, 0.55), (52_000, 0.955)], 0.012)
    with open(root / "ref" / "metrics.jsonl", "a") as f:  # a key the reports never read
        f.write(json.dumps({"step": 52_100, "train/loss": 0.5, "cos/layer0": 0.1}) + "\n")
    want = summary.milestone_report(summary.find_runs(root), results)
    archive = results / summary.ARCHIVE
    for wd in summary.find_runs(root):
        summary.archive_run(wd, archive)
    (archive / "seed7.partial").mkdir()  # a replacement killed half-way is not a run
    (archive / "seed7.partial" / "metrics.jsonl").write_text("")
    for wd in summary.find_runs(root):
        summary.archive_run(wd, archive)  # again: replaces the archive whole
    for wd in root.iterdir():
        for f in wd.iterdir():
            f.unlink()
        wd.rmdir()
    runs = summary.find_runs(archive)
    assert [p.name for p in runs] == ["ref", "seed7"]
    assert summary.milestone_report(runs, results) == want
    kept = [json.loads(line) for line in (archive / "ref" / "metrics.jsonl").open()]
    assert kept[-1] == {"step": 52_100, "train/loss": 0.5}


def test_rows_of_runs_without_data_are_carried_over(tmp_path):
    root, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    _run(root, "seed7", [(0, 0.0), (30_000, 0.6), (40_000, 0.96), (80_000, 0.995)], 0.012)
    _run(root, "ref_gather_timed", [(0, 0.0), (35_000, 0.55), (52_000, 0.955)], 0.01,
         steps=60_000)
    _run(root, "seed0", [(0, 0.0), (55_000, 0.5), (76_000, 0.92), (80_000, 0.921)], 0.02)
    runs = summary.find_runs(root)
    before = summary.milestone_report(runs, results, None, summary.onset_analysis(runs))
    rows = [line for line in before.splitlines() if line.startswith("| ")]
    parsed = [summary.parse_row(line) for line in rows]
    assert [r and r["name"] for r in parsed] == [None, None, "ref_gather_timed", "seed0",
                                                 "seed7"]  # header, reference, runs
    for line, row in zip(rows[2:], parsed[2:]):
        assert summary._row(row) == line  # the row is rewritten as it was
    # seed0's directory is lost: its row and its place in the analysis stay.
    kept = [wd for wd in runs if wd.name != "seed0"]
    carried = summary.carried_rows(before, {wd.name for wd in kept})
    assert [r["name"] for r in carried] == ["seed0"]
    after = summary.milestone_report(kept, results, None,
                                     summary.onset_analysis(kept, carried), carried)
    assert rows[3].replace("| lab seed 0 |", "| lab seed 0 ¹ |") in after
    assert "Carried: lab seed 0." in after
    # Carried again by the next report, unchanged.
    again = summary.carried_rows(after, {wd.name for wd in kept})
    assert again == carried
    assert "lab seed 0: 55000, lab seed 7: 30000 — a spread of 25000 steps." in after
    assert "python -m benchmarks.grokking_stablemax_long --seed=0 --steps=80000" in after
    assert summary.name_of(summary.label("seed42_f32state")) == "seed42_f32state"
    with pytest.raises(ValueError, match="not a run label"):
        summary.name_of("my run")


def test_miss_sentences_say_by_how_much_and_why():
    def row(name, h50, h90, h95, last, steps=80_000):
        return {"name": name, "label": name, "steps": steps, "target": 80_000,
                "hits": {0.5: h50, 0.9: h90, 0.95: h95, 0.99: None},
                "last": {"test/accuracy": last}, "peak": (last, steps)}
    made = [row("ref", 35_000, 47_000, 52_500, 0.98), row("seed7", 48_000, 60_500, 65_000, 0.99)]
    missed = row("seed0", 55_000, 76_000, None, 0.921)
    (line,) = summary.miss_sentences([*made, missed])
    assert "seed0 ends at 92.1% (2.9 points short of 95 %, still rising at step 80 000" in line
    assert "50 % → 90 % in 21 000 steps" in line
    assert "pass 50 % at 35 000–48 000 and climb from 50 % to 90 % in 12 000–12 500" in line
    assert "the misses start later, climb more slowly" in line
    # an unfinished seed is not a miss yet; nothing made it: nothing to compare
    assert summary.miss_sentences([*made, row("seed0", 55_000, None, None, 0.6,
                                                       steps=60_000)]) == []
    assert summary.miss_sentences([missed]) == []
