"""Metric windows, the JSONL writer and the progress line."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab.training import metrics as metrics_lib


def test_window_mean_fetches_and_averages():
    window = [{"a": jnp.float32(1.0), "b": jnp.float32(2.0)},
              {"a": jnp.float32(3.0), "b": jnp.float32(4.0)}]
    assert metrics_lib.window_mean(window) == {"a": 2.0, "b": 3.0}
    assert metrics_lib.window_mean([]) == {}


def test_writer_truncates_on_resume_and_encodes_nonfinite(tmp_path):
    w = metrics_lib.MetricsWriter(tmp_path, resume_step=0)
    for s in (0, 5, 10):
        w.write(s, {"loss": float("nan") if s == 10 else 1.0 / (s + 1)})
    w.close()
    assert metrics_lib.read_metrics(tmp_path)[-1]["loss"] == "nan"
    metrics_lib.MetricsWriter(tmp_path, resume_step=5).close()
    assert [r["step"] for r in metrics_lib.read_metrics(tmp_path)] == [0, 5]


def test_read_rejects_foreign_records(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"loss": 1}) + "\n")
    with pytest.raises(ValueError, match="has no integer 'step'"):
        metrics_lib.read_metrics(tmp_path)


def test_progress_line_has_rate_and_eta():
    stream = io.StringIO()
    p = metrics_lib.Progress(total_steps=100, start_step=0, stream=stream)
    p._t0 -= 2.0  # pretend 2 s elapsed
    p.report(50, {"train/loss": 0.5, "test/accuracy": 0.25})
    line = stream.getvalue()
    assert line.startswith("step 50/100 | train/loss=0.5 test/accuracy=0.25 |")
    assert "25.0 steps/s" in line and "ETA 0m02s" in line


def _metrics(scale):
    return {"loss": jnp.float32(1.0 / 3.0) * scale, "code": (scale * 7).astype(jnp.int32),
            "norm": jnp.float32(2.0 ** -20) * scale}


def test_packed_metrics_fetch_as_the_dicts_do():
    packed = jax.jit(lambda s: metrics_lib.pack(_metrics(s)))(jnp.float32(3.0))
    assert len(jax.tree.leaves(packed)) == 2  # one array per dtype
    assert packed.order == ("loss", "code", "norm")
    plain = jax.jit(_metrics)(jnp.float32(3.0))
    assert metrics_lib.fetch_window([packed]) == metrics_lib.fetch_window([plain])
    # Scanned: the packed arrays gain the steps' axis; rows keep key order.
    def steps(s):
        return jax.lax.scan(lambda c, _: (c + 1, metrics_lib.pack(_metrics(c))), s, None,
                            length=4)[1]
    want = jax.lax.scan(lambda c, _: (c + 1, _metrics(c)), jnp.float32(1.0), None, length=4)[1]
    got_rows = metrics_lib.fetch_window([jax.jit(steps)(jnp.float32(1.0)), packed])
    want_rows = metrics_lib.fetch_window([want, plain])
    assert got_rows == want_rows and list(got_rows[0]) == ["loss", "code", "norm"]


def test_window_mean_is_the_float64_mean_of_each_key():
    rng = np.random.default_rng(0)
    for n in (1, 7, 8, 9, 10, 100, 129, 1000):
        values = rng.standard_normal((n, 2)) * 10.0 ** rng.uniform(-8, 8, (n, 2))
        host = [{"a": float(np.float32(a)), "b": float(b)} for a, b in values]
        want = {k: float(np.mean([np.float64(m[k]) for m in host])) for k in ("a", "b")}
        assert metrics_lib.window_mean(host) == want


def test_columns_of_a_vmapped_window_average_per_member_as_window_mean_does():
    rng = np.random.default_rng(1)
    steps = [rng.standard_normal((3, 5)).astype(np.float32) for _ in range(4)]
    # One step of 5 members, then a scanned call of 3 steps, then 9 single steps.
    window = [metrics_lib.pack({"a": jnp.asarray(steps[0][0]), "b": jnp.asarray(steps[1][0])}),
              metrics_lib.pack({"a": jnp.asarray(steps[2]), "b": jnp.asarray(steps[3])})]
    window += [{"a": jnp.asarray(x), "b": jnp.asarray(-x)}
               for x in rng.standard_normal((9, 5)).astype(np.float32)]
    columns = metrics_lib.fetch_columns(window, step_ndim=1)
    assert list(columns) == ["a", "b"] and columns["a"].shape == (13, 5)
    means = metrics_lib.column_means(columns, exclude=("b",))
    assert list(means) == ["a"]
    for i in range(5):
        member = [{"a": float(v)} for v in columns["a"][:, i]]
        assert means["a"][i] == metrics_lib.window_mean(member)["a"]
    np.testing.assert_array_equal(columns["a"][1:4], steps[2].astype(np.float64))
