"""Goldens for the refined schedules, from the reference pipeline.

Needs a local checkout of ``facebookresearch/adaptive_scheduling`` @ ``37a8a9b``
(CC-BY-NC: read here, never committed) passed as ``--ref-dir``::

    python tests/golden/generate.py refined --ref-dir ~/refs/adaptive_scheduling

The weighting is the reference's own ``find_closed_form_schedule``
(``find_schedule.py``, imported from the checkout); the reading, trimming,
upsampling and median filtering follow ``visual.py`` / the README recipe
(``sigma2 = 0.1``, ``nvals = 10_000``) with scipy, independently of
``optim_lab``. Only derived numbers are stored:

* ``log_<name>_idx`` / ``log_<name>_sched``: the max-normalised reference
  schedule (on the 10 000-point grid) at a few hundred checkpoints, for the
  shipped logs ``imagenet_gnorm``, ``rcnn_gnorm`` (power 2) and
  ``roberta_l1``, ``vit_l1`` (power 1);
* ``log_<name>_smoothed``: the filtered, resampled norms the schedule is
  computed from (10 000 points; lets the default suite test the weighting on
  real data without the raw logs);
* ``synthetic_<k>``: the reference schedules (max-normalised) of the four
  synthetic profiles of ``synthetic_sched_grid.py`` (T = 2000, σ = 40).
"""

from __future__ import annotations

import csv
import importlib.util
import pathlib

import numpy as np
from scipy import ndimage

import goldens

REF_COMMIT = "37a8a9b"
NVALS = 10_000
SIGMA2 = 0.1
LOGS = {"imagenet_gnorm": 2, "rcnn_gnorm": 2, "roberta_l1": 1, "vit_l1": 1}
SYNTHETIC_N = 2000
SYNTHETIC_KNOTS = [0, 0.003, 0.02, 0.03, 0.1, 1]
SYNTHETIC_VALUES = [[1, 1, 1, 1, 1, 1], [15, 6, 4, 2, 1, 1],
                    [15, 6, 4, 2, 1, 2], [15, 6, 4, 2, 1, 0.7]]
SYNTHETIC_SIGMA = 40.0


def _reference_weighting(ref_dir: pathlib.Path):
    spec = importlib.util.spec_from_file_location(
        "ref_find_schedule", ref_dir / "find_schedule.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports torch and scipy
    return module.find_closed_form_schedule


def read_log(path: pathlib.Path) -> np.ndarray:
    """Column 1 of a wandb export (header line skipped)."""
    with path.open() as f:
        rows = list(csv.reader(f))[1:]
    return np.array([float(r[1]) for r in rows])


def smoothed_norms(raw: np.ndarray) -> np.ndarray:
    """``visual.py``'s filtering: drop inf, trim 2+2, upsample, median, resample."""
    g = raw[~np.isinf(raw)][2:-2]
    if len(g) < NVALS:
        g = np.interp(np.linspace(0, 1, NVALS), np.linspace(0, 1, len(g)), g)
    width = 2 * (int(SIGMA2 * NVALS) // 2) + 1
    pad = 2 * width
    g = ndimage.median_filter(np.pad(g, (0, pad), mode="reflect"),
                              size=width, mode="nearest")[:-pad]
    return np.interp(np.linspace(0, 1, NVALS), np.linspace(0, 1, len(g)), g)


def checkpoints() -> np.ndarray:
    """Every 50th grid point plus the first 5 % at every 5th point."""
    return np.unique(np.concatenate([np.arange(0, NVALS, 50),
                                     np.arange(0, NVALS // 20, 5), [NVALS - 1]]))


def synthetic_profile(k: int) -> np.ndarray:
    x = np.linspace(0, 1, SYNTHETIC_N)
    g = np.interp(x, SYNTHETIC_KNOTS, SYNTHETIC_VALUES[k])
    return ndimage.gaussian_filter1d(g, sigma=SYNTHETIC_SIGMA, mode="nearest")


def generate(ref_dir: pathlib.Path | None) -> list[pathlib.Path]:
    if ref_dir is None:
        raise SystemExit("gen_refined needs --ref-dir (a checkout of "
                         f"facebookresearch/adaptive_scheduling @ {REF_COMMIT})")
    ref_dir = pathlib.Path(ref_dir).expanduser()
    weighting = _reference_weighting(ref_dir)
    arrays, idx = {}, checkpoints()
    for name, power in LOGS.items():
        g = smoothed_norms(read_log(ref_dir / "norm_sequences_l1" / f"{name}.csv"))
        sched = np.asarray(weighting(g, weights=g ** -float(power)), np.float64)
        sched = sched / np.max(sched)
        arrays[f"log_{name}_idx"] = idx
        arrays[f"log_{name}_sched"] = sched[idx]
        arrays[f"log_{name}_smoothed"] = g
    for k in range(len(SYNTHETIC_VALUES)):
        g = synthetic_profile(k)
        sched = np.asarray(weighting(g), np.float64)
        arrays[f"synthetic_{k}"] = sched / np.max(sched)
    meta = {
        "reference": f"facebookresearch/adaptive_scheduling@{REF_COMMIT}",
        "reference_files": ["find_schedule.py (find_closed_form_schedule)",
                            *[f"norm_sequences_l1/{n}.csv" for n in LOGS]],
        "pipeline": {"nvals": NVALS, "sigma2": SIGMA2, "trim": 2,
                     "padding": "reflect right end by 2*width, mode=nearest"},
        "powers": LOGS,
        "synthetic": {"n": SYNTHETIC_N, "knots": SYNTHETIC_KNOTS,
                      "values": SYNTHETIC_VALUES, "sigma": SYNTHETIC_SIGMA},
        "versions": goldens.package_versions("numpy", "scipy", "torch"),
    }
    return [goldens.save("refined", arrays, meta)]
