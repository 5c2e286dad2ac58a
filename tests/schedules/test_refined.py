"""refine_schedule: golden vectors, reference goldens, filter, guards."""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np
import optax
import pytest
from scipy import ndimage

from optim_lab.schedules import refined
from optim_lab.schedules.refined import refine_schedule

import goldens
from tolerances import F32
from tolerances import assert_close

# The spec's golden vectors are printed with 5 decimals: a decimal-rounding
# tolerance of the spec, not a floating-point one.
SPEC_DECIMALS = 1e-5

CORE = dict(trim=0, tau=0, grid=None)  # weighting only (the spec's goldens)

GOLDEN_VECTORS = [
    ([1, 1, 1, 1, 1, 1], "l2", [1, 0.8, 0.6, 0.4, 0.2, 0]),
    ([1, 2, 3, 4], "l2", [1, 0.10246, 0.01639, 0]),
    ([4, 3, 2, 1], "l2", [0.34028, 0.55556, 1, 0]),
    ([1, 2, 3, 4], "l1", [1, 0.26923, 0.07692, 0]),
]


def assert_is_schedule_shape(eta):
    assert eta.dtype == np.float64
    assert np.max(eta) == 1.0
    assert eta[-1] == 0.0


@pytest.mark.parametrize("g, norm, expected", GOLDEN_VECTORS)
def test_spec_golden_vectors(g, norm, expected):
    eta = refine_schedule(g, norm=norm, **CORE)
    np.testing.assert_allclose(eta, expected, atol=SPEC_DECIMALS, rtol=0)
    assert_is_schedule_shape(eta)


@pytest.mark.parametrize("T", [2, 3, 7, 100, 2001])
@pytest.mark.parametrize("grid", [None, 10_000])
def test_constant_norms_give_exact_linear_decay_to_zero_at_T_minus_1(T, grid):
    eta = refine_schedule(np.full(T, 0.37), trim=0, grid=grid)
    linear = optax.linear_schedule(1.0, 0.0, T - 1)
    expected = np.array([float(np.float64(1.0 - t / (T - 1))) for t in range(T)])
    assert_close(eta, expected, ulps=4500)  # float64: 1e-12 of the peak (1)
    # optax's float32 schedule: 8 float32 eps of |η| + 1 (atol 1e-6 before)
    assert_close(eta, [float(linear(t)) for t in range(T)], ulps=8, dtype=F32)
    assert_is_schedule_shape(eta)


def test_norm_selects_the_power():
    g = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    for norm, p in (("l2", 2), ("l1", 1)):
        w = g ** -p
        tail = np.array([w[t + 1:].sum() for t in range(len(g))])
        expect = w * tail
        assert_close(refine_schedule(g, norm=norm, **CORE), expect / expect.max(),
                     ulps=8)


def test_normalisation_constant_does_not_matter():
    w = np.random.default_rng(0).uniform(0.1, 10.0, size=500)
    by_sum = refined.weights_to_schedule(w / w.sum())
    by_last = refined.weights_to_schedule(w / w[-1])
    # 500-term cumulative sums of rescaled weights: 4500 float64 eps (1e-12)
    assert_close(by_sum, refined.weights_to_schedule(w), ulps=4500)
    assert_close(by_last, refined.weights_to_schedule(w), ulps=4500)


def test_filter_width():
    assert refined.filter_width(0.1, 10_000) == 1001
    assert refined.filter_width(0.0, 10_000) == 1
    assert refined.filter_width(0.1, 25) == 3
    assert refined.filter_width(0.05, 100) == 5


def _naive_median(g, width):
    """Right-end reflect padding by 2*width, then 'nearest' at both ends."""
    pad = 2 * width
    right = g[-2:-pad - 2:-1]  # reflect, edge not repeated
    x = np.concatenate([g, right])
    half = width // 2
    x = np.concatenate([np.full(half, x[0]), x, np.full(half, x[-1])])
    return np.array([np.median(x[i:i + width]) for i in range(len(g))])


def test_median_filter_pads_right_end_only_with_reflection():
    g = np.random.default_rng(1).lognormal(size=60) + np.linspace(0, 5, 60)
    for width in (1, 3, 7, 11):
        np.testing.assert_array_equal(refined.median_filter(g, width),
                                      _naive_median(g, width))
    # the left end is 'nearest'-padded, the right end reflected: a ramp shows it
    ramp = np.arange(20.0)
    out = refined.median_filter(ramp, 5)
    np.testing.assert_array_equal(out[:2], [0.0, 1.0])  # 0 0 0 1 2 -> 0
    np.testing.assert_array_equal(out[-2:], [18.0, 18.0])  # 17 18 19 18 17


def test_default_pipeline_trims_resamples_and_filters():
    rng = np.random.default_rng(2)
    g = 1.0 + 0.1 * rng.standard_normal(300) ** 2
    g[[0, 1, -2, -1]] = 1e6  # export artefacts: trimmed by default
    eta = refine_schedule(g, tau=0.1)
    kept = np.interp(np.linspace(0, 1, 10_000), np.linspace(0, 1, 296), g[2:-2])
    smooth = ndimage.median_filter(np.pad(kept, (0, 2002), mode="reflect"),
                                   size=1001, mode="nearest")[:-2002]
    expect = refined.weights_to_schedule(smooth ** -2.0)
    expect = np.interp(np.linspace(0, 1, 300), np.linspace(0, 1, 10_000), expect)
    assert_close(eta, expect / expect.max(), ulps=4500)
    assert len(eta) == 300
    assert_is_schedule_shape(eta)


def test_median_filter_removes_a_spike_notch():
    g = np.ones(1000)
    g[400:405] = 50.0
    raw = refine_schedule(g, trim=0, tau=0, grid=None)
    filtered = refine_schedule(g, trim=0, tau=0.1, grid=None)
    assert raw[402] < 1e-2
    assert_close(filtered, 1 - np.arange(1000) / 999, ulps=4500)


def test_total_steps_resamples_the_output():
    eta = refine_schedule([1, 1.2, 2, 2.5, 3, 3], total_steps=11, **CORE)
    assert len(eta) == 11
    assert_is_schedule_shape(eta)


# ---- reference goldens (tests/golden/gen_refined.py) --------------------

LOGS = {"imagenet_gnorm": "l2", "rcnn_gnorm": "l2", "roberta_l1": "l1",
        "vit_l1": "l1"}


@pytest.fixture(scope="module")
def golden():
    return goldens.load("refined")[0]


# The schedule spans several decades, so element-wise relative. The shipped
# smoothed logs go through the same float64 weighting as the reference (measured
# within 2 float64 eps): 4500 float64 eps (1e-12). The raw-log pipeline of the
# parity test (median filter, interpolations) keeps its earlier rtol 1e-6.
LOG_TOLERANCE = dict(ulps=4500, scale=0)
RAW_LOG_TOLERANCE = dict(ulps=1e-6 / np.finfo(np.float64).eps, scale=0)


@pytest.mark.parametrize("name", LOGS)
def test_weighting_matches_reference_on_shipped_logs(golden, name):
    eta = refine_schedule(golden[f"log_{name}_smoothed"], norm=LOGS[name], **CORE)
    idx = golden[f"log_{name}_idx"]
    assert_close(eta[idx], golden[f"log_{name}_sched"], **LOG_TOLERANCE)


def _at(golden, name, frac):
    idx, sched = golden[f"log_{name}_idx"], golden[f"log_{name}_sched"]
    return float(np.interp(frac * 9999, idx, sched))


def test_reference_shapes_on_shipped_logs(golden):
    # values read off the paper's figures: plot-reading tolerances, not float ones
    # ViT (L1): emergent warm-up, peak near 3 %
    assert _at(golden, "vit_l1", 0.01) == pytest.approx(0.06, abs=0.01)
    assert _at(golden, "vit_l1", 0.02) == pytest.approx(0.41, abs=0.02)
    vit = golden["log_vit_l1_sched"]
    assert 0.025 < golden["log_vit_l1_idx"][np.argmax(vit)] / 9999 < 0.04
    # ImageNet (L2): rising norms -> much faster than linear annealing
    for frac, value in ((0.5, 0.13), (0.8, 0.022), (0.9, 0.007)):
        assert _at(golden, "imagenet_gnorm", frac) == pytest.approx(value, rel=0.1)
    # RoBERTa: the broad bump at ~10 % survives the median filter as a dip
    idx, rob = golden["log_roberta_l1_idx"], golden["log_roberta_l1_sched"]
    near = (idx > 500) & (idx < 1500)
    assert rob[near].min() == pytest.approx(0.32, abs=0.02)


@pytest.mark.parametrize("k", range(4))
def test_synthetic_profiles_match_reference(golden, k):
    import gen_refined
    eta = refine_schedule(gen_refined.synthetic_profile(k), **CORE)
    assert_close(eta, golden[f"synthetic_{k}"], ulps=4500)


def _ref_dir() -> pathlib.Path | None:
    d = os.environ.get("OPTIM_LAB_REF_ADAPTIVE_SCHEDULING")
    return pathlib.Path(d) if d else None


@pytest.mark.parity
@pytest.mark.parametrize("name", LOGS)
def test_reference_window_reproduces_reference_pipeline_on_raw_logs(golden, name):
    """Needs the raw CC-BY-NC logs: set OPTIM_LAB_REF_ADAPTIVE_SCHEDULING."""
    ref = _ref_dir()
    if ref is None:
        pytest.skip("set OPTIM_LAB_REF_ADAPTIVE_SCHEDULING to a checkout of "
                    "facebookresearch/adaptive_scheduling @ 37a8a9b")
    import gen_refined
    raw = gen_refined.read_log(ref / "norm_sequences_l1" / f"{name}.csv")
    eta = refine_schedule(raw, norm=LOGS[name], reference_window=True,
                          total_steps=10_000)
    idx = golden[f"log_{name}_idx"]
    assert_close(eta[idx], golden[f"log_{name}_sched"], **RAW_LOG_TOLERANCE)


# ---- guards ------------------------------------------------------------

def test_zero_nan_inf_are_interpolated_over():
    g = np.array([1.0, 1.5, 0.0, 2.5, np.nan, 3.5, np.inf, 4.5, 5.0, -1.0])
    clean = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.0])
    assert_close(refine_schedule(g, **CORE), refine_schedule(clean, **CORE), ulps=8)


def test_reference_window_drops_bad_values():
    g = np.array([1.0, 2.0, np.inf, 3.0, 4.0])
    eta = refine_schedule(g, trim=0, tau=0, grid=4, reference_window=True,
                          total_steps=4)
    np.testing.assert_allclose(eta, [1, 0.10246, 0.01639, 0], atol=SPEC_DECIMALS)


@pytest.mark.parametrize("g, match", [
    ([], "grad_norms"),
    ([1.0], "grad_norms"),
    ([1.0, np.nan, 0.0], "grad_norms"),
    (np.ones((2, 2)), "grad_norms"),
    ([1.0, 2.0, 3.0, 4.0, 5.0], "trimming"),
])
def test_too_few_points_raise(g, match):
    with pytest.raises(ValueError, match=match):
        refine_schedule(g)


@pytest.mark.parametrize("kwargs, match", [
    (dict(norm="l3"), "norm"), (dict(tau=1.0), "tau"), (dict(tau=-0.1), "tau"),
    (dict(grid=1), "grid"), (dict(trim=-1), "trim"), (dict(total_steps=1), "total_steps"),
    (dict(grid=None, reference_window=True), "grid"),
])
def test_invalid_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        refine_schedule(np.ones(10), **kwargs)


def test_late_peak_warns_and_falls_back_to_linear():
    g = np.linspace(5.0, 0.05, 200)  # norms falling towards 0: degenerate
    with pytest.warns(refined.LatePeakWarning, match="linear"):
        eta = refine_schedule(g, trim=0)
    assert_close(eta, 1 - np.arange(200) / 199, ulps=8)


def test_late_peak_without_fallback_warns_and_keeps_the_shape():
    g = np.linspace(5.0, 0.05, 200)
    with pytest.warns(refined.LatePeakWarning):
        eta = refine_schedule(g, trim=0, fallback=False)
    assert np.argmax(eta) > 100 and eta[-1] == 0.0 and eta.max() == 1.0


def test_early_peak_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        eta = refine_schedule(np.r_[np.linspace(5.0, 1.0, 20), np.ones(180)])
    assert 0 < np.argmax(eta) < 100  # an emergent warm-up, kept
