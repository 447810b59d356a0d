"""Training throughput of every model preset: forward+backward images per second.

Usage:
    .venv/bin/python bench/bench_models.py [--quick] [--device cpu|cuda] [--batch-size N]
        [--variants plain,channels_last,compile,channels_last+compile]

2D presets run at 256x256 and 3D ones at 64^3 (``--quick``: 128x128 and 32^3 with
fewer iterations, for CI-ish runs). On CUDA the step runs under bf16 autocast, with a
batch of 16 (2D) or 2 (3D) unless ``--batch-size`` says otherwise, and every preset is
timed in each variant: the default layout, ``channels_last`` (NHWC / NDHWC, as
``train.channels_last``) and ``torch.compile`` (as ``train.compile``). The reference is
NVIDIA's U-Net at about 34% MFU on an A100; the goal is above 35%.
Achieved FLOP/s counts 3x the forward FLOPs per step (backward ~ 2x forward); MFU
divides it by the peak of a large matmul measured in the same run (fp32 on CPU,
bf16 on CUDA). Prints a markdown table and writes it to
``bench/results/models_<device>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from unet_core.models import create_model, describe, list_models

RESULTS_DIR = Path(__file__).parent / "results"


@dataclass(frozen=True)
class Row:
    """One benchmark result line."""

    preset: str
    variant: str  # plain, channels_last, compile, channels_last+compile
    batch_size: int
    input_size: tuple[int, ...]
    params: int
    gflops_per_image: float  # forward GFLOPs for one image
    images_per_s: float  # forward+backward throughput
    tflops: float  # achieved TFLOP/s (3x forward FLOPs per image)
    mfu: float  # achieved / measured peak


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the usual training setting), nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure_peak_flops(device: torch.device, quick: bool) -> float:
    """Best-of FLOP/s of a large square matmul: fp32 on CPU, bf16 on CUDA.

    The best single repeat, not the mean: a peak should not include the time other
    jobs on shared cores took away.
    """
    n = (1024 if quick else 2048) if device.type == "cpu" else 8192
    dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):  # warm-up: thread pools, cuBLAS heuristics
        a @ b
    best = float("inf")
    for _ in range(8 if device.type == "cpu" else 20):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def time_training_steps(model: torch.nn.Module, x: torch.Tensor, warmup: int, iters: int) -> float:
    """Median seconds per forward+backward step of ``model`` on batch ``x`` (no optimizer).

    The median rather than the mean, because the CPU runners are shared and a
    neighbour's burst should not count as this model's cost.
    """
    model.train()

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with autocast(x.device):
            out = model(x)
            outputs = out if isinstance(out, list) else [out]
            loss = sum(o.float().mean() for o in outputs)
        loss.backward()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        synchronize(x.device)
        start = time.perf_counter()
        step()
        synchronize(x.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


VARIANTS = ("plain", "channels_last", "compile", "channels_last+compile")


def default_batch(device: torch.device, spatial_dims: int) -> int:
    """Images per step: enough to fill a GPU for 2D; 3D volumes are large already."""
    if device.type != "cuda":
        return 2
    return 16 if spatial_dims == 2 else 2


def bench_preset(
    name: str, device: torch.device, batch_size: int | None, quick: bool, variant: str = "plain"
) -> Row:
    """Benchmark one preset at its default configuration in one layout/compile variant."""
    from unet_core.engine import memory_format

    model = create_model(name).to(device)
    config = model.config
    side = (128 if quick else 256) if config.spatial_dims == 2 else (32 if quick else 64)
    size = (side,) * config.spatial_dims
    info = describe(model, (1, config.in_channels, *size))
    batch_size = batch_size or default_batch(device, config.spatial_dims)
    x = torch.randn(batch_size, config.in_channels, *size, device=device)
    if "channels_last" in variant:
        layout = memory_format(x.ndim)
        model, x = model.to(memory_format=layout), x.contiguous(memory_format=layout)
    warmup, iters = (2, 3) if quick else (3, 10)
    if device.type == "cuda":
        warmup, iters = (5, 20) if quick else (10, 50)
    if "compile" in variant:
        model = torch.compile(model)
        warmup += 3  # the first calls compile (and recompile for the backward)
    seconds = time_training_steps(model, x, warmup, iters)
    images_per_s = batch_size / seconds
    achieved = 3 * info.flops * images_per_s
    return Row(
        preset=name,
        variant=variant,
        batch_size=batch_size,
        input_size=size,
        params=info.parameters,
        gflops_per_image=info.flops / 1e9,
        images_per_s=images_per_s,
        tflops=achieved / 1e12,
        mfu=float("nan"),  # filled in once the peak is known
    )


def device_label(device: torch.device) -> str:
    """Human-readable device name for the table header."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    # The load average tells a reader whether other jobs shared the cores during the run.
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads, load average {load}"


def render(rows: list[Row], device: torch.device, peak: float, args: argparse.Namespace) -> str:
    """Markdown report: a header with the setting, then one table line per preset."""
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    lines = [
        f"# Model throughput on {device.type} ({'quick' if args.quick else 'full'})",
        "",
        f"- device: {device_label(device)}; torch {torch.__version__}; {precision}",
        "- forward+backward, no optimizer step; median step time",
        f"- measured peak (best {'fp32' if device.type == 'cpu' else 'bf16'} matmul): "
        f"{peak / 1e12:.3f} TFLOP/s; achieved = 3 x forward FLOPs x images/s",
        "",
        "| preset | variant | batch | input | params | GFLOPs/img (fwd) | images/s | TFLOP/s | MFU |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        size = "x".join(map(str, r.input_size))
        lines.append(
            f"| {r.preset} | {r.variant} | {r.batch_size} | {size} | {r.params / 1e6:.2f} M | "
            f"{r.gflops_per_image:.2f} | "
            f"{r.images_per_s:.2f} | {r.tflops:.4f} | {100 * r.mfu:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer iterations")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--batch-size", type=int, help="images per step (default: 2 on CPU; 16/2 for 2D/3D on CUDA)"
    )
    parser.add_argument(
        "--variants",
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all on CUDA, plain on CPU)",
    )
    parser.add_argument("--models", default=None, help="shell pattern over preset names")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    device = torch.device(args.device)
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick kernels

    # Measured before and after the models, keeping the higher: on shared CPUs a
    # single measurement can land in a neighbour's burst.
    peak = measure_peak_flops(device, args.quick)
    variants = (args.variants or ("plain" if device.type == "cpu" else ",".join(VARIANTS))).split(
        ","
    )
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; valid: {list(VARIANTS)}")
    results = []
    for name in list_models(args.models):
        for variant in variants:
            results.append(bench_preset(name, device, args.batch_size, args.quick, variant))
            print(f"done {name} {variant}", flush=True)
    peak = max(peak, measure_peak_flops(device, args.quick))
    rows = [replace(r, mfu=r.tflops * 1e12 / peak) for r in results]
    report = render(rows, device, peak, args)
    print(report)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"models_{device.type}.md").write_text(report)


if __name__ == "__main__":
    main()
