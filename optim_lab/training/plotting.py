"""Learning-curve plots from run directories (reads ``metrics.jsonl`` only)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import matplotlib

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
    keys = [("accuracy", "train/accuracy", "test/accuracy"),
            ("loss", "train/loss", "test/loss")]
    keys += [(k, k, None) for k in extra_keys]
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (wd, label) in enumerate(zip(workdirs, labels)):
        records = rundir.read_metrics(wd)
        if not records:
            raise ValueError(f"{wd}: no metrics.jsonl records to plot")
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
