"""Trains one run: ``python -m experiments.train --config=CONFIG --workdir=DIR``.

Every config field can be overridden by flag, e.g.
``--config.optimizer.name=orthograd_adamw --config.loss=stablemax``.
"""

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory (resumed if it exists).")
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])



def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # orbax is chatty at INFO
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
