r"""Learning-rate schedules refined from a previous run's gradient norms.

For positive weights :math:`w_1..w_T`, the schedule

.. math::
    \eta_t \propto w_t \sum_{p=t+1}^{T} w_p

gives the last-iterate bound :math:`(D^2 + \sum_t w_t^2 \|g_t\|^2) /
(2 \sum_t w_t)` for convex Lipschitz problems. Equal weights give linear decay
to zero; minimising the bound with the observed norms gives
:math:`w_t \propto G_t^{-2}` (SGD, L2 norms) and, for Adam-type methods,
:math:`w_t \propto G_t^{-1}` with L1 norms. Large early norms make an
emergent warm-up; norms that rise late make the final annealing faster than
linear.

The pipeline (float64 NumPy, offline; the reference's ``visual.py`` recipe):

1. drop non-positive / non-finite norms (interpolate over them, or drop them
   with ``reference_window=True``) and trim ``trim`` points at each end;
2. resample onto ``grid`` equally spaced points;
3. median filter of odd width ``2*floor(floor(tau*n)/2) + 1`` (1001 for
   ``tau=0.1``, ``n=10_000``), after reflect-padding the right end only by
   twice the width, ``mode='nearest'`` inside the filter;
4. :math:`w = G^{-p}` (:math:`p = 2` for ``"l2"``, 1 for ``"l1"``), tail sums
   :math:`S_t = \sum_{p \ge t} w_p`, :math:`\eta_t = w_t S_{t+1}`,
   :math:`\eta_{T-1} = 0`, divided by its maximum;
5. interpolate onto the output length (the number of input norms, or
   ``total_steps``).

**Step convention.** The result reaches 0 at the last step :math:`t = T-1`;
constant norms give exactly ``optax.linear_schedule(1, 0, T - 1)``, one step
earlier than :func:`optim_lab.schedules.decay.linear_decay`'s :math:`1 - t/T`.
The refinement only gives the *shape* (peak 1): re-tune the base learning rate.

References:
    Defazio, Cutkosky, Mehta, Mishchenko, `Optimal Linear Decay Learning Rate
    Schedules and Further Refinements <https://arxiv.org/abs/2310.07831>`_
    (v1: "When, Why and How Much? Adaptive Learning Rate Scheduling by
    Refinement"), 2023.

.. warning::
    Defined for the *same* optimizer, batch size and run length as the run the
    norms come from. τ here is a fraction of the run (resample first); the
    reference code uses a window of 1001 *logged points* for logs longer than
    10 000 points (``reference_window=True`` reproduces that). Norms that fall
    steadily towards 0 give a late-peaking "refinement"; when the peak is past
    half of the run a :class:`LatePeakWarning` is issued and linear decay is
    returned instead.
"""

from __future__ import annotations

import warnings

import numpy as np
import optax
from scipy import ndimage

from optim_lab import _validation
from optim_lab.schedules import decay
from optim_lab.schedules import norm_log

NORM_POWERS = {"l2": 2.0, "l1": 1.0}


class LatePeakWarning(UserWarning):
    """The refined schedule peaked past half of the run (fell back to linear)."""


def filter_width(tau: float, n: int) -> int:
    """Odd median-filter width ``2*floor(floor(tau*n)/2) + 1`` (1 for tau=0)."""
    return 2 * (int(tau * n) // 2) + 1


def median_filter(g: np.ndarray, width: int) -> np.ndarray:
    """Running median of width ``width``, reflect-padded on the right only.

    The right end is padded by ``2*width`` reflected points so the window
    never runs off the end of training; ``mode='nearest'`` handles the rest.
    """
    if width <= 1:
        return g
    pad = 2 * width
    padded = np.pad(g, (0, pad), mode="reflect")
    return ndimage.median_filter(padded, size=width, mode="nearest")[:-pad]


def weights_to_schedule(w: np.ndarray) -> np.ndarray:
    """``eta_t = w_t * sum_{p>t} w_p`` (last entry 0), normalised to max 1."""
    tail = np.cumsum(w[::-1])[::-1]
    eta = np.zeros_like(w)
    eta[:-1] = w[:-1] * tail[1:]
    return eta / np.max(eta)


def _resample(g: np.ndarray, n: int) -> np.ndarray:
    if len(g) == n:
        return g
    return np.interp(np.linspace(0.0, 1.0, n), np.linspace(0.0, 1.0, len(g)), g)


def _clean(g: np.ndarray, drop: bool) -> np.ndarray:
    """Removes zero / negative / NaN / inf norms (dropped or interpolated over)."""
    ok = np.isfinite(g) & (g > 0)
    if ok.sum() < 2:
        raise ValueError(
            f"grad_norms must hold >= 2 finite, positive values; got "
            f"{int(ok.sum())} of {g.size}")
    if ok.all():
        return g
    if drop:
        return g[ok]
    idx = np.arange(g.size)
    return np.interp(idx, idx[ok], g[ok])


def _validate(tau, norm, grid, trim, total_steps, reference_window) -> None:
    _validation.check_range("tau", tau, 0.0, 1.0, high_inclusive=False)
    _validation.check_choice("norm", norm, NORM_POWERS)
    if grid is not None:
        _validation.check_int("grid", grid, low=2)
    elif reference_window:
        raise ValueError("grid must be set (the reference's nvals) when "
                         "reference_window=True")
    _validation.check_int("trim", trim, low=0)
    if total_steps is not None:
        _validation.check_int("total_steps", total_steps, low=2)


def _smoothed(g: np.ndarray, tau: float, grid: int | None,
              reference_window: bool) -> np.ndarray:
    """Steps 2-3: resampled and median-filtered norms."""
    if reference_window:  # filter the raw log, then resample (visual.py)
        if len(g) < grid:
            g = _resample(g, grid)
        return _resample(median_filter(g, filter_width(tau, grid)), grid)
    if grid is not None:
        g = _resample(g, grid)
    return median_filter(g, filter_width(tau, len(g)))


def refine_schedule(grad_norms, *, tau: float = 0.1, norm: str = "l2",
                    grid: int | None = 10_000, trim: int = 2,
                    reference_window: bool = False,
                    total_steps: int | None = None,
                    fallback: bool = True) -> np.ndarray:
    """The refined schedule shape (peak 1, last entry 0) from logged norms.

    Args:
        grad_norms: Per-step gradient norms of a previous run (1-D). Zero,
            negative, NaN and inf entries are interpolated over.
        tau: Median-filter width as a fraction of the run, in [0, 1); 0
            disables the filter.
        norm: ``"l2"`` (SGD; :math:`w = G^{-2}`) or ``"l1"`` (Adam;
            :math:`w = G^{-1}`).
        grid: Resample the (trimmed) norms to this many points before
            filtering and weighting; ``None`` keeps the logged points.
        trim: Points dropped at each end (export artefacts in the reference
            logs); the rest is stretched over the whole run.
        reference_window: Reproduce the reference exactly: drop bad points,
            upsample only logs shorter than ``grid``, filter with a window of
            ``filter_width(tau, grid)`` *logged points*, then resample to
            ``grid``.
        total_steps: Output length :math:`T \\ge 2`; defaults to
            ``len(grad_norms)``.
        fallback: Replace a late-peaking (argmax past half of the run)
            refinement by linear decay. ``False`` still warns but keeps it
            (for analysis).

    Returns:
        float64 array of length ``total_steps`` with max 1 and last entry 0:
        multiply by a (re-tuned) base learning rate.

    Raises:
        ValueError: Fewer than 2 usable norms, too few left after trimming, or
            an invalid option.

    Examples:
        >>> import numpy as np
        >>> from optim_lab.schedules.refined import refine_schedule
        >>> refine_schedule([1, 1, 1, 1, 1, 1], trim=0, tau=0, grid=None)
        array([1. , 0.8, 0.6, 0.4, 0.2, 0. ])
        >>> np.round(refine_schedule([4, 3, 2, 1], trim=0, tau=0, grid=None), 5)
        array([0.34028, 0.55556, 1.     , 0.     ])
    """
    _validate(tau, norm, grid, trim, total_steps, reference_window)
    g = np.asarray(grad_norms, dtype=np.float64)
    if g.ndim != 1 or g.size == 0:
        raise ValueError(f"grad_norms must be a non-empty 1-D sequence, got "
                         f"shape {g.shape}")
    n_out = g.size if total_steps is None else total_steps
    g = _clean(g, drop=reference_window)
    if trim:
        g = g[trim:len(g) - trim]
    if len(g) < 2:
        raise ValueError(f"grad_norms has {len(g)} usable points after trimming "
                         f"{trim} at each end; need >= 2")
    g = _smoothed(g, tau, grid, reference_window)
    eta = weights_to_schedule(g ** -NORM_POWERS[norm])
    eta = _resample(eta, n_out)
    return _late_peak_guard(eta / np.max(eta), fallback)


def _late_peak_guard(eta: np.ndarray, fallback: bool) -> np.ndarray:
    n, peak = len(eta), int(np.argmax(eta))
    if peak <= n / 2:
        return eta
    warnings.warn(
        f"refined schedule peaks at step {peak} of {n} (past half of the run): "
        "the gradient norms fall towards 0 late in training, so the "
        "refinement degenerates into a long warm-up"
        + ("; falling back to linear decay" if fallback else ""),
        LatePeakWarning, stacklevel=3)
    if not fallback:
        return eta
    return 1.0 - np.arange(n, dtype=np.float64) / (n - 1)


def refined_from_run(base_lr: float, total_steps: int, refine_from: str | None = None,
            norm: str = "l2", tau: float = 0.1, trim: int = 2,
            grid: int = 10_000, resample: bool = False,
            optimizer: str | None = None) -> optax.Schedule:
    """The refined schedule of a previous run, as an optax schedule.

    Reads the run's logged gradient norms (see
    :func:`optim_lab.schedules.norm_log.load_grad_norms`), refines them with
    :func:`refine_schedule` onto ``total_steps`` points and returns
    ``from_table(base_lr, shape, total_steps)``. Every input error is raised
    here, before training starts.

    Args:
        base_lr: Peak learning rate, positive (re-tune it on a grid).
        total_steps: Length of the new run, ``>= 2``.
        refine_from: The previous run's workdir (``metrics.jsonl`` +
            ``config.json``) or a ``step,norm`` CSV file.
        norm: Which logged norm and power: ``"l2"`` (SGD) or ``"l1"`` (Adam).
        tau: Median-filter width as a fraction of the run.
        trim: Logged points dropped at each end.
        grid: Resampling grid of the refinement.
        resample: Allow a previous run of another length or optimizer.
        optimizer: Name of the new run's optimizer, checked against the
            previous run's (``None`` skips the check).

    Returns:
        An ``optax.Schedule``.
    """
    _validation.check_positive("learning_rate", base_lr)
    _validation.check_int("total_steps", total_steps, low=2)
    _validate(tau, norm, grid, trim, total_steps, False)
    if refine_from is None:
        raise ValueError("refine_from must name the previous run's workdir (or "
                         "a step,norm CSV file)")
    norms = norm_log.load_grad_norms(str(refine_from), norm=norm, optimizer=optimizer,
                                     total_steps=total_steps, resample=resample)
    shape = refine_schedule(norms, tau=tau, norm=norm, grid=grid, trim=trim,
                            total_steps=total_steps)
    return decay.from_table(base_lr, shape, total_steps)
