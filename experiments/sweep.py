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

Many processes: ``--coordinator_address=HOST:PORT --num_processes=N
--process_id=I`` on each (or ``--distributed=auto`` under SLURM / Open MPI), or
``python -m experiments.launch_local --num_processes=2 -m experiments.sweep --
<these flags>`` on one machine. Every process runs the same vmapped programs
over the mesh of all devices, each member's batch split over it; process 0
alone writes the member directories and prints (see
``experiments/_distributed.py``).
"""

import sys

from absl import flags
from ml_collections import config_flags

from experiments import _cli
from experiments import _distributed
from optim_lab.training import allocator
from optim_lab.training import parallel
from optim_lab.training import sweep

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Sweep directory (one run directory per member).")
config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
flags.DEFINE_multi_string("sweep", None, "An axis FIELD=V1,V2,... (repeatable).")
flags.DEFINE_integer("sweep_chunk", 0, "At most this many members per program "
                     "(bounds memory); 0: a whole group at once.", lower_bound=0)
flags.DEFINE_bool("retain_freed_memory", True, "Tell glibc's malloc to keep freed memory for "
                  "reuse (optim_lab.training.allocator): a vmapped program's large "
                  "temporaries are then not faulted in again at every call.")
flags.mark_flags_as_required(["config", "workdir", "sweep"])
_distributed.define_flags()


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
    for name, dropped in notes.items() if parallel.is_lead() else ():
        print(f"note: optimizer {name} does not take {', '.join(dropped)} (set by "
              "the config file); dropped", file=sys.stderr, flush=True)
    return members


def main(argv):
    del argv  # _cli.run rejects positional arguments
    if FLAGS.retain_freed_memory:
        allocator.retain_freed_memory()  # before the first large buffers; no-op off glibc
    _distributed.initialize_from_flags()  # before anything touches a device
    with _distributed.worker_errors():
        config = _cli.command_line_config("config", notify=parallel.is_lead())
        with _cli.config_errors():
            members = fitted_members(config, FLAGS.sweep)
            groups = sweep.plan(members, FLAGS.workdir)  # validated, nothing compiled
        if parallel.is_lead():
            print(f"sweep: {len(members)} members in {len(groups)} program group(s) "
                  f"({', '.join(str(len(g.members)) for g in groups)} members; traced: "
                  f"{'; '.join(', '.join(g.traced) or '-' for g in groups)})", flush=True)
        sweep.run(members, FLAGS.workdir, chunk=FLAGS.sweep_chunk, groups=groups)


if __name__ == "__main__":
    _cli.run(main)
