"""The FAdam-vs-AdamW driver end to end at smoke size, and its configs."""


from experiments.configs import fadam_digits
from experiments.configs import fadam_modular
from optim_lab import rundir
from optim_lab.training import train

import binaries


def test_every_sweep_cell_builds():
    for get_config in (fadam_digits.get_config, fadam_modular.get_config):
        for name in ("adamw", "fadam"):
            for wd in (0.0, 0.1):
                c = get_config()
                c.optimizer.name, c.optimizer.weight_decay = name, wd
                train.check_config(c)
                train.build_optimizer(c)


def test_driver_smoke_writes_summary_and_measures_clipped_decay(tmp_path):
    out, runs = tmp_path / "out", tmp_path / "runs"
    binaries.run_ok("experiments.fadam", f"--workdir={runs}", f"--out={out}",
                    "--problems=digits", "--seeds=1", "--steps=20", "--lrs=0.01")
    text = (out / "summary.md").read_text()
    # through the sweep engine: one vmapped program per optimizer (λ traced),
    # each run an ordinary run directory of the driver's layout
    assert "4 runs in 2 vmapped programs (2 + 2 members)" in text
    for opt in ("adamw", "fadam"):
        for wd in ("0", "0.1"):
            run = runs / "digits" / opt / f"wd{wd}_lr0.01_seed0_steps20"
            assert rundir.read_metrics(run)[-1]["step"] == 20
    assert (out / "fadam.png").stat().st_size > 10_000
    assert "| fadam | 0.1 | **0.01** |" in text
    # FAdam's decay is clipped: measured decay step RMS = lr * wd * c = 1e-3
    decay_row = next(line for line in text.splitlines() if line.startswith("| digits | 0.01 |"))
    assert "| 1.00e-03 | 1.00e-03 |" in decay_row
