"""Byte-level LM data: (seed, step) -> windows, positional split, corpus fingerprint."""

import hashlib
import pathlib
import sysconfig

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optim_lab.data import registry
from optim_lab.data import text
from optim_lab.data.dataset import Dataset
from optim_lab.data.dataset import DataSpec
from optim_lab.data.dataset import get_batch

CONTEXT = 16


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory) -> pathlib.Path:
    # Random bytes: every 17-byte window occurs once, so a window locates itself.
    path = tmp_path_factory.mktemp("text") / "corpus.bin"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    return path


def _build(path, **kwargs) -> Dataset:
    return text.byte_text(path=str(path), context=CONTEXT, **kwargs)


def _batch(ds: Dataset, seed, step, batch_size=8):
    s = ds.train_sampler()
    return jax.jit(s.fn, static_argnums=3)(s.source, seed, jnp.int32(step), batch_size)


def test_batches_are_a_function_of_seed_and_step(corpus_file):
    ds = _build(corpus_file)
    x, y = _batch(ds, 0, 5)
    assert x.shape == y.shape == (8, CONTEXT) and x.dtype == y.dtype == jnp.int32
    np.testing.assert_array_equal(x, _batch(_build(corpus_file), 0, 5)[0])
    s = ds.train_sampler()
    np.testing.assert_array_equal(x, s.fn(s.source, 0, 5, 8)[0])  # eager == jitted
    assert not np.array_equal(x, _batch(ds, 0, 6)[0])
    assert not np.array_equal(x, _batch(ds, 1, 5)[0])


def test_windows_are_contiguous_train_bytes_shifted_by_one(corpus_file):
    ds = _build(corpus_file, val_fraction=0.2)
    data = corpus_file.read_bytes()
    n_train = text.split_point(len(data), 0.2)
    assert n_train == 4000
    train, val = data[:n_train], data[n_train:]
    for step in range(20):
        x, y = map(np.asarray, _batch(ds, 3, step))
        np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
        for xi, yi in zip(x, y):
            window = bytes(np.append(xi, yi[-1]).astype(np.uint8))
            assert train.find(window) >= 0 and val.find(window) < 0


def test_split_by_position_and_eval_windows(corpus_file):
    ds = _build(corpus_file, val_fraction=0.1, eval_windows=5)
    data = np.frombuffer(corpus_file.read_bytes(), np.uint8)
    n_train = 4500
    assert ds.train_x.shape == ds.test_x.shape == (5, CONTEXT)
    assert ds.spec == DataSpec(CONTEXT, 256) and ds.num_train == 5
    # Evenly spaced windows from the first to the last possible start.
    for x, y, split in ((ds.train_x, ds.train_y, data[:n_train]),
                        (ds.test_x, ds.test_y, data[n_train:])):
        starts = np.linspace(0, len(split) - CONTEXT - 1, 5).round().astype(int)
        np.testing.assert_array_equal(x, [split[s:s + CONTEXT] for s in starts])
        np.testing.assert_array_equal(y, [split[s + 1:s + CONTEXT + 1] for s in starts])
    np.testing.assert_array_equal(ds.test_y[-1], data[-CONTEXT:])


def test_fingerprint_records_size_and_sha256(corpus_file, tmp_path):
    data = corpus_file.read_bytes()
    fp = _build(corpus_file).fingerprint
    assert fp == {"corpus": str(corpus_file), "corpus_bytes": 5000,
                  "corpus_sha256": hashlib.sha256(data).hexdigest()}
    changed = tmp_path / "changed.bin"
    changed.write_bytes(data[:2500] + bytes([data[2500] ^ 1]) + data[2501:])
    assert _build(changed).fingerprint["corpus_sha256"] != fp["corpus_sha256"]
    capped = _build(corpus_file, max_bytes=3000).fingerprint
    assert capped["corpus_bytes"] == 3000
    assert capped["corpus_sha256"] == hashlib.sha256(data[:3000]).hexdigest()


def test_bad_files_raise_naming_data_path(tmp_path):
    with pytest.raises(ValueError, match="data.path: no such file"):
        registry.build("text", path=str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="data.path: .* is empty"):
        registry.build("text", path=str(tmp_path / "empty.txt"))
    # val_fraction 0.5 of 2 * (context + 1) bytes: each split one byte short.
    short = tmp_path / "short.txt"
    short.write_bytes(b"x" * (2 * CONTEXT + 2))
    with pytest.raises(ValueError, match=r"data.path: .* each needs at least "
                                         r"data.context \+ 2 = 18"):
        registry.build("text", path=str(short), context=CONTEXT, val_fraction=0.5)
    short.write_bytes(b"x" * (2 * CONTEXT + 4))
    assert registry.build("text", path=str(short), context=CONTEXT,
                          val_fraction=0.5).fingerprint["corpus_bytes"] == 36
    with pytest.raises(ValueError, match="data.max_bytes"):
        registry.build("text", context=CONTEXT, max_bytes=20)


@pytest.mark.parametrize("kwargs,match", [
    ({"context": 0}, "data.context must be an integer >= 1"),
    ({"val_fraction": 1.0}, r"data.val_fraction must be in \(0, 1\)"),
    ({"eval_windows": 0}, "data.eval_windows must be an integer >= 1"),
    ({"max_bytes": -1}, "data.max_bytes must be an integer >= 0"),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        registry.build("text", **kwargs)


def test_no_full_batch(corpus_file):
    ds = _build(corpus_file)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ds.check_batch_size(0)
    ds.check_batch_size(4)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        _batch(ds, 0, 0, batch_size=0)


def test_stdlib_file_rule(tmp_path):
    for rel in ("b/c.py", "a.py", "test/t.py", "b/tests/t.py", "site-packages/s.py",
                "b/__pycache__/c.py", "notes.txt", "B.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(rel.encode() + b"\n")
    assert text.stdlib_files(tmp_path) == ["B.py", "a.py", "b/c.py"]
    assert text.stdlib_corpus(0, tmp_path) == b"B.py\na.py\nb/c.py\n"
    assert text.stdlib_corpus(7, tmp_path) == b"B.py\na."


def test_stdlib_corpus_is_deterministic():
    files = text.stdlib_files()
    assert files == sorted(files) and "os.py" in files
    assert not any(set(f.split("/")) & text.EXCLUDED_DIRS for f in files)
    a = text.byte_text(context=CONTEXT, max_bytes=1 << 16)
    b = text.byte_text(context=CONTEXT, max_bytes=1 << 16)
    assert a.fingerprint == b.fingerprint and a.fingerprint["corpus"] == text.STDLIB
    assert a.fingerprint["corpus_bytes"] == 1 << 16
    np.testing.assert_array_equal(a.test_x, b.test_x)
    first = pathlib.Path(sysconfig.get_paths()["stdlib"]) / files[0]
    head = first.read_bytes()[:CONTEXT]
    np.testing.assert_array_equal(a.train_x[0, :len(head)], np.frombuffer(head, np.uint8))


def test_default_sampler_is_get_batch_on_rows():
    # Dataset's default sampler (optim_lab/data/dataset.py): rows via get_batch.
    x, y = jnp.arange(10.0)[:, None], jnp.arange(10)
    ds = Dataset(x, y, x, y, DataSpec(1, 10))
    s = ds.train_sampler()
    assert s.full_batch and ds.fingerprint is None
    ds.check_batch_size(0)
    for step in (0, 4):
        np.testing.assert_array_equal(s.fn(s.source, 2, jnp.int32(step), 3)[1],
                                      get_batch(x, y, 2, jnp.int32(step), 3)[1])
