"""The schedule registry: names, config fields, refined from a run directory."""

from __future__ import annotations

import numpy as np
import pytest
from test_norm_log import write_run

from optim_lab.schedules import refined
from optim_lab.schedules import registry

from tolerances import F32
from tolerances import assert_close


def test_every_schedule_is_registered():
    assert set(registry.names()) == {"constant", "linear", "cosine", "wsd",
                                     "table", "refined"}
    assert {"warmup_steps", "cooldown_steps", "cooldown", "table", "refine_from",
            "norm", "tau", "trim", "grid", "resample", "optimizer"} <= set(
                registry.hyperparameter_names())


@pytest.mark.parametrize("name, kwargs, at_end", [
    ("linear", dict(warmup_steps=2), 0.0), ("cosine", {}, 0.0),
    ("wsd", dict(cooldown="1-sqrt"), 0.0), ("table", dict(table=(1.0, 0.5)), 0.5),
])
def test_build_with_none_defaults(name, kwargs, at_end):
    sched = registry.build(name, 0.1, 10, warmup_steps=kwargs.pop("warmup_steps", None),
                           **kwargs)
    assert_close(sched(10 if name != "table" else 9), 0.1 * at_end, ulps=4, scale=0.1)


def test_constant_rejects_schedule_fields():
    with pytest.raises(ValueError, match="schedule.warmup_steps"):
        registry.build("constant", 0.1, 10, warmup_steps=3)


def test_errors_name_the_schedule():
    with pytest.raises(ValueError, match=r"schedule \(wsd\): warmup_steps"):
        registry.build("wsd", 0.1, 10, warmup_steps=20)
    with pytest.raises(ValueError, match=r"schedule \(refined\): refine_from"):
        registry.build("refined", 0.1, 10)
    with pytest.raises(ValueError, match=r"schedule \(linear\): learning_rate"):
        registry.build("linear", -0.1, 10)


def test_refined_from_a_run_directory(tmp_path):
    run = write_run(tmp_path / "run", steps=40, log_every=1,
                    norms=list(np.r_[np.linspace(4.0, 1.0, 8), np.ones(32)]))
    sched = registry.build("refined", 0.5, 40, refine_from=str(run), trim=0,
                           optimizer="sgd")
    lr = np.array([float(sched(t)) for t in range(41)])
    shape = refined.refine_schedule(np.r_[np.linspace(4.0, 1.0, 8), np.ones(32)],
                                    trim=0)
    # a float64 shape rounded to the float32 schedule: 8 eps of |lr| + peak
    assert_close(lr[:40], 0.5 * shape, ulps=8, dtype=F32)
    assert lr[-1] == 0.0 and 0 < np.argmax(lr) < 20  # emergent warm-up


def test_refined_rejects_another_run_length_unless_resample(tmp_path):
    run = write_run(tmp_path / "run", steps=20, log_every=1)
    with pytest.raises(ValueError, match="resample=True"):
        registry.build("refined", 0.5, 30, refine_from=str(run))
    sched = registry.build("refined", 0.5, 30, refine_from=str(run),
                           resample=True)
    assert float(sched(29)) == 0.0
