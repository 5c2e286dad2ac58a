"""Plots learning curves of run directories.

    python -m experiments.plot --workdirs=runs/a,runs/b --out=curves.png --log_x
    python -m experiments.plot --workdirs=runs/sweep --group_seeds --band=minmax

A directory that is not a run stands for the runs in it (a sweep's members).
``--group_seeds`` draws one mean curve with a band (± std or min-max over
seeds) per group of runs whose configs differ only in ``seed``.
"""

import pathlib

from absl import flags

from experiments import _cli
from optim_lab import rundir
from optim_lab.training import plotting

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Comma-separated run directories.")
flags.DEFINE_list("labels", None, "Legend labels (default: directory names).")
flags.DEFINE_string("out", "curves.png", "Output PNG.")
flags.DEFINE_bool("log_x", False, "Logarithmic step axis.")
flags.DEFINE_list("extra", [], "Extra metric keys, one panel each.")
flags.DEFINE_string("title", None, "Figure title.")
flags.DEFINE_bool("group_seeds", False, "One mean curve with a band per group of runs "
                  "that differ only in seed.")
flags.DEFINE_enum("band", "std", plotting.BANDS, "With --group_seeds: mean ± sample "
                  "std over seeds, or their min-max.")
flags.mark_flag_as_required("workdirs")


def check_flags(workdirs, curves: int) -> None:
    """Raises ``ConfigError`` for a workdir without a log or a label count mismatch."""
    for wd in workdirs:
        if not (pathlib.Path(wd) / rundir.METRICS_FILE).is_file():
            raise _cli.ConfigError(f"--workdirs: {wd} is not a run directory (no "
                                   f"{rundir.METRICS_FILE})")
    if FLAGS.labels and len(FLAGS.labels) != curves:
        raise _cli.ConfigError(f"--labels: {len(FLAGS.labels)} labels for "
                               f"{curves} {'groups' if FLAGS.group_seeds else 'workdirs'}")


def main(argv):
    del argv  # _cli.run rejects positional arguments
    workdirs = plotting.find_runs(FLAGS.workdirs)
    groups = plotting.group_by_seed(workdirs) if FLAGS.group_seeds else None
    check_flags(workdirs, len(groups) if groups else len(workdirs))
    common = dict(labels=FLAGS.labels, log_x=FLAGS.log_x, extra_keys=FLAGS.extra,
                  title=FLAGS.title)
    if groups:
        path = plotting.plot_groups(groups, FLAGS.out, band=FLAGS.band, **common)
    else:
        path = plotting.plot_runs(workdirs, FLAGS.out, **common)
    print(f"wrote {path}")


if __name__ == "__main__":
    _cli.run(main)
