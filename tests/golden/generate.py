"""Regenerates every golden trajectory from the pinned reference packages.

Usage (needs the ``parity`` extra: ``pip install -e '.[parity]'``)::

    python tests/golden/generate.py              # all generators
    python tests/golden/generate.py orthograd    # only some
    python tests/golden/generate.py --ref-dir ~/refs  # checkouts of non-PyPI references
    python tests/golden/generate.py grokking_start --ref-dir ~/refs/grokking

Each ``tests/golden/gen_<name>.py`` module defines
``generate(ref_dir: pathlib.Path | None) -> list[pathlib.Path]`` and is found
by its file name (``gen_grokking_start.py`` -> ``grokking_start``). Reference
code that is not on PyPI is read from ``--ref-dir`` and never committed; each
generator's docstring says which checkout it needs (``grokking_start``: the
grokking reference @ 0cc9e8d, imported and run for 20 epochs).
"""

from __future__ import annotations

import argparse
import importlib
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent


def _generators() -> dict[str, object]:
    sys.path.insert(0, str(HERE))
    return {p.stem[4:]: importlib.import_module(p.stem)
            for p in sorted(HERE.glob("gen_*.py"))}


def main(argv: list[str] | None = None) -> None:
    gens = _generators()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", choices=list(gens),
                        help="generators to run (default: all)")
    parser.add_argument("--ref-dir", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    for name in args.names or gens:
        for path in gens[name].generate(args.ref_dir):
            print(f"wrote {path.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
