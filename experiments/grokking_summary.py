"""The long grokking runs: configs, wall-clock and milestone reports (flag-free,
importable by tests; ``benchmarks/grokking_stablemax_long.py`` is the binary).

Everything here is computed from run directories (``metrics.jsonl``,
``config.json`` and the benchmark's ``wallclock.jsonl``); the only numbers
written into the code are the reference implementation's, quoted as such.
The reports read the runs' *archives* (:func:`archive_run`: what the reports
use of each run, kept under the results directory), so a report can be
regenerated after the run directories themselves are gone.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks import _report
from experiments.configs import grokking_stablemax_long
from experiments.configs import grokking_stablemax_long_ref
from optim_lab import rundir
from optim_lab.training import checkpoint

THRESHOLDS = (0.1, 0.5, 0.9, 0.95)
MILESTONES = (0.5, 0.9, 0.95, 0.99)
CLOCK_FILE = "wallclock.jsonl"

# The reference implementation (@ 0cc9e8d, torch 2.13.0 CPU, its seed 42, the
# Fig. 1b command) run on this class of machine (2 cores) by an earlier
# session: test accuracy at the logged steps, and the wall-clock there.
REFERENCE_POINTS = ((35_000, 0.54, None), (51_000, 0.951, 46.0),
                    (57_000, 0.974, None), (80_000, 0.990, 63.0))
PAPER = "Paper (Fig. 1b): test passes 50 % near 45 k steps and reaches ≈ 97 % near 75 k."


def build_config(variant: str, seed: int | None, steps: int, loss_dtype: int,
                 state_dtype: int, gather: bool = False):
    """The long run's config for ``variant`` ("long" / "ref") and the flags;
    ``gather``: the MLP's first layer as a row gather of its two one-hot
    inputs (``model.one_hot_groups = 2``: the same forward pass, a third fewer
    FLOPs; its gradient sums in another order, so not the same trajectory)."""
    module = grokking_stablemax_long_ref if variant == "ref" else grokking_stablemax_long
    config = module.get_config()
    if seed is not None:
        if variant == "ref":
            raise ValueError("--seed: the ref config starts from the reference's "
                             "seed-42 split and weights; a seed does not apply")
        config.seed = seed
    config.steps = steps
    config.loss_dtype = loss_dtype
    config.optimizer.state_dtype = state_dtype
    config.enable_x64 = loss_dtype == 64 or state_dtype == 64
    if gather:
        config.model.one_hot_groups = 2
    return config


def run_name(variant: str, seed: int, loss_dtype: int, state_dtype: int,
             gather: bool = False) -> str:
    name = "ref" if variant == "ref" else f"seed{seed}"
    return name + ("_gather" if gather else "") + (
        "_f32state" if state_dtype == 32 else "") + ("_f32loss" if loss_dtype == 32 else "")


def _checkpoint_steps(workdir: pathlib.Path) -> list[int]:
    path = workdir / checkpoint.CHECKPOINT_DIR
    return sorted(int(p.name) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []


class Clock:
    """Records (step, cumulative seconds) as ``metrics.jsonl`` grows (a thread).

    A resumed session starts from the newest checkpoint's step: records past
    it (work the interrupted session lost) are dropped and the clock
    continues from the seconds recorded at that step.
    """

    def __init__(self, workdir: pathlib.Path, poll: float = 0.5):
        self.workdir, self.poll = workdir, poll
        self.path = workdir / CLOCK_FILE
        done = _checkpoint_steps(workdir)
        start = done[-1] if done else 0
        kept = [r for r in read_clock(workdir) if r["step"] <= start]
        self.base_wall = kept[-1]["wall_s"] if kept else 0.0
        self.base_cpu = kept[-1]["cpu_s"] if kept else 0.0
        self.last_step = start
        workdir.mkdir(parents=True, exist_ok=True)
        rundir.write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._note()

    def _last_logged_step(self) -> int | None:
        try:
            with open(self.workdir / rundir.METRICS_FILE, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 65536))
                lines = f.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        for line in reversed(lines):
            try:
                return int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):
                continue
        return None

    def _note(self) -> None:
        step = self._last_logged_step()
        if step is None or step <= self.last_step:
            return
        self.last_step = step
        record = {"step": step,
                  "wall_s": round(self.base_wall + time.perf_counter() - self.t0, 3),
                  "cpu_s": round(self.base_cpu + time.process_time() - self.c0, 3),
                  "load1": round(os.getloadavg()[0], 2)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            self._note()


def step_flops(batch: int, sizes, gather: bool) -> float:
    """Matmul FLOPs of one full-batch step (forward, weight and input gradients)."""
    dims = list(zip(sizes[:-1], sizes[1:]))
    fwd = [2 * batch * a * b for a, b in dims]
    flops = 2 * sum(fwd) + sum(fwd[1:])  # forward + weight grads + input grads (not layer 0's)
    return flops - (2 * fwd[0] if gather else 0)


def read_clock(workdir: str | pathlib.Path) -> list[dict[str, float]]:
    """The ``wallclock.jsonl`` records of a run (empty if none)."""
    path = pathlib.Path(workdir) / CLOCK_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a torn last line
    return out


def seconds_at(clock: Sequence[dict[str, float]], step: int, key: str = "wall_s"
               ) -> float | None:
    """Training seconds at ``step`` (linear between clock records; None if not covered)."""
    if not clock or step > clock[-1]["step"]:
        return None
    steps = np.array([0] + [r["step"] for r in clock], float)
    secs = np.array([0.0] + [r[key] for r in clock], float)
    return float(np.interp(step, steps, secs))


def find_runs(root: str | pathlib.Path) -> list[pathlib.Path]:
    """Run directories directly under ``root`` with a metrics log, ref first
    (``_``-prefixed ones, such as the first-steps check, are not runs of the table;
    nor are an archive's half-replaced copies)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir()
            if (p / rundir.METRICS_FILE).exists() and not p.name.startswith("_")
            and not p.name.endswith((".partial", ".old"))]  # an archive being replaced
    return sorted(runs, key=lambda p: (not p.name.startswith("ref"), _seed_key(p.name)))


ARCHIVE = "stablemax_long_runs"  # under the results directory
ARCHIVE_KEYS = ("step", "train/loss", "train/accuracy", "test/loss", "test/accuracy",
                "params/global/norm", "probe/zero_loss", "probe/max_logit",
                "probe/softmax_collapse")


def archive_run(workdir: pathlib.Path, archive_root: pathlib.Path) -> pathlib.Path:
    """Keeps what the reports read of a run: ``archive_root/<name>/`` with its
    ``config.json``, its ``metrics.jsonl`` cut to :data:`ARCHIVE_KEYS` (every
    logged step) and its ``wallclock.jsonl``: a run directory the reports and
    plots read like the original, ~100 KB instead of the checkpoints.

    Replaces an older archive of the same run only once the new one is
    complete (written beside it, then renamed).
    """
    dest = pathlib.Path(archive_root) / workdir.name
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(workdir / rundir.CONFIG_FILE, tmp / rundir.CONFIG_FILE)
    records = [{k: r[k] for k in ARCHIVE_KEYS if k in r} for r in rundir.read_metrics(workdir)]
    (tmp / rundir.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in records))
    clock = read_clock(workdir)
    (tmp / CLOCK_FILE).write_text("".join(json.dumps(r) + "\n" for r in clock))
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def _order(row: dict[str, Any]):
    """Table order: the reference start first, then by seed and name."""
    return (not row["name"].startswith("ref"), _seed_key(row["name"]))


def _seed_key(name: str):
    m = re.match(r"seed(\d+)", name)
    return (int(m.group(1)) if m else 10**9, name)


TIMED = "_timed"  # run-name suffix: a rerun in one session on a quiet machine, for its clock


def label(name: str) -> str:
    if name.endswith(TIMED):
        return label(name[:-len(TIMED)]) + ", timed rerun (one session, quiet machine)"
    if "_gather" in name:
        return label(name.replace("_gather", "")) + ", first layer as a row gather"
    return {"ref": "reference start (seed 42 split + init)"}.get(
        name, name.replace("seed", "lab seed ").replace("_f32state", ", float32 state"))


def command_for(name: str, config: dict | None = None) -> str:
    """The benchmark command that (re)trains the run directory ``name``."""
    flags = ["--config=ref"] if name.startswith("ref") else []
    m = re.match(r"seed(\d+)", name)
    if m:
        flags.append(f"--seed={m.group(1)}")
    if "_gather" in name:
        flags.append("--gather")
    if "_f32state" in name:
        flags.append("--state_dtype=32")
    if "_f32loss" in name:
        flags.append("--loss_dtype=32")
    if name.endswith(TIMED):
        flags.append(f"--workdir=runs/stablemax_long/{name}")
    if config and config.get("steps"):
        flags.append(f"--steps={config['steps']}")
    return "python -m benchmarks.grokking_stablemax_long " + " ".join(flags)


def evals_of(records):
    return [r for r in records if "test/accuracy" in r]


def first_step(evals, threshold: float) -> int | None:
    return next((r["step"] for r in evals if r["test/accuracy"] >= threshold), None)


def report(records, steps: int, seconds: float | None, loss_dtype: str = "64", *,
           png: str = "stablemax_long.png", state_dtype: str = "64",
           command: str | None = None) -> str:
    """One run's page: final state, collapse / instability and the threshold steps."""
    evals = evals_of(records)
    last = evals[-1]
    rows = ["| test accuracy ≥ | first step |", "|---|---|"]
    for t in THRESHOLDS:
        hit = first_step(evals, t)
        rows.append(f"| {t:.0%} | {hit if hit is not None else 'not reached'} |")
    rate = "" if seconds is None else f" · this session: {seconds / 60:.1f} min"
    peak = max(evals, key=lambda r: r["test/accuracy"])
    collapse = next((r["step"] for r in evals if r["probe/zero_loss"] > 0.5), None)
    collapse_line = ("The zero-loss fraction never exceeds 50 %: StableMax kept a learning "
                     "signal." if collapse is None else
                     f"**StableMax collapsed**: more than 50 % of per-sample losses are exactly "
                     f"0 from step {collapse} on (the g-transformed logit gaps exceed the "
                     f"float{loss_dtype} absorption threshold), so the learning signal is gone.")
    command = command or (f"python -m benchmarks.grokking_stablemax_long --steps={steps} "
                          f"--loss_dtype={loss_dtype}")
    state = ("" if state_dtype == "64" else
             f", float{state_dtype} Adam state")
    return "\n".join([
        f"# StableMax grokking, long run (paper Fig. 1b setting), float{loss_dtype} loss{state}",
        "", f"Regenerate: `{command}` · {_report.machine()}{rate}", "",
        f"Reached step {last['step']}: train acc {last['train/accuracy']:.4f}, test acc "
        f"{last['test/accuracy']:.4f}, weight norm {last['params/global/norm']:.1f}, "
        f"max |logit| {last['probe/max_logit']:.0f}, zero-loss fraction "
        f"{max(r['probe/zero_loss'] for r in evals):g} (max over the run).", "",
        collapse_line, "",
        f"Peak test accuracy {peak['test/accuracy']:.4f} at step {peak['step']} (weight norm "
        f"{peak['params/global/norm']:.0f} there)." + (
            f" After it the run destabilised: test accuracy fell to "
            f"{last['test/accuracy']:.4f} while the weight norm grew to "
            f"{last['params/global/norm']:.3g} (AdamW with ε = 1e-25 takes near-sign "
            "steps once v underflows; XLA:CPU flushes float32 subnormals)."
            if last["test/accuracy"] < peak["test/accuracy"] - 0.1 else ""), "",
        *rows, "", PAPER, "", f"![curves]({png})", ""])


def parse_threshold_table(text: str) -> dict[float, int | None]:
    """``{threshold: first step}`` from a page written by :func:`report`."""
    out = {}
    for pct, hit in re.findall(r"^\| (\d+)% \| (\d+|not reached) \|$", text, re.M):
        out[int(pct) / 100] = None if hit == "not reached" else int(hit)
    return out


def _n(step: int) -> str:
    """``80 000``: a step count with a space as thousands separator."""
    return f"{step:,}".replace(",", " ")


def _cell(step, minutes=None, prefix="", cpu_minutes=None) -> str:
    if step is None:
        return "not reached"
    text = f"{prefix}{_n(step)}"
    if minutes is not None:
        text += f" · {minutes:.1f} min"
    return text if cpu_minutes is None else f"{text} (CPU {cpu_minutes:.1f})"


def run_row(workdir: pathlib.Path) -> dict[str, Any]:
    """Milestones of one run directory: steps and training wall-clock."""
    evals = evals_of(rundir.read_metrics(workdir))
    clock = read_clock(workdir)
    config = rundir.load_config(workdir)
    trained = [r for r in evals if r["step"] > 0] or evals
    last, peak = evals[-1], max(trained, key=lambda r: r["test/accuracy"])
    hits = {t: first_step(evals, t) for t in MILESTONES}
    wall = {t: None if s is None else seconds_at(clock, s) for t, s in hits.items()}
    cpu = {t: None if s is None else seconds_at(clock, s, "cpu_s") for t, s in hits.items()}
    return {"name": workdir.name, "label": label(workdir.name), "steps": last["step"],
            "target": config.get("steps"), "hits": hits,
            "minutes": {t: None if w is None else w / 60 for t, w in wall.items()},
            "cpu_minutes": {t: None if c is None else c / 60 for t, c in cpu.items()},
            "peak": (peak["test/accuracy"], peak["step"]), "last": last,
            "total_min": None if not clock else clock[-1]["wall_s"] / 60,
            "cpu_min": None if not clock else clock[-1]["cpu_s"] / 60,
            "load": None if not clock else float(np.mean([r["load1"] for r in clock])),
            "command": command_for(workdir.name, config)}


def _row(r: dict) -> str:
    status = (_n(r["steps"]) if r["steps"] == r["target"] else
              f"{_n(r['steps'])} of {_n(r['target'])} (running / resumable)")
    total = ("–" if r["total_min"] is None else
             f"{r['total_min']:.1f} (CPU {r['cpu_min']:.1f}, load {r['load']:.1f})")
    return (f"| {r['label']} | {status} | "
            + " | ".join(_cell(r["hits"][t], r["minutes"][t],
                               cpu_minutes=r["cpu_minutes"][t]) for t in MILESTONES)
            + f" | {r['peak'][0]:.1%} @ {_n(r['peak'][1])} | "
            f"{r['last']['test/accuracy']:.1%} | {r['last']['params/global/norm']:.3g} | "
            f"{total} |")


CARRIED = " ¹"  # marks a carried-over row's label
_SUFFIXES = ((", timed rerun (one session, quiet machine)", TIMED),
             (", first layer as a row gather", "_gather"), (", float32 state", "_f32state"))


def name_of(run_label: str) -> str:
    """The run directory name of a table label (the inverse of :func:`label`)."""
    suffix = ""
    for text, tail in _SUFFIXES:
        if run_label.endswith(text):
            run_label, suffix = run_label[:-len(text)], tail + suffix
    if run_label == label("ref"):
        return "ref" + suffix
    m = re.fullmatch(r"lab seed (\d+)", run_label)
    if not m:
        raise ValueError(f"not a run label of the table: {run_label!r}")
    return f"seed{m.group(1)}" + suffix


def _parse_cell(cell: str) -> tuple[int | None, float | None, float | None]:
    m = re.fullmatch(r"([\d ]+)(?: · ([\d.]+) min)?(?: \(CPU ([\d.]+)\))?", cell)
    if not m:
        return None, None, None  # not reached
    step = int(m.group(1).replace(" ", ""))
    return step, *(None if g is None else float(g) for g in m.groups()[1:])


def parse_row(line: str) -> dict[str, Any] | None:
    """A run's row of an earlier ``stablemax_long.md`` as :func:`run_row`'s
    dict (what :func:`_row` writes and the onset analysis reads); None for a
    line that is not a run row (the reference's, the float32-state run's).
    """
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) != len(MILESTONES) + 6 or cells[0].startswith("*"):
        return None
    cells[0] = cells[0].removesuffix(CARRIED)  # carried over before: still carried
    try:
        name = name_of(cells[0])
    except ValueError:
        return None
    status = re.fullmatch(r"([\d ]+)(?: of ([\d ]+) \(running / resumable\))?", cells[1])
    peak = re.fullmatch(r"([\d.]+)% @ ([\d ]+)", cells[2 + len(MILESTONES)])
    total = re.fullmatch(r"([\d.]+) \(CPU ([\d.]+), load ([\d.]+)\)", cells[-1])
    if not (status and peak):
        return None
    steps = int(status.group(1).replace(" ", ""))
    target = int((status.group(2) or status.group(1)).replace(" ", ""))
    parsed = dict(zip(MILESTONES, map(_parse_cell, cells[2:2 + len(MILESTONES)])))
    return {"name": name, "label": cells[0], "steps": steps, "target": target,
            "hits": {t: p[0] for t, p in parsed.items()},
            "minutes": {t: p[1] for t, p in parsed.items()},
            "cpu_minutes": {t: p[2] for t, p in parsed.items()},
            "peak": (float(peak.group(1)) / 100, int(peak.group(2).replace(" ", ""))),
            "last": {"test/accuracy": float(cells[3 + len(MILESTONES)].rstrip("%")) / 100,
                     "params/global/norm": float(cells[4 + len(MILESTONES)])},
            "total_min": float(total.group(1)) if total else None,
            "cpu_min": float(total.group(2)) if total else None,
            "load": float(total.group(3)) if total else None,
            "command": command_for(name, {"steps": target}),
            "carried": True}


def carried_rows(previous: str, present: Sequence[str]) -> list[dict[str, Any]]:
    """The run rows of an earlier report whose runs are not in ``present`` (run
    names) — runs reported before the archive existed, whose directories are
    gone: kept, marked, rather than silently dropped."""
    rows = [parse_row(line) for line in previous.splitlines() if line.startswith("| ")]
    return [r for r in rows if r is not None and r["name"] not in present]


def reference_row() -> str:
    """The reference implementation's figures, quoted (``REFERENCE_POINTS``)."""
    cells = []
    for t in MILESTONES:
        hit = next(((s, m) for s, a, m in REFERENCE_POINTS if a >= t), None)
        cells.append("not logged" if hit is None else _cell(hit[0], hit[1], prefix="≤ "))
    trail = " · ".join(f"{a:.1%} @ {s // 1000} k" for s, a, _ in REFERENCE_POINTS)
    return ("| *reference (torch, its seed 42)* | 80 000 | " + " | ".join(cells)
            + f" | {trail} | {REFERENCE_POINTS[-1][1]:.1%} | – | 63 (2 cores) |")


def f32state_row(results: pathlib.Path) -> str | None:
    """The float32-state run, read from its committed page (no rerun needed)."""
    path = results / "stablemax_long_f32state.md"
    if not path.exists():
        return None
    text = path.read_text()
    hits = parse_threshold_table(text)
    peak = re.search(r"Peak test accuracy ([\d.]+) at step (\d+)", text)
    last = re.search(r"Reached step (\d+): train acc [\d.]+, test acc ([\d.]+), "
                     r"weight norm ([\d.]+)", text)
    if not (peak and last):
        return None
    cells = [_cell(hits.get(t)) if t in hits else
             ("not reached" if hits.get(0.95, 0) is None else "not logged") for t in MILESTONES]
    return (f"| lab seed 42, **float32 Adam state** ([page](stablemax_long_f32state.md)) | "
            f"{_n(int(last.group(1)))} | " + " | ".join(cells)
            + f" | {float(peak.group(1)):.1%} @ {_n(int(peak.group(2)))} | "
            f"{float(last.group(2)):.1%} | {float(last.group(3)):.3g} | – |")


def first_losses_section(first: dict | None) -> list[str]:
    if not first:
        return []
    ratio = first["max_rel"] / first["own_gap"]
    return [
        "## Same start, same first steps?", "",
        f"The reference-start config trained with a log every step (`{first['workdir']}`) "
        f"against the losses the reference logged for its first {first['steps']} steps from "
        "the same start (`tests/golden/grokking_start.npz`: float32 model, float64 StableMax, "
        "float32 AdamW state in torch, which keeps subnormals): relative difference "
        f"{first['rel_step1']:.1e} at step 1 (the same forward pass; the lab logs the loss in "
        f"float32), at most {first['max_rel_10']:.1e} over steps 1–10 and {first['max_rel']:.1e} "
        f"over all {first['steps']}. The reference's own float32 and float64 "
        f"(`--train_precision 64`) runs drift {first['own_gap']:.1e} relative apart within "
        f"those steps: the lab follows the reference's trajectory to {ratio:.1f}× the "
        "reference's own rounding spread. Adam with ε = 1e-25 takes near-sign steps, so "
        "last-bit differences grow; over tens of thousands of steps the trajectories are "
        "two samples of the same process rather than one path.", ""]


def milestone_report(runs: Sequence[pathlib.Path], results: pathlib.Path,
                     first: dict | None = None, analysis: Sequence[str] = (),
                     carried: Sequence[dict[str, Any]] = ()) -> str:
    """stablemax_long.md: milestones per run beside the reference's figures
    (``carried``: rows of runs without data, from :func:`carried_rows`)."""
    head = ("| run | steps done | " + " | ".join(f"test ≥ {t:.0%}" for t in MILESTONES)
            + " | peak test | test at last step | weight norm at last step "
            "| training wall min (CPU min, mean load) |")
    lines = [
        "# StableMax grokking, long runs (paper Fig. 1b setting)", "",
        "AdamW lr 1e-2, β2 0.999, ε 1e-25, no weight decay, StableMax loss in float64, "
        "**float64 Adam state** (`experiments/configs/grokking_stablemax_long.py`; the "
        "reference start: `..._long_ref.py`), MLP 226-200-200-113 float32, addition mod "
        "113, 40 % train, full batch, evaluation every 500 steps. Cells: first evaluated "
        "step at which test accuracy reaches the threshold · training wall-clock there "
        "(summed over sessions, resumed from checkpoints) and, in brackets, the process's "
        "CPU time (all threads). The machine is shared with other jobs: the last column "
        f"gives the mean 1-minute load average on {_report.machine()} — wall-clock is only "
        "comparable between runs of similar load; CPU time depends far less on the load "
        "(on an idle machine the wall-clock is about the CPU time divided by the cores the "
        "step keeps busy).",
        "", "Regenerate (each run resumes; the tables are rebuilt from all run directories "
        "under `runs/stablemax_long/`):", "", "```"]
    rows = sorted([run_row(wd) for wd in runs] + list(carried), key=_order)
    lines += [r["command"] for r in rows]
    lines += ["python -m benchmarks.grokking_stablemax_long --report_only", "```", "", head,
              "|" + "---|" * (len(MILESTONES) + 6), reference_row()]
    lines += [_row({**r, "label": r["label"] + CARRIED} if r.get("carried") else r)
              for r in rows]
    extra = f32state_row(results)
    if extra:
        lines.append(extra)
    lines += ["", "Reference: the reference implementation (@ 0cc9e8d, torch 2.13.0 CPU, its "
              "seed 42, Fig. 1b command) on this class of machine (2 cores), test accuracy "
              "at its logged steps (≤: reached by then). " + PAPER, ""]
    if carried:
        lines += ["¹ Carried over from the previous report: the run directory was lost before "
                  "the reports kept an archive of each run (`stablemax_long_runs/`), so its "
                  "curve is not in the plot; rerun it with the command above to restore it. "
                  "Carried: " + ", ".join(r["label"] for r in carried) + ".", ""]
    lines += first_losses_section(first)
    lines += list(analysis)
    lines += ["![curves](stablemax_long.png)", ""]
    return "\n".join(lines)


def onset_analysis(runs: Sequence[pathlib.Path],
                   carried: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Sentences comparing the onset of the runs with the reference (from the data)."""
    rows = {r["name"]: r for r in sorted([run_row(wd) for wd in runs] + list(carried),
                                         key=_order)}
    if not rows:
        return []
    out = ["## Onset: reference vs lab", ""]
    ref = rows.get("ref")
    ref95 = next(s for s, a, _ in REFERENCE_POINTS if a >= 0.95)
    if ref is not None:
        h = ref["hits"]
        if h[0.95] is not None:
            off = abs(h[0.95] - ref95) / ref95
            verdict = "the same onset within" if off <= 0.1 else "a different onset, off by"
            out.append(f"From the reference's own start the lab reaches 50 % test at step "
                       f"{h[0.5]} and 95 % at {h[0.95]} (reference: 54 % logged at 35 000, "
                       f"95.1 % at {ref95}): {verdict} {off:.0%} of the reference's step.")
        else:
            out.append(f"From the reference's own start the lab has reached step "
                       f"{ref['steps']} so far with peak test accuracy {ref['peak'][0]:.1%} "
                       f"(at {ref['peak'][1]}); 50 % at "
                       f"{h[0.5] if h[0.5] is not None else 'not yet'} (reference: 54 % "
                       f"logged at 35 000, 95.1 % at {ref95}).")
    seeds = [r for n, r in rows.items() if n.startswith("seed")]
    done50 = [r["hits"][0.5] for r in seeds if r["hits"][0.5] is not None]
    if seeds:
        def at50(r):
            hit = r["hits"][0.5]
            return str(hit) if hit is not None else f"not by {r['steps']}"
        out.append("Lab seeds (the lab's split, data.split_seed 0, and the init of each "
                   "seed): 50 % at "
                   + ", ".join(f"{r['label']}: {at50(r)}" for r in seeds)
                   + (f" — a spread of {max(done50) - min(done50)} steps." if len(done50) > 1
                      else "."))
    out += miss_sentences(list(rows.values()))
    for r in rows.values():
        if r["name"].endswith(TIMED):
            out.append(goal_sentence(r))
    out.append("")
    return out


def miss_sentences(rows: Sequence[dict[str, Any]]) -> list[str]:
    """For each finished lab seed without 95 % test: by how much it missed, and
    its onset and climb against the runs that made it."""
    made = [r for r in rows if r["hits"][0.95] is not None and r["hits"][0.5] is not None]
    missed = [r for r in rows if r["name"].startswith("seed") and r["hits"][0.95] is None
              and r["steps"] == r["target"]]
    if not missed or not made:
        return []

    def climb(r):  # steps from 50 % to 90 % test
        h = r["hits"]
        return None if h[0.5] is None or h[0.9] is None else h[0.9] - h[0.5]
    onsets = sorted(r["hits"][0.5] for r in made)
    climbs = sorted(c for c in map(climb, made) if c is not None)
    parts = []
    for r in missed:
        last = r["last"]["test/accuracy"]
        h, c = r["hits"], climb(r)
        rising = "still rising" if last >= r["peak"][0] else f"peak {r['peak'][0]:.1%}"
        parts.append(f"{r['label']} ends at {last:.1%} ({100 * (0.95 - last):.1f} points short "
                     f"of 95 %, {rising} at step {_n(r['steps'])}; 50 % at "
                     f"{_n(h[0.5]) if h[0.5] is not None else 'never'}"
                     + (f", 50 % → 90 % in {_n(c)} steps" if c is not None else "") + ")")
    slower = any((climb(r) or 0) > climbs[-1] for r in missed) if climbs else False
    later = all(r["hits"][0.5] is None or r["hits"][0.5] > onsets[-1] for r in missed)
    why = ", ".join(x for x, on in (("start later", later), ("climb more slowly", slower)) if on)
    return [f"Misses: {'; '.join(parts)}. The runs that reach 95 % pass 50 % at "
            f"{_n(onsets[0])}–{_n(onsets[-1])}"
            + (f" and climb from 50 % to 90 % in {_n(climbs[0])}–{_n(climbs[-1])} steps"
               if climbs else "")
            + (f": the misses {why} (their init and split; same code and settings), and "
               "their runs end inside the climb." if why else ".")]


GOAL_MIN = 15.0  # the goal: >= 95 % test within 80 k steps in <= 15 min on 2 cores


def goal_sentence(r: dict) -> str:
    """Whether a timed run met the goal (>= 95 % test in <= 15 min wall-clock)."""
    step, minutes = r["hits"][0.95], r["minutes"][0.95]
    head = f"Goal (≥ 95 % test in ≤ {GOAL_MIN:g} min on 2 cores), {r['label']}: "
    if step is None or minutes is None:
        return head + f"95 % not reached by step {_n(r['steps'])}."
    met = "met" if minutes <= GOAL_MIN else f"missed by {minutes - GOAL_MIN:.1f} min"
    return (head + f"95 % at step {_n(step)} after {minutes:.1f} min wall-clock "
            f"(CPU {r['cpu_minutes'][0.95]:.1f} min, mean load {r['load']:.1f}): {met}. "
            "The floor of a step on this machine: `stablemax_long_speed.md`.")
