"""Sliding-window inference throughput: tiles with overlap, Gaussian blending, flip TTA.

Usage:
    .venv/bin/python bench/bench_inference.py [--quick] [--threads N]

A 2D image several tiles wide and a 3D volume, each with overlap 0.5, without and with
flip TTA (4 passes in 2D, 8 in 3D). Reports kilovoxels/s of the output and tiles/s of
the model. Untrained weights: throughput does not depend on them. Prints a markdown
table and writes `bench/results/ray_inference_cpu.md`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from unet_core.inference import _starts, predict_logits
from unet_core.models import create_model, get_model_config

RESULTS = Path(__file__).parent / "results" / "ray_inference_cpu.md"


def cases(quick: bool) -> list[tuple[str, dict, tuple[int, ...], tuple[int, ...]]]:
    """(label, model overrides, image shape [C, *spatial], patch)."""
    if quick:
        return [
            ("2D unet", {"base_channels": 8, "depth": 3}, (1, 256, 256), (64, 64)),
            ("3D unet3d", {"base_channels": 4, "depth": 2}, (1, 48, 48, 48), (32, 32, 32)),
        ]
    return [
        ("2D unet", {"base_channels": 16, "depth": 4}, (1, 1024, 1024), (256, 256)),
        ("3D unet3d", {"base_channels": 8, "depth": 3}, (1, 128, 128, 128), (64, 64, 64)),
    ]


def tiles(shape: tuple[int, ...], patch: tuple[int, ...], overlap: float) -> int:
    count = 1
    for size, p in zip(shape, patch, strict=True):
        count *= len(_starts(size, p, max(1, int(p * (1 - overlap)))))
    return count


def measure(model, image: torch.Tensor, patch, tta: bool, repeats: int) -> float:
    """Median seconds of one prediction (after a warm-up)."""
    predict_logits(model, image, patch=patch, tta=tta)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict_logits(model, image, patch=patch, tta=tta)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images and models")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        f"# Sliding-window inference on CPU{' (quick)' if args.quick else ''}",
        "",
        f"- {platform.machine()}, {args.threads} thread(s), load average {load}; "
        f"torch {torch.__version__}; fp32, batch 1, overlap 0.5, Gaussian blending",
        "",
        "| model | image | patch | TTA | tiles | seconds | kvoxel/s | tiles/s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for label, overrides, shape, patch in cases(args.quick):
        preset = "unet3d" if len(patch) == 3 else "unet"
        model = create_model(get_model_config(preset, **overrides)).eval()
        image = torch.randn(1, *shape)
        for tta in (False, True):
            passes = 2 ** len(patch) if tta else 1
            n = tiles(shape[1:], patch, 0.5) * passes
            seconds = measure(model, image, patch, tta, repeats=1 if args.quick else 3)
            voxels = torch.tensor(shape[1:]).prod().item() / 1e3
            lines.append(
                f"| {label} | {'x'.join(map(str, shape[1:]))} | {'x'.join(map(str, patch))} "
                f"| {'flips' if tta else 'off'} | {n} | {seconds:.2f} | {voxels / seconds:.1f} "
                f"| {n / seconds:.1f} |"
            )
            print(lines[-1], flush=True)
    table = "\n".join(lines) + "\n"
    print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(table)


if __name__ == "__main__":
    main()
