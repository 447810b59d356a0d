"""Where an epoch's wall time goes: the bare engine loop vs the same run on Ray Train
with MLflow tracking, at default settings.

Usage:
    .venv/bin/python bench/bench_overhead.py [--quick] [--threads N] [--out FILE]

For each data size, one config trains twice: what `unetflow train` trains on it (the
project defaults and the plan derived from the data, `unetflow.plan.planned`), with
fewer epochs:

1. bare: `build_trainer` + `unet_core.engine.fit` in this process, no hooks;
2. Ray: `fit_with_ray` with 1 worker, the driver's progress display and MLflow tracking
   to a local file store, exactly as `unetflow train` runs it.

Inside the Ray worker the bench times `fit` and, within it, validation, `ray.train.report`
and the checkpoint save; the controller's MLflow calls are timed in the controller. Both
runs pin `torch.set_num_threads(--threads)`. Overhead = (Ray in-worker fit - bare fit) /
bare fit; the fixed start-up (worker group, data open) is listed apart. Prints a markdown
table and writes it to `bench/results/overhead_cpu.md` (or `--out`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

import unetflow  # noqa: F401  (token auth on before ray is imported)
from unetflow.config import ExperimentConfig, parse_config
from unetflow.data_params import DataParams
from unetflow.plan import planned
from unetflow.prepare import prepare

RESULTS = Path(__file__).parent / "results" / "overhead_cpu.md"
TIMINGS = "UNETFLOW_BENCH_TIMINGS"  # the folder where the worker and controller write
# Process roles by command line, first match wins: whose CPU seconds a run adds to the
# cores the training shares (on 2 cores every busy second elsewhere slows the threads).
ROLES = (
    ("Ray worker", "RayTrainWorker"),
    ("Train controller", "TrainController"),
    ("raylet", "raylet"),
    ("GCS", "gcs_server"),
    ("dashboard", "dashboard"),
    ("log monitor", "log_monitor"),
    ("other Ray", "ray::"),
    ("other Ray", "site-packages/ray/"),
)
# The table's columns: each role once, in ROLES' order.
COLUMNS = ["driver", *dict.fromkeys(name for name, _ in ROLES), "other"]


def cpu_by_pid() -> dict[int, tuple[str, float]]:
    """pid -> (role, CPU seconds so far: user + system) of this machine's processes."""
    import psutil

    me = os.getpid()
    seen: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        times, cmd = proc.info["cpu_times"], " ".join(proc.info["cmdline"] or [])
        if times is None:
            continue
        role = next((name for name, key in ROLES if key in cmd), "other")
        role = "driver" if proc.info["pid"] == me else role
        seen[proc.info["pid"]] = (role, times.user + times.system)
    return seen


def cpu_during(run, *args) -> tuple[dict, dict[str, float]]:
    """`run(*args)`'s result, and the CPU seconds each role spent while it ran. Sampled
    every 0.5 s, so processes that end during the run (Ray's workers) count too, up to
    their last half second."""
    import threading

    before, last = cpu_by_pid(), {}  # pid -> (role, CPU seconds)
    done = threading.Event()

    def merge(now: dict[int, tuple[str, float]]) -> None:
        for pid, (role, seconds) in now.items():
            # An exited process's command line reads empty until it is reaped: keep the
            # role it had while it ran.
            known = last.get(pid, (role, 0.0))[0]
            last[pid] = (known if role == "other" else role, seconds)

    def sample() -> None:
        while not done.wait(0.5):
            merge(cpu_by_pid())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = run(*args)
    finally:
        done.set()
        sampler.join()
    merge(cpu_by_pid())
    totals: dict[str, float] = {}
    for pid, (role, seconds) in last.items():
        totals[role] = totals.get(role, 0.0) + seconds - before.get(pid, (role, 0.0))[1]
    return result, totals


def timed(owner, name: str, totals: dict, key: str) -> None:
    """Wrap `owner.name` so that its wall seconds add up in `totals[key]`."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def bare(cfg: ExperimentConfig, data_dir: Path, threads: int) -> dict[str, float]:
    """Seconds of `fit` in this process, and of validation within it."""
    from unet_core.engine import fit, loop
    from unetflow.builders import build_trainer

    torch.set_num_threads(threads)
    totals: dict[str, float] = {}
    trainer = build_trainer(cfg, data_dir, torch.device("cpu"))
    timed(loop, "evaluate", totals, "validation")
    started = time.perf_counter()
    fit(trainer)
    totals["fit"] = time.perf_counter() - started
    return totals


def bench_worker(payload: dict) -> None:
    """`train_worker` with timers around fit, validation, report and checkpoint save."""
    import ray.train

    import unetflow.ray_train as rt
    from unet_core.engine import loop

    torch.set_num_threads(int(os.environ["UNETFLOW_BENCH_THREADS"]))
    totals: dict[str, float] = {}
    timed(loop, "evaluate", totals, "validation")
    timed(rt, "save_checkpoint", totals, "checkpoint")
    timed(rt, "fit", totals, "fit")
    timed(ray.train, "report", totals, "report")
    started = time.perf_counter()
    rt.train_worker(payload)
    totals["in_worker"] = time.perf_counter() - started
    if ray.train.get_context().get_world_rank() == 0:
        (Path(os.environ[TIMINGS]) / "worker.json").write_text(json.dumps(totals))


def with_ray(cfg: ExperimentConfig, data_dir: Path, threads: int, root: Path) -> dict:
    """Seconds of the Ray run: fit() wall, in-worker parts, controller MLflow time."""
    import mlflow

    import unetflow.ray_train as rt
    from unetflow.ray_tracking import EpochMetricsLogger

    class TimedLogger(EpochMetricsLogger):
        def flush(self) -> bool:
            started = time.perf_counter()
            try:
                return super().flush()
            finally:
                with open(Path(os.environ[TIMINGS]) / "mlflow.txt", "a") as out:
                    out.write(f"{time.perf_counter() - started}\n")

    rt.train_worker, rt.EpochMetricsLogger = bench_worker, TimedLogger
    uri = f"sqlite:///{root / 'mlflow.db'}"  # a local store, as `unetflow train` uses
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        started = time.perf_counter()
        tracking = {"uri": uri, "run_id": run.info.run_id}
        rt.fit_with_ray(cfg, data_dir, f"bench-{time.time_ns()}", str(root / "ray"), tracking)
        wall = time.perf_counter() - started
    out = Path(os.environ[TIMINGS])
    totals = json.loads((out / "worker.json").read_text())
    flushes = (out / "mlflow.txt").read_text().split() if (out / "mlflow.txt").exists() else []
    return {**totals, "mlflow": sum(map(float, flushes)), "wall": wall}


# name: (images, shape, epochs, config overrides); the rest is the project's defaults.
SIZES = {
    # Planned epochs of >= 100 steps (`MIN_STEPS_PER_EPOCH`): about 2 s (small) and
    # 30 s (large) each on a 2-core CPU.
    "small: 12 tiles 128x128": (12, [128, 128], 8, {}),
    "large: 64 cases 256x256": (64, [256, 256], 2, {}),
}
QUICK = {
    "quick: 12 tiles 64x64": (
        12,
        [64, 64],
        3,
        {"model": {"preset": "unet", "base_channels": 4, "depth": 2}},
    )
}


def setup(name: str, spec: tuple, root: Path) -> tuple[ExperimentConfig, Path]:
    images, shape, epochs, overrides = spec
    data = DataParams.model_validate(
        {"synthetic": {"num_images": images, "shape": shape, "seed": 1}}
    )
    data_dir = root / name.split(":")[0] / "prepared"
    prepare(data, data_dir)
    raw = {**overrides, "data": {"path": str(data_dir)}, "scaling": {"num_workers": 1}}
    # The plan sets batch, steps per epoch and epochs as `unetflow train` would; only
    # the epochs are cut, so the bench takes minutes.
    cfg = planned(root, parse_config(raw))[0]
    train = cfg.train.model_copy(update={"epochs": epochs})
    return cfg.model_copy(update={"train": train}), data_dir


def row(name: str, epochs: int, a: dict, b: dict) -> str:
    """One markdown row: seconds per epoch of each part, overhead in percent."""
    compute_a = a["fit"] - a.get("validation", 0.0)
    ray_parts = b.get("validation", 0.0) + b.get("report", 0.0) + b.get("checkpoint", 0.0)
    compute_b = b["fit"] - ray_parts
    overhead = (b["fit"] - a["fit"]) / a["fit"] * 100
    per = lambda s: f"{s / epochs:.3f}"  # noqa: E731
    startup = b["wall"] - b["fit"]
    return (
        f"| {name} | bare | {per(a['fit'])} | {per(compute_a)} | {per(a.get('validation', 0))} "
        f"| - | - | - | |\n"
        f"| | Ray + MLflow | {per(b['fit'])} | {per(compute_b)} | "
        f"{per(b.get('validation', 0))} | {per(b.get('report', 0))} | "
        f"{per(b.get('checkpoint', 0))} | {per(b['mlflow'])} | **{overhead:+.1f}%** "
        f"(start-up and end {startup:.0f} s once) |"
    )


def cpu_row(name: str, a: dict, cpu_a: dict, b: dict, cpu_b: dict) -> str:
    """Cores each role kept busy (CPU seconds / wall seconds of the run) in both runs."""
    busy = lambda cpu, run, r: f"{cpu.get(r, 0.0) / run.get('wall', run['fit']):.2f}"  # noqa: E731
    return (
        f"| {name.split(':')[0]} | bare | {' | '.join(busy(cpu_a, a, r) for r in COLUMNS)} |\n"
        f"| | Ray + MLflow | {' | '.join(busy(cpu_b, b, r) for r in COLUMNS)} |"
    )


def cpu_table(rows: list[str]) -> str:
    return "\n".join(
        [
            "",
            "Cores kept busy during each run, by process (CPU seconds / wall seconds, start-up "
            "included for Ray; the bare loop runs in the driver; Ray's processes run in both):",
            "",
            f"| data | run | {' | '.join(COLUMNS)} |",
            f"|---|---|{'---:|' * len(COLUMNS)}",
            *rows,
            "",
        ]
    )


def table(rows: list[str], threads: int, quick: bool) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    defaults = ExperimentConfig()
    # getattr: the same script also measures the code before these settings existed.
    val_every = getattr(defaults.train, "val_every", "1 (fixed)")
    every_epochs = getattr(defaults.checkpoint, "every_epochs", "1 (fixed)")
    every_minutes = getattr(defaults.checkpoint, "every_minutes", None)
    return "\n".join(
        [
            f"# Ray Train + tracking overhead per epoch on CPU{' (quick)' if quick else ''}",
            "",
            f"- {platform.machine()}, {os.cpu_count()} cores, load average {load}; "
            f"torch {torch.__version__}; {threads} thread(s) in both runs; 1 Ray worker",
            f"- defaults: val_every {val_every}, checkpoint every {every_epochs} epochs / "
            f"{every_minutes} min (plus each new best and the last), MLflow to a local "
            "SQLite store",
            "- seconds per epoch; Ray's compute = fit minus validation, report and checkpoint "
            "save; MLflow runs in Ray's controller (off the workers' path); overhead = (Ray "
            "fit - bare fit) / bare fit",
            "",
            "| data | run | fit | compute | validation | report | checkpoint save | MLflow "
            "| overhead |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny data and model, 3 epochs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the table goes")
    parser.add_argument("--only", default="", help="data sizes whose name starts with this")
    args = parser.parse_args()
    from unetflow.ray_train import ensure_ray

    os.environ["UNETFLOW_BENCH_THREADS"] = str(args.threads)
    rows: list[str] = []
    cpu_rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        os.environ[TIMINGS] = tmp  # workers inherit the driver's environment (local Ray)
        ensure_ray()
        sizes = {
            k: v for k, v in (QUICK if args.quick else SIZES).items() if k.startswith(args.only)
        }
        for name, spec in sizes.items():
            for stale in ("worker.json", "mlflow.txt"):
                Path(tmp, stale).unlink(missing_ok=True)
            cfg, data_dir = setup(name, spec, Path(tmp))
            a, cpu_a = cpu_during(bare, cfg, data_dir, args.threads)
            b, cpu_b = cpu_during(
                with_ray, cfg, data_dir, args.threads, Path(tmp) / name.split(":")[0]
            )
            label = f"{name}, {cfg.train.steps_per_epoch or 'one pass of'} steps/epoch"
            rows.append(row(label, cfg.train.epochs, a, b))
            cpu_rows.append(cpu_row(name, a, cpu_a, b, cpu_b))
    text = table(rows, args.threads, args.quick) + cpu_table(cpu_rows)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
