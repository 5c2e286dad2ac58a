"""Runs a sweep: many runs of one config, vmapped in one program where possible.

    python -m experiments.sweep --config=experiments/configs/fadam_digits.py \
        --workdir=runs/sweep --sweep=seed=0,1,2 \
        --sweep=optimizer.learning_rate=1e-3,3e-3,1e-2 [--sweep_chunk=4] \
        [--config.<field>=... overrides]

Each ``--sweep=FIELD=V1,V2,...`` is an axis (any config field; values take the
field's type; ``None`` resets a field); the members are the cartesian product,
each an ordinary run directory ``WORKDIR/<field=value,...>/`` that
``experiments.plot``, ``experiments.summarize`` and ``train.restore_state``
read. Members that differ only in seed and float hyperparameters run as one
vmapped program; structural differences (optimizer name, model sizes, ...)
form groups run in turn (see ``optim_lab/training/sweep.py``). Re-running
resumes (finished members are skipped). A bad axis or config is one
``error:`` line and exit status 2, before anything compiles.
"""

import sys

from absl import flags
from ml_collections import config_flags

from experiments import _cli
from optim_lab.training import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Sweep directory (one run directory per member).")
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.DEFINE_multi_string("sweep", None, "An axis FIELD=V1,V2,... (repeatable).")
flags.DEFINE_integer("sweep_chunk", 0, "At most this many members per program "
                     "(bounds memory); 0: a whole group at once.", lower_bound=0)
flags.mark_flags_as_required(["config", "workdir", "sweep"])


def fitted_members(config, specs):
    """The sweep's members, each config fitted to its optimizer (``_cli``)."""
    axes = sweep.parse_axes(specs, config)
    given = set(config_flags.get_override_values(FLAGS["config"]))
    given |= {a.field for a in axes}
    members, notes = sweep.expand(config, axes), {}
    for m in members:
        dropped = _cli.fit_optimizer(m.config, given)
        if dropped:
            notes[m.config.optimizer.name] = dropped
    for name, dropped in notes.items():
        print(f"note: optimizer {name} does not take {', '.join(dropped)} (set by "
              "the config file); dropped", file=sys.stderr, flush=True)
    return members


def main(argv):
    del argv  # _cli.run rejects positional arguments
    config = _cli.command_line_config("config")
    with _cli.config_errors():
        members = fitted_members(config, FLAGS.sweep)
        groups = sweep.plan(members, FLAGS.workdir)  # validated, nothing compiled
    print(f"sweep: {len(members)} members in {len(groups)} program group(s) "
          f"({', '.join(str(len(g.members)) for g in groups)} members; traced: "
          f"{'; '.join(', '.join(g.traced) or '-' for g in groups)})", flush=True)
    sweep.run(members, FLAGS.workdir, chunk=FLAGS.sweep_chunk, groups=groups)


if __name__ == "__main__":
    _cli.run(main)
