"""Ray Tune benchmark: search efficiency of ASHA and Tune's overhead on tiny trials.

Usage:
    .venv/bin/python bench/bench_tune.py [--quick]

1. Efficiency: the same seeded random sample of N configurations (learning rate,
   optimiser, batch size) trained on the synthetic data, once to completion (FIFO,
   i.e. plain random search) and once under ASHA. Reported: epochs used as a fraction
   of random search's and the best validation Dice each reached. Goal: ASHA within 1%
   of random search's best Dice using at most 35% of its epochs.
2. Overhead: many one-epoch trials; the theoretical minimum is the sum of the trials'
   own running times (`time_total_s`) divided by the trials that run at once. Goal:
   wall time at most 20% above it.

Both run on a local Ray with 2 CPUs and no MLflow tracking (it measures Tune, not the
tracking store). Prints a markdown table and writes bench/results/tune_cpu.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import yaml

os.environ.setdefault("RAY_AUTH_MODE", "token")

RESULTS = Path(__file__).parent / "results" / "tune_cpu.md"
SPACE = {
    "name": "bench",
    "params": {
        "optim.lr": {"loguniform": [1.0e-4, 3.0e-2]},
        "optim.name": {"choice": ["adamw", "sgd"]},
        "train.batch_size": {"choice": [4, 8]},
    },
}
BASE = {"model.base_channels": 8, "model.depth": 2, "scaling.num_workers": 1,
        "train.early_stopping.enabled": False}  # fmt: skip


def prepare_data(root: Path, num_images: int) -> Path:
    from unetflow.prepare import DataParams, prepare

    params = {"source": "synthetic", "folder": None, "spatial_dims": 2,
              "synthetic": {"num_images": num_images, "shape": [32, 32], "seed": 3},
              "split": {"fractions": [0.6, 0.2, 0.2], "seed": 3}, "shard_size": 32}  # fmt: skip
    out = root / "prepared"
    prepare(DataParams.model_validate(params), out)
    return out


def run(root: Path, data: Path, name: str, **search_kw: object) -> tuple[object, float]:
    from tune.search import SearchConfig, run_search
    from unetflow.config import load_config

    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    search = SearchConfig(name=name, space=str(space), track=False, max_concurrent_trials=2,
                          **search_kw)  # fmt: skip
    started = time.perf_counter()
    result = run_search(search, root, load_config(None, BASE), data)
    return result, time.perf_counter() - started


def efficiency(root: Path, data: Path, samples: int, epochs: int) -> list[str]:
    common = {"num_samples": samples, "epochs": epochs, "seed": 11, "reduction_factor": 3}
    rand, rand_s = run(root, data, "random-fifo", scheduler="fifo", **common)
    asha, asha_s = run(root, data, "random-asha", scheduler="asha", **common)
    full = rand.total_epochs
    frac = asha.total_epochs / full
    gap = (rand.best_metrics["val_dice"] - asha.best_metrics["val_dice"]) / max(
        rand.best_metrics["val_dice"], 1e-9
    )
    ok = "yes" if frac <= 0.35 and gap <= 0.01 else "no"
    return [
        f"| random search (FIFO) | {samples} | {full} | 100% | "
        f"{rand.best_metrics['val_dice']:.4f} | {rand_s:.0f} s | - |",
        f"| ASHA (rf 3, grace 1) | {samples} | {asha.total_epochs} | {100 * frac:.0f}% | "
        f"{asha.best_metrics['val_dice']:.4f} ({100 * gap:+.1f}% below) | {asha_s:.0f} s | {ok} |",
    ]


def overhead(root: Path, data: Path, trials: int) -> list[str]:
    result, wall = run(root, data, "overhead", scheduler="fifo", num_samples=trials, epochs=1)
    own = sum(float(r["last"].get("time_total_s", 0.0)) for r in result.trials)
    minimum = own / 2  # two trials at once on 2 CPUs
    over = wall / minimum - 1
    ok = "yes" if over <= 0.20 else "no"
    return [f"| {trials} one-epoch trials | {own:.1f} s | {minimum:.1f} s | {wall:.1f} s | "
            f"{100 * over:.0f}% | {ok} |"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples and epochs")
    args = parser.parse_args()
    samples, epochs, images, tiny = (12, 27, 48, 12) if args.quick else (24, 27, 120, 24)
    import ray
    import torch

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = prepare_data(root, images)
        eff = efficiency(root, data, samples, epochs)
        ovh = overhead(root, data, tiny)
    ray.shutdown()
    mode = "quick" if args.quick else "full"
    lines = [
        f"# Tune benchmark (cpu: {platform.machine()}, 2 Ray CPUs, torch {torch.__version__}, "
        f"ray {ray.__version__}, {mode})",
        "",
        f"Synthetic data: {images} images 32x32 (60% train); U-Net depth 2, 8 base channels; "
        f"space: lr x optimiser x batch size; {epochs} epochs max per trial.",
        "",
        "| search | configs | epochs used | of random | best val Dice | wall | goal met |",
        "|---|---:|---:|---:|---:|---:|---|",
        *eff,
        "",
        "| overhead | trials' own time | theoretical minimum | wall | overhead | goal met |",
        "|---|---:|---:|---:|---:|---|",
        *ovh,
        "",
        "Goals: ASHA within 1% of random's best Dice with <= 35% of its epochs; overhead <= 20%.",
        "Wall times include Ray start-up of trial processes. Load average (1 min) at the end: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: other jobs shared the CPUs, so "
        "wall times and the overhead are upper bounds.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
