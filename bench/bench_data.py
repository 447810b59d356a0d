"""Data at scale: loader vs training step rate, memory vs data size, prep throughput.

Usage:
    .venv/bin/python bench/bench_data.py [--quick] [--out FILE]

Prints two markdown tables and writes them to ``bench/results/data_cpu.md``
(``--quick``: ``data_cpu_quick.md``, a smoke run whose numbers are not results):

- Rates. Training steps/s of the default model at its default batch size on a
  128x128 patch, against patches/s of one training worker's `PatchStream` from local
  disk and from an S3 endpoint (a moto server on 127.0.0.1), each with the default
  cache (`data.cache_mb`, 256 MiB: the data set fits; measured once the first pass has
  filled it, whose time is given) and a 1 MiB cache (no case fits, so every patch reads
  its chunks from storage, as for volumes larger than the cache: the worst case); and
  from S3 through the node cache (`data.node_cache_gb`) with the 1 MiB process cache,
  cold (an empty cache folder: the first pass downloads the cases) and warm (a second
  stream on the same folder, as another process of the node would read it). One
  stream is one process: what a CPU worker runs (no DataLoader workers there); on CUDA
  each rank runs up to 4 such processes. Goal: every loader row >= 2x the patches the
  step rate consumes. Preparation throughput in cases/s with 1 and 2 processes, wall
  time including the processes' start-up (measured on its own row).
- Memory. Peak RSS of each process of the data path for N cases and 4N cases of
  512x512 float32 (1.25 MiB a case with its mask): the DVC `ingest` stage (a local
  folder copied case by case), the `prepare` parent and its largest worker process
  (2 processes), and a training worker drawing 2 epochs of patches with a 4 MiB
  cache (smaller than either data set, so its bound shows). Goal: flat (4N within a few MiB of N). Each process resets its peak after
  its imports (Linux `clear_refs`), so an import's transient peak does not hide the data.

The benchmark reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.s3 import s3_server  # noqa: E402
from unet_core.data import PatchStream, generate_synthetic  # noqa: E402
from unet_core.data.node_cache import NodeCache  # noqa: E402
from unetflow.builders import build_trainer  # noqa: E402
from unetflow.config import parse_config  # noqa: E402
from unetflow.data_params import DataParams  # noqa: E402
from unetflow.prepare import prepare  # noqa: E402

PATCH = (128, 128)  # training patch
RATE_SIZE, RSS_SIZE = 256, 512  # case sides: rates, memory
SMALL_CACHE_MB = 1  # worst case: no case fits a quarter of it, every patch reads storage


def write_raw(root: Path, n: int, size: int) -> Path:
    """`root/images` + `root/masks`: `n` synthetic npy pairs, 8 generated at a time."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for start in range(0, n, 8):
        images, masks = generate_synthetic(min(8, n - start), (size, size), seed=start)
        for k in range(len(images)):
            np.save(root / "images" / f"c{start + k:05d}.npy", images[k])
            np.save(root / "masks" / f"c{start + k:05d}.npy", masks[k])
    return root


def folder_params(raw: Path) -> DataParams:
    return DataParams(source="folder", folder=str(raw), split={"fractions": [0.8, 0.1, 0.1]})


def prepare_rate(raw: Path, out: Path, workers: int) -> float:
    """Cases/s of the `prepare` stage over a folder with `workers` processes (wall)."""
    n = len(list((raw / "images").iterdir()))
    started = time.perf_counter()
    prepare(folder_params(raw), out, workers=workers)
    return n / (time.perf_counter() - started)


def startup_s() -> float:
    """Seconds a fresh (spawned) interpreter takes to import what a prep worker runs."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import unetflow.prepare_cases"], env=_env(), check=True)
    return time.perf_counter() - started


def loader_rate(
    uri: str, seconds: float, cache_mb: float, node_cache: NodeCache | None = None
) -> tuple[float, float]:
    """(patches/s, seconds of the first pass) of one worker's stream. With a cache that
    holds the data set, the first pass (3 patches per train case) fills it, untimed."""
    stream = PatchStream(
        uri, "train", PATCH, samples=10**6, cache_mb=cache_mb, node_cache=node_cache
    )
    patches = iter(stream)
    started = time.perf_counter()
    for _ in range(3 * len(stream.cases) if cache_mb > SMALL_CACHE_MB else 1):
        next(patches)
    first = time.perf_counter() - started
    count, started = 0, time.perf_counter()
    for _ in patches:
        count += 1
        if time.perf_counter() - started > seconds:
            break
    return count / (time.perf_counter() - started), first


def step_rate(data: Path, steps: int) -> tuple[float, int]:
    """Training steps/s (after one warm-up step) and batch size of the default config."""
    cfg = parse_config({"data": {"patch_size": list(PATCH)}, "train": {"steps_per_epoch": 2}})
    trainer = build_trainer(cfg, data, torch.device("cpu"))
    batch = next(iter(trainer.train_loader))
    trainer.model.train()

    def step() -> None:
        loss = trainer.loss_fn(trainer.model(batch[0]), batch[1])
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - started), cfg.train.batch_size


# Every measuring script defines peak_kb() and reset() (from PEAK) and prints one JSON line.
PEAK = r"""
import json, resource, sys
def peak_kb():
    with open("/proc/self/status") as f:
        return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:"))
def reset():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
"""

INGEST_RSS = r"""
from pathlib import Path
from unetflow.ingest import ingest
from unetflow.data_params import DataParams
reset()
ingest(DataParams(source="folder", folder=sys.argv[1]), Path(sys.argv[2]))
print(json.dumps({"ingest": peak_kb()}))
"""

PREP_RSS = r"""
from pathlib import Path
from unetflow.prepare import prepare
from unetflow.data_params import DataParams
params = DataParams(source="folder", folder=sys.argv[1], split={"fractions": [0.8, 0.1, 0.1]})
reset()
prepare(params, Path(sys.argv[2]), workers=2)
worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest child, imports too
print(json.dumps({"prepare": peak_kb(), "prep_worker": worker}))
"""

WORKER_RSS = r"""
from unetflow.builders import make_loaders
from unetflow.config import parse_config
cfg = parse_config({"data": {"patch_size": [128, 128], "cache_mb": 4},
                    "train": {"steps_per_epoch": int(sys.argv[2])}})
train, _ = make_loaders(cfg, sys.argv[1], rank=0, world_size=1)
next(iter(train))
reset()
for epoch in range(2):
    train.dataset.set_epoch(epoch)
    for batch in train:
        pass
print(json.dumps({"worker": peak_kb()}))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _measure(script: str, *args: str) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", PEAK + script, *args],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def memory_at(root: Path, n: int) -> dict[str, int]:
    """Peak RSS (KiB) of each data-path process for `n` cases of RSS_SIZE^2."""
    raw = write_raw(root / "src", n, RSS_SIZE)
    peaks = _measure(INGEST_RSS, str(raw), str(root / "raw"))
    peaks |= _measure(PREP_RSS, str(root / "raw"), str(root / "prepared"))
    steps = max(8, n // 2)  # 2 epochs of batch 8 draw every case's voxels a few times
    return peaks | _measure(WORKER_RSS, str(root / "prepared"), str(steps))


@contextmanager
def s3_copy(folder: Path) -> Iterator[str]:
    """`folder` uploaded to a moto server on 127.0.0.1; yields its s3:// URI."""
    with s3_server() as s3:
        os.environ.update(s3.env())
        s3.create_bucket("bench-data")
        yield s3.upload_folder(folder, "bench-data", "prep")


def rate_rows(root: Path, n: int, seconds: float, steps: int) -> list[tuple[str, str, str]]:
    raw = write_raw(root / "raw", n, RATE_SIZE)
    one, two = prepare_rate(raw, root / "p1", 1), prepare_rate(raw, root / "p2", 2)
    what = f"{n} cases {RATE_SIZE}^2, wall incl. start-up"
    rows = [
        ("preparation, 1 process", f"{one:.1f} cases/s", what),
        ("preparation, 2 processes", f"{two:.1f} cases/s", f"{what}; {two / one:.2f}x of 1"),
        ("start-up of a prep process", f"{startup_s():.1f} s", "spawn + imports, once per run"),
    ]
    steps_s, batch = step_rate(root / "p1", steps)
    need = steps_s * batch
    note = f"batch {batch}, patch {PATCH}: consumes {need:.1f} patches/s; goal 2x"
    rows.append(("training step rate (default model)", f"{steps_s:.2f} steps/s", note))
    with s3_copy(root / "p1") as uri:
        for where, data in (("local disk", str(root / "p1")), ("S3 (moto, 127.0.0.1)", uri)):
            for cache in (256.0, SMALL_CACHE_MB):
                rate, first = loader_rate(data, seconds, cache)
                ok = "meets" if rate >= 2 * need else "MISSES"
                warm = "first pass" if cache > SMALL_CACHE_MB else "first patch"
                rows.append(
                    (
                        f"loader, {where}, cache {cache:.0f} MiB",
                        f"{rate:.0f} patches/s",
                        f"{rate / need:.1f}x the step rate ({ok} 2x); {warm} {first:.1f} s",
                    )
                )
        rows += node_cache_rows(uri, root / "node-cache", seconds, need)
    return rows


def node_cache_rows(
    uri: str, folder: Path, seconds: float, need: float
) -> list[tuple[str, str, str]]:
    """S3 through the node cache with the 1 MiB process cache (every patch reads chunks):
    cold (an empty folder: the first patches download their cases) and warm (a new
    stream, as another process of the node: every case is on local disk)."""
    rows = []
    cold_cache = NodeCache(folder, 10**10)
    stream = PatchStream(
        uri, "train", PATCH, samples=10**6, cache_mb=SMALL_CACHE_MB, node_cache=cold_cache
    )
    n = 3 * len(stream.cases)  # most cases are drawn, so this pass downloads them
    started = time.perf_counter()
    patches = iter(stream)
    for _ in range(n):
        next(patches)
    cold = n / (time.perf_counter() - started)
    warm_cache = NodeCache(folder, 10**10)
    warm, _ = loader_rate(uri, seconds, SMALL_CACHE_MB, warm_cache)
    counts = {
        "cold": (cold, f"first {n} patches, {cold_cache.misses} cases downloaded"),
        "warm": (warm, f"another process: {warm_cache.misses} downloads"),
    }
    for name, (rate, what) in counts.items():
        ok = "meets" if rate >= 2 * need else "MISSES"
        rows.append(
            (
                f"loader, S3 + node cache {name}, cache {SMALL_CACHE_MB} MiB",
                f"{rate:.0f} patches/s",
                f"{rate / need:.1f}x the step rate ({ok} 2x); {what}",
            )
        )
    return rows


def memory_table(root: Path, n: int) -> str:
    small, large = memory_at(root / "n1", n), memory_at(root / "n4", 4 * n)
    mib = RSS_SIZE**2 * 5 / 2**20  # float32 image + uint8 mask
    names = {
        "ingest": "ingest (folder, 8 threads)",
        "prepare": "prepare, parent",
        "prep_worker": "prepare, largest of 2 workers (incl. imports)",
        "worker": "training worker (cache 4 MiB, 2 epochs)",
    }
    head = f"| process | {n} cases ({n * mib:.0f} MiB) | {4 * n} cases ({4 * n * mib:.0f} MiB) | growth |"
    lines = [head, "|---|---|---|---|"]
    for key, name in names.items():
        a, b = small[key] / 1024, large[key] / 1024
        lines.append(f"| {name} | {a:.0f} MiB | {b:.0f} MiB | {b - a:+.0f} MiB |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    parser.add_argument("--out", type=Path, help="default: bench/results/data_cpu[_quick].md")
    args = parser.parse_args()
    n, seconds, steps, rss_n = (12, 1.0, 1, 8) if args.quick else (96, 8.0, 5, 16)
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        rows = rate_rows(Path(tmp) / "rates", n, seconds, steps)
        memory = memory_table(Path(tmp) / "memory", rss_n)
    rates = "| measure | value | note |\n|---|---|---|\n" + "\n".join(
        f"| {a} | {b} | {c} |" for a, b, c in rows
    )
    print(rates + "\n\n" + memory)
    suffix = " --quick" if args.quick else ""
    out = args.out or ROOT / "bench" / "results" / f"data_cpu{'_quick' if args.quick else ''}.md"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    out.write_text(
        f"# Data at scale (CPU, {os.cpu_count()} cores, `bench/bench_data.py{suffix}`)\n\n"
        f"Load average at the end: {load} (compare rows within a run, not across runs).\n\n"
        f"{rates}\n\nPeak RSS per process:\n\n{memory}\n"
    )


if __name__ == "__main__":
    main()
