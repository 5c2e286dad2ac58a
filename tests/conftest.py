"""Test-suite set-up: shared modules importable, 64-bit JAX off by default."""

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
for p in (HERE, HERE / "golden"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
