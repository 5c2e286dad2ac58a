"""Plots learning curves of run directories.

    python -m experiments.plot --workdirs=runs/a,runs/b --out=curves.png --log_x
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
flags.mark_flag_as_required("workdirs")


def check_flags() -> None:
    """Raises ``ConfigError`` for a workdir without a log or a label count mismatch."""
    for wd in FLAGS.workdirs:
        if not (pathlib.Path(wd) / rundir.METRICS_FILE).is_file():
            raise _cli.ConfigError(f"--workdirs: {wd} is not a run directory (no "
                                   f"{rundir.METRICS_FILE})")
    if FLAGS.labels and len(FLAGS.labels) != len(FLAGS.workdirs):
        raise _cli.ConfigError(f"--labels: {len(FLAGS.labels)} labels for "
                               f"{len(FLAGS.workdirs)} workdirs")


def main(argv):
    del argv  # _cli.run rejects positional arguments
    check_flags()
    path = plotting.plot_runs(FLAGS.workdirs, FLAGS.out, labels=FLAGS.labels,
                              log_x=FLAGS.log_x, extra_keys=FLAGS.extra,
                              title=FLAGS.title)
    print(f"wrote {path}")


if __name__ == "__main__":
    _cli.run(main)
