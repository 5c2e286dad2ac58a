"""Test-suite set-up: shared modules importable, 64-bit JAX off by default."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
for p in (HERE, HERE / "golden"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

# The suite imports several experiment binaries into one process to test their
# functions; each binary defines its own absl flags at import, and two may
# define the same name (``--steps``, ``--workdir``), which absl refuses. In the
# test process only, a later definition of a name replaces the earlier one
# (tests run the binaries themselves as subprocesses, where flags are parsed).
from absl import flags as _flags  # noqa: E402

_set_flag = _flags.FlagValues.__setitem__


def _set_flag_allowing_redefinition(self, name, flag):
    flag.allow_override = True
    return _set_flag(self, name, flag)


_flags.FlagValues.__setitem__ = _set_flag_allowing_redefinition
