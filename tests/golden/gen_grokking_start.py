"""The grokking reference's seed-42 starting point and its first training losses.

Reference: ``LucasPrietoAl/grokking-at-the-edge-of-numerical-stability`` @
``0cc9e8d`` (MIT), not on PyPI. Pass a checkout with ``--ref-dir`` (the
checkout itself, or a directory holding it under its repository name); its
code is imported from there and never committed::

    git clone https://github.com/LucasPrietoAl/grokking-at-the-edge-of-numerical-stability \
        ~/refs/grokking
    git -C ~/refs/grokking checkout 0cc9e8d
    python tests/golden/generate.py grokking_start --ref-dir ~/refs/grokking

Setting: the long StableMax run of ``run_main_experiments.sh`` (Fig. 1b),
``grokking_experiments.py --lr 0.01 --num_epochs 80000 --log_frequency 5000
--train_fraction 0.4 --loss_function stablemax --beta2 0.999``, on top of the
CLI defaults (seed 42, AdamW eps 1e-25, weight decay 0, MLP 226-200-200-113
without biases, full batch). This script replays the first lines of
``grokking_experiments.py`` with the reference's own functions, in its order:
``random.seed(42)``, ``torch.manual_seed(42)``, ``utils.get_dataset``
(``AlgorithmicDataset`` then ``torch.utils.data.random_split``, which draws
``randperm(12769)`` from the global generator), the two ``DataLoader`` s (they
draw nothing until iterated), ``utils.get_model`` (three ``nn.Linear``
kaiming-uniform inits from the same generator), ``utils.get_optimizer``
(AdamW), then the training loop (``torch.randperm`` of the training rows
each epoch, forward, ``utils.stablemax_cross_entropy`` in float64, backward,
step). Skipped, because they draw no random numbers and do not change the
training state: ``torch.save`` of the datasets, ``MetricsLogger`` (needs
pandas) and its evaluation at epoch 0. ``generate`` then runs the unmodified
script for ``STEPS`` epochs (see :func:`check_against_script`) and checks that
the replay matches it bit for bit.

Stored (torch layout, dtypes as in the reference):

- ``train_idx`` / ``test_idx``: ``random_split``'s index lists into the
  dataset's table, whose row ``113 a + b`` holds the pair ``(a, b)``;
  ``train_pairs``: the pairs decoded from the reference's one-hot rows;
- ``init/layers.{0,1,2}.weight``: the initial weights, float32 ``(out, in)``;
- ``losses``: the loss of each of the first ``STEPS`` epochs (the value the
  loop backpropagates, before that epoch's step), float64 — model, data and
  AdamW state float32 (``--train_precision 32``, the default);
- ``losses_train64``: the same with ``--train_precision 64`` (everything
  float64; same split and initial weights, cast to float64 after init);
- ``weight_norms`` / ``weight_norms_train64``: per-layer Frobenius norms after
  each step, ``(STEPS, 3)``.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import runpy
import subprocess
import sys
import tempfile
import types

import numpy as np

import goldens

NAME = "grokking_start"
REF_REPO = "LucasPrietoAl/grokking-at-the-edge-of-numerical-stability"
REF_COMMIT = "0cc9e8d"
# Fig. 1b command of run_main_experiments.sh (device cpu).
ARGV = ["--lr", "0.01", "--num_epochs", "80000", "--log_frequency", "5000",
        "--device", "cpu", "--train_fraction", "0.4", "--loss_function",
        "stablemax", "--beta2", "0.999"]
STEPS = 20
NUM_THREADS = 5  # grokking_experiments.py: torch.set_num_threads(5)
_REF_MODULES = ("utils", "datasets", "models", "constants", "binary_operations",
                "orthograd", "logger")


def _checkout(ref_dir: pathlib.Path) -> pathlib.Path:
    ref_dir = pathlib.Path(ref_dir).expanduser()
    for cand in (ref_dir, ref_dir / REF_REPO.split("/")[1]):
        if (cand / "grokking_experiments.py").is_file():
            return cand
    raise FileNotFoundError(
        f"{ref_dir}: no grokking_experiments.py; --ref-dir must be a checkout of "
        f"{REF_REPO} at {REF_COMMIT} (or a directory containing it)")


def _commit(path: pathlib.Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


@contextlib.contextmanager
def _reference_modules(path: pathlib.Path, argv: list[str]):
    """Imports the reference's ``utils`` with ``argv``; restores sys state.

    ``datasets.py`` imports ``torchvision.datasets`` without using it for the
    modular tasks: an empty stand-in module is installed if torchvision is
    absent (it is not part of the ``parity`` extra).
    """
    saved = {k: sys.modules.pop(k) for k in (*_REF_MODULES, "torchvision",
                                             "torchvision.datasets")
             if k in sys.modules}
    saved_argv, saved_path = sys.argv, list(sys.path)
    try:
        try:
            import torchvision.datasets  # noqa: F401
        except ImportError:
            tv = types.ModuleType("torchvision")
            tv.datasets = types.ModuleType("torchvision.datasets")
            sys.modules["torchvision"] = tv
            sys.modules["torchvision.datasets"] = tv.datasets
        sys.path.insert(0, str(path))
        sys.argv = ["grokking_experiments.py", *argv]
        import utils
        yield utils
    finally:
        for k in (*_REF_MODULES, "torchvision", "torchvision.datasets"):
            sys.modules.pop(k, None)
        sys.modules.update(saved)
        sys.argv, sys.path[:] = saved_argv, saved_path


def _layer_norms(model) -> list[float]:
    return [float(layer.weight.detach().double().norm()) for layer in model.layers]


def run_reference(path: pathlib.Path, argv: list[str], steps: int = STEPS) -> dict:
    """The first ``steps`` epochs of ``grokking_experiments.py`` with ``argv``."""
    import torch
    from torch.utils.data import DataLoader

    with _reference_modules(path, argv) as utils:
        torch.set_num_threads(NUM_THREADS)
        parser, args = utils.parse_args()
        random.seed(args.seed)
        torch.manual_seed(args.seed)
        train_precision = utils.FLOAT_PRECISION_MAP[args.train_precision]
        train_dataset, test_dataset = utils.get_dataset(args)
        if args.full_batch:
            args.batch_size = len(train_dataset)
        DataLoader(train_dataset, batch_size=args.batch_size, shuffle=True)
        DataLoader(test_dataset, batch_size=1024, shuffle=False)
        args.lr = args.lr / (args.alpha ** 2)
        model = utils.get_model(args)
        init = {f"layers.{i}.weight": layer.weight.detach().numpy().copy()
                for i, layer in enumerate(model.layers)}
        optimizer = utils.get_optimizer(model, args)
        if args.orthogonal_gradients or args.use_transformer:
            raise ValueError("only the plain MLP / AdamW path is replayed")
        loss_function = {"stablemax": utils.stablemax_cross_entropy,
                         "cross_entropy": utils.cross_entropy_float32}[args.loss_function]
        dataset = train_dataset.dataset
        all_data = dataset.data[train_dataset.indices].to(train_precision)
        all_targets = dataset.targets[train_dataset.indices].long()
        model.to(args.device).to(train_precision)
        losses, norms = [], []
        for _ in range(steps):
            permutation = torch.randperm(all_data.size(0))
            model.train()
            optimizer.zero_grad()
            loss = loss_function(model(all_data[permutation]), all_targets[permutation])
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            norms.append(_layer_norms(model))
        data = dataset.data.numpy()
        p = dataset.p
        pairs = np.stack([data[:, :p].argmax(1), data[:, p:].argmax(1)], 1)
        train_idx = np.asarray(train_dataset.indices, np.int64)
        return {
            "args": {k: v for k, v in vars(args).items()},
            "optimizer": {k: v for k, v in optimizer.defaults.items()
                          if isinstance(v, (int, float, bool, tuple, type(None)))},
            "loss_dtype": str(loss.dtype),
            "train_idx": train_idx.astype(np.int32),
            "test_idx": np.asarray(test_dataset.indices, np.int32),
            "train_pairs": pairs[train_idx].astype(np.uint8),
            "train_targets": dataset.targets[train_dataset.indices].numpy().astype(np.int32),
            "init": init,
            "losses": np.asarray(losses, np.float64),
            "weight_norms": np.asarray(norms, np.float64),
        }


def check_against_script(path: pathlib.Path, replay: dict, argv: list[str]) -> None:
    """Runs the unmodified ``grokking_experiments.py`` for ``STEPS`` epochs and
    asserts that the replay matches it bit for bit.

    Run in a temporary directory (the script writes checkpoints there) with
    ``--num_epochs STEPS --log_frequency 1`` (neither draws random numbers) and
    a recording stand-in for ``logger.MetricsLogger`` (the real one needs
    pandas and only evaluates): it records the per-layer weight norms after
    every step; the saved ``last_train_loader.pt`` gives the split.
    """
    import torch
    norms = []

    class RecordingLogger:
        def __init__(self, num_epochs, log_frequency):
            self.log_frequency = log_frequency
            self.metrics_df = types.SimpleNamespace(to_csv=lambda *a, **k: None)

        def log_metrics(self, model, **kwargs):
            norms.append(_layer_norms(model))

    argv = list(argv)
    argv[argv.index("--num_epochs") + 1] = str(STEPS)
    argv[argv.index("--log_frequency") + 1] = "1"
    cwd = os.getcwd()
    with _reference_modules(path, argv), tempfile.TemporaryDirectory() as tmp:
        sys.modules["logger"] = types.SimpleNamespace(MetricsLogger=RecordingLogger)
        os.chdir(tmp)
        try:
            runpy.run_path(str(path / "grokking_experiments.py"), run_name="__main__")
            train_idx = list(torch.load("last_train_loader.pt", weights_only=False).indices)
        finally:
            os.chdir(cwd)
    np.testing.assert_array_equal(np.asarray(norms), replay["weight_norms"])
    np.testing.assert_array_equal(np.asarray(train_idx), replay["train_idx"])


def generate(ref_dir=None):
    if ref_dir is None:
        raise ValueError(f"{NAME}: --ref-dir (a checkout of {REF_REPO} at "
                         f"{REF_COMMIT}) is required")
    path = _checkout(ref_dir)
    commit = _commit(path)
    if not commit.startswith(REF_COMMIT):
        raise ValueError(f"{path} is at {commit}, expected {REF_COMMIT}")
    run32 = run_reference(path, ARGV)
    run64 = run_reference(path, [*ARGV, "--train_precision", "64"])
    check_against_script(path, run32, ARGV)
    check_against_script(path, run64, [*ARGV, "--train_precision", "64"])
    for key in ("train_idx", "test_idx"):
        np.testing.assert_array_equal(run32[key], run64[key])
    for k, w in run32["init"].items():
        np.testing.assert_array_equal(w, run64["init"][k])
    np.testing.assert_array_equal((run32["train_pairs"].astype(np.int64).sum(1)) % 113,
                                  run32["train_targets"])
    arrays = {"train_idx": run32["train_idx"], "test_idx": run32["test_idx"],
              "train_pairs": run32["train_pairs"],
              **{f"init/{k}": v for k, v in run32["init"].items()},
              "losses": run32["losses"], "weight_norms": run32["weight_norms"],
              "losses_train64": run64["losses"],
              "weight_norms_train64": run64["weight_norms"]}
    args = run32["args"]
    meta = {
        "versions": goldens.package_versions("torch", "numpy"),
        "reference": {"repo": REF_REPO, "commit": commit,
                      "script": "grokking_experiments.py", "argv": ARGV,
                      "argv_train64": [*ARGV, "--train_precision", "64"]},
        "seed": args["seed"], "steps": STEPS, "torch_num_threads": NUM_THREADS,
        "config": {
            "dataset": args["dataset"], "binary_operation": args["binary_operation"],
            "modulus": args["modulo"], "train_fraction": args["train_fraction"],
            "num_examples": int(len(run32["train_idx"]) + len(run32["test_idx"])),
            "table_order": "row 113*a + b holds (a, b) (for a: for b:)",
            "model": {"name": "mlp", "sizes": [2 * args["input_size"],
                                              *args["hidden_sizes"], args["modulo"]],
                      "bias": False, "activation": "relu",
                      "init": "torch nn.Linear default (kaiming_uniform a=sqrt(5): "
                              "U(+-1/sqrt(fan_in)))"},
            "loss": args["loss_function"], "loss_dtype": run32["loss_dtype"],
            "train_precision": args["train_precision"],
            "optimizer": {"name": args["optimizer"], **run32["optimizer"]},
            "full_batch": args["full_batch"], "alpha": args["alpha"],
            "epoch_shuffle": "torch.randperm(num_train) each epoch (rounding only)",
        },
        "layout": "torch: Linear weight (out, in); transpose for flax kernels (in, out)",
        "losses": "loss of epoch t (before its optimizer step), float64",
        "checked": "the replay equals the unmodified grokking_experiments.py run "
                   "for `steps` epochs bit for bit (weight norms after every "
                   "step, train indices)",
    }
    return [goldens.save(NAME, arrays, meta)]
