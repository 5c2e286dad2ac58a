"""Reading and writing golden trajectories (small ``.npz`` files + metadata).

Each file stores arrays plus a ``__meta__`` JSON string recording package
versions, seeds and configs, so a golden always says what produced it.
"""

from __future__ import annotations

import json
import pathlib
import platform
from typing import Any

import numpy as np

GOLDEN_DIR = pathlib.Path(__file__).resolve().parent


def package_versions(*names: str) -> dict[str, str]:
    import importlib.metadata as md
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            out[n] = "absent"
    return out


def save(name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> pathlib.Path:
    """Writes ``tests/golden/<name>.npz`` with ``meta`` as JSON."""
    path = GOLDEN_DIR / f"{name}.npz"
    np.savez_compressed(path, __meta__=np.array(json.dumps(meta, sort_keys=True)),
                        **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load(name: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Reads ``tests/golden/<name>.npz`` -> ``(arrays, meta)``."""
    with np.load(GOLDEN_DIR / f"{name}.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "__meta__"}
        meta = json.loads(str(z["__meta__"]))
    return arrays, meta
