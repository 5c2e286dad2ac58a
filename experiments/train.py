"""Trains one run: ``python -m experiments.train --config=CONFIG --workdir=DIR``.

Every config field can be overridden by flag, e.g.
``--config.optimizer.name=orthograd_adamw --config.loss=stablemax``; ``None``
resets a field (``--config.optimizer.eps=None``: the optimizer's default).
Switching the optimizer drops the config file's hyperparameters the new one
does not take, with a ``note:`` line; a config or flag mistake is one
``error:`` line and exit status 2 (``--debug`` for the traceback). See
``experiments/_cli.py``.

Many processes: ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`` on each (or ``--distributed=auto`` under SLURM / Open MPI), or
``python -m experiments.launch_local --num_processes=2 -- <these flags>`` on
one machine; see ``experiments/_distributed.py``.
"""

from absl import flags
from ml_collections import config_flags

from experiments import _cli
from experiments import _distributed
from optim_lab.training import parallel
from optim_lab.training import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Run directory (resumed if it exists).")
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
_distributed.define_flags()


def main(argv):
    del argv  # _cli.run rejects positional arguments
    _distributed.initialize_from_flags()  # before anything touches a device
    with _distributed.worker_errors():
        config = _cli.command_line_config("config", notify=parallel.is_lead())
        with _cli.config_errors():
            train.setup(config)  # every section validated before anything compiles
        train.train_and_evaluate(config, FLAGS.workdir)


if __name__ == "__main__":
    _cli.run(main)
