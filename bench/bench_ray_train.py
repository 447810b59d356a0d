"""Ray Train overhead and CPU scaling: the same training steps under Ray and bare PyTorch.

Usage:
    .venv/bin/python bench/bench_ray_train.py [--quick] [--threads N]

Measured in one run, on one synthetic prepared data set and one model:

1. bare: `build_trainer` + `train_one_epoch` in this process (no Ray, no DDP);
2. Ray Train, 1 worker: the same steps inside a `TorchTrainer` worker; the ratio of
   in-worker images/s to bare images/s is the overhead (goal >= 0.97). The fixed
   start-up cost is `fit()` wall time minus the time spent inside the worker function;
3. Ray Train, 2 workers (gloo DDP): global images/s and scaling efficiency vs 1 worker.

Every process pins `torch.set_num_threads(--threads)` (default: half the cores, so two
workers fit the machine); bare and 1-worker Ray runs alternate (`--rounds`) and their
means are compared, which evens out load drift. Warm-up epoch excluded; no validation. Prints a markdown table
and writes `bench/results/ray_train_cpu.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

import unetflow  # noqa: F401  (token auth on before ray is imported)
from unet_core.engine import train_one_epoch
from unetflow.builders import build_trainer
from unetflow.config import ExperimentConfig, parse_config
from unetflow.data_params import DataParams
from unetflow.prepare import prepare

RESULTS = Path(__file__).parent / "results" / "ray_train_cpu.md"


def timed_epochs(trainer, epochs: int) -> tuple[int, float]:
    """(images this process trained on, seconds) over `epochs` epochs after one warm-up."""
    per_epoch = len(trainer.train_loader.sampler)

    def epoch(k: int) -> None:
        trainer.train_loader.sampler.set_epoch(k)
        gen = trainer.generator
        augment = None
        if trainer.augment is not None:
            augment = lambda x, y: trainer.augment(x, y, gen)  # noqa: E731
        train_one_epoch(
            trainer.model,
            trainer.train_loader,
            trainer.loss_fn,
            trainer.optimizer,
            trainer.cfg,
            device=trainer.device,
            schedule=trainer.schedule,
            augment=augment,
        )

    epoch(0)
    started = time.perf_counter()
    for k in range(1, epochs + 1):
        epoch(k)
    return per_epoch * epochs, time.perf_counter() - started


def bare(cfg: ExperimentConfig, data_dir: Path, threads: int, epochs: int) -> float:
    """Images/s of the plain loop in this process."""
    torch.set_num_threads(threads)
    images, seconds = timed_epochs(build_trainer(cfg, data_dir, torch.device("cpu")), epochs)
    return images / seconds


def ray_worker(payload: dict) -> None:
    """Inside each Ray Train worker: the same steps, global images/s via all-reduce."""
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    entered = time.perf_counter()
    torch.set_num_threads(payload["threads"])
    cfg = ExperimentConfig.model_validate_json(payload["config"])
    ctx = ray.train.get_context()
    trainer = build_trainer(
        cfg,
        Path(payload["data_dir"]),
        torch.device("cpu"),
        ctx.get_world_rank(),
        ctx.get_world_size(),
    )
    trainer.model = ray.train.torch.prepare_model(trainer.model)
    images, seconds = timed_epochs(trainer, payload["epochs"])
    totals = torch.tensor([float(images), seconds])
    if dist.is_initialized():
        dist.all_reduce(totals[:1])  # images: sum over workers
        dist.all_reduce(totals[1:], op=dist.ReduceOp.MAX)  # the slowest worker's time
    if ctx.get_world_rank() == 0:
        # Train V2 keeps metrics only with checkpoints: hand the numbers back by file.
        numbers = {"images_per_s": float(totals[0] / totals[1])}
        numbers["in_worker_s"] = time.perf_counter() - entered
        Path(payload["out"]).write_text(json.dumps(numbers))


def with_ray(cfg: ExperimentConfig, data_dir: Path, threads: int, epochs: int, workers: int):
    """(global images/s, fit() wall seconds, seconds inside the worker function)."""
    import ray.train.torch
    from ray.train import RunConfig, ScalingConfig

    out = Path(tempfile.mkdtemp(prefix="bench-ray-")) / "numbers.json"
    started = time.perf_counter()
    trainer = ray.train.torch.TorchTrainer(
        ray_worker,
        train_loop_config={
            "config": cfg.model_dump_json(),
            "data_dir": str(data_dir),
            "threads": threads,
            "epochs": epochs,
            "out": str(out),
        },
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": threads}),
        run_config=RunConfig(
            name=f"bench-{workers}w-{time.time_ns()}",
            storage_path=str(out.parent),
        ),
    )
    trainer.fit()
    wall = time.perf_counter() - started
    numbers = json.loads(out.read_text())
    shutil.rmtree(out.parent, ignore_errors=True)
    return numbers["images_per_s"], wall, numbers["in_worker_s"]


def setup(quick: bool, root: Path) -> tuple[ExperimentConfig, Path, int]:
    n, size, epochs = (48, 64, 6) if quick else (128, 128, 4)
    data = DataParams.model_validate(
        {"synthetic": {"num_images": n, "shape": [size, size], "seed": 1}}
    )
    data_dir = root / "prepared"
    prepare(data, data_dir)
    cfg = parse_config(
        {
            "model": {"preset": "unet", "base_channels": 8 if quick else 16, "depth": 3},
            "train": {"epochs": epochs + 1, "batch_size": 8, "seed": 0},
        }
    )
    return cfg, data_dir, epochs


def report(rows: dict[str, float], threads: int, quick: bool, cfg: ExperimentConfig) -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    ratio = rows["ray1"] / rows["bare"]
    scaling = rows["ray2"] / (2 * rows["ray1"])
    return "\n".join(
        [
            f"# Ray Train overhead on CPU{' (quick)' if quick else ''}",
            "",
            f"- {platform.machine()}, {os.cpu_count()} cores, load average {load}; "
            f"torch {torch.__version__}; {threads} thread(s) per process",
            f"- model unet, base {cfg.model.base_channels}, depth {cfg.model.depth}; "
            f"batch {cfg.train.batch_size} per worker; augmentation on; fp32; no validation",
            "",
            "| setup | images/s | vs bare (1 worker) / scaling (2) |",
            "|---|---:|---:|",
            f"| bare PyTorch loop (mean of alternating runs) | {rows['bare']:.1f} | 1.000 |",
            f"| Ray Train, 1 worker (in-worker, mean) | {rows['ray1']:.1f} | {ratio:.3f} (goal >= 0.97) |",
            f"| Ray Train, 2 workers (global, DDP gloo) | {rows['ray2']:.1f} | "
            f"{scaling:.2f} of linear |",
            "",
            "| fixed cost | seconds |",
            "|---|---:|",
            f"| 1 worker: fit() wall minus time inside the worker | {rows['startup1']:.1f} |",
            f"| 2 workers: fit() wall minus time inside the worker | {rows['startup2']:.1f} |",
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data and model")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    parser.add_argument("--rounds", type=int, default=None, help="bare/Ray alternations")
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 3)
    from unetflow.ray_train import ensure_ray

    bares, ray1s = [], []
    with tempfile.TemporaryDirectory(prefix="bench-ray-train-") as tmp:
        cfg, data_dir, epochs = setup(args.quick, Path(tmp))
        ensure_ray(num_cpus=max(2 * args.threads, os.cpu_count() or 2))
        # bare, ray, bare, ray, ..., bare: both see the same spread of machine load.
        for _ in range(args.rounds):
            bares.append(bare(cfg, data_dir, args.threads, epochs))
            ray1, wall1, inside1 = with_ray(cfg, data_dir, args.threads, epochs, workers=1)
            ray1s.append(ray1)
        bares.append(bare(cfg, data_dir, args.threads, epochs))
        ray2, wall2, inside2 = with_ray(cfg, data_dir, args.threads, epochs, workers=2)
    rows = {
        "bare": statistics.mean(bares),
        "ray1": statistics.mean(ray1s),
        "ray2": ray2,
        "startup1": wall1 - inside1,
        "startup2": wall2 - inside2,
    }
    table = report(rows, args.threads, args.quick, cfg)
    print(table)
    print(
        f"(bare runs {[round(b, 1) for b in bares]}, Ray 1-worker runs "
        f"{[round(r, 1) for r in ray1s]} images/s)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
