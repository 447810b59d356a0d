"""Ray Tune benchmark: search efficiency of ASHA and Tune's overhead on tiny trials.

Usage:
    .venv/bin/python bench/bench_tune.py [--quick]

1. Efficiency: the same seeded random sample of N configurations (learning rate,
   optimiser, batch size) trained on the synthetic data, once to completion (FIFO,
   i.e. plain random search) and once under ASHA. Reported: epochs used as a fraction
   of random search's and the best validation Dice each reached. Goal: ASHA within 1%
   of random search's best Dice using at most 35% of its epochs.
2. Overhead: many one-epoch trials. The baseline is the same trials' work (the same
   `tune.trial` functions, the configurations Tune sampled) run without Tune in a plain
   pool of 2 processes with one torch thread each, as Ray gives a 1-CPU trial, measured
   in the same run. The theoretical minimum is the sum of those trials' own times divided
   by the 2 trials that run at once. Goal: Tune's wall time at most 20% above it. The
   tiniest trials (~0.2 s of work) run at two counts, so Tune's cost beyond the pool
   splits into a fixed part and a part per trial (a straight-line fit); then ~1.5-s
   trials, the size of Ray's own scalability benchmark (1-s trials), check the goal.

Both run on a local Ray with 2 CPUs and no MLflow tracking (it measures Tune, not the
tracking store). Prints a markdown table and writes bench/results/tune_cpu.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
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
BASE = {
    "model.base_channels": 8,
    "model.depth": 2,
    "scaling.num_workers": 1,
    "train.early_stopping.enabled": False,
}


def prepare_data(root: Path, num_images: int) -> Path:
    from unetflow.data_params import DataParams
    from unetflow.prepare import prepare

    params = {
        "source": "synthetic",
        "folder": None,
        "spatial_dims": 2,
        "synthetic": {"num_images": num_images, "shape": [32, 32], "seed": 3},
        "split": {"fractions": [0.6, 0.2, 0.2], "seed": 3},
    }
    out = root / f"prepared-{num_images}"
    prepare(DataParams.model_validate(params), out)
    return out


def run(root: Path, data: Path, name: str, **search_kw: object) -> tuple[object, float]:
    from tune.search import SearchConfig, run_search
    from unetflow.config import load_config

    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(SPACE))
    search = SearchConfig(
        name=name, space=str(space), track=False, max_concurrent_trials=2, **search_kw
    )
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


def _pool_init() -> None:
    import torch

    torch.set_num_threads(1)  # a 1-CPU Ray trial runs torch on one thread (OMP_NUM_THREADS=1)


def _plain_trial(job: tuple[str, dict, dict, str]) -> float:
    """One trial's work without Tune, by the trainable's own functions; its seconds."""
    from tune.space import ParamSpec, resolve_config
    from tune.trial import model_cost, train_in_process
    from unetflow.config import ExperimentConfig

    base_json, specs, sampled, data_dir = job
    started = time.perf_counter()
    specs = {k: ParamSpec.model_validate(v) for k, v in specs.items()}
    cfg = resolve_config(ExperimentConfig.model_validate_json(base_json), sampled, specs)
    data = Path(data_dir)
    train_in_process(cfg, data, model_cost(cfg, data), lambda metrics, checkpoint_dir: None)
    return time.perf_counter() - started


def plain_pool(root: Path, data: Path, configs: list[dict]) -> tuple[float, float]:
    """(wall, sum of the trials' own seconds) of `configs` run in 2 spawned processes."""
    from tune.space import load_space
    from unetflow.config import load_config

    base = load_config(None, {**BASE, "train.epochs": 1})
    space = load_space(str(root / "space.yaml"), base)
    specs = {k: v.model_dump(mode="json") for k, v in space.params.items()}
    jobs = [(base.model_dump_json(), specs, c, str(data)) for c in configs]
    started = time.perf_counter()  # process start and imports count, as they do for Tune
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx, initializer=_pool_init) as pool:
        own = sum(pool.map(_plain_trial, jobs))
    return time.perf_counter() - started, own


def overhead(root: Path, cases: list[tuple[int, int]]) -> list[str]:
    """One row per (trials, images); the first two cases (same images) give the fit."""
    rows, extras = [], []
    for trials, images in cases:
        data = prepare_data(root, images)
        result, wall = run(
            root,
            data,
            f"overhead-{trials}-{images}",
            scheduler="fifo",
            num_samples=trials,
            epochs=1,
        )
        pool_wall, own = plain_pool(root, data, [r["config"] for r in result.trials])
        minimum = own / 2  # two trials at once on 2 CPUs
        over = wall / minimum - 1
        extras.append((trials, wall - pool_wall, own / trials))
        ok = "yes" if over <= 0.20 else "no"
        rows.append(
            f"| {trials} one-epoch trials, {round(0.6 * images)} train images | "
            f"{own / trials:.2f} s | {minimum:.1f} s | {pool_wall:.1f} s | {wall:.1f} s | "
            f"{100 * over:.0f}% | {wall - pool_wall:+.1f} s | {ok} |"
        )
    (n_a, extra_a, work), (n_b, extra_b, _) = extras[0], extras[1]
    per_trial = (extra_b - extra_a) / (n_b - n_a)  # Tune's seconds per added trial
    fixed = extra_a - per_trial * n_a
    rows += [
        "",
        f"Tune beyond the pool, a straight line through the first two rows: "
        f"{1000 * per_trial:.0f} ms per trial and {fixed:+.1f} s at zero trials; per trial "
        f"that is {100 * 2 * per_trial / work:.0f}% of a {work:.2f}-s trial on 2 slots.",
    ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples and epochs")
    parser.add_argument("--only", choices=("efficiency", "overhead"), help="run one part")
    args = parser.parse_args()
    samples, epochs, images = (12, 27, 48) if args.quick else (24, 27, 120)
    # (trials, images): the tiniest trials at two counts (the fit), then ~1.5-s trials.
    cases = (
        [(24, 120), (96, 120), (48, 1200)] if args.quick else [(48, 120), (192, 120), (96, 1200)]
    )
    import ray
    import torch

    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = prepare_data(root, images)
        eff = efficiency(root, data, samples, epochs) if args.only != "overhead" else []
        ovh = overhead(root, cases) if args.only != "efficiency" else []
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
        "| overhead | work per trial | theoretical minimum | plain process pool | Tune wall "
        "| Tune vs minimum | Tune - pool | goal met |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *ovh,
        "",
        "Goals: ASHA within 1% of random's best Dice with <= 35% of its epochs; overhead <= 20%.",
        "Wall times include the start-up of trial (and pool) processes. Load average (1 min) "
        f"at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores, about 2 of it the "
        "benchmark's own two trials; more means other jobs shared the CPUs.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.only is None:  # a partial run never replaces the full table
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
