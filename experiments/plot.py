"""Plots learning curves of run directories.

    python -m experiments.plot --workdirs=runs/a,runs/b --out=curves.png --log_x
"""

from absl import app
from absl import flags

from optim_lab.training import plotting

FLAGS = flags.FLAGS
flags.DEFINE_list("workdirs", None, "Comma-separated run directories.")
flags.DEFINE_list("labels", None, "Legend labels (default: directory names).")
flags.DEFINE_string("out", "curves.png", "Output PNG.")
flags.DEFINE_bool("log_x", False, "Logarithmic step axis.")
flags.DEFINE_list("extra", [], "Extra metric keys, one panel each.")
flags.DEFINE_string("title", None, "Figure title.")
flags.mark_flag_as_required("workdirs")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    path = plotting.plot_runs(FLAGS.workdirs, FLAGS.out, labels=FLAGS.labels,
                              log_x=FLAGS.log_x, extra_keys=FLAGS.extra,
                              title=FLAGS.title)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
