"""Data at scale: loader vs training step rate, worker and prep memory, prep throughput.

Prints a markdown table and writes it to bench/results/data_cpu.md:

- patches/s of one training worker's `PatchStream` from local disk and from an S3
  endpoint (a moto server on 127.0.0.1), against the training step rate of the default
  model at the default batch size (goal: loader >= 2x the step rate);
- peak RSS growth of a training worker and of a preparation process for a data set and
  one 4x larger (goal: flat);
- preparation throughput in cases/s with 1 and 2 processes.

Run: `python bench/bench_data.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.s3 import s3_server  # noqa: E402
from unet_core.data import PatchStream, generate_synthetic, write_manifest  # noqa: E402
from unetflow.builders import build_trainer  # noqa: E402
from unetflow.config import parse_config  # noqa: E402
from unetflow.prepare_cases import ArrayJob, run_jobs  # noqa: E402

SIZE, PATCH = 256, (128, 128)  # 2D cases and training patch


def prepare(out: Path, n: int, workers: int) -> float:
    """Prepare `n` synthetic cases with `workers` processes; returns cases/s."""
    images, masks = generate_synthetic(n, (SIZE, SIZE), seed=1)
    jobs = [
        ArrayJob(f"c{i:04d}", "val" if i < 4 else "train", images[i], masks[i]) for i in range(n)
    ]
    started = time.perf_counter()
    cases = run_jobs(jobs, str(out), workers)
    write_manifest(out, cases)
    return n / (time.perf_counter() - started)


def loader_rate(uri: str, seconds: float) -> float:
    """Patches/s of one worker's stream (first pass fills the cache, as in epoch 1)."""
    stream = PatchStream(uri, "train", PATCH, samples=10**6)
    count, started = 0, time.perf_counter()
    for _ in stream:
        count += 1
        if time.perf_counter() - started > seconds:
            break
    return count / (time.perf_counter() - started)


def step_rate(data: Path, steps: int) -> tuple[float, int]:
    """Training steps/s and the batch size of the default model, config and patch."""
    cfg = parse_config({"data": {"patch_size": list(PATCH)}, "train": {"steps_per_epoch": steps}})
    trainer = build_trainer(cfg, data, torch.device("cpu"))
    batches = [b for _, b in zip(range(2), trainer.train_loader, strict=False)]
    trainer.model.train()
    started = time.perf_counter()
    for k in range(steps):
        images, masks = batches[k % 2]
        loss = trainer.loss_fn(trainer.model(images), masks)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()
    return steps / (time.perf_counter() - started), cfg.train.batch_size


WORKER_RSS = r"""
import json, resource, sys
from unetflow.builders import make_loaders
from unetflow.config import parse_config
cfg = parse_config({"data": {"patch_size": [128, 128]}, "train": {"steps_per_epoch": 40}})
train, _ = make_loaders(cfg, sys.argv[1], rank=0, world_size=1)
next(iter(train))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for batch in train:
    pass
print(json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base))
"""

PREP_RSS = r"""
import json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from bench.bench_data import prepare
prepare(Path(sys.argv[1]), int(sys.argv[2]), workers=2)
print(json.dumps(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
"""


def _python(script: str, *args: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=True
    )
    return int(json.loads(out.stdout.strip().splitlines()[-1]))


def _upload(folder: Path, s3) -> str:
    s3.create_bucket("bench-data")
    client = s3.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), "bench-data", f"prep/{path.relative_to(folder)}")
    return "s3://bench-data/prep"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, seconds, steps = (24, 3.0, 4) if args.quick else (48, 8.0, 10)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one = prepare(root / "p1", n, workers=1)
        two = prepare(root / "p2", n, workers=2)
        rows.append(("preparation, 1 process", f"{one:.1f} cases/s", f"{n} cases {SIZE}^2"))
        rows.append(("preparation, 2 processes", f"{two:.1f} cases/s", f"{n} cases {SIZE}^2"))
        steps_s, batch = step_rate(root / "p1", steps)
        need = 2 * steps_s * batch
        rows.append(
            (
                "training step rate (default model)",
                f"{steps_s:.2f} steps/s",
                f"batch {batch}, patch {PATCH}: loader goal >= {need:.0f} patches/s",
            )
        )
        local = loader_rate(str(root / "p1"), seconds)
        rows.append(
            (
                "loader, local disk",
                f"{local:.1f} patches/s",
                f"{local / (steps_s * batch):.1f}x the step rate",
            )
        )
        with s3_server() as s3:
            os.environ.update(s3.env())
            uri = _upload(root / "p1", s3)
            remote = loader_rate(uri, seconds)
        rows.append(
            (
                "loader, S3 endpoint (moto, 127.0.0.1)",
                f"{remote:.1f} patches/s",
                f"{remote / (steps_s * batch):.1f}x the step rate",
            )
        )
        for scale in (1, 4):
            data = root / f"rss{scale}"
            prepare(data, n * scale, workers=1)
            grow = _python(WORKER_RSS, str(data))
            rows.append(
                (
                    f"worker peak RSS growth, {n * scale} cases",
                    f"{grow / 1024:.1f} MiB",
                    "cache_mb 256 + batch",
                )
            )
            prep = _python(PREP_RSS, str(root / f"prss{scale}"), str(n * scale), str(ROOT))
            rows.append(
                (
                    f"prep process peak RSS, {n * scale} cases",
                    f"{prep / 1024:.0f} MiB",
                    "largest of 2 processes",
                )
            )
    table = "| measure | value | note |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    print(table)
    out = ROOT / "bench" / "results" / "data_cpu.md"
    header = f"# Data at scale (CPU, {os.cpu_count()} cores, `bench/bench_data.py{' --quick' if args.quick else ''}`)\n\n"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    note = f"Load average at the end: {load} (a shared machine: compare rows, not runs).\n\n"
    out.write_text(header + note + table + "\n")


if __name__ == "__main__":
    main()
