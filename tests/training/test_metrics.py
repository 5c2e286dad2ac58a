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
