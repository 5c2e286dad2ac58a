"""Learning-curve plots from run directories (reads ``metrics.jsonl`` only).

:func:`plot_runs` draws one curve per run; :func:`plot_groups` one mean curve
with a band over seeds per group of runs (:func:`group_by_seed`: runs whose
configs differ only in ``seed``), e.g. the members of a sweep.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optim_lab import rundir  # noqa: E402

PANELS = (("accuracy", "accuracy"), ("loss", "loss"))


series = rundir.metric_series


def plot_runs(workdirs: Sequence[str | pathlib.Path], out: str | pathlib.Path,
              *, labels: Sequence[str] | None = None, log_x: bool = False,
              extra_keys: Sequence[str] = (), title: str | None = None
              ) -> pathlib.Path:
    """Train/test accuracy and loss against step for several runs.

    Args:
        workdirs: Run directories.
        out: PNG path to write.
        labels: Legend labels (default: the directory names).
        log_x: Logarithmic step axis (step 0 is dropped).
        extra_keys: More metrics to plot, one panel each (e.g.
            ``"probe/softmax_collapse"``).
        title: Figure title.

    Returns:
        The written path.
    """
    labels = list(labels) if labels else [pathlib.Path(w).name for w in workdirs]
    keys = _panel_keys(extra_keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (wd, label) in enumerate(zip(workdirs, labels)):
        records = _records(wd)
        color = colors[i % len(colors)]
        for ax, (name, train_key, test_key) in zip(axes[0], keys):
            for key, style in ((train_key, "--"), (test_key, "-")):
                if key is None:
                    continue
                x, y = series(records, key)
                if log_x:
                    x, y = x[x > 0], y[x > 0]
                suffix = "" if test_key is None else f" ({key.split('/')[0]})"
                ax.plot(x, y, style, color=color, label=f"{label}{suffix}")
    return _finish(fig, axes, keys, out, log_x, title)


def _panel_keys(extra_keys: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """``(panel title, train key, test key)`` of each panel."""
    keys = [("accuracy", "train/accuracy", "test/accuracy"),
            ("loss", "train/loss", "test/loss")]
    return keys + [(k, k, None) for k in extra_keys]


def _records(workdir: str | pathlib.Path) -> list[dict[str, Any]]:
    records = rundir.read_metrics(workdir)
    if not records:
        raise ValueError(f"{workdir}: no metrics.jsonl records to plot")
    return records


def _finish(fig, axes, keys, out, log_x: bool, title: str | None) -> pathlib.Path:
    """Titles, scales and legend of the panels; writes the PNG."""
    for ax, (name, _, _) in zip(axes[0], keys):
        ax.set_title(name)
        ax.set_xlabel("step")
        if log_x:
            ax.set_xscale("log")
    if keys[1][0] == "loss":
        axes[0][1].set_yscale("log")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# --- runs grouped over seeds ------------------------------------------------------------

BANDS = ("std", "minmax")


def find_runs(paths: Sequence[str | pathlib.Path]) -> list[pathlib.Path]:
    """Run directories: each path itself, or (a sweep directory) its runs.

    A path holding ``config.json`` or ``metrics.jsonl`` is a run; any other
    directory stands for its immediate subdirectories that are runs (sorted),
    if it has any (else it is kept, for the caller to report).
    """
    out = []
    for p in map(pathlib.Path, paths):
        runs = [] if _is_run(p) or not p.is_dir() else sorted(
            d for d in p.iterdir() if d.is_dir() and _is_run(d))
        out.extend(runs or [p])
    return out


def _is_run(path: pathlib.Path) -> bool:
    return (path / rundir.CONFIG_FILE).is_file() or (path / rundir.METRICS_FILE).is_file()


class RunGroup(NamedTuple):
    """Runs of one config but the seed: a label, their directories and seeds."""
    label: str
    workdirs: list[pathlib.Path]
    seeds: list[Any]


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def group_by_seed(workdirs: Sequence[str | pathlib.Path]) -> list[RunGroup]:
    """Groups runs whose ``config.json`` agree in every field but ``seed``.

    Groups keep the order of their first run. A group's label names the
    fields in which the groups differ (``optimizer.learning_rate=0.001``), or
    is ``"all runs"`` for a single group.

    Raises:
        ValueError: a run without a readable ``config.json``.
    """
    flats = {pathlib.Path(w): _flat(rundir.load_config(w)) for w in workdirs}
    buckets: dict[str, list[pathlib.Path]] = {}
    for w, flat in flats.items():
        rest = {k: v for k, v in flat.items() if k != "seed"}
        buckets.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(w)
    firsts = [flats[ws[0]] for ws in buckets.values()]
    differing = [k for k in firsts[0] if k != "seed"
                 and len({json.dumps(f.get(k), default=str) for f in firsts}) > 1]
    groups = []
    for ws in buckets.values():
        first = flats[ws[0]]
        label = ", ".join(f"{k}={first.get(k)}" for k in differing) or "all runs"
        groups.append(RunGroup(label, ws, [flats[w].get("seed") for w in ws]))
    return groups


def seed_band(curves: Sequence[tuple[np.ndarray, np.ndarray]], band: str = "std"
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(steps, mean, low, high)`` over runs, at the steps every run logged.

    ``band="std"``: mean ± the sample standard deviation (ddof 1; 0 for one
    run); ``"minmax"``: the smallest and largest value. A NaN at a step (a
    diverged run) makes that step's statistics NaN.
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}; got {band!r}")
    common = None
    for steps, _ in curves:
        common = set(steps) if common is None else common & set(steps)
    steps = np.array(sorted(common or ()))
    if not len(steps):
        return steps, steps, steps, steps
    values = np.stack([v[np.searchsorted(s, steps)] for s, v in curves])
    mean = values.mean(axis=0)
    if band == "minmax":
        return steps, mean, values.min(axis=0), values.max(axis=0)
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(mean)
    return steps, mean, mean - std, mean + std


def plot_groups(groups: Sequence[RunGroup], out: str | pathlib.Path, *,
                band: str = "std", labels: Sequence[str] | None = None,
                log_x: bool = False, extra_keys: Sequence[str] = (),
                title: str | None = None) -> pathlib.Path:
    """Like :func:`plot_runs`, one mean curve and a shaded band per group.

    Args:
        groups: From :func:`group_by_seed`.
        out: PNG path to write.
        band: ``"std"`` (mean ± sample std over seeds) or ``"minmax"``.
        labels: Legend labels (default: the groups' labels).
        log_x: Logarithmic step axis (step 0 is dropped).
        extra_keys: More metrics, one panel each.
        title: Figure title.

    Returns:
        The written path.
    """
    labels = list(labels) if labels else [g.label for g in groups]
    keys = _panel_keys(extra_keys)
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (g, label) in enumerate(zip(groups, labels)):
        runs = [_records(w) for w in g.workdirs]
        color = colors[i % len(colors)]
        for ax, (name, train_key, test_key) in zip(axes[0], keys):
            for key, style in ((train_key, "--"), (test_key, "-")):
                if key is None:
                    continue
                x, mean, lo, hi = seed_band([series(r, key) for r in runs], band)
                if log_x:
                    x, mean, lo, hi = (a[x > 0] for a in (x, mean, lo, hi))
                suffix = "" if test_key is None else f" ({key.split('/')[0]})"
                ax.plot(x, mean, style, color=color,
                        label=f"{label}{suffix} (n={len(runs)})")
                ax.fill_between(x, lo, hi, color=color, alpha=0.2, linewidth=0)
    return _finish(fig, axes, keys, out, log_x, title)
