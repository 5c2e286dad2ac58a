"""Byte-level language-model data: a text corpus as a stream of bytes (vocab 256).

The corpus is a text file (``path=FILE``) or, by default, the Python standard
library's own ``.py`` sources, which every Python installation ships: every
``*.py`` file under ``sysconfig.get_paths()["stdlib"]``, skipping directories
named in :data:`EXCLUDED_DIRS` (site-packages, test suites, caches), in the
order of their sorted relative POSIX paths, concatenated byte for byte. Either
corpus is cut to its first ``max_bytes`` bytes (default
:data:`DEFAULT_MAX_BYTES`, 8 MiB; 0 = no cap), so for a given Python and file
the data is fixed. Its size and sha256 are returned in
``Dataset.fingerprint`` for the run's config, so a resumed run can detect a
different corpus.

The last ``val_fraction`` of the bytes (by position) is the validation split,
the rest the training split. A training batch is a pure function of
``(seed, step)``: ``batch_size`` window starts drawn uniformly (with
replacement) by ``jax.random.randint(fold_in(key(seed), step), ...)``, each
window ``context + 1`` bytes long; inputs are ``window[:-1]``, targets
``window[1:]`` (int32). The evaluation arrays (``train_x`` ... ``test_y``) are
``eval_windows`` fixed windows with evenly spaced starts in each split, the
same for every seed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import sysconfig

import jax
import jax.numpy as jnp
import numpy as np

from optim_lab import _validation
from optim_lab.data.dataset import Dataset
from optim_lab.data.dataset import DataSpec
from optim_lab.data.dataset import Sampler

VOCAB_SIZE = 256
DEFAULT_MAX_BYTES = 8 * 2**20
STDLIB = "python-stdlib"
EXCLUDED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests",
                           "idle_test", "__pycache__"})


def stdlib_files(root: str | pathlib.Path | None = None) -> list[str]:
    """Sorted relative POSIX paths of the standard library's ``.py`` files.

    Directories named in :data:`EXCLUDED_DIRS` are skipped at any depth.
    """
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x not in EXCLUDED_DIRS]
        out += [(pathlib.Path(d) / f).relative_to(root).as_posix()
                for f in files if f.endswith(".py")]
    return sorted(out)


def stdlib_corpus(max_bytes: int = DEFAULT_MAX_BYTES,
                  root: str | pathlib.Path | None = None) -> bytes:
    """The first ``max_bytes`` (0: all) of the concatenated stdlib sources."""
    root = pathlib.Path(root or sysconfig.get_paths()["stdlib"])
    chunks, total = [], 0
    for rel in stdlib_files(root):
        if max_bytes and total >= max_bytes:
            break
        chunks.append((root / rel).read_bytes())
        total += len(chunks[-1])
    corpus = b"".join(chunks)
    return corpus[:max_bytes] if max_bytes else corpus


def fingerprint(corpus: bytes, source: str) -> dict[str, str | int]:
    """``{"corpus", "corpus_bytes", "corpus_sha256"}`` of a corpus (JSON-able)."""
    return {"corpus": source, "corpus_bytes": len(corpus),
            "corpus_sha256": hashlib.sha256(corpus).hexdigest()}


def _read(path: str, max_bytes: int) -> tuple[bytes, str]:
    if not path:
        root = pathlib.Path(sysconfig.get_paths()["stdlib"])
        if not root.is_dir():
            raise ValueError(f"data.path: no standard library sources at {root}; "
                             "pass data.path=FILE")
        return stdlib_corpus(max_bytes, root), STDLIB
    file = pathlib.Path(path).expanduser()
    if not file.is_file():
        raise ValueError(f"data.path: no such file: {path!r}")
    with open(file, "rb") as f:
        corpus = f.read(max_bytes) if max_bytes else f.read()
    if not corpus:
        raise ValueError(f"data.path: {path!r} is empty")
    return corpus, str(path)


def split_point(n: int, val_fraction: float) -> int:
    """Bytes in the training split: the last ``int(n * val_fraction)`` validate."""
    return n - int(n * val_fraction)


def eval_starts(length: int, context: int, count: int) -> np.ndarray:
    """``count`` evenly spaced window starts covering a split of ``length`` bytes."""
    return np.linspace(0, length - context - 1, count).round().astype(np.int64)


def windows(stream, starts, context: int) -> tuple[jax.Array, jax.Array]:
    """Inputs ``stream[s:s+context]`` and targets shifted by one, as int32."""
    idx = starts[:, None] + jnp.arange(context + 1)
    w = jnp.asarray(stream)[idx].astype(jnp.int32)
    return w[:, :-1], w[:, 1:]


def sample_windows(stream: jax.Array, seed, step, batch_size: int | None, *,
                   context: int) -> tuple[jax.Array, jax.Array]:
    """Training batch ``step``: ``batch_size`` uniformly random windows.

    A pure function of ``(seed, step)`` (jit-safe in both); the :class:`Sampler`
    function of :func:`byte_text`.
    """
    if not batch_size:
        raise ValueError("batch_size must be >= 1 for text data (a byte stream "
                         f"has no full batch), got {batch_size!r}")
    key = jax.random.fold_in(jax.random.key(seed), step)
    starts = jax.random.randint(key, (batch_size,), 0, stream.shape[0] - context)
    return windows(stream, starts, context)


def byte_text(*, path: str = "", context: int = 128, val_fraction: float = 0.1,
              max_bytes: int = DEFAULT_MAX_BYTES, eval_windows: int = 64) -> Dataset:
    """Byte-level LM data from ``path`` (default: the stdlib sources).

    Args:
        path: A text file; ``""`` for the Python standard library's sources.
        context: Sequence length of a model input (windows hold one byte more).
        val_fraction: Final fraction of the corpus (by position) held out.
        max_bytes: Use only the corpus's first ``max_bytes`` bytes (0: all).
        eval_windows: Fixed evaluation windows per split.

    Returns:
        A :class:`Dataset`: evaluation windows ``(eval_windows, context)`` for
        train and validation, ``spec = DataSpec(context, 256)``, a
        :class:`Sampler` over the training bytes (``full_batch=False``) and
        the corpus ``fingerprint``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from optim_lab.data.text import byte_text
        >>> ds = byte_text(context=16, max_bytes=4096, eval_windows=4)
        >>> ds.test_x.shape, ds.fingerprint["corpus_bytes"]
        ((4, 16), 4096)
        >>> s = ds.train_sampler()
        >>> x, y = s.fn(s.source, 0, jnp.int32(7), 2)
        >>> bool((x[:, 1:] == y[:, :-1]).all())
        True
    """
    _validation.check_int("data.context", context, low=1)
    _validation.check_range("data.val_fraction", val_fraction, 0.0, 1.0,
                            low_inclusive=False, high_inclusive=False)
    _validation.check_int("data.max_bytes", max_bytes, low=0)
    _validation.check_int("data.eval_windows", eval_windows, low=1)
    corpus, source = _read(path, max_bytes)
    stream = np.frombuffer(corpus, np.uint8)
    n_train = split_point(len(stream), val_fraction)
    train, val = stream[:n_train], stream[n_train:]
    if min(len(train), len(val)) < context + 2:
        field = "data.path" if path else "data.max_bytes"
        raise ValueError(
            f"{field}: the corpus {source!r} has {len(stream)} bytes; with "
            f"data.val_fraction={val_fraction} its train / validation splits have "
            f"{len(train)} / {len(val)} bytes, but each needs at least "
            f"data.context + 2 = {context + 2}")
    tr_x, tr_y = windows(train, eval_starts(len(train), context, eval_windows), context)
    va_x, va_y = windows(val, eval_starts(len(val), context, eval_windows), context)
    sampler = Sampler(jnp.asarray(train),
                      functools.partial(sample_windows, context=context),
                      full_batch=False)
    return Dataset(tr_x, tr_y, va_x, va_y, DataSpec(context, VOCAB_SIZE),
                   sampler=sampler, fingerprint=fingerprint(corpus, source))
